"""Builders: a registered SAM 2 name or a local folder → a ``transformers`` model and its processor.

Weights are found through :func:`grounded_sam.weights.resolve_weights`: ``checkpoint=`` (a folder), then
``$GROUNDED_SAM_HOME/<repository name>`` (e.g. ``~/.cache/grounded_sam/sam2.1-hiera-tiny``), then the
Hugging Face cache or Hub, else a :class:`~grounded_sam.weights.WeightsNotFoundError` naming the folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.devices import Device, resolve_device
from grounded_sam.hf_folders import (
    config_model_type,
    load_pretrained,
    refuse_missing_weights,
    transformers_classes,
)
from grounded_sam.sam2.registry import DEFAULT_SAM2, get_sam2_spec, is_sam2_name
from grounded_sam.weights import WeightsNotFoundError, resolve_weights

if TYPE_CHECKING:
    from transformers import Sam2Model, Sam2Processor, Sam2VideoModel, Sam2VideoProcessor

logger = logging.getLogger(__name__)

MIN_TRANSFORMERS = "4.56"
_SAM2_MODEL_TYPES = ("sam2", "sam2_video")


def transformers_sam2(*names: str) -> tuple[Any, ...]:
    """The named SAM 2 classes of ``transformers`` (``"A|B"``: the first that exists); an ImportError
    saying what to install if it lacks them."""
    return transformers_classes("SAM 2", MIN_TRANSFORMERS, *names)


def model_image_size(model: Any) -> int:
    """The side of the square image a SAM 2 model (image or video) encodes, e.g. 1024."""
    size = model.config.prompt_encoder_config.image_size
    return int(size[0] if isinstance(size, list | tuple) else size)


def default_processor(model: Any, video: bool = False) -> Sam2Processor | Sam2VideoProcessor:
    """SAM 2's standard pre-processing (square resize, ImageNet normalisation) sized for ``model``."""
    size = {"height": model_image_size(model), "width": model_image_size(model)}
    if video:
        processor_cls, image_cls, frames_cls = transformers_sam2(
            "Sam2VideoProcessor", "Sam2ImageProcessor|Sam2ImageProcessorFast", "Sam2VideoVideoProcessor"
        )
        return processor_cls(image_processor=image_cls(size=size), video_processor=frames_cls(size=size))
    processor_cls, image_cls = transformers_sam2("Sam2Processor", "Sam2ImageProcessor|Sam2ImageProcessorFast")
    return processor_cls(image_processor=image_cls(size=size))


def check_processor(model: Any, processor: Any) -> None:
    """Raise ValueError unless ``processor`` resizes images to the size ``model`` was built for."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not hasattr(processor, "target_size"):
        raise TypeError(f"expected a Sam2Processor (or Sam2VideoProcessor), got {type(processor).__name__}")
    expected = model_image_size(model)
    actual = (image_processor.size["height"], image_processor.size["width"])
    if actual != (expected, expected) or processor.target_size != expected:
        raise ValueError(
            f"the processor resizes images to {actual} (points to {processor.target_size}), but the model "
            f"encodes {expected}x{expected} images: pass the processor saved with the model"
        )


def build_sam2(
    name: str | None = None, checkpoint: str | os.PathLike[str] | None = None, device: Device = None
) -> tuple[Sam2Model, Sam2Processor]:
    """A SAM 2 image model and its processor, in eval mode on ``device``.

    Args:
        name: a registered name (see :func:`list_sam2_models`, e.g. ``sam2.1_hiera_tiny``); with neither
            ``name`` nor ``checkpoint``, ``sam2.1_hiera_tiny``.
        checkpoint: a folder holding ``config.json`` and the weights (a Hugging Face snapshot or the output
            of ``save_pretrained``); its processor files are used when present, SAM 2's standard
            pre-processing for the model's image size otherwise.
        device: where to put the model (default: CUDA when available, else the CPU).

    Example:
        >>> model, processor = build_sam2("sam2.1_hiera_tiny")  # doctest: +SKIP
        >>> predictor = Sam2Predictor(model, processor)  # doctest: +SKIP
    """
    model_cls, processor_cls = transformers_sam2("Sam2Model", "Sam2Processor")
    label, folder = _resolve_folder(name, checkpoint)
    model = _load_model(model_cls, folder, label)
    processor = _load_processor(processor_cls, folder, model, video=False)
    return model.to(resolve_device(device)).eval(), processor


def build_sam2_video(
    name: str | None = None, checkpoint: str | os.PathLike[str] | None = None, device: Device = None
) -> tuple[Sam2VideoModel, Sam2VideoProcessor]:
    """The SAM 2 video tracker (memory attention and encoder included) and its processor, in eval mode.

    Same arguments and weights resolution as :func:`build_sam2`. The checkpoint must hold the memory
    modules (the released ``facebook/sam2*-hiera-*`` repositories do); a folder saved from an image-only
    ``Sam2Model`` is refused.
    """
    model_cls, processor_cls = transformers_sam2("Sam2VideoModel", "Sam2VideoProcessor")
    label, folder = _resolve_folder(name, checkpoint)
    model = _load_model(model_cls, folder, label)
    processor = _load_processor(processor_cls, folder, model, video=True)
    return model.to(resolve_device(device)).eval(), processor


def is_sam2_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` describes a SAM 2 image or video model."""
    return config_model_type(path) in _SAM2_MODEL_TYPES


