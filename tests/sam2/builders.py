"""Tiny random SAM 2 models (image and video) for tests: 128-pixel inputs, a 5-block Hiera, no downloads."""

from __future__ import annotations

import torch
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2Model,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VisionConfig,
)

from grounded_sam.sam2.build import default_processor
from tests.sam.builders import randomize_

IMAGE_SIZE = 128
HIDDEN = 32


def _parts() -> dict[str, object]:
    """Vision, prompt-encoder and mask-decoder settings shared by the image and the video model."""
    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        image_size=[IMAGE_SIZE, IMAGE_SIZE],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[8, 16, 32, 64],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        global_attention_blocks=[3],  # not the first block of a stage: those pool queries in windows
        window_size_per_stage=[4, 4, 4, 4],
        window_positional_embedding_background_size=[4, 4],
    )
    grid = IMAGE_SIZE // 4
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[grid, grid], [grid // 2, grid // 2], [grid // 4, grid // 4]],
        fpn_hidden_size=HIDDEN,
    )
    return {
        "vision_config": vision,
        "prompt_encoder_config": {"hidden_size": HIDDEN, "image_size": IMAGE_SIZE, "mask_input_channels": 8},
        "mask_decoder_config": {
            "hidden_size": HIDDEN,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    }


def tiny_sam2(seed: int = 0) -> Sam2Model:
    """A random image model with weights large enough to give masks with both values."""
    torch.manual_seed(seed)
    return randomize_(Sam2Model(Sam2Config(**_parts())), seed=seed, scale=0.3).eval()


def tiny_sam2_video(seed: int = 0) -> Sam2VideoModel:
    """A random video model (memory attention and encoder included) with the same image parts."""
    torch.manual_seed(seed)
    config = Sam2VideoConfig(
        **_parts(),
        image_size=IMAGE_SIZE,
        memory_attention_hidden_size=HIDDEN,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[IMAGE_SIZE // 16, IMAGE_SIZE // 16],
        memory_encoder_hidden_size=HIDDEN,
        memory_encoder_output_channels=16,
        mask_downsampler_embed_dim=HIDDEN,
        memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=64,
    )
    return randomize_(Sam2VideoModel(config), seed=seed, scale=0.3).eval()


def tiny_processor():
    """The standard SAM 2 processor sized for the tiny models."""
    return default_processor(tiny_sam2())
