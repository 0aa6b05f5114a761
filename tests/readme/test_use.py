"""The set-up line's demo, the quick start, and the snippets that need weights."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.readme.text import README, SCENE, python_block, readme_line
from tests.readme.workspace import Folder, cli_command


def test_the_set_up_line_ends_with_the_demo(folder: Folder) -> None:
    """The install line's last step, through the installed command: the files the README names."""
    demo = readme_line("python3 -m venv").split(" && ")[-1]
    assert demo == "grounded-sam demo --out demo-out" == readme_line("grounded-sam demo")
    done = subprocess.run(
        [*cli_command(), *shlex.split(demo)[1:]], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = folder.path / "demo-out"
    assert Image.open(out / "result_overlay.png").size == Image.open(out / "result_labels.png").size
    assert list(out.glob("result_mask_*.png"))
    instances = json.loads((out / "result.json").read_text())["instances"]
    assert instances and {one["label"] for one in instances} == {"red circle"}


# --- Use it ------------------------------------------------------------------------------------------


def test_the_quick_start_snippet_finds_the_shapes(folder: Folder) -> None:
    from grounded_sam.result import Result

    namespace: dict[str, object] = {}
    exec(compile(python_block("grounded_sam.predict("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, Result) and result.image_size == SCENE.image.shape[:2]
    assert sorted(result.labels) == ["green circle", "red square"]
    assert result.masks.shape == (2, *SCENE.image.shape[:2]) and result.masks.any(axis=(1, 2)).all()
    assert Image.open("overlay.png").size == SCENE.image.shape[1::-1]
    coco = json.loads(Path("out/result.coco.json").read_text())
    assert coco["images"][0]["file_name"] == "scene.png" and len(coco["annotations"]) == 2


def test_the_demo_model_finds_no_window_and_says_so(folder: Folder) -> None:
    """The prose after the quick start: the real-weights example, on the demo model, is empty and warns."""
    import grounded_sam

    call = re.search(r'`(grounded_sam\.predict\("kitchen\.jpg", "window\. door"\))`', README.read_text())
    assert call is not None
    with pytest.warns(UserWarning, match="never taught these words.*window"):
        result = eval(call.group(1).replace("kitchen.jpg", "photo.jpg"), {"grounded_sam": grounded_sam})
    assert len(result) == 0 and result.image_size == SCENE.image.shape[:2]


def _run_each_statement(snippet: str) -> tuple[list[Exception], int]:
    """Each top-level statement of ``snippet`` in turn; a statement that raises leaves the names it would
    have bound unset, and statements that read them are not run. Returns the errors and the count run."""
    namespace: dict[str, object] = {}
    unset: set[str] = set()
    errors, ran = [], 0
    for statement in ast.parse(snippet).body:
        names = {node.id for node in ast.walk(statement) if isinstance(node, ast.Name)}
        bound = {
            n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        if names & unset:
            unset |= bound
            continue
        ran += 1
        try:
            exec(compile(ast.Module([statement], []), "README.md", "exec"), namespace)
        except Exception as error:
            errors.append(error)
            unset |= bound
    return errors, ran


WEIGHTS_SNIPPETS = {
    'from_pretrained("sam_vit_b"': ["put 'sam_vit_b_01ec64.pth' in {home}"],
    "SamPredictor(build_sam(": ["put 'sam_vit_b_01ec64.pth' in {home}"],
    "from_sam3(": [
        "'facebook/sam3' in the folder {home}/sam3",
        "'facebook/sam2.1-hiera-tiny' in the folder {home}/sam2.1-hiera-tiny",
        "'facebook/sam2.1-hiera-tiny' in the folder {home}/sam2.1-hiera-tiny",
    ],
}


@pytest.mark.parametrize("marker", list(WEIGHTS_SNIPPETS))
def test_the_snippets_that_need_weights_say_which_file_to_put_where(folder: Folder, marker: str) -> None:
    """Run statement by statement: every statement that loads weights fails with the one clear error
    (not a deep traceback of another type), the imports before it work."""
    from grounded_sam.weights import WeightsNotFoundError

    errors, ran = _run_each_statement(python_block(marker))
    expected = [text.format(home=folder.home) for text in WEIGHTS_SNIPPETS[marker]]
    assert ran > len(errors) and len(errors) == len(expected), errors
    for error, text in zip(errors, expected, strict=True):
        assert isinstance(error, WeightsNotFoundError) and text in str(error), error


# --- Command line ------------------------------------------------------------------------------------
