"""The original Grounding DINO code (``groundingdino-py``) as a detector, with our phrase mapping.

Optional: ``pip install "grounded_sam[gdino]"``. The package is imported only when a model is loaded.
Its text encoder loads ``bert-base-uncased`` by name when the model is built; pass ``text_encoder=`` a
local copy of that folder to stay offline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from grounded_sam.devices import Device, resolve_device
from grounded_sam.text.grounding_dino import PromptDetector

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    'the groundingdino-py backend needs its optional dependency: pip install "grounded_sam[gdino]"'
)
# ImageNet statistics, which the original model was trained with.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def import_groundingdino() -> Any:
    """The ``groundingdino`` package, or an ImportError that says how to install it."""
    try:
        import groundingdino
        import groundingdino.models
        import groundingdino.util.slconfig
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return groundingdino


def resize_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(height, width) with the short side at ``min_size``, less if the long side passes ``max_size``."""
    short, long = min(height, width), max(height, width)
    scale = min(min_size / short, max_size / long)
    return max(1, round(height * scale)), max(1, round(width * scale))


class GroundingDinoPy(PromptDetector):
    """A ``groundingdino-py`` model behind the :class:`~grounded_sam.text.base.Detector` protocol.

    Thresholds, chunking and phrase mapping are those of :class:`PromptDetector`; the model is any
    module called as ``model(images (1, 3, H, W), captions=[str])`` returning ``pred_logits`` (1, Q, T)
    and ``pred_boxes`` (1, Q, 4) normalised (cx, cy, w, h), with its BERT tokenizer as ``model.tokenizer``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: Device = None,
        *,
        min_size: int = 800,
        max_size: int = 1333,
        max_text_tokens: int = 256,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.tokenizer = model.tokenizer
        self.min_size, self.max_size = min_size, max_size
        self._max_text_tokens = max_text_tokens
        dot = self.tokenizer.convert_tokens_to_ids(".")
        self._special = (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, dot)

    @classmethod
    def from_files(
        cls,
        config_path: str | os.PathLike[str],
        checkpoint: str | os.PathLike[str],
        *,
        text_encoder: str | os.PathLike[str] | None = None,
        device: Device = None,
        **options: Any,
    ) -> GroundingDinoPy:
        """Build the model an original config file describes, then load its weights (mismatches logged).

        Args:
            config_path: the model's Python config file from the GroundingDINO repository.
            checkpoint: the matching ``.pth`` (e.g. ``groundingdino_swint_ogc.pth``).
            text_encoder: a local ``bert-base-uncased`` folder; without it the package fetches one by name.
            options: thresholds and settings of :class:`PromptDetector`.
        """
        package = import_groundingdino()
        device = resolve_device(device)
        args = package.util.slconfig.SLConfig.fromfile(os.fspath(config_path))
        args.device = str(device)
        if text_encoder is not None:
            args.text_encoder_type = os.fspath(text_encoder)
        model = package.models.build_model(args)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        # Checkpoints were saved from DistributedDataParallel, whose keys start with "module.".
        result = model.load_state_dict(
            {key.removeprefix("module."): value for key, value in state.items()}, strict=False
        )
        if result.missing_keys or result.unexpected_keys:
            logger.warning(
                "%s: %d missing keys (%s…), %d unexpected keys (%s…)",
                checkpoint,
                len(result.missing_keys),
                result.missing_keys[:3],
                len(result.unexpected_keys),
                result.unexpected_keys[:3],
            )
        return cls(model, device, max_text_tokens=int(getattr(args, "max_text_len", 256)), **options)

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def special_ids(self) -> tuple[int, int, int]:
        return self._special

    @property
    def max_text_tokens(self) -> int:
        return self._max_text_tokens

    def prepare_image(self, image: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float() / 255
        size = resize_shape(image.shape[0], image.shape[1], self.min_size, self.max_size)
        pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = pixels.new_tensor(_MEAN)[:, None, None]
        std = pixels.new_tensor(_STD)[:, None, None]
        return (pixels - mean) / std

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor, input_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # The model tokenizes captions itself, so the caption must re-tokenize to exactly our ids.
        caption = self.tokenizer.decode(list(input_ids[1:-1]))
        if list(self.tokenizer(caption)["input_ids"]) != list(input_ids):
            raise RuntimeError(
                f"the caption {caption!r} does not re-tokenize to the planned prompt; the phrase spans "
                "would be wrong. Use the tokenizer the model was built with."
            )
        outputs = self.model(pixels, captions=[caption])
        return outputs["pred_logits"][0], outputs["pred_boxes"][0]
