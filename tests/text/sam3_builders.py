"""A tiny random SAM 3 (transformers) with a hand-written CLIP BPE vocabulary, built offline."""

from __future__ import annotations

import string
from pathlib import Path

import torch

from grounded_sam.pipeline import GroundedSAM
from grounded_sam.text.sam3 import Sam3Segmenter

IMAGE_SIZE = 56  # 4 × 4 patches of 14 pixels; masks come out at 16 × 16
TEXT_TOKENS = 32  # what Sam3Processor pads every prompt to
START, END = "<|startoftext|>", "<|endoftext|>"
MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("ca", "r</w>")]


def clip_vocab() -> dict[str, int]:
    """CLIP's special tokens (ids 0 and 1), every letter alone and word-final, and a few merged words."""
    tokens = [START, END, *string.ascii_lowercase, *(f"{c}</w>" for c in string.ascii_lowercase)]
    tokens += ["ca", "cat</w>", "do", "dog</w>", "car</w>"]
    return {token: index for index, token in enumerate(tokens)}


def tiny_processor():
    """A Sam3Processor: CLIP BPE tokenizer on :func:`clip_vocab`, 56-pixel image processor."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    tokenizer = CLIPTokenizer(vocab=clip_vocab(), merges=MERGES)
    image_processor = Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return Sam3Processor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_config():
    """A Sam3Config of width 32 with one layer per stage and 10 queries (≈ 0.25M parameters)."""
    from transformers import Sam3Config

    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                **small,
                "num_hidden_layers": 2,
                "image_size": IMAGE_SIZE,
                "pretrain_image_size": IMAGE_SIZE,
                "patch_size": 14,
                "window_size": 2,
                "global_attn_indexes": [1],
            },
            "fpn_hidden_size": 32,
            "backbone_feature_sizes": [[16, 16], [8, 8], [4, 4]],
        },
        text_config={
            "model_type": "clip_text_model",
            **small,
            "vocab_size": len(clip_vocab()),
            "projection_dim": 32,
            "num_hidden_layers": 1,
            "max_position_embeddings": TEXT_TOKENS,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        geometry_encoder_config={**small, "num_layers": 1},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 10},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )


def tiny_model(seed: int = 0):
    """A random Sam3Model on :func:`tiny_config`, in eval mode.

    Random weights give logits near zero; two output layers are scaled up so that instance scores spread
    over about 0.07 .. 0.43 (the presence score holds them under 0.5) and mask logits over about ±2,
    where thresholds and resizing order make a difference.
    """
    from transformers import Sam3Model

    torch.manual_seed(seed)
    model = Sam3Model(tiny_config()).eval()
    with torch.no_grad():
        model.dot_product_scoring.query_proj.weight.mul_(60)
        mask_layer = model.mask_decoder.mask_embedder.layers[-1]
        mask_layer.weight.mul_(1000)
        mask_layer.bias.mul_(1000)
    return model


def save_tiny_sam3(folder: Path) -> Path:
    """Model and processor written with ``save_pretrained`` into ``folder``, as a Hub snapshot would be."""
    tiny_processor().save_pretrained(folder)
    tiny_model().save_pretrained(folder)
    return folder


def tiny_segmenter(**options) -> Sam3Segmenter:
    """A :class:`Sam3Segmenter` on the tiny model (its scores stay under 0.5, so the threshold is lower)."""
    options.setdefault("box_threshold", 0.25)
    return Sam3Segmenter(tiny_model(), tiny_processor(), "cpu", **options)


def tiny_sam3_pipeline() -> GroundedSAM:
    """A SAM-less pipeline on :func:`tiny_segmenter` (importable as an app pipeline factory)."""
    return GroundedSAM(tiny_segmenter())
