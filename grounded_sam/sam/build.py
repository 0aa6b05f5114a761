"""Builders: a :class:`SamConfig` → a network, and ``build_sam(name, checkpoint)`` → a loaded model.

The architecture of a checkpoint is read from the checkpoint itself (widths, depths, heads, image size,
global-attention blocks, TinyViT by its keys), never guessed from a file name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from grounded_sam.devices import Device, resolve_device
from grounded_sam.sam import fast
from grounded_sam.sam.checkpoint import CheckpointError, read_checkpoint
from grounded_sam.sam.modeling.config import SamConfig, TinyViTConfig, ViTConfig
from grounded_sam.sam.modeling.image_encoder import ViTImageEncoder
from grounded_sam.sam.modeling.mask_decoder import MaskDecoder
from grounded_sam.sam.modeling.prompt_encoder import PromptEncoder
from grounded_sam.sam.modeling.sam import Sam
from grounded_sam.sam.modeling.tiny_vit import TinyViTEncoder
from grounded_sam.sam.modeling.transformer import TwoWayTransformer
from grounded_sam.sam.registry import get_spec
from grounded_sam.weights import check_dtypes, resolve_weights


def build_sam_from_config(config: SamConfig, *, accelerate: bool = True) -> Sam:
    """A randomly initialised SAM network with the architecture ``config`` describes; with ``accelerate``
    (the default) its parts are the fast drop-ins of :func:`grounded_sam.sam.fast.accelerate`."""
    model = Sam(
        image_encoder=_build_encoder(config),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(config.embedding_size, config.embedding_size),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=config.decoder_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
    )
    return fast.accelerate(model) if accelerate else model


def _build_encoder(config: SamConfig) -> nn.Module:
    encoder = config.encoder
    if isinstance(encoder, TinyViTConfig):
        return TinyViTEncoder(
            img_size=config.image_size,
            embed_dims=encoder.embed_dims,
            depths=encoder.depths,
            num_heads=encoder.num_heads,
            window_sizes=encoder.window_sizes,
            mlp_ratio=encoder.mlp_ratio,
            out_chans=config.prompt_embed_dim,
        )
    return ViTImageEncoder(
        img_size=config.image_size,
        patch_size=encoder.patch_size,
        embed_dim=encoder.embed_dim,
        depth=encoder.depth,
        num_heads=encoder.num_heads,
        mlp_ratio=encoder.mlp_ratio,
        out_chans=config.prompt_embed_dim,
        use_rel_pos=encoder.use_rel_pos,
        window_size=encoder.window_size,
        global_attn_indexes=encoder.global_attn_indexes,
    )


def build_sam(
    name: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: Device = None,
    *,
    pretrained: bool = True,
    accelerate: bool = True,
) -> Sam:
    """Build a SAM model by registered name and/or from a checkpoint, in eval mode on ``device``.

    Args:
        name: a registered name (``sam_vit_b``, ``sam_vit_l``, ``sam_vit_h``, ``mobile_sam``; see
            :func:`grounded_sam.sam.list_models`), or ``None`` to take the architecture from ``checkpoint``.
        checkpoint: an official ``.pth``, a Hugging Face ``SamModel`` file or folder, or safetensors of ours.
            Without it the registered weights are found through :func:`grounded_sam.weights.resolve_weights`.
        device: where to put the model (default: CUDA when available, else the CPU).
        pretrained: with ``False`` and no checkpoint, return the named architecture randomly initialised.
        accelerate: swap in the fast drop-in parts (:mod:`grounded_sam.sam.fast`); ``False`` keeps the
            plain network of :mod:`grounded_sam.sam.modeling` (same weights, same results up to rounding).

    Example:
        >>> sam = build_sam("sam_vit_b", checkpoint="sam_vit_b_01ec64.pth")  # doctest: +SKIP
    """
    if name is None and checkpoint is None:
        raise ValueError("build_sam needs a model name (see list_models()) or a checkpoint path")
    spec = get_spec(name) if name is not None else None
    if spec is not None and checkpoint is None and not pretrained:
        model = build_sam_from_config(spec.config, accelerate=accelerate)
    else:
        path = resolve_weights(name or "SAM", spec.weights if spec else None, checkpoint)
        model = load_sam(
            path, expected=spec.config if spec else None, expected_name=name, accelerate=accelerate
        )
    return model.to(resolve_device(device)).eval()


def load_sam(
    path: str | os.PathLike[str],
    expected: SamConfig | None = None,
    expected_name: str | None = None,
    *,
    accelerate: bool = True,
) -> Sam:
    """Read a checkpoint, build the architecture it holds and load it strictly; returns it in eval mode.

    Raises:
        CheckpointError: unreadable file, or an architecture other than ``expected``, or keys that do not
            fit (the message names the architecture and the missing/unexpected keys).
    """
    loaded = read_checkpoint(path)
    config = loaded.config or infer_config(loaded.state_dict, decoder_heads=loaded.decoder_heads)
    if expected is not None and config != expected:
        raise CheckpointError(
            f"{path} holds a SAM with architecture {config}, not the {expected_name or 'requested'} "
            f"architecture {expected}; pass name=None to load it as it is"
        )
    model = build_sam_from_config(config, accelerate=accelerate)
    load_state_dict_strict(model, loaded.state_dict, config, source=str(path))
    return model.eval()


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], config: SamConfig, source: str
) -> None:
    """``load_state_dict(strict=True)`` with a message that names the architecture and the offending keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if state_dict[key].shape != expected[key].shape
    )
    check_dtypes(expected, state_dict, source)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{source} does not fit the SAM architecture {config}:"
            + _listing("missing keys", missing)
            + _listing("unexpected keys", unexpected)
            + _listing("shape mismatches", mismatched)
        )
    model.load_state_dict(state_dict, strict=True)


