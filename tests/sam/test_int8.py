"""precision="int8": the image encoder's linear layers in int8 give nearly float32's masks on x86 CPUs."""

from __future__ import annotations

import copy
import platform

import numpy as np
import pytest
import torch
from torch import nn

from grounded_sam.data import iter_scenes
from grounded_sam.devices import resolve_precision
from grounded_sam.ops.masks import mask_ious
from grounded_sam.sam.build import build_sam
from grounded_sam.sam.everything import MaskGenerator
from grounded_sam.sam.fast.int8 import (
    Int8Linear,
    Int8RelPosAttention,
    calibrating,
    int8_encoder,
    quantize_linears,
)
from grounded_sam.sam.modeling.config import SamConfig, TinyViTConfig
from grounded_sam.sam.predictor import SamPredictor
from tests.sam.builders import TINY_VIT_SAM, random_sam

CPU = torch.device("cpu")
x86 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the int8 encoder runs on x86 CPUs only"
)

# MobileSAM's TinyViT-5M (its default dims, depths, heads and windows) at 256 px, so it runs in a second.
MOBILE_SAM_SHAPED = SamConfig(encoder=TinyViTConfig(), image_size=256)


def random_image(seed: int, size: tuple[int, int] = (200, 256)) -> np.ndarray:
    """Blocky random colours (16-px cells), so masks follow edges rather than pixel noise."""
    cells = np.random.default_rng(seed).integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8)
    return np.kron(cells, np.ones((16, 16, 1), np.uint8))


BOXES = np.array([[10, 10, 100, 120], [50, 60, 200, 180], [0, 0, 250, 190], [120, 20, 240, 90]], float)


def box_mask_ious(
    model: nn.Module, images: list[np.ndarray], boxes: list[np.ndarray], at_median: bool = False
) -> np.ndarray:
    """Per-box IoU of int8's box masks against float32's, after checking that int8 really ran.

    ``at_median``: masks at the level of float32's median logit per box instead of 0. Random decoders give
    masks that are empty or nearly full whatever the box (an IoU of 1 that proves nothing); at the median
    each mask is half the image, and its edge moves with every change of the embedding.
    """
    exact, fast = SamPredictor(model), SamPredictor(model, precision="int8")
    ious = []
    for image, image_boxes in zip(images, boxes, strict=True):
        exact.set_image(image)
        fast.set_image(image)
        relative = ((fast.features - exact.features).norm() / exact.features.norm()).item()
        assert 1e-4 < relative < 0.05, relative  # quantized, and still close
        logits = fast.predict_boxes(image_boxes, return_logits=True)[0][:, 0]
        reference = exact.predict_boxes(image_boxes, return_logits=True)[0][:, 0]
        level = np.median(reference, axis=(1, 2), keepdims=True) if at_median else 0.0
        masks, reference_masks = logits > level, reference > level
        fill = reference_masks.mean(axis=(1, 2))
        assert np.all((fill > 0.001) & (fill < 0.95)), fill  # masks that can disagree
        ious.extend(mask_ious(masks, reference_masks))
    return np.array(ious)


@x86
@pytest.mark.parametrize("config", [TINY_VIT_SAM, MOBILE_SAM_SHAPED], ids=["vit", "mobile_sam_tinyvit"])
def test_int8_box_masks_match_float32_on_random_encoders(config) -> None:
    model = random_sam(config)
    ious = box_mask_ious(model, [random_image(1), random_image(2)], [BOXES, BOXES[::-1]], at_median=True)
    assert ious.mean() >= 0.95 and ious.min() >= 0.8, np.round(ious, 3)
    quantized = int8_encoder(model.image_encoder)
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    assert any(isinstance(m, Int8Linear) for m in quantized.modules())


@x86
def test_int8_box_masks_match_float32_on_the_demo_model_scenes() -> None:
    scenes = list(iter_scenes(1000, 4))
    ious = box_mask_ious(build_sam("demo_sam"), [s.image for s in scenes], [s.boxes for s in scenes])
    assert ious.mean() >= 0.95 and ious.min() >= 0.8, np.round(ious, 3)


