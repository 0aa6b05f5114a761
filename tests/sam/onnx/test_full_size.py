"""Full-size architectures with random weights: export, then OnnxSamPredictor equals SamPredictor (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.sam import OnnxSamPredictor, SamPredictor, build_sam, export_onnx
from tests.sam.builders import randomize_
from tests.sam.onnx.test_predictor import assert_same_prediction


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobile_sam", "sam_vit_b"])
def test_full_size_export_equals_torch(name, tmp_path) -> None:
    model = randomize_(build_sam(name, pretrained=False, device="cpu"), seed=1, scale=0.02).eval()
    export_onnx(model, tmp_path, model_name=name)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 300, 400], [200, 100, 630, 470], [0, 0, 640, 480]], dtype=np.float32)
    pair = OnnxSamPredictor(tmp_path, providers=["CPUExecutionProvider"]), SamPredictor(model)
    for predictor in pair:
        predictor.set_image(image)
    expected = pair[1].get_image_embedding().numpy()
    assert np.abs(pair[0].get_image_embedding().numpy() - expected).max() <= 1e-5 * np.abs(expected).max()
    assert_same_prediction(*(p.predict_boxes(boxes, return_logits=True) for p in pair))
