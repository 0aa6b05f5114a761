"""Replace a masked region from a text prompt with a Stable Diffusion inpainting model (optional extra).

Needs ``pip install 'grounded_sam[diffusers]'`` and local weights: a diffusers model folder (e.g. a copy of
the Hugging Face repository ``stable-diffusion-v1-5/stable-diffusion-inpainting``), found in this order:
``checkpoint=`` → ``$GROUNDED_SAM_INPAINT_MODEL`` → ``$GROUNDED_SAM_HOME/stable-diffusion-inpainting`` →
the Hugging Face cache (and the Hub when online), see :mod:`grounded_sam.weights`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from grounded_sam.devices import Device, resolve_device
from grounded_sam.inpaint.settings import ReplaceSettings
from grounded_sam.weights import WeightsNotFoundError, WeightsSpec, resolve_weights

logger = logging.getLogger(__name__)

INPAINT_MODEL_ENV = "GROUNDED_SAM_INPAINT_MODEL"
INPAINT_MODEL_NAME = "sd_inpainting"
SD_INPAINTING = WeightsSpec(
    filename="stable-diffusion-inpainting",
    source_format="hf",
    hf_repo_id="stable-diffusion-v1-5/stable-diffusion-inpainting",
)
_EXTRA_HINT = "install the optional extra: pip install 'grounded_sam[diffusers]'"


def diffusers_available() -> bool:
    """Whether the ``diffusers`` package can be imported."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def inpaint_model_path(checkpoint: str | os.PathLike[str] | None = None) -> Path:
    """The local inpainting model folder; raises :class:`WeightsNotFoundError` saying where to put one."""
    explicit = checkpoint or os.environ.get(INPAINT_MODEL_ENV) or None
    try:
        return resolve_weights(INPAINT_MODEL_NAME, SD_INPAINTING, explicit)
    except WeightsNotFoundError as error:
        raise WeightsNotFoundError(
            f"no Stable Diffusion inpainting model is configured: {error}; or set ${INPAINT_MODEL_ENV} to a "
            "diffusers model folder"
        ) from error


def load_inpaint_pipeline(checkpoint: str | os.PathLike[str] | None = None, device: Device = None) -> Any:
    """A diffusers inpainting pipeline loaded from local files only (see the module docstring).

    Raises ImportError (naming the extra) without diffusers, :class:`WeightsNotFoundError` without
    weights, and ValueError when the folder is not a diffusers inpainting model.
    """
    try:
        from diffusers import AutoPipelineForInpainting
    except ImportError as error:
        raise ImportError(f"replacing objects from a prompt needs diffusers: {_EXTRA_HINT}") from error
    folder = inpaint_model_path(checkpoint)
    target = resolve_device(device)
    try:
        pipeline = AutoPipelineForInpainting.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{folder} is not a diffusers inpainting model folder (model_index.json with unet, vae, "
            f"text_encoder, tokenizer, scheduler): {error}"
        ) from error
    pipeline = pipeline.to(target)
    pipeline.set_progress_bar_config(disable=True)
    logger.info("loaded inpainting model %s on %s", folder, target)
    return pipeline


def _model_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) no larger than ``max_side`` on the long side, same aspect, both multiples of 8 (at least 8)."""
    scale = min(1.0, max_side / max(height, width))
    return max(8, int(height * scale / 8 + 0.5) * 8), max(8, int(width * scale / 8 + 0.5) * 8)


def replace_region(
    image: np.ndarray,
    mask: np.ndarray,
    prompt: str,
    *,
    settings: ReplaceSettings | None = None,
    pipeline: Any = None,
) -> np.ndarray:
    """Repaint ``mask`` ((H, W) bool) of ``image`` ((H, W, 3) uint8 RGB) as ``prompt``; (H, W, 3) uint8.

    The model runs at a multiple of 8 (long side ≤ ``settings.max_side``); its output is scaled back and
    pasted inside the mask only, so the rest of the image is unchanged.
    """
    import torch

    settings = settings or ReplaceSettings()
    pipeline = pipeline if pipeline is not None else load_inpaint_pipeline()
    height, width = mask.shape
    model_h, model_w = _model_size(height, width, settings.max_side)
    source = Image.fromarray(image).resize((model_w, model_h), Image.Resampling.BICUBIC)
    region = Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).resize(
        (model_w, model_h), Image.Resampling.NEAREST
    )
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    output = pipeline(
        prompt=prompt,
        negative_prompt=settings.negative_prompt,
        image=source,
        mask_image=region,
        height=model_h,
        width=model_w,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        generator=generator,
        output_type="np",
    )
    painted = np.clip(np.asarray(output.images[0]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    painted = np.asarray(Image.fromarray(painted).resize((width, height), Image.Resampling.BICUBIC))
    out = image.copy()
    out[mask] = painted[mask]
    return out