def _listing(title: str, items: list[str], limit: int = 10) -> str:
    if not items:
        return ""
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}): {', '.join(items[:limit])}{more}"


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for key in state_dict if (m := re.match(pattern, key))}
    return max(indices) + 1 if indices else 0


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Size:
    if key not in state_dict:
        raise CheckpointError(f"not a SAM checkpoint: it has no {key!r}")
    return state_dict[key].shape


def infer_config(state_dict: Mapping[str, torch.Tensor], decoder_heads: int | None = None) -> SamConfig:
    """Read the architecture off a state dict in our layout.

    Attention head counts do not show in weight shapes except through the relative-position tables
    (ViT) and attention-bias tables (TinyViT); the decoder has SAM's 8 heads unless ``decoder_heads``
    says otherwise (Hugging Face folders carry it in their ``config.json``).
    """
    embed = _shape(state_dict, "prompt_encoder.point_embeddings.0.weight")[-1]
    encoder, image_size = (
        _infer_tiny_vit(state_dict)
        if any(k.startswith("image_encoder.layers.") for k in state_dict)
        else _infer_vit(state_dict)
    )
    return SamConfig(
        encoder=encoder,
        image_size=image_size,
        prompt_embed_dim=embed,
        mask_in_chans=_shape(state_dict, "prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=_count(state_dict, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        decoder_heads=decoder_heads or 8,
        decoder_mlp_dim=_shape(state_dict, "mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        num_multimask_outputs=_shape(state_dict, "mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=_count(state_dict, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=_shape(state_dict, "mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )


def _infer_vit(state_dict: Mapping[str, torch.Tensor]) -> tuple[ViTConfig, int]:
    patch_weight = _shape(state_dict, "image_encoder.patch_embed.proj.weight")
    embed_dim, patch = patch_weight[0], patch_weight[-1]
    grid = _shape(state_dict, "image_encoder.pos_embed")[1]
    depth = _count(state_dict, r"image_encoder\.blocks\.(\d+)\.")
    rel_lengths = [
        state_dict[key].shape
        for i in range(depth)
        if (key := f"image_encoder.blocks.{i}.attn.rel_pos_h") in state_dict
    ]
    use_rel_pos = len(rel_lengths) == depth
    head_dim = rel_lengths[0][1] if use_rel_pos else 64
    global_blocks = tuple(i for i, shape in enumerate(rel_lengths) if shape[0] == 2 * grid - 1)
    windowed = [shape[0] for shape in rel_lengths if shape[0] != 2 * grid - 1]
    window = (windowed[0] + 1) // 2 if windowed else 14
    mlp_hidden = _shape(state_dict, "image_encoder.blocks.0.mlp.lin1.weight")[0]
    config = ViTConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        global_attn_indexes=global_blocks,
        window_size=window,
        patch_size=patch,
        mlp_ratio=mlp_hidden / embed_dim,
        use_rel_pos=use_rel_pos,
    )
    return config, grid * patch


def _infer_tiny_vit(state_dict: Mapping[str, torch.Tensor]) -> tuple[TinyViTConfig, int]:
    stages = _count(state_dict, r"image_encoder\.layers\.(\d+)\.")
    depths = tuple(_count(state_dict, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.") for i in range(stages))
    embed_dims, heads, windows = [], [], []
    for i in range(stages):
        block = f"image_encoder.layers.{i}.blocks.0"
        if i == 0:  # the convolutional stage: MBConv blocks, no attention
            embed_dims.append(_shape(state_dict, f"{block}.conv1.c.weight")[1])
            heads.append(2)
            windows.append(7)
            continue
        embed_dims.append(_shape(state_dict, f"{block}.attn.qkv.weight")[1])
        biases = _shape(state_dict, f"{block}.attn.attention_biases")
        heads.append(biases[0])
        windows.append(round(biases[1] ** 0.5))
    mlp_hidden = _shape(state_dict, "image_encoder.layers.1.blocks.0.mlp.fc1.weight")[0]
    config = TinyViTConfig(
        embed_dims=tuple(embed_dims),
        depths=depths,
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=mlp_hidden / embed_dims[1],
    )
    # No TinyViT weight depends on the input size; MobileSAM runs at 1024 (ours records it in metadata).
    return config, 1024
