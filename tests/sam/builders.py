"""Shared builders for SAM tests: tiny architectures, random weights, and the reference model."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything import modeling as ref

from grounded_sam.sam.build import build_sam_from_config
from grounded_sam.sam.modeling.config import SamConfig, TinyViTConfig, ViTConfig
from grounded_sam.sam.modeling.sam import Sam

TINY_VIT_SAM = SamConfig(
    encoder=ViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4),
    image_size=256,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)

TINY_TINYVIT_SAM = SamConfig(
    encoder=TinyViTConfig(embed_dims=(16, 32, 32, 48), depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 3)),
    image_size=256,
    prompt_embed_dim=32,
    mask_in_chans=8,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter (and float buffer in the state dict) with seeded random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.randn(tensor.shape, generator=generator) * scale
                # BatchNorm variances must stay positive.
                tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
    return module


def random_sam(config: SamConfig = TINY_VIT_SAM, seed: int = 0, accelerate: bool = True) -> Sam:
    """Our SAM with random weights, in eval mode (``accelerate=False``: the plain network)."""
    return randomize_(build_sam_from_config(config, accelerate=accelerate), seed).eval()


def reference_sam(config: SamConfig) -> ref.Sam:
    """The ``segment_anything`` reference network with the same architecture (ViT encoders only)."""
    encoder = config.encoder
    assert isinstance(encoder, ViTConfig)
    grid = config.embedding_size
    return ref.Sam(
        image_encoder=ref.ImageEncoderViT(
            img_size=config.image_size,
            patch_size=encoder.patch_size,
            embed_dim=encoder.embed_dim,
            depth=encoder.depth,
            num_heads=encoder.num_heads,
            mlp_ratio=encoder.mlp_ratio,
            out_chans=config.prompt_embed_dim,
            norm_layer=lambda dim: torch.nn.LayerNorm(dim, eps=1e-6),
            use_rel_pos=encoder.use_rel_pos,
            window_size=encoder.window_size,
            global_attn_indexes=encoder.global_attn_indexes,
        ),
        prompt_encoder=ref.PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=ref.MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=ref.TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=config.decoder_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
    ).eval()


def reference_twin(model: Sam, config: SamConfig) -> ref.Sam:
    """The reference network holding exactly ``model``'s weights (loaded strictly)."""
    twin = reference_sam(config)
    twin.load_state_dict(model.state_dict(), strict=True)
    return twin


# (predict keyword arguments, part of the ValueError message) that every predictor must refuse.
MALFORMED_PROMPTS = [
    ({"box": np.array([10, 10, 5, 50])}, "x2 >= x1"),
    ({"box": np.array([1, 2, 3])}, "shape"),
    ({"box": np.array([0, 0, np.nan, 4])}, "NaN"),
    ({"point_coords": np.array([[1.0, 2.0]])}, "together"),
    ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([1, 0])}, "one label per point"),
    ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([5])}, "foreground"),
    ({"point_coords": np.array([1.0, 2.0, 3.0]), "point_labels": np.array([1])}, "shape"),
    ({"mask_input": np.zeros((2, 2))}, "mask_input"),
]
