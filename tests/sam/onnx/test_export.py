"""export_onnx's folder: external data end to end, and nothing left behind by a failed export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from grounded_sam.sam import OnnxSamPredictor, SamPredictor, export_onnx
from grounded_sam.sam.onnx import export as export_module
from grounded_sam.sam.onnx.config import OnnxModelConfig
from grounded_sam.sam.onnx.xanylabeling import RAW_INPUT
from tests.sam.builders import TINY_VIT_SAM, random_sam
from tests.sam.onnx.test_predictor import assert_same_prediction


def test_external_data_folder_works_end_to_end(tmp_path) -> None:
    """The > 2 GB path (ViT-H) forced on a tiny model: the predictor and the X-AnyLabeling encoder both
    read the one encoder.onnx.data."""
    model = random_sam(TINY_VIT_SAM, seed=11)
    config = export_onnx(model, tmp_path, external_data=True, model_name="tiny")
    assert config.files["encoder"].external_data == "encoder.onnx.data"
    assert OnnxModelConfig.load(tmp_path) == config
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".data")) == ["encoder.onnx.data"]
    image = np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    pair = OnnxSamPredictor(tmp_path, providers=["CPUExecutionProvider"]), SamPredictor(model)
    for predictor in pair:
        predictor.set_image(image)
    boxes = np.array([[10, 10, 100, 90], [50, 20, 190, 110]])
    assert_same_prediction(*(p.predict_boxes(boxes, return_logits=True) for p in pair))
    raw_encoder = tmp_path / "encoder.xanylabeling.onnx"
    raw = ort.InferenceSession(str(raw_encoder), providers=["CPUExecutionProvider"])
    (embedding,) = raw.run(None, {RAW_INPUT: np.zeros((64, 256, 3), np.float32)})
    assert embedding.shape == (1, TINY_VIT_SAM.prompt_embed_dim, 16, 16)


def test_failed_export_leaves_no_files(tmp_path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(export_module, "export_decoder", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(random_sam(TINY_VIT_SAM), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_the_plain_network_is_exported_and_the_model_stays_accelerated(tmp_path) -> None:
    from grounded_sam.sam.fast import is_accelerated
    from grounded_sam.sam.onnx.export import export_decoder

    model = random_sam(TINY_VIT_SAM)
    assert is_accelerated(model)
    export_decoder(model, tmp_path / "decoder.onnx", opset=18, return_single_mask=False)
    assert is_accelerated(model)
