from __future__ import annotations

import sys

import numpy as np
import pytest

from grounded_sam.export.supervision import to_supervision
from grounded_sam.result import Result

H, W = 12, 16


def sample() -> Result:
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, :6, :8] = True
    masks[1, 6:, 8:] = True
    boxes = np.array([[0, 0, 8, 6], [8, 6, 16, 12]], dtype=np.float32)
    return Result(masks, boxes, ["zebra", "ant"], [0.9, 0.4], [0.8, 0.7], (H, W))


def test_to_supervision_keeps_every_field() -> None:
    pytest.importorskip("supervision")
    result = sample()
    detections = to_supervision(result)
    assert len(detections) == 2
    np.testing.assert_array_equal(detections.xyxy, result.boxes)  # tight boxes: mask box = detector box
    np.testing.assert_array_equal(detections.mask, result.masks)
    np.testing.assert_allclose(detections.confidence, [0.9, 0.4])
    assert detections.class_id.tolist() == [1, 0]  # ant 0, zebra 1
    assert detections.data["class_name"].tolist() == ["zebra", "ant"]
    np.testing.assert_allclose(detections.data["mask_score"], [0.8, 0.7])
    assert to_supervision(result, {"zebra": 4, "ant": 2}).class_id.tolist() == [4, 2]
    assert detections[np.array([False, True])].data["class_name"].tolist() == ["ant"]


def test_empty_result() -> None:
    pytest.importorskip("supervision")
    detections = to_supervision(Result.empty((H, W)))
    assert len(detections) == 0
    assert detections.xyxy.shape == (0, 4) and detections.mask.shape == (0, H, W)


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)  # makes `import supervision` fail
    with pytest.raises(ImportError, match="pip install supervision"):
        to_supervision(sample())


def test_boxes_are_the_masks_boxes_and_the_detector_boxes_are_kept() -> None:
    sv = pytest.importorskip("supervision")
    result = sample()
    boxes = result.boxes + np.array([1, 1, -2, -1], np.float32)
    loose = Result(result.masks, boxes, result.labels, [0.9, 0.4], [0.8, 0.7], (H, W))
    detections = to_supervision(loose)
    np.testing.assert_array_equal(detections.xyxy, [[0, 0, 8, 6], [8, 6, 16, 12]])
    np.testing.assert_array_equal(detections.data["detector_xyxy"], loose.boxes)
    # supervision's own mask box (inclusive far edge) is ours minus one pixel on the far side
    np.testing.assert_array_equal(sv.mask_to_xyxy(detections.mask) + np.array([0, 0, 1, 1]), detections.xyxy)
