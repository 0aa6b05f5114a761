"""The decoder's mask post-processing as ONNX nodes that read ``orig_im_size`` at run time.

The official export computes the crop from a traced image size, so its file only serves images of the
export-time size. Here the same steps as :meth:`Sam.postprocess_masks` are plain ONNX ops on the input:
upsample the low-resolution logits to the S x S input square (bilinear, half-pixel centres as in
``F.interpolate(align_corners=False)``), crop the padding to the resized image (its size rounded as
:func:`~grounded_sam.sam.transforms.resized_shape` does, in float64), resize to (H, W).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ORIG_IM_SIZE = "orig_im_size"
MASKS, SCORES, LOW_RES = "masks", "iou_predictions", "low_res_masks"


def append_postprocessing(model: onnx.ModelProto, image_size: int) -> None:
    """Add the ``orig_im_size`` input and the ``masks`` output to a decoder graph, in place.

    The graph's outputs are ``low_res_masks`` (1, M, 4E, 4E) and ``iou_predictions`` (1, M); afterwards
    they are ordered as the official export's: masks, iou_predictions, low_res_masks.
    """
    graph = model.graph
    outputs = {output.name: output for output in graph.output}
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(float(image_size), dtype=np.float64), "pp_side_f64"),
            numpy_helper.from_array(np.array(0.5, dtype=np.float64), "pp_half"),
            numpy_helper.from_array(np.array([image_size, image_size], dtype=np.int64), "pp_square"),
            numpy_helper.from_array(np.array([0, 0], dtype=np.int64), "pp_zeros"),
            numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "pp_axes"),
        ]
    )
    resize = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    graph.node.extend(
        [
            helper.make_node("Cast", [ORIG_IM_SIZE], ["pp_size_f64"], to=TensorProto.DOUBLE),
            helper.make_node("ReduceMax", ["pp_size_f64"], ["pp_longest"], keepdims=1),
            helper.make_node("Div", ["pp_side_f64", "pp_longest"], ["pp_scale"]),
            helper.make_node("Mul", ["pp_size_f64", "pp_scale"], ["pp_scaled"]),
            helper.make_node("Add", ["pp_scaled", "pp_half"], ["pp_rounding"]),
            helper.make_node("Floor", ["pp_rounding"], ["pp_floor"]),
            helper.make_node("Cast", ["pp_floor"], ["pp_resized"], to=TensorProto.INT64),
            helper.make_node("Cast", [ORIG_IM_SIZE], ["pp_orig"], to=TensorProto.INT64),
            helper.make_node("Shape", [LOW_RES], ["pp_batch_masks"], start=0, end=2),
            helper.make_node("Concat", ["pp_batch_masks", "pp_square"], ["pp_square_sizes"], axis=0),
            helper.make_node("Resize", [LOW_RES, "", "", "pp_square_sizes"], ["pp_square_masks"], **resize),
            helper.make_node("Slice", ["pp_square_masks", "pp_zeros", "pp_resized", "pp_axes"], ["pp_crop"]),
            helper.make_node("Concat", ["pp_batch_masks", "pp_orig"], ["pp_orig_sizes"], axis=0),
            helper.make_node("Resize", ["pp_crop", "", "", "pp_orig_sizes"], [MASKS], **resize),
        ]
    )
    graph.input.append(helper.make_tensor_value_info(ORIG_IM_SIZE, TensorProto.FLOAT, [2]))
    masks_info = helper.make_tensor_value_info(MASKS, TensorProto.FLOAT, [1, "num_masks", "height", "width"])
    del graph.output[:]
    graph.output.extend([masks_info, outputs[SCORES], outputs[LOW_RES]])
