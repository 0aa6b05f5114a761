"""The CLIP models the labeler knows by name, and loading open_clip weights from a local file.

:data:`CLIP_MODELS` maps short names to an open_clip architecture, the tag its weights were published
under and where the checkpoint comes from (see :mod:`grounded_sam.weights`).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import open_clip
from torch import nn

from grounded_sam.registry import Registry
from grounded_sam.text.crops import ClipInput
from grounded_sam.weights import WeightsSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """One registered CLIP variant.

    Attributes:
        architecture: the open_clip model name (``open_clip.list_models()``).
        pretrained_tag: the open_clip tag the weights were published under; its preprocessing (mean,
            std) and activation (QuickGELU) are applied when the weights are loaded from a local file.
        weights: where the open_clip checkpoint file comes from.
    """

    architecture: str
    pretrained_tag: str
    weights: WeightsSpec


def _open_clip_spec(architecture: str, tag: str, repo: str) -> ClipSpec:
    # open_clip fetches "<repo>/open_clip_pytorch_model.bin" for these tags (its HF_WEIGHTS_NAME).
    local = f"open_clip_{architecture}_{tag}.bin"
    return ClipSpec(architecture, tag, WeightsSpec(local, "official", repo, "open_clip_pytorch_model.bin"))


CLIP_MODELS: Mapping[str, ClipSpec] = MappingProxyType(
    {
        "clip_vit_b32": _open_clip_spec(
            "ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
        ),
        "clip_vit_b16": _open_clip_spec(
            "ViT-B-16", "laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"
        ),
        "clip_vit_l14": _open_clip_spec(
            "ViT-L-14", "laion2b_s32b_b82k", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
        ),
        "clip_vit_b32_openai": _open_clip_spec("ViT-B-32", "openai", "timm/vit_base_patch32_clip_224.openai"),
    }
)
DEFAULT_CLIP_MODEL = "clip_vit_b32"


def list_clip_models() -> list[str]:
    """The registered CLIP names, sorted."""
    return sorted(CLIP_MODELS)


def load_open_clip(
    architecture: str | Mapping[str, Any], path: Path, pretrained_tag: str | None = None
) -> tuple[nn.Module, Any, ClipInput]:
    """An open_clip model with the weights of the file ``path`` (never downloaded), its tokenizer and input.

    ``architecture`` is an open_clip model name or a model config dict; ``pretrained_tag`` (names
    only) supplies the preprocessing and activation the weights were trained with.
    """
    try:
        if isinstance(architecture, str):
            tag_config = open_clip.get_pretrained_cfg(architecture, pretrained_tag) if pretrained_tag else {}
            model = open_clip.create_model(
                architecture,
                pretrained=str(path),
                force_quick_gelu=bool(tag_config.get("quick_gelu", False)),
                force_preprocess_cfg={key: tag_config[key] for key in ("mean", "std") if key in tag_config},
                require_pretrained=True,
            )
            tokenizer = open_clip.get_tokenizer(architecture)
        else:
            config = dict(architecture)
            model_class = open_clip.CustomTextCLIP if config.pop("custom_text", False) else open_clip.CLIP
            model = model_class(**config)
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
            tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    except (RuntimeError, pickle.UnpicklingError) as error:
        raise ValueError(f"could not load {path} as open_clip {architecture!r}: {error}") from error
    logger.debug("loaded open_clip %r from %s", architecture, path)
    return model, tokenizer, clip_input_of(None, model)


def clip_input_of(preprocess: ClipInput | Mapping[str, Any] | Any | None, model: nn.Module) -> ClipInput:
    """How crops are fed to ``model``: as given (a ClipInput, a preprocess config, or an open_clip
    transform), else read from the model."""
    if isinstance(preprocess, ClipInput):
        return preprocess
    if isinstance(preprocess, Mapping):
        return ClipInput.from_config(preprocess)
    if preprocess is not None:
        return ClipInput.from_transform(preprocess)
    return ClipInput.from_model(model)


def unknown_model_message(name: str) -> str:
    """The error for a CLIP name that is not registered, with close names and how to load a file."""
    close = Registry("CLIP model", CLIP_MODELS).close_matches(name)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return (
        f"{name!r} is not a registered CLIP model ({', '.join(list_clip_models())}).{hint} To load a "
        "checkpoint file, use ClipLabeler.from_pretrained(path, architecture=<open_clip name or config>)."
    )
