"""encoder.onnx run in ONNX Runtime against the PyTorch image encoders (ViT, TinyViT), external data too."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from grounded_sam.sam.onnx.export import ENCODER_INPUT, export_encoder
from tests.sam.builders import TINY_TINYVIT_SAM, TINY_VIT_SAM, random_sam


@pytest.mark.parametrize(
    ("config", "external", "opset"),
    [(TINY_VIT_SAM, True, 18), (TINY_TINYVIT_SAM, False, 19)],
    ids=["vit", "tiny_vit"],
)
def test_encoder_equals_torch(config, external, opset, tmp_path) -> None:
    """Within 1e-5 of the embedding's scale; external data (ViT-H's > 2 GB path) forced on the ViT;
    opset 19 on the TinyViT."""
    model = random_sam(config, seed=7)
    path = tmp_path / "encoder.onnx"
    export_encoder(model, path, opset=opset, external_data=external)
    data = tmp_path / "encoder.onnx.data"
    assert data.exists() == external
    if external:
        proto = onnx.load(str(path), load_external_data=False)
        large = [t for t in proto.graph.initializer if np.prod(t.dims) >= 4096]
        assert large and all(t.data_location == onnx.TensorProto.EXTERNAL for t in large)
        assert data.stat().st_size > path.stat().st_size
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = config.image_size
    image = torch.rand(1, 3, size // 2, size, generator=torch.Generator().manual_seed(0)) * 255
    encoder_input = model.preprocess(image)
    (ours,) = session.run(None, {ENCODER_INPUT: encoder_input.numpy()})
    with torch.inference_mode():
        expected = model.encode_image(image).numpy()
    assert ours.shape == expected.shape == (1, config.prompt_embed_dim, size // 16, size // 16)
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


def test_opsets_below_18_are_refused(tmp_path) -> None:
    """The exporter would convert down, fail on Pad, and silently keep 18: a clear error instead."""
    with pytest.raises(ValueError, match="opset 18"):
        export_encoder(random_sam(TINY_VIT_SAM), tmp_path / "encoder.onnx", opset=17, external_data=False)


def _largest_intermediate(path) -> int:
    """Elements of the largest tensor the graph computes (shapes as ONNX shape inference sees them)."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    sizes = [
        int(np.prod([d.dim_value for d in info.type.tensor_type.shape.dim]))
        for info in proto.graph.value_info
        if all(d.HasField("dim_value") for d in info.type.tensor_type.shape.dim)
    ]
    assert len(sizes) > 50
    return max(sizes)


def test_global_attention_is_exported_in_bands(monkeypatch, tmp_path) -> None:
    """With a bias budget below a global block's (heads, tokens, tokens), the graph computes that block's
    attention a band of query rows at a time: no tensor of the graph is as large as the full bias (the plain
    attention's is), and ONNX Runtime still gives the encoder's embedding."""
    from grounded_sam.sam import budgets
    from grounded_sam.sam.onnx import export

    config = TINY_VIT_SAM
    grid = config.image_size // config.encoder.patch_size
    full_bias = config.encoder.num_heads * grid**4
    monkeypatch.setattr(budgets, "MAX_BIAS_ELEMENTS", full_bias // 8)
    monkeypatch.setattr(budgets, "MIN_CHUNK_QUERIES", 2 * grid)
    model = random_sam(config, seed=3)
    path = tmp_path / "encoder.onnx"
    export_encoder(model, path, opset=18, external_data=False)
    assert _largest_intermediate(path) < full_bias
    monkeypatch.setattr(export, "_chunked_attention", export.plain)  # the plain network's attention
    export_encoder(model, tmp_path / "plain.onnx", opset=18, external_data=False)
    assert _largest_intermediate(tmp_path / "plain.onnx") >= full_bias

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.rand(1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(1))
    encoder_input = model.preprocess(image * 255)
    (ours,) = session.run(None, {ENCODER_INPUT: encoder_input.numpy()})
    with torch.inference_mode():
        expected = model.encode_image(image * 255).numpy()
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()
    assert all(type(m).__name__ != "RelPosAttention" for m in model.modules())  # accelerated again
