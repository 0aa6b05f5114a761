"""Model folders in the ``transformers`` format (``config.json``, weights, processor files), read offline.

One home for what Grounding DINO, SAM 2 and SAM 3 share: the guard against a ``transformers`` too old to
have a model's classes, reading ``config.json`` (and its ``model_type``), finding a folder from a path or a
Hugging Face repo id, and loading with ``local_files_only=True`` so that a loader's failure becomes a
:class:`~grounded_sam.weights.WeightsFileError` or :class:`~grounded_sam.weights.WeightsNotFoundError`
saying what the folder lacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grounded_sam.weights import WeightsNotFoundError, loader_errors


def transformers_classes(model: str, minimum: str, *names: str) -> tuple[Any, ...]:
    """The named classes of ``transformers``, or an ImportError naming the version `model` needs.

    The first of ``"A|B"`` that exists is taken (image processors lost their ``Fast`` suffix in 5.0).
    """
    try:
        import transformers
    except ImportError as error:  # pragma: no cover - transformers is a core dependency
        raise ImportError(f"{model} needs transformers>={minimum}; pip install it") from error
    found = []
    for alternatives in names:
        present = [getattr(transformers, name, None) for name in alternatives.split("|")]
        chosen = next((cls for cls in present if cls is not None), None)
        if chosen is None:
            version = getattr(transformers, "__version__", "unknown")
            raise ImportError(
                f"the installed transformers ({version}) has no {alternatives.split('|')[0]}: {model} needs "
                f"transformers >= {minimum}; upgrade with pip install -U 'transformers>={minimum}'"
            )
        found.append(chosen)
    return tuple(found)


def read_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``folder/config.json`` as a dict; ``None`` when it is missing, unreadable or not a JSON object."""
    try:
        config = json.loads((Path(folder).expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def config_model_type(folder: str | os.PathLike[str]) -> str | None:
    """The ``model_type`` of ``folder/config.json``; ``None`` when it is missing or unreadable."""
    return (read_config(folder) or {}).get("model_type")


def folder_or_repo(
    path_or_name: str | os.PathLike[str], example_repo: str, hint: str, resolve: Callable[[str], Path]
) -> Path:
    """`path_or_name` if it exists, else the folder `resolve` finds for a repo id like `example_repo`.

    Raises:
        WeightsNotFoundError: it is neither an existing path nor an ``owner/name`` repo id (`hint` says
            what to use instead), or `resolve` finds no copy.
    """
    folder = Path(path_or_name).expanduser()
    if folder.exists():
        return folder
    name = str(path_or_name)
    if name.count("/") != 1:
        raise WeightsNotFoundError(
            f"{name!r} is neither a folder nor a Hugging Face repo id like {example_repo!r}; {hint}"
        )
    return resolve(name)


def load_pretrained(
    folder: Path, what: str, lacks: str, *classes: Any, note: str = "", **kwargs: Any
) -> tuple:
    """``cls.from_pretrained(folder, local_files_only=True, **kwargs)`` for each of `classes`, in order.

    Raises:
        WeightsFileError: a file is corrupt or refused (see :func:`grounded_sam.weights.loader_errors`).
        WeightsNotFoundError: a file is missing: ``"{folder} {lacks} ({loader's error}){note}"``.
    """
    try:
        with loader_errors(folder, what):
            return tuple(cls.from_pretrained(folder, local_files_only=True, **kwargs) for cls in classes)
    except OSError as error:
        raise WeightsNotFoundError(f"{folder} {lacks} ({error}){note}") from error


def refuse_missing_weights(info: Mapping[str, Any], folder: Path, model_cls: Any, advice: str) -> None:
    """Refuse a load whose ``output_loading_info`` lists missing or reshaped weights (``transformers``
    would initialise them randomly and only warn)."""
    missing = sorted(info.get("missing_keys", ())) + sorted(info.get("mismatched_keys", ()))
    if missing:
        raise ValueError(
            f"{folder} lacks weights {model_cls.__name__} needs ({len(missing)} missing or of another "
            f"shape, e.g. {missing[:3]}); {advice}"
        )
