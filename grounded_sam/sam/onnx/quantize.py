"""int8 variants of an exported folder, with their accuracy measured against the float32 files.

ONNX Runtime's dynamic quantization stores the weights of the matrix products in int8 and quantizes
activations per call; the measured accuracy (mask IoU of the int8 files against the float32 ones, and of
both against the ground truth, with ground-truth boxes as prompts on synthetic scenes) goes into
``config.json`` so a user sees the cost before deploying.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.sam.onnx.config import OnnxModelConfig

QUANTIZED_ROLES = {"encoder_int8": "encoder.int8.onnx", "decoder_int8": "decoder.int8.onnx"}
ACCURACY_SCENES = 8
ACCURACY_SEED = 2024


def quantize_file(source: Path, destination: Path, external_data: bool = False) -> None:
    """Dynamic int8 quantization of one ONNX file (weights int8, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, destination, weight_type=QuantType.QInt8, use_external_data_format=external_data)


def quantize_export(folder: Path, config: OnnxModelConfig) -> OnnxModelConfig:
    """Write the int8 files next to the float32 ones in ``folder``; ``config`` listing them and their
    measured accuracy (see :func:`measure_int8_accuracy`)."""
    for role, name in QUANTIZED_ROLES.items():
        source = config.file(folder, role.removesuffix("_int8"))
        external = config.files[role.removesuffix("_int8")].external_data is not None
        quantize_file(source, folder / name, external)
    config = config.with_files(folder, QUANTIZED_ROLES)
    config.save(folder)  # the predictor below reads the folder's config
    return dataclasses.replace(config, quantized_accuracy=measure_int8_accuracy(folder))


def measure_int8_accuracy(
    folder: str | Path, scenes: int = ACCURACY_SCENES, seed: int = ACCURACY_SEED
) -> dict[str, Any]:
    """Box-prompt masks of the int8 files vs the float32 files on ``scenes`` synthetic scenes (drawn at
    the encoder's input size).

    Returns mean and minimum IoU of int8 masks against float32 masks, the mean IoU of each against the
    ground truth, and how many instances were measured.
    """
    from grounded_sam.data import SceneConfig, iter_scenes
    from grounded_sam.ops.masks import mask_ious
    from grounded_sam.sam.onnx.predictor import OnnxSamPredictor

    side = OnnxModelConfig.load(folder).image_size
    found = [scene for scene in iter_scenes(seed, scenes, SceneConfig(size=(side, side))) if len(scene)]
    # One network in memory at a time (a ViT-B encoder session alone takes about 3 GB).
    masks = {precision: [] for precision in ("float32", "int8")}
    for precision, kept in masks.items():
        predictor = OnnxSamPredictor(folder, providers=["CPUExecutionProvider"], precision=precision)
        for scene in found:
            predictor.set_image(scene.image)
            kept.append(predictor.predict_boxes(scene.boxes, multimask_output=False)[0][:, 0])
        del predictor
    agreement = [mask_ious(b, a) for a, b in zip(masks["float32"], masks["int8"], strict=True)]
    float_truth = [mask_ious(m, scene.masks) for m, scene in zip(masks["float32"], found, strict=True)]
    int8_truth = [mask_ious(m, scene.masks) for m, scene in zip(masks["int8"], found, strict=True)]
    ious = np.concatenate(agreement) if agreement else np.zeros(0)
    return {
        "scenes": scenes,
        "seed": seed,
        "instances": len(ious),
        "mask_iou_int8_vs_float32_mean": _rounded(ious, np.mean),
        "mask_iou_int8_vs_float32_min": _rounded(ious, np.min),
        "mask_iou_vs_truth_float32": _rounded(float_truth, np.mean),
        "mask_iou_vs_truth_int8": _rounded(int8_truth, np.mean),
    }


def _rounded(values: np.ndarray | list[np.ndarray], reduce: Any) -> float | None:
    """``reduce`` of the values (arrays concatenated) to 4 decimals; ``None`` when there are none."""
    values = np.concatenate(values) if isinstance(values, list) and values else np.asarray(values)
    return round(float(reduce(values)), 4) if values.size else None
