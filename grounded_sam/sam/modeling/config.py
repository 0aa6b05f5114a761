"""A SAM architecture as data: one frozen config per encoder kind, and the whole network's config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ViTConfig:
    """SAM's plain ViT image encoder (windowed attention with a few global blocks)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0
    use_rel_pos: bool = True


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's TinyViT image encoder (conv stem, MBConv stage, windowed attention stages)."""

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0


EncoderConfig = ViTConfig | TinyViTConfig


@dataclass(frozen=True)
class SamConfig:
    """Everything needed to build a SAM network (weights aside).

    ``image_size`` is the encoder's square input; the image embedding is ``image_size / 16`` wide and
    the low-resolution mask logits are four times that.
    """

    encoder: EncoderConfig = field(default_factory=ViTConfig)
    image_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid: the input side over the ViT's patch size (16 for TinyViT)."""
        stride = self.encoder.patch_size if isinstance(self.encoder, ViTConfig) else 16
        return self.image_size // stride


def config_to_dict(config: SamConfig) -> dict[str, object]:
    """A JSON-ready description of ``config`` (the encoder tagged with its kind)."""
    data = dataclasses.asdict(config)
    data["encoder"]["kind"] = "tiny_vit" if isinstance(config.encoder, TinyViTConfig) else "vit"
    return data


def config_from_dict(data: Mapping[str, Any]) -> SamConfig:
    """Inverse of :func:`config_to_dict`; lists become tuples again."""
    encoder_data = {k: tuple(v) if isinstance(v, list) else v for k, v in data["encoder"].items()}
    kind = encoder_data.pop("kind", "vit")
    encoder: EncoderConfig = (
        TinyViTConfig(**encoder_data) if kind == "tiny_vit" else ViTConfig(**encoder_data)
    )
    return SamConfig(**{**data, "encoder": encoder})