def uses_sam2(name: str | None, checkpoint: str | os.PathLike[str] | None = None) -> bool:
    """Whether a ``--sam`` choice means SAM 2: a registered SAM 2 name, or a SAM 2 folder without a name."""
    if name is not None:
        return is_sam2_name(name)
    return checkpoint is not None and is_sam2_folder(checkpoint)


def _resolve_folder(name: str | None, checkpoint: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """The model's name for messages and the local folder holding its files."""
    if name is None and checkpoint is None:
        name = DEFAULT_SAM2
    spec = get_sam2_spec(name) if name is not None else None
    label = name or "SAM 2"
    folder = resolve_weights(label, spec.weights if spec else None, checkpoint)
    if not folder.is_dir():
        raise ValueError(
            f"SAM 2 checkpoints are folders (config.json + model.safetensors, as in the Hugging Face "
            f"repositories or written by save_pretrained), got the file {folder}; official .pt files are "
            "not supported: download the repository instead"
        )
    return label, folder


def _load_model(model_cls: Any, folder: Path, label: str) -> Any:
    """Load ``folder`` into ``model_cls``, refusing other model types and checkpoints with missing weights."""
    if not (folder / "config.json").is_file():
        raise WeightsNotFoundError(
            f"{folder} has no config.json, so it is not a complete SAM 2 folder for {label!r}: it needs the "
            "model's config.json and weights, as in the Hugging Face repository or written by save_pretrained"
        )
    model_type = config_model_type(folder)
    if model_type not in _SAM2_MODEL_TYPES:
        raise ValueError(
            f"{folder} holds a {model_type!r} model, not SAM 2 ({' or '.join(_SAM2_MODEL_TYPES)}); "
            "for SAM 1 use grounded_sam.sam.build_sam"
        )
    ((model, info),) = load_pretrained(
        folder, "SAM 2", "has a config.json but no readable weights", model_cls, output_loading_info=True
    )
    refuse_missing_weights(
        info,
        folder,
        model_cls,
        "a folder saved from the image-only Sam2Model cannot drive the video tracker: use a released SAM 2 "
        "repository",
    )
    return model


def _load_processor(processor_cls: Any, folder: Path, model: Any, video: bool) -> Any:
    """The processor saved in ``folder``, or SAM 2's standard one sized for ``model`` when none is."""
    try:
        processor = processor_cls.from_pretrained(folder, local_files_only=True)
    except OSError:
        logger.info("no %s files in %s: standard SAM 2 pre-processing", processor_cls.__name__, folder)
        return default_processor(model, video=video)
    check_processor(model, processor)
    return processor
