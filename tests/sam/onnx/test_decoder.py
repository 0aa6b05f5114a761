"""decoder.onnx run in ONNX Runtime against our PyTorch decoder and against the official export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from segment_anything.utils.onnx import SamOnnxModel

from grounded_sam.sam.onnx.export import DECODER_INPUTS, export_decoder
from grounded_sam.sam.transforms import resized_shape
from tests.sam.builders import TINY_VIT_SAM, random_sam, reference_twin

SIZE = TINY_VIT_SAM.image_size
GRID = TINY_VIT_SAM.embedding_size
PADDING = ([0.0, 0.0], -1.0)


@pytest.fixture(scope="module")
def model():
    return random_sam(TINY_VIT_SAM, seed=3)


@pytest.fixture(scope="module")
def sessions(model, tmp_path_factory):
    """Our decoder.onnx exported both ways (every mask / a single mask), loaded in ONNX Runtime."""
    folder = tmp_path_factory.mktemp("decoder")
    found = {}
    for single in (False, True):
        path = folder / f"decoder_{single}.onnx"
        export_decoder(model, path, opset=18, return_single_mask=single)
        found[single] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return found


def feeds(embedding, coords, labels, mask=None, orig=(SIZE, SIZE)) -> dict[str, np.ndarray]:
    """The official contract's inputs for one prompt (coords in the resized-input frame)."""
    low = np.zeros((1, 1, 4 * GRID, 4 * GRID), np.float32) if mask is None else mask
    values = (
        embedding.numpy(),
        np.asarray(coords, np.float32)[None],
        np.asarray(labels, np.float32)[None],
        low,
        np.array([0.0 if mask is None else 1.0], np.float32),
    )
    return {**dict(zip(DECODER_INPUTS, values, strict=True)), "orig_im_size": np.array(orig, np.float32)}


def torch_decode(model, embedding, coords, labels, mask, multimask: bool):
    """Our PyTorch decoder on the same prompt: the contract's points (the -1 padding point dropped: our
    prompt encoder appends it itself) and labels 2 / 3 as a box."""
    coords, labels = torch.tensor(coords, dtype=torch.float32), torch.tensor(labels)
    coords, labels = coords[labels != -1], labels[labels != -1]
    corners = (labels == 2) | (labels == 3)
    box = coords[corners].reshape(1, 4) if corners.any() else None
    points = (coords[~corners][None], labels[~corners][None].int()) if (~corners).any() else None
    mask_t = None if mask is None else torch.from_numpy(mask)
    with torch.inference_mode():
        return model.decode(embedding, points, box, mask_t, multimask)


def scaled_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()))


PROMPTS = {
    "one point": ([[40.0, 50.0], PADDING[0]], [1.0, PADDING[1]]),
    "fg and bg points": ([[40.0, 50.0], [200.0, 100.0], [120.0, 30.0], PADDING[0]], [1.0, 0.0, 1.0, -1.0]),
    "box": ([[30.0, 40.0], [180.0, 200.0]], [2.0, 3.0]),
    "points and box": ([[100.0, 120.0], [30.0, 40.0], [180.0, 200.0]], [0.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_decoder_equals_our_torch_decoder(model, sessions, prompt, with_mask) -> None:
    embedding = torch.randn(
        1, TINY_VIT_SAM.prompt_embed_dim, GRID, GRID, generator=torch.Generator().manual_seed(1)
    )
    coords, labels = PROMPTS[prompt]
    mask = (
        np.random.default_rng(2).normal(0, 3, (1, 1, 4 * GRID, 4 * GRID)).astype(np.float32)
        if with_mask
        else None
    )
    masks, scores, low_res = sessions[False].run(None, feeds(embedding, coords, labels, mask))
    assert masks.shape == (1, 4, SIZE, SIZE) and low_res.shape == (1, 4, 4 * GRID, 4 * GRID)
    for multimask, channels in ((False, slice(0, 1)), (True, slice(1, 4))):
        expected_low, expected_scores = torch_decode(model, embedding, coords, labels, mask, multimask)
        assert scaled_error(low_res[:, channels], expected_low.numpy()) < 1e-5
        assert scaled_error(scores[:, channels], expected_scores.numpy()) < 1e-5
        upscaled = model.postprocess_masks(expected_low, (SIZE, SIZE), (SIZE, SIZE))
        assert scaled_error(masks[:, channels], upscaled.numpy()) < 1e-5
        same = (masks[:, channels] > 0) == (upscaled.numpy() > 0)
        assert same[np.abs(upscaled.numpy()) > 1e-4].all()


@pytest.mark.parametrize("orig", [(300, 200), (97, 256), (1000, 1500), (256, 256), (13, 900)])
def test_orig_im_size_is_read_at_run_time(model, sessions, orig) -> None:
    """One file serves every image size: the crop and the final resize follow orig_im_size."""
    embedding = torch.randn(1, TINY_VIT_SAM.prompt_embed_dim, GRID, GRID)
    coords, labels = PROMPTS["box"]
    masks, _, low_res = sessions[False].run(None, feeds(embedding, coords, labels, orig=orig))
    assert masks.shape == (1, 4, *orig)
    expected = model.postprocess_masks(torch.from_numpy(low_res), resized_shape(*orig, SIZE), orig)
    assert scaled_error(masks, expected.numpy()) < 1e-5


def official_session(model, single: bool, orig: tuple[int, int], path) -> ort.InferenceSession:
    """segment_anything's SamOnnxModel on the same weights, exported as its script does (crop traced at
    ``orig``), loaded in ONNX Runtime."""
    wrapper = SamOnnxModel(reference_twin(model, TINY_VIT_SAM), return_single_mask=single).eval()
    example = feeds(torch.zeros(1, TINY_VIT_SAM.prompt_embed_dim, GRID, GRID), *PROMPTS["box"], orig=orig)
    dynamic = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            tuple(torch.from_numpy(v) for v in example.values()),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=list(example),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes=dynamic,
        )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("single", [False, True])
def test_decoder_equals_the_official_export(model, sessions, single, tmp_path) -> None:
    orig = (180, 256)
    official = official_session(model, single, orig, tmp_path / "official.onnx")
    assert [i.name for i in official.get_inputs()] == [i.name for i in sessions[single].get_inputs()]
    assert [o.name for o in official.get_outputs()] == [o.name for o in sessions[single].get_outputs()]
    embedding = torch.randn(
        1, TINY_VIT_SAM.prompt_embed_dim, GRID, GRID, generator=torch.Generator().manual_seed(5)
    )
    mask = np.random.default_rng(4).normal(0, 3, (1, 1, 4 * GRID, 4 * GRID)).astype(np.float32)
    for coords, labels in PROMPTS.values():
        for low in (None, mask):
            inputs = feeds(embedding, coords, labels, low, orig=orig)
            ours, theirs = sessions[single].run(None, inputs), official.run(None, inputs)
            for name, a, b in zip(("masks", "iou_predictions", "low_res_masks"), ours, theirs, strict=True):
                assert a.shape == b.shape, name
                assert scaled_error(a, b) < 1e-5, name
