"""The SAM model family as data: one frozen architecture config per variant, one weights entry per file."""

from __future__ import annotations

from dataclasses import dataclass

from grounded_sam.registry import Registry
from grounded_sam.sam.modeling.config import SamConfig, TinyViTConfig, ViTConfig
from grounded_sam.weights import WeightsSpec


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
_REGISTRY: Registry[ModelSpec] = Registry("SAM model", _SPECS)


def list_models() -> list[str]:
    """Names of every registered SAM model, sorted."""
    return _REGISTRY.names()


def get_spec(name: str) -> ModelSpec:
    """The registered entry called ``name``; unknown names are answered with the closest matches."""
    return _REGISTRY.get(name)
