"""Files for X-AnyLabeling's ``segment_anything`` model type: an encoder taking raw pixels, and a YAML.

X-AnyLabeling feeds its SAM encoder an (h, w, 3) float32 RGB image in 0..255 (the picture scaled into
its fixed canvas, 684 x 1024 today) and expects normalisation and padding inside the graph; its decoder
calls follow the official contract, which ``decoder.onnx`` keeps. ``encoder.xanylabeling.onnx`` is
``encoder.onnx`` with those steps in front; when the encoder's weights are external data, both files
read the same ``encoder.onnx.data``. X-AnyLabeling's runtime assumes a 1024-pixel model (ViT-B/L/H,
MobileSAM).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from grounded_sam.atomic import atomic_write_text
from grounded_sam.sam.onnx.config import OnnxModelConfig

ENCODER_NAME = "encoder.xanylabeling.onnx"
YAML_NAME = "xanylabeling.yaml"
RAW_INPUT = "image"


def write_xanylabeling(folder: Path, config: OnnxModelConfig) -> OnnxModelConfig:
    """Write ``encoder.xanylabeling.onnx`` and ``xanylabeling.yaml`` into ``folder``; ``config`` listing
    the encoder as role ``encoder_xanylabeling``."""
    encoder = onnx.load(str(config.file(folder, "encoder")), load_external_data=False)
    prepend_preprocessing(encoder, config)
    onnx.save(encoder, str(folder / ENCODER_NAME))
    config = config.with_files(folder, {"encoder_xanylabeling": ENCODER_NAME})
    model = {
        "type": "segment_anything",
        "name": f"{config.model}-grounded-sam",
        "display_name": f"Segment Anything ({config.model}, grounded_sam export)",
        "encoder_model_path": ENCODER_NAME,
        "decoder_model_path": config.files["decoder"].path,
        "input_size": config.image_size,
        "max_width": config.image_size,
        "max_height": config.image_size,
    }
    atomic_write_text(folder / YAML_NAME, yaml.safe_dump(model, sort_keys=False))
    return config


def prepend_preprocessing(model: onnx.ModelProto, config: OnnxModelConfig) -> None:
    """Make an encoder graph take (h, w, 3) RGB in 0..255 (h, w <= S): transpose, normalise with the
    config's mean / std, zero-pad bottom/right to S x S, in place."""
    graph = model.graph
    (old_input,) = graph.input
    normalised = "xal_padded"
    for node in graph.node:
        node.input[:] = [normalised if name == old_input.name else name for name in node.input]
    side = config.image_size
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(config.pixel_mean, np.float32).reshape(1, 3, 1, 1), "xal_mean"),
            numpy_helper.from_array(np.array(config.pixel_std, np.float32).reshape(1, 3, 1, 1), "xal_std"),
            numpy_helper.from_array(np.array([0], np.int64), "xal_axis0"),
            numpy_helper.from_array(np.array([side, side], np.int64), "xal_side"),
            numpy_helper.from_array(np.zeros(6, np.int64), "xal_no_pad"),
        ]
    )
    graph.node.insert(0, helper.make_node("Pad", ["xal_norm", "xal_pads"], [normalised]))
    graph.node.insert(0, helper.make_node("Concat", ["xal_no_pad", "xal_missing"], ["xal_pads"], axis=0))
    graph.node.insert(0, helper.make_node("Sub", ["xal_side", "xal_hw"], ["xal_missing"]))
    graph.node.insert(0, helper.make_node("Shape", ["xal_chw"], ["xal_hw"], start=1, end=3))
    graph.node.insert(0, helper.make_node("Div", ["xal_centred", "xal_std"], ["xal_norm"]))
    graph.node.insert(0, helper.make_node("Sub", ["xal_nchw", "xal_mean"], ["xal_centred"]))
    graph.node.insert(0, helper.make_node("Unsqueeze", ["xal_chw", "xal_axis0"], ["xal_nchw"]))
    graph.node.insert(0, helper.make_node("Transpose", [RAW_INPUT], ["xal_chw"], perm=[2, 0, 1]))
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(RAW_INPUT, TensorProto.FLOAT, ["height", "width", 3]))
