"""The diffusers backend on a tiny random Stable Diffusion inpainting model built and saved offline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from grounded_sam.inpaint import ReplaceSettings, inpaint
from grounded_sam.inpaint import diffusers_backend as backend
from grounded_sam.weights import WeightsNotFoundError
from tests.inpaint.tiny_diffusion import save_tiny_inpainting_model

pytest.importorskip(
    "diffusers", reason="diffusers is an optional extra: pip install 'grounded_sam[diffusers]'"
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_inpainting_model(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv(backend.INPAINT_MODEL_ENV, raising=False)


def _image_and_mask() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=bool)
    mask[6:14, 10:20] = True
    return image, mask


def test_replace_with_a_tiny_model_from_a_folder(tiny_model, no_weights, monkeypatch) -> None:
    monkeypatch.setenv(backend.INPAINT_MODEL_ENV, str(tiny_model))
    pipeline = backend.load_inpaint_pipeline(device="cpu")
    image, mask = _image_and_mask()
    settings = ReplaceSettings(steps=1, guidance_scale=1.0, seed=3)

    out = inpaint(
        image, mask, "a red bike", backend="diffusers", dilate=0, settings=settings, pipeline=pipeline
    )
    again = inpaint(
        image, mask, "a red bike", backend="diffusers", dilate=0, settings=settings, pipeline=pipeline
    )

    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert np.abs(out[mask].astype(int) - image[mask]).mean() > 5, "the masked region must be repainted"
    np.testing.assert_array_equal(out, again)  # seeded


def test_model_size_is_a_multiple_of_eight_with_the_same_aspect() -> None:
    assert backend._model_size(20, 30, 512) == (24, 32)
    assert backend._model_size(1000, 2000, 512) == (256, 512)
    assert backend._model_size(3, 3, 512) == (8, 8)


def test_missing_weights_say_where_to_put_them(no_weights) -> None:
    with pytest.raises(WeightsNotFoundError, match=backend.INPAINT_MODEL_ENV) as caught:
        backend.load_inpaint_pipeline()
    assert "stable-diffusion-inpainting" in str(caught.value)
    image, mask = _image_and_mask()
    with pytest.raises(WeightsNotFoundError):
        inpaint(image, mask, "a bicycle", backend="diffusers")


def test_a_folder_that_is_not_a_model_is_a_value_error(no_weights, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a diffusers inpainting model folder"):
        backend.load_inpaint_pipeline(tmp_path / "empty")


def test_without_diffusers_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    assert not backend.diffusers_available()
    with pytest.raises(ImportError, match=r"grounded_sam\[diffusers\]"):
        backend.load_inpaint_pipeline()