@x86
def test_the_plain_network_quantizes_like_the_fast_one() -> None:
    fast, plain = random_sam(), random_sam(accelerate=False)
    encoded = []
    for model in (fast, plain):
        predictor = SamPredictor(model, precision="int8")
        predictor.set_image(random_image(3))
        encoded.append(predictor.features)
        assert all(isinstance(m.attn, Int8RelPosAttention) for m in int8_encoder(model.image_encoder).blocks)
    torch.testing.assert_close(encoded[0], encoded[1])
    assert type(plain.image_encoder.blocks[0].attn.qkv) is nn.Linear  # the float model is untouched


@x86
def test_weights_loaded_after_quantizing_are_quantized_again(tmp_path) -> None:
    model = random_sam()
    keys = list(model.state_dict())
    predictor = SamPredictor(model, precision="int8")
    predictor.set_image(random_image(4))
    first = predictor.features
    assert list(model.state_dict()) == keys  # the int8 copy is not part of the state dict
    assert int8_encoder(model.image_encoder) is int8_encoder(model.image_encoder)  # cached

    other = random_sam(seed=7)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    model.load_state_dict(torch.load(tmp_path / "other.pth", weights_only=True))
    predictor.reset_image()
    predictor.set_image(random_image(4))
    fresh = SamPredictor(other, precision="int8")
    fresh.set_image(random_image(4))
    torch.testing.assert_close(predictor.features, fresh.features)
    assert not torch.allclose(predictor.features, first)

    # The model still saves and loads as a float checkpoint, and copies (pickles) without the int8 copy.
    torch.save(model.state_dict(), tmp_path / "after.pth")
    reloaded = build_sam(checkpoint=tmp_path / "after.pth", device="cpu")
    torch.testing.assert_close(reloaded.state_dict(), model.state_dict())
    twin = copy.deepcopy(model)
    twin_predictor = SamPredictor(twin, precision="int8")
    twin_predictor.set_image(random_image(4))
    torch.testing.assert_close(twin_predictor.features, fresh.features)


@x86
def test_segment_everything_takes_int8() -> None:
    model = build_sam("demo_sam")
    settings = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.6}
    image = next(iter_scenes(1000, 1)).image
    generator = MaskGenerator(model, **settings, precision="int8")
    assert generator.predictor.precision == "int8"
    exact = MaskGenerator(model, **settings).generate(image)
    found = generator.generate(image)
    assert len(exact) >= 2 and abs(len(found) - len(exact)) <= max(1, len(exact) // 5)


def test_int8_is_refused_off_x86_cpus(monkeypatch) -> None:
    for device in (torch.device("cuda"), torch.device("meta")):
        with pytest.raises(ValueError, match=r"int8.*only on x86 CPUs"):
            resolve_precision("int8", device)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(ValueError, match="not on this aarch64 CPU"):
        resolve_precision("int8", CPU)
    with pytest.raises(ValueError, match="only on x86 CPUs"):
        SamPredictor(random_sam(), precision="int8")


def test_auto_never_picks_int8(monkeypatch) -> None:
    for amx in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert resolve_precision("auto", CPU) in ("float32", "bfloat16")


@x86
def test_calibrated_input_ranges_stay_close_to_float32() -> None:
    model = build_sam("demo_sam")
    exact, fast = SamPredictor(model), SamPredictor(model, precision="int8")
    quantized = int8_encoder(model.image_encoder)
    with calibrating(quantized):
        for scene in iter_scenes(2000, 2):
            fast.set_image(scene.image)
    layers = [m for m in quantized.modules() if isinstance(m, Int8Linear)]
    assert layers and all(layer.input_qparams is not None for layer in layers)
    image = next(iter_scenes(1000, 1)).image
    exact.set_image(image)
    fast.reset_image()
    fast.set_image(image)
    relative = ((fast.features - exact.features).norm() / exact.features.norm()).item()
    assert 1e-4 < relative < 0.05, relative
    with (
        pytest.raises(RuntimeError, match="saw no input"),
        calibrating(quantize_linears(model.image_encoder)),
    ):
        pass
