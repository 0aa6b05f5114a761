"""The SAM model family as data: one frozen architecture config per variant, one weights entry per file."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grounded_sam.weights import WeightsSpec


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


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its architecture, its published weights (if any) and a one-line summary."""

    name: str
    config: SamConfig
    weights: WeightsSpec | None
    description: str
    hf_weights: WeightsSpec | None = None


_OFFICIAL_REPO = "ybelkada/segment-anything"


def _official_vit(
    size: str, encoder: ViTConfig, filename: str, sha256: str, hf_name: str, params: str
) -> ModelSpec:
    """A released SAM ViT: the official ``.pth`` (with its published sha256) and the HF ``SamModel`` copy."""
    return ModelSpec(
        name=f"sam_vit_{size}",
        config=SamConfig(encoder=encoder),
        weights=WeightsSpec(filename, "official", _OFFICIAL_REPO, f"checkpoints/{filename}", sha256),
        hf_weights=WeightsSpec(f"{hf_name}.safetensors", "hf", f"facebook/{hf_name}", "model.safetensors"),
        description=f"SAM ViT-{size.upper()} ({params} encoder parameters), the official release",
    )


_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _official_vit(
            "b",
            ViTConfig(768, 12, 12, (2, 5, 8, 11)),
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "sam-vit-base",
            "91M",
        ),
        _official_vit(
            "l",
            ViTConfig(1024, 24, 16, (5, 11, 17, 23)),
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "sam-vit-large",
            "308M",
        ),
        _official_vit(
            "h",
            ViTConfig(1280, 32, 16, (7, 15, 23, 31)),
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "sam-vit-huge",
            "637M",
        ),
        ModelSpec(
            name="mobile_sam",
            config=SamConfig(encoder=TinyViTConfig()),
            weights=WeightsSpec(
                filename="mobile_sam.pt",
                source_format="official",
                hf_repo_id="dhkim2810/MobileSAM",
                hf_filename="mobile_sam.pt",
                sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            ),
            description="MobileSAM: a TinyViT-5M encoder distilled from ViT-H, with SAM's decoder",
        ),
        ModelSpec(
            name="demo_sam",
            config=SamConfig(
                encoder=ViTConfig(128, 4, 4, (1, 3), window_size=8, patch_size=8, use_rel_pos=False),
                image_size=256,
                prompt_embed_dim=96,
                decoder_heads=4,
                decoder_mlp_dim=384,
                iou_head_hidden_dim=96,
            ),
            weights=WeightsSpec(
                "demo_sam.safetensors",
                "ours",
                sha256="e941aa8aa6df51ef8b106e9db2cd4665568899b53b01d2dd4a5c18621a4c1b04",
                bundled=True,
            ),
            description="A 1.5M-parameter SAM at 256 px shipped in the package, trained on synthetic shapes",
        ),
    )
}


def list_models() -> list[str]:
    """Names of every registered SAM model, sorted."""
    return sorted(_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The registered spec called ``name``; unknown names are answered with the closest matches."""
    try:
        return _SPECS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _SPECS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown SAM model {name!r}.{hint} Known models: {', '.join(list_models())}"
        ) from None


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
