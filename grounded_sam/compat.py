"""Drop-in interfaces for people moving from other toolkits."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from grounded_sam.pipeline import GroundedSAM


class LangSAM:
    """lang-sam's interface: ``predict(image_pil, "window") -> masks, boxes, phrases, logits``.

    Returns torch tensors as lang-sam does: masks (N, H, W) bool, boxes (N, 4) XYXY pixels, the phrase of
    each box, and the detector's confidence (N,). Backed by :class:`GroundedSAM`; pass ``pipeline=`` to
    reuse one, else the default pipeline of :func:`grounded_sam.predict` is used.
    """

    def __init__(self, pipeline: GroundedSAM | None = None, **pretrained: Any) -> None:
        if pipeline is None:
            if pretrained:
                pipeline = GroundedSAM.from_pretrained(**pretrained)
            else:
                from grounded_sam.api import default_pipeline

                pipeline = default_pipeline()
        self.pipeline = pipeline

    def predict(
        self,
        image_pil: Image.Image,
        text_prompt: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
        result = self.pipeline.predict(
            image_pil, text_prompt, box_threshold=box_threshold, text_threshold=text_threshold
        )
        return (
            torch.from_numpy(result.masks),
            torch.from_numpy(result.boxes),
            list(result.labels),
            torch.from_numpy(result.scores),
        )
