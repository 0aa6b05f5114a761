"""The SAM package stands alone: it imports nothing from the text stage, the labelling or the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import grounded_sam.sam

SAM_ROOT = Path(grounded_sam.sam.__file__).resolve().parent
OUTSIDE = (
    "grounded_sam.text",
    "grounded_sam.labeling",
    "grounded_sam.pipeline",
    "grounded_sam.everything_labels",
)


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_sam_imports_nothing_from_the_text_stage_or_the_pipeline() -> None:
    files = sorted(SAM_ROOT.rglob("*.py"))
    assert len(files) > 20
    offending = [
        f"{path.relative_to(SAM_ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if name.startswith(OUTSIDE)
    ]
    assert offending == []
