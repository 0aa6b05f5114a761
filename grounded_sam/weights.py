"""Where model weights come from: one registry entry per file, resolved in one documented order.

Resolution order for a weights entry:

1. an explicit path passed by the caller (``checkpoint=...``);
2. for the embedded demo models, the file shipped inside the package (``grounded_sam/assets/``);
3. ``$GROUNDED_SAM_HOME/<filename>`` (default ``~/.cache/grounded_sam``);
4. the Hugging Face cache, then the Hugging Face Hub when online (``HF_HUB_OFFLINE`` unset);
5. otherwise :class:`WeightsNotFoundError`, which says which file to put where.

Entries with a known sha256 are verified (read in chunks) the first time a file is used in a process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import socket
import stat
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

logger = logging.getLogger(__name__)

WeightsFormat = Literal["official", "hf", "ours"]

HOME_ENV = "GROUNDED_SAM_HOME"
_CHUNK = 1 << 20

SNAPSHOT_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors")
"""Files a ``transformers``-format snapshot needs: configs, tokenizer files and safetensors weights.
Repositories often also hold the original ``.pt`` release or a duplicate ``pytorch_model.bin``, which
would double the download; ``.bin`` weights are fetched only when a repository has no safetensors."""


class WeightsNotFoundError(FileNotFoundError):
    """Raised when no copy of a weights file can be found and none can be downloaded."""


class WeightsIntegrityError(ValueError):
    """Raised when a weights file does not match its registered sha256."""


class WeightsFileError(ValueError):
    """A weights file or model folder that was refused: the message says what, why, which file and what
    to do. Errors of torch, safetensors and transformers loaders are wrapped in it (`loader_errors`)."""


_FIX = (
    "Check that the file is complete (download it again) and holds this model's weights; only "
    "safetensors files and weights-only PyTorch checkpoints are loaded."
)
# What torch.load, safetensors and transformers raise on corrupt, truncated or hostile files.
_LOADER_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    json.JSONDecodeError,
    UnicodeDecodeError,
    RuntimeError,
    AttributeError,
    KeyError,
    TypeError,
)


def check_weights_path(path: str | os.PathLike[str]) -> Path:
    """`path` if it is a regular file or a folder; a named pipe, device or socket is refused before it is
    opened (reading one could block forever). Raises `WeightsNotFoundError` when it does not exist."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise WeightsNotFoundError(f"no weights file or model folder at {path}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a device or socket"
        raise WeightsFileError(
            f"refused {path}: it is {kind}, not a weights file or model folder; pass the path of a "
            ".safetensors / .pth file or of a model folder"
        )
    return path


