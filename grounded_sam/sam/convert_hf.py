"""Convert Hugging Face `transformers.SamModel` state dicts to the official segment-anything layout and back.

Both layouts hold the same tensors with the same shapes; only the key names differ, plus two structural
details handled as special cases:

* HF's small MLP heads (`iou_prediction_head`, `output_hypernetworks_mlps.N`) name their linear layers
  `proj_in`, `layers.0 .. layers.K-1`, `proj_out`; the official `MLP` numbers them `layers.0 .. layers.K+1`.
* HF keeps the random-Fourier positional matrix twice, tied: `shared_image_embedding.positional_embedding`
  (image-wide encoding) and `prompt_encoder.shared_embedding.positional_embedding` (prompt points). The
  official model has one, `prompt_encoder.pe_layer.positional_encoding_gaussian_matrix`, used for both.
  The tied copy is the only HF key dropped; `SamModel` (transformers 5.x) registers no buffers, and the
  official model's `pixel_mean`/`pixel_std` buffers are non-persistent, so neither side has extra buffers.

Example:
    >>> from safetensors.torch import load_file
    >>> hf_state = load_file("sam-vit-base/model.safetensors")  # doctest: +SKIP
    >>> if is_hf_sam_state_dict(hf_state):  # doctest: +SKIP
    ...     state = hf_sam_to_official(hf_state)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch

__all__ = ["hf_sam_to_official", "is_hf_sam_state_dict", "official_sam_to_hf"]

# Wrappers (e.g. a `SamModel` nested in another model, or Lightning modules) prefix the keys with these.
_WRAPPER_PREFIXES = ("sam.", "model.")

# Regex fragments for the `{name}` placeholders in the rename table. A placeholder captures the same value
# on both sides, which is what makes the table usable in either direction.
_FRAGMENTS = {
    "i": r"\d+",
    "wb": r"weight|bias",
    "hw": r"h|w",
    "n12": r"[12]",
    "n1234": r"[1-4]",
    "lin": r"lin1|lin2",
    "vit_proj": r"qkv|proj",
    "qkvo": r"q_proj|k_proj|v_proj|out_proj",
    "twoway_attn": r"self_attn|cross_attn_token_to_image|cross_attn_image_to_token",
    "prompt_embed": r"not_a_point_embed|no_mask_embed",
    "token": r"iou_token|mask_tokens",
}

# (Hugging Face key, official key) templates; every key of either model matches exactly one row.
_RENAMES: tuple[tuple[str, str], ...] = (
    # Image encoder (ViT).
    ("vision_encoder.patch_embed.projection.{wb}", "image_encoder.patch_embed.proj.{wb}"),
    ("vision_encoder.pos_embed", "image_encoder.pos_embed"),
    ("vision_encoder.layers.{i}.layer_norm{n12}.{wb}", "image_encoder.blocks.{i}.norm{n12}.{wb}"),
    ("vision_encoder.layers.{i}.attn.{vit_proj}.{wb}", "image_encoder.blocks.{i}.attn.{vit_proj}.{wb}"),
    ("vision_encoder.layers.{i}.attn.rel_pos_{hw}", "image_encoder.blocks.{i}.attn.rel_pos_{hw}"),
    ("vision_encoder.layers.{i}.mlp.{lin}.{wb}", "image_encoder.blocks.{i}.mlp.{lin}.{wb}"),
    ("vision_encoder.neck.conv1.weight", "image_encoder.neck.0.weight"),
    ("vision_encoder.neck.layer_norm1.{wb}", "image_encoder.neck.1.{wb}"),
    ("vision_encoder.neck.conv2.weight", "image_encoder.neck.2.weight"),
    ("vision_encoder.neck.layer_norm2.{wb}", "image_encoder.neck.3.{wb}"),
    # Prompt encoder.
    (
        "shared_image_embedding.positional_embedding",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    ),
    ("prompt_encoder.point_embed.{i}.weight", "prompt_encoder.point_embeddings.{i}.weight"),
    ("prompt_encoder.{prompt_embed}.weight", "prompt_encoder.{prompt_embed}.weight"),
    ("prompt_encoder.mask_embed.conv1.{wb}", "prompt_encoder.mask_downscaling.0.{wb}"),
    ("prompt_encoder.mask_embed.layer_norm1.{wb}", "prompt_encoder.mask_downscaling.1.{wb}"),
    ("prompt_encoder.mask_embed.conv2.{wb}", "prompt_encoder.mask_downscaling.3.{wb}"),
    ("prompt_encoder.mask_embed.layer_norm2.{wb}", "prompt_encoder.mask_downscaling.4.{wb}"),
    ("prompt_encoder.mask_embed.conv3.{wb}", "prompt_encoder.mask_downscaling.6.{wb}"),
    # Mask decoder and its two-way transformer.
    ("mask_decoder.{token}.weight", "mask_decoder.{token}.weight"),
    (
        "mask_decoder.transformer.layers.{i}.{twoway_attn}.{qkvo}.{wb}",
        "mask_decoder.transformer.layers.{i}.{twoway_attn}.{qkvo}.{wb}",
    ),
    (
        "mask_decoder.transformer.layers.{i}.layer_norm{n1234}.{wb}",
        "mask_decoder.transformer.layers.{i}.norm{n1234}.{wb}",
    ),
    (
        "mask_decoder.transformer.layers.{i}.mlp.{lin}.{wb}",
        "mask_decoder.transformer.layers.{i}.mlp.{lin}.{wb}",
    ),
    (
        "mask_decoder.transformer.final_attn_token_to_image.{qkvo}.{wb}",
        "mask_decoder.transformer.final_attn_token_to_image.{qkvo}.{wb}",
    ),
    ("mask_decoder.transformer.layer_norm_final_attn.{wb}", "mask_decoder.transformer.norm_final_attn.{wb}"),
    ("mask_decoder.upscale_conv1.{wb}", "mask_decoder.output_upscaling.0.{wb}"),
    ("mask_decoder.upscale_layer_norm.{wb}", "mask_decoder.output_upscaling.1.{wb}"),
    ("mask_decoder.upscale_conv2.{wb}", "mask_decoder.output_upscaling.3.{wb}"),
)

_HF_TIED_PE = "prompt_encoder.shared_embedding.positional_embedding"
_HF_IMAGE_PE = "shared_image_embedding.positional_embedding"

_HEAD = r"mask_decoder\.(?P<head>iou_prediction_head|output_hypernetworks_mlps\.\d+)"
_HF_MLP_KEY = re.compile(_HEAD + r"\.(?P<part>proj_in|proj_out|layers\.(?P<j>\d+))\.(?P<wb>weight|bias)")
_OFFICIAL_MLP_KEY = re.compile(_HEAD + r"\.layers\.(?P<j>\d+)\.(?P<wb>weight|bias)")

Rule = tuple[re.Pattern[str], str]


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    # re.split alternates literal text and placeholder names.
    pattern = "".join(
        re.escape(part) if k % 2 == 0 else f"(?P<{part}>{_FRAGMENTS[part]})" for k, part in enumerate(parts)
    )
    return re.compile(pattern)


_HF_TO_OFFICIAL: tuple[Rule, ...] = tuple((_compile(hf), official) for hf, official in _RENAMES)
_OFFICIAL_TO_HF: tuple[Rule, ...] = tuple((_compile(official), hf) for hf, official in _RENAMES)


def _strip_wrapper_prefix(key: str) -> str:
    while key.startswith(_WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _rename(key: str, rules: Iterable[Rule]) -> str | None:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match is not None:
            return template.format(**match.groupdict())
    return None


def _mlp_depths(keys: Iterable[str], pattern: re.Pattern[str]) -> dict[str, int]:
    """Number of distinct `layers.<j>` indices per MLP head among `keys`."""
    indices: dict[str, set[str]] = {}
    for key in keys:
        match = pattern.fullmatch(key)
        if match is not None and match["j"] is not None:
            indices.setdefault(match["head"], set()).add(match["j"])
    return {head: len(found) for head, found in indices.items()}


def _convert(
    state_dict: Mapping[str, torch.Tensor],
    rules: tuple[Rule, ...],
    rename_mlp: Callable[[re.Match[str]], str],
    mlp_pattern: re.Pattern[str],
    source: str,
) -> dict[str, torch.Tensor]:
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        mlp_match = mlp_pattern.fullmatch(key)
        new_key = rename_mlp(mlp_match) if mlp_match is not None else _rename(key, rules)
        if new_key is None:
            unmapped.append(key)
        else:
            converted[new_key] = value
    if unmapped:
        shown = ", ".join(sorted(unmapped)[:20]) + (" ..." if len(unmapped) > 20 else "")
        raise ValueError(
            f"{len(unmapped)} key(s) are not part of a {source} SAM state dict: {shown}. "
            "Check that the file holds a plain SAM checkpoint (not SAM-HQ, SAM 2 or another model)."
        )
    return converted


def is_hf_sam_state_dict(state_dict: Mapping[str, object]) -> bool:
    """True if the keys look like a Hugging Face `SamModel` checkpoint (optionally `sam.`/`model.` prefixed).

    Official/segment-anything checkpoints use `image_encoder.*`; HF ones use `vision_encoder.*` and
    `shared_image_embedding.*`, or HF-only names in the prompt encoder and mask decoder.
    """
    hf_markers = ("vision_encoder.", "shared_image_embedding.", "prompt_encoder.shared_embedding.")
    hf_decoder_markers = ("mask_decoder.upscale_conv1.", "mask_decoder.iou_prediction_head.proj_in.")
    return any(_strip_wrapper_prefix(key).startswith(hf_markers + hf_decoder_markers) for key in state_dict)


def hf_sam_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face `SamModel` state dict to the official segment-anything key layout.

    Pure: returns a new dict holding the same tensor objects (no copies, no I/O). Leading `sam.`/`model.`
    prefixes are stripped. The tied copy `prompt_encoder.shared_embedding.positional_embedding` is dropped
    (used as the positional matrix if `shared_image_embedding.positional_embedding` is absent).

    Raises:
        ValueError: a key has no official counterpart (listed in the message), or the two HF positional
            matrices differ, which the official model (one matrix for image and prompts) cannot express.
    """
    stripped = {_strip_wrapper_prefix(key): value for key, value in state_dict.items()}
    tied = stripped.pop(_HF_TIED_PE, None)
    if tied is not None:
        image_pe = stripped.setdefault(_HF_IMAGE_PE, tied)
        if image_pe.shape != tied.shape or not torch.equal(image_pe, tied):
            raise ValueError(
                f"`{_HF_IMAGE_PE}` and `{_HF_TIED_PE}` differ; the official SAM layout has a single "
                "positional matrix. Re-save the HF model with tied weights."
            )

    depths = _mlp_depths(stripped, _HF_MLP_KEY)

    def rename_mlp(match: re.Match[str]) -> str:
        # HF: proj_in, layers.0..K-1, proj_out  ->  official: layers.0..K+1.
        part = match["part"]
        if part == "proj_in":
            index = 0
        elif part == "proj_out":
            index = depths.get(match["head"], 0) + 1
        else:
            index = int(match["j"]) + 1
        return f"mask_decoder.{match['head']}.layers.{index}.{match['wb']}"

    return _convert(stripped, _HF_TO_OFFICIAL, rename_mlp, _HF_MLP_KEY, "Hugging Face")


