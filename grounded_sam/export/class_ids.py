"""Class ids of labels, shared by the exporters: numbered in sorted order, or a caller's mapping checked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grounded_sam.result import Result


def class_id_map(labels: Iterable[str], start: int = 0) -> dict[str, int]:
    """Number the distinct `labels` in sorted order from `start`: {"cat": start, "dog": start + 1}."""
    return {label: i for i, label in enumerate(sorted(set(labels)), start=start)}


def resolve_class_ids(result: Result, class_ids: Mapping[str, int] | None, start: int) -> dict[str, int]:
    """`class_ids` checked to cover every label of `result`, or `class_id_map(result.labels, start)`."""
    if class_ids is None:
        return class_id_map(result.labels, start)
    missing = sorted(set(result.labels) - set(class_ids))
    if missing:
        raise ValueError(f"labels {missing} have no class id; add them to class_ids ({sorted(class_ids)})")
    return dict(class_ids)
