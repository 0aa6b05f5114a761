"""grounded-sam export-onnx, then predict with --sam onnx:DIR (the demo text stage finds the boxes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

import grounded_sam
from grounded_sam.cli import app
from grounded_sam.ops import mask_ious
from grounded_sam.sam.onnx import OnnxModelConfig
from tests.pipelines import SCENE

runner = CliRunner()
DEMO_WEIGHTS = Path(grounded_sam.__file__).parent / "assets" / "demo_sam.safetensors"


def coco_masks(folder: Path) -> np.ndarray:
    (coco,) = folder.glob("*.coco.json")
    annotations = json.loads(coco.read_text())["annotations"]
    return np.stack([mask_utils.decode(a["segmentation"]) for a in annotations]).astype(bool)


def test_export_then_predict_with_the_onnx_folder(tmp_path) -> None:
    exported = tmp_path / "onnx"
    result = runner.invoke(app, ["export-onnx", "--sam", "demo_sam", "--out", str(exported)])
    assert result.exit_code == 0, result.output
    config = OnnxModelConfig.load(exported)
    assert config.model == "demo_sam" and (exported / "decoder.onnx").is_file()
    assert (exported / "xanylabeling.yaml").is_file()

    Image.fromarray(SCENE.image).save(tmp_path / "scene.png")
    outputs = {}
    for name, sam in (("onnx", f"onnx:{exported}"), ("torch", str(DEMO_WEIGHTS))):
        out = tmp_path / name
        args = ["predict", str(tmp_path / "scene.png"), "-p", SCENE.labels[0], "-o", str(out), "-f", "coco"]
        result = runner.invoke(app, [*args, "--sam", sam])
        assert result.exit_code == 0, result.output
        outputs[name] = coco_masks(out)
    assert len(outputs["onnx"]) >= 1 and outputs["onnx"].shape == outputs["torch"].shape
    assert mask_ious(outputs["onnx"], outputs["torch"]).min() > 0.99


def test_unknown_model_exits_with_usage_error(tmp_path) -> None:
    result = runner.invoke(app, ["export-onnx", "--sam", "sam_vit_q", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "sam_vit_q" in result.output
    assert not (tmp_path / "x" / "config.json").exists()
