"""Text stages: phrases → boxes (Grounding DINO), phrases → masks (SAM 3) and masks → class names (CLIP).

This package knows nothing about SAM; :mod:`grounded_sam.pipeline` joins the two.
"""

from grounded_sam.text.base import Detections, Detector, Labeler, Labels, Segments, TextSegmenter
from grounded_sam.text.prompts import parse_prompt

__all__ = ["Detections", "Detector", "Labeler", "Labels", "Segments", "TextSegmenter", "parse_prompt"]
