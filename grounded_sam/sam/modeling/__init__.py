"""The SAM network, one part per file, as in the paper's figure.

``image_encoder`` (ViT) or ``tiny_vit`` (MobileSAM) -> image embedding; ``prompt_encoder`` -> sparse and
dense prompt embeddings; ``mask_decoder`` (a two-way ``transformer`` of ``attention`` blocks) -> masks
and predicted IoUs; ``sam`` holds the three parts; ``config`` describes an architecture as data.
"""

from grounded_sam.sam.modeling.config import EncoderConfig, SamConfig, TinyViTConfig, ViTConfig
from grounded_sam.sam.modeling.sam import Sam

__all__ = ["EncoderConfig", "Sam", "SamConfig", "TinyViTConfig", "ViTConfig"]