def official_sam_to_hf(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `hf_sam_to_official`: official segment-anything keys to `transformers.SamModel` keys.

    The positional matrix is written under both tied HF names, so the result loads strictly into
    `SamModel`. Leading `sam.`/`model.` prefixes are stripped.

    Raises:
        ValueError: a key has no HF counterpart, or an MLP head has fewer than two linear layers
            (HF's `SamFeedForward` always has `proj_in` and `proj_out`).
    """
    stripped = {_strip_wrapper_prefix(key): value for key, value in state_dict.items()}
    depths = _mlp_depths(stripped, _OFFICIAL_MLP_KEY)
    too_shallow = sorted(head for head, depth in depths.items() if depth < 2)
    if too_shallow:
        raise ValueError(f"MLP heads with a single linear layer cannot be expressed in HF SAM: {too_shallow}")

    def rename_mlp(match: re.Match[str]) -> str:
        # Official: layers.0..K+1  ->  HF: proj_in, layers.0..K-1, proj_out.
        index, last = int(match["j"]), depths[match["head"]] - 1
        part = "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
        return f"mask_decoder.{match['head']}.{part}.{match['wb']}"

    converted = _convert(stripped, _OFFICIAL_TO_HF, rename_mlp, _OFFICIAL_MLP_KEY, "official")
    if _HF_IMAGE_PE in converted:
        converted[_HF_TIED_PE] = converted[_HF_IMAGE_PE]
    return converted
