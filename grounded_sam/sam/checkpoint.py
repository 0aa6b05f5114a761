"""Reading SAM checkpoints from disk and converting them to our key layout.

Our layout is the official ``segment_anything`` one (``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``), so official files need only light cleaning; Hugging Face ``SamModel`` files are
renamed by :mod:`grounded_sam.sam.convert_hf`. Files of our own carry their architecture as
safetensors metadata.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from grounded_sam.atomic import atomic_path
from grounded_sam.hf_folders import read_config
from grounded_sam.sam.convert_hf import hf_sam_to_official, is_hf_sam_state_dict
from grounded_sam.sam.modeling.config import SamConfig, config_from_dict, config_to_dict
from grounded_sam.sam.modeling.tiny_vit import UNUSED_CHECKPOINT_KEYS
from grounded_sam.weights import WeightsFileError, check_weights_path

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

OUR_FORMAT = "grounded_sam.sam"
_HF_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
_WRAPPER_KEYS = ("model", "state_dict", "model_state")
_STRIP_PREFIXES = ("module.", "sam.", "model.")
# Parts of MobileSAM's TinyViT that its image encoder never uses (an ImageNet classifier head).
_UNUSED_PREFIXES = tuple(f"image_encoder.{key}" for key in UNUSED_CHECKPOINT_KEYS)


class CheckpointError(WeightsFileError):
    """A checkpoint file that cannot be read or does not fit the model."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A state dict in our layout, the format it came in, and the architecture stored with it (if any)."""

    state_dict: StateDict
    source_format: str
    config: SamConfig | None = None
    decoder_heads: int | None = None


def read_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Read a SAM checkpoint of any supported format and convert it to our key layout.

    Accepts an official ``.pth``/``.pt`` (loaded with ``weights_only=True``), a ``.safetensors`` file
    (ours or Hugging Face), a Hugging Face ``pytorch_model.bin``, or a Hugging Face model folder.
    """
    path = check_weights_path(path)
    decoder_heads = None
    if path.is_dir():
        decoder_heads = _hf_decoder_heads(path)
        path = _hf_weights_in(path)
    config = None
    if path.suffix == ".safetensors":
        state_dict, metadata = _read_safetensors(path)
        config = _stored_config(path, metadata)
    else:
        state_dict = _read_pickle(path)
    state_dict, source_format = to_our_layout(state_dict)
    if config is not None:
        source_format = "ours"
    return LoadedCheckpoint(state_dict, source_format, config, decoder_heads)


def to_our_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, str]:
    """Convert an official or Hugging Face SAM state dict to ours; returns it with the detected format."""
    state_dict = _unwrap(state_dict)
    if is_hf_sam_state_dict(state_dict):
        return hf_sam_to_official(state_dict), "hf"
    return official_sam_to_ours(state_dict), "official"


def official_sam_to_ours(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Strip training-wrapper prefixes and drop the keys of unused parts (MobileSAM's classifier head)."""
    cleaned: StateDict = {}
    for key, value in state_dict.items():
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix) and not key.startswith(
                ("image_encoder", "prompt_encoder", "mask_decoder")
            ):
                key = key[len(prefix) :]
        if key.startswith(_UNUSED_PREFIXES):
            continue
        cleaned[key] = value
    return cleaned


def save_checkpoint(model: torch.nn.Module, config: SamConfig, path: str | Path) -> Path:
    """Write a model's weights as safetensors of our layout, with its architecture in the metadata."""
    path = Path(path)
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    # One metadata key: safetensors stores metadata as a map, whose order would vary between runs.
    metadata = {OUR_FORMAT: json.dumps(config_to_dict(config), sort_keys=True)}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return path


def _hf_weights_in(folder: Path) -> Path:
    for name in _HF_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} is a folder without {' or '.join(_HF_FILE_NAMES)}: not a model folder")


def _hf_decoder_heads(folder: Path) -> int | None:
    """The mask decoder's head count from a Hugging Face ``config.json`` (weights do not show it)."""
    try:
        return int((read_config(folder) or {})["mask_decoder_config"]["num_attention_heads"])
    except (ValueError, KeyError, TypeError):
        return None


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"cannot read {path} as safetensors ({error}): the file is corrupt or truncated"
        ) from error


def _stored_config(path: Path, metadata: Mapping[str, str]) -> SamConfig | None:
    """The architecture our own files store in their safetensors metadata (None for other files)."""
    text = metadata.get(OUR_FORMAT)
    if text is None and metadata.get("format") == OUR_FORMAT:  # files written before the single-key layout
        text = metadata.get("config")
    if text is None:
        return None
    try:
        return config_from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(
            f"cannot read the architecture stored in {path}'s metadata ({type(error).__name__}: {error}): "
            "the file was damaged or edited; save it again with save_checkpoint"
        ) from error


def _read_pickle(path: Path) -> StateDict:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it holds Python objects besides tensors, and only weights-only "
            f"checkpoints are loaded (unpickling arbitrary objects can run code). Re-save its state_dict "
            f"with torch.save(model.state_dict(), ...). Details: {error}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise CheckpointError(f"cannot read {path} ({detail}): the file is corrupt or truncated") from error
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return dict(loaded)


def _unwrap(state_dict: Mapping[str, object]) -> StateDict:
    """Unwrap ``{"model": state_dict}``-style training checkpoints; keep only tensors."""
    for key in _WRAPPER_KEYS:
        inner = state_dict.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state_dict = inner
            break
    tensors = {key: value for key, value in state_dict.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError("the checkpoint holds no tensors")
    return tensors