@contextlib.contextmanager
def loader_errors(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Within the block, a loader's own error (corrupt, truncated or hostile file) becomes a
    `WeightsFileError` naming `what` was being loaded from `path`, the cause, and what to do."""
    try:
        yield
    except WeightsFileError:
        raise
    except _LOADER_ERRORS as error:
        reason = "it holds Python objects besides tensors (refused: unpickling them could run code)"
        if not isinstance(error, pickle.UnpicklingError) or "weights_only" not in str(error).lower():
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}"
        raise WeightsFileError(f"cannot load {what} from {path}: {reason}. {_FIX}") from error
    except Exception as error:
        if type(error).__name__ == "SafetensorError":  # safetensors' own type, without importing it here
            raise WeightsFileError(
                f"cannot load {what} from {path}: corrupt safetensors ({error}). {_FIX}"
            ) from error
        raise


def check_dtypes(
    expected: Mapping[str, Any], loaded: Mapping[str, Any], path: str | os.PathLike[str]
) -> None:
    """Refuse integer or boolean tensors loaded for floating-point parameters (they would load silently
    and give a garbage model)."""
    wrong = [
        f"{key} ({loaded[key].dtype})"
        for key, value in expected.items()
        if key in loaded and value.is_floating_point() and not loaded[key].is_floating_point()
    ]
    if wrong:
        listed = ", ".join(wrong[:5]) + (f" (+{len(wrong) - 5} more)" if len(wrong) > 5 else "")
        raise WeightsFileError(
            f"refused {path}: {len(wrong)} tensor(s) are integer or boolean where the model has "
            f"floating-point weights, e.g. {listed}. It is not a weights file of this model. {_FIX}"
        )


@dataclass(frozen=True)
class WeightsSpec:
    """One weights file (or, with ``hf_filename=None``, one Hugging Face repository snapshot).

    Attributes:
        filename: the local name under ``$GROUNDED_SAM_HOME`` (a file, or a folder for snapshots).
        source_format: the key layout of the file: official release, Hugging Face, or ours.
        hf_repo_id: the Hugging Face repository holding it, if any.
        hf_filename: the file's path inside that repository; ``None`` for a whole snapshot.
        sha256: the full hex digest where it is published; ``None`` where it is not known.
        bundled: the file ships inside the package, in ``grounded_sam/assets/``.
    """

    filename: str
    source_format: WeightsFormat
    hf_repo_id: str | None = None
    hf_filename: str | None = None
    sha256: str | None = None
    bundled: bool = False

    @property
    def is_snapshot(self) -> bool:
        return self.hf_repo_id is not None and self.hf_filename is None


def weights_home() -> Path:
    """The folder searched for weights: ``$GROUNDED_SAM_HOME`` or ``~/.cache/grounded_sam``."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "grounded_sam"


def bundled_path(filename: str) -> Path:
    """Where a weights file shipped inside the package lives."""
    return Path(__file__).resolve().parent / "assets" / filename


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> None:
    """Raise :class:`WeightsIntegrityError` if ``path`` does not hash to ``expected`` (skipped if None)."""
    if expected is None or path.is_dir():
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        raise WeightsIntegrityError(
            f"{path} has sha256 {actual}, expected {expected}: the file is corrupt, truncated or a "
            "different release. Delete it and put the right file in its place."
        )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub's host answers at all: without a network, downloads would retry for a long time."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hugging_face(spec: WeightsSpec) -> Path | None:
    """The file from the Hugging Face cache, or downloaded when online; ``None`` when unavailable."""
    if spec.hf_repo_id is None:
        return None
    try:
        import huggingface_hub
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return None
    attempts = (True,) if _hub_offline() or not _hub_reachable() else (True, False)
    for local_only in attempts:
        try:
            if spec.hf_filename is None:
                found = _snapshot(huggingface_hub, spec.hf_repo_id, local_only)
            else:
                found = huggingface_hub.hf_hub_download(
                    spec.hf_repo_id, spec.hf_filename, local_files_only=local_only
                )
            return Path(found)
        except (OSError, ValueError, HFValidationError) as error:
            # Not cached (first attempt) or no network / no such file (second): both mean "not here".
            logger.debug("%s not available from Hugging Face (local_only=%s): %s", spec, local_only, error)
    return None


def _snapshot(hub: ModuleType, repo_id: str, local_only: bool) -> str:
    """A snapshot of the files in :data:`SNAPSHOT_PATTERNS` (plus ``*.bin`` weights if there is no
    safetensors file); returns its folder."""
    folder = hub.snapshot_download(
        repo_id, allow_patterns=list(SNAPSHOT_PATTERNS), local_files_only=local_only
    )
    if not any(Path(folder).rglob("*.safetensors")):
        folder = hub.snapshot_download(
            repo_id, allow_patterns=[*SNAPSHOT_PATTERNS, "*.bin"], local_files_only=local_only
        )
    return folder


def resolve_weights(
    name: str,
    spec: WeightsSpec | None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> Path:
    """Find the weights of model ``name`` and return their local path.

    Args:
        name: the registered model name, used in messages.
        spec: the model's weights entry, or ``None`` if it has no published weights.
        checkpoint: an explicit file or folder, which wins over everything else.

    Raises:
        WeightsNotFoundError: the explicit path does not exist, or no copy was found anywhere.
        WeightsIntegrityError: a registered sha256 does not match.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise WeightsNotFoundError(f"checkpoint for {name!r} not found at {path}")
        check_weights_path(path)
        if spec is not None and spec.sha256 is not None and path.name == spec.filename:
            verify_sha256(path, spec.sha256)
        return path
    if spec is None:
        raise WeightsNotFoundError(
            f"{name!r} has no published weights: pass checkpoint= with a file of your own"
        )
    if spec.bundled:
        shipped = bundled_path(spec.filename)
        if shipped.exists():
            verify_sha256(shipped, spec.sha256)
            return shipped
    local = weights_home() / spec.filename
    if local.exists():
        verify_sha256(local, spec.sha256)
        return local
    found = _from_hugging_face(spec)
    if found is not None:
        verify_sha256(found, spec.sha256)
        return found
    raise WeightsNotFoundError(_missing_message(name, spec, local))


def _missing_message(name: str, spec: WeightsSpec, local: Path) -> str:
    where = f"put {spec.filename!r} in {local.parent}"
    if spec.is_snapshot:
        where = f"put the files of the Hugging Face repository {spec.hf_repo_id!r} in the folder {local}"
    hub = ""
    if spec.hf_repo_id is not None:
        state = "HF_HUB_OFFLINE is set" if _hub_offline() else "the Hugging Face Hub could not be reached"
        hub = f" ({state} and it is not in the Hugging Face cache)"
    return (
        f"weights for {name!r} not found{hub}: {where} (set ${HOME_ENV} to use another folder), "
        "or pass checkpoint= with the path of the file"
    )
