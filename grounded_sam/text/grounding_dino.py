"""Grounding DINO through ``transformers``: phrases → boxes, each labelled with exactly one phrase.

:class:`PromptDetector` holds what every Grounding DINO backend shares (thresholds, long-list chunking,
phrase mapping, NMS); :class:`GroundingDinoDetector` runs the ``transformers`` model. The optional
``groundingdino-py`` backend lives in :mod:`grounded_sam.text.groundingdino_py_backend`.
"""

from __future__ import annotations

import inspect
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from grounded_sam.devices import Device, resolve_device
from grounded_sam.hf_folders import folder_or_repo, load_pretrained, transformers_classes
from grounded_sam.io import as_rgb_array
from grounded_sam.text.base import Detections, check_fraction
from grounded_sam.text.phrase_mapping import (
    Matches,
    PhraseScore,
    PromptChunk,
    concat_matches,
    decode_queries,
    plan_chunks,
    suppress,
)
from grounded_sam.text.prompts import check_phrases, model_text
from grounded_sam.weights import WeightsSpec, resolve_weights

if TYPE_CHECKING:
    from PIL import Image
    from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

logger = logging.getLogger(__name__)
MIN_TRANSFORMERS = "4.56"  # the project's floor (pyproject.toml); GroundingDino* arrived in 4.40


def snapshot_spec(repo_id: str) -> WeightsSpec:
    """The weights entry of a whole Hugging Face repository, kept locally in a folder named after it."""
    return WeightsSpec(filename=repo_id.rsplit("/", 1)[-1], source_format="hf", hf_repo_id=repo_id)


class PromptDetector(ABC):
    """Phrase handling shared by Grounding DINO backends; subclasses tokenize and run the network.

    Phrases go to the model in as few prompts as fit its text limit (usually 256 tokens); each box is
    labelled with the phrase whose own tokens score highest, boxes of the same phrase overlapping by more
    than ``nms_threshold`` IoU are suppressed, and the ``max_boxes`` best are kept.

    ``per_class=True`` sends one prompt per phrase instead: one forward pass per phrase (N times slower),
    but each phrase is judged alone, so similar classes do not compete for the same object and a long list
    cannot dilute the text features; scores are then less comparable across phrases and the model tends to
    find *something* for every phrase, so expect more false positives at the same thresholds.
    """

    def __init__(
        self,
        *,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        max_boxes: int = 100,
        nms_threshold: float | None = 0.8,
        per_class: bool = False,
        phrase_score: PhraseScore = "max",
    ) -> None:
        self.box_threshold = check_fraction("box_threshold", box_threshold)
        self.text_threshold = check_fraction("text_threshold", text_threshold)
        self.nms_threshold = None if nms_threshold is None else check_fraction("nms_threshold", nms_threshold)
        if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
            raise ValueError(f"max_boxes must be a positive integer, got {max_boxes!r}")
        if phrase_score not in ("max", "mean"):
            raise ValueError(f"phrase_score must be 'max' or 'mean', got {phrase_score!r}")
        self.max_boxes = max_boxes
        self.per_class = bool(per_class)
        self.phrase_score: PhraseScore = phrase_score

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""

    @property
    @abstractmethod
    def special_ids(self) -> tuple[int, int, int]:
        """Ids of ``[CLS]``, ``[SEP]`` and ``.``."""

    @property
    @abstractmethod
    def max_text_tokens(self) -> int:
        """The most tokens one prompt may hold, special tokens included."""

    @abstractmethod
    def prepare_image(self, image: np.ndarray) -> Any:
        """Network input for an (H, W, 3) uint8 image, computed once and reused by every prompt."""

    @abstractmethod
    def forward(self, pixels: Any, input_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, T) token logits and (Q, 4) normalised (cx, cy, w, h) boxes for one prompt."""

    def prompt_chunks(self, phrases: Sequence[str]) -> list[PromptChunk]:
        """The prompts :meth:`detect` sends for ``phrases``."""
        cls_id, sep_id, dot_id = self.special_ids
        return plan_chunks(
            [self.tokenize(model_text(phrase)) for phrase in phrases],
            cls_id=cls_id,
            sep_id=sep_id,
            dot_id=dot_id,
            max_tokens=self.max_text_tokens,
            per_class=self.per_class,
        )

    def detect(
        self,
        image: np.ndarray | Image.Image,
        phrases: str | Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Detections:
        """Boxes for ``phrases`` in an (H, W, 3) uint8 RGB image.

        Args:
            image: (H, W, 3) uint8 RGB array (or a PIL image).
            phrases: the phrases to find, used as given (``phrase_ids`` index this list); a single string
                is split with :func:`~grounded_sam.text.prompts.parse_prompt` first.
            box_threshold, text_threshold: override the detector's thresholds for this call.

        Returns:
            :class:`Detections` with (N, 4) XYXY boxes in image pixels, sorted by decreasing score.

        Example:
            >>> detector = build_detector("grounding_dino_tiny")  # doctest: +SKIP
            >>> found = detector.detect(image, "window. door")  # doctest: +SKIP
            >>> found.labels  # doctest: +SKIP
            ['door', 'window', 'window']
        """
        rgb = as_rgb_array(image)
        box_t = (
            self.box_threshold if box_threshold is None else check_fraction("box_threshold", box_threshold)
        )
        text_t = (
            self.text_threshold
            if text_threshold is None
            else check_fraction("text_threshold", text_threshold)
        )
        phrase_list = check_phrases(phrases)
        if not phrase_list:
            return Detections.empty()
        chunks = self.prompt_chunks(phrase_list)
        pixels = self.prepare_image(rgb)
        parts: list[Matches] = []
        for chunk in chunks:
            logits, boxes = self.forward(pixels, chunk.input_ids)
            parts.append(
                decode_queries(
                    logits,
                    boxes,
                    chunk,
                    rgb.shape[:2],
                    box_threshold=box_t,
                    text_threshold=text_t,
                    phrase_score=self.phrase_score,
                )
            )
        kept = suppress(concat_matches(parts), self.nms_threshold, self.max_boxes)
        return Detections(
            kept.boxes.cpu().numpy(), kept.scores.cpu().numpy(), kept.phrase_ids.cpu().numpy(), phrase_list
        )


class GroundingDinoDetector(PromptDetector):
    """Grounding DINO from ``transformers`` (``GroundingDinoForObjectDetection`` + its processor).

    See :class:`PromptDetector` for the thresholds, chunking and ``per_class``. Results are numpy on
    the CPU whatever ``device`` the model runs on. With ``accelerate=True`` (the default)
    :func:`grounded_sam.text.gdino_speed.accelerate` swaps faster deformable and fusion attention,
    encoder layers and Swin MLPs into ``model`` itself, in place (same parameters, outputs equal up to
    float rounding, ~2× faster on a CPU); pass ``False`` to leave the model as it is.

    Example:
        >>> detector = GroundingDinoDetector.from_pretrained(
        ...     "IDEA-Research/grounding-dino-tiny", box_threshold=0.35
        ... )  # doctest: +SKIP
        >>> detector.detect(image, ["traffic light", "car"]).labels  # doctest: +SKIP
    """

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        processor: GroundingDinoProcessor,
        device: Device = None,
        *,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        max_boxes: int = 100,
        nms_threshold: float | None = 0.8,
        per_class: bool = False,
        phrase_score: PhraseScore = "max",
        accelerate: bool = True,
    ) -> None:
        super().__init__(
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            max_boxes=max_boxes,
            nms_threshold=nms_threshold,
            per_class=per_class,
            phrase_score=phrase_score,
        )
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        if accelerate:
            from grounded_sam.text.gdino_speed import accelerate as swap_in_fast_paths

            swap_in_fast_paths(self.model)
        self.processor = processor
        self._special = _special_token_ids(processor.tokenizer)
        _warn_on_delimiter_mismatch(model, self._special)

    @classmethod
    def from_pretrained(
        cls, path_or_name: str | os.PathLike[str], *, device: Device = None, **options: Any
    ) -> GroundingDinoDetector:
        """Load model, tokenizer and image processor from one folder (or Hugging Face repo id), offline.

        A repo id such as ``"IDEA-Research/grounding-dino-tiny"`` is found through
        :func:`grounded_sam.weights.resolve_weights` (``$GROUNDED_SAM_HOME/grounding-dino-tiny``, then the
        Hugging Face cache or hub); once found, everything is read from that folder with
        ``local_files_only=True``, so nothing is fetched behind the caller's back. ``options`` are the
        keyword arguments of the constructor (thresholds, ``max_boxes``, ``per_class``, …).

        Raises:
            WeightsNotFoundError: no such folder, or it lacks the model or processor files.
        """
        processor_cls, model_cls = transformers_classes(
            "Grounding DINO", MIN_TRANSFORMERS, "GroundingDinoProcessor", "GroundingDinoForObjectDetection"
        )
        folder = folder_or_repo(
            path_or_name,
            "IDEA-Research/grounding-dino-tiny",
            "registered names go through build_detector()",
            lambda name: resolve_weights(name, snapshot_spec(name)),
        )
        processor, model = load_pretrained(
            folder,
            "Grounding DINO",
            "is not a complete Grounding DINO folder: it needs the model (config.json and weights), the "
            "tokenizer and the image processor files, as saved by save_pretrained or found in the Hugging "
            "Face repository",
            processor_cls,
            model_cls,
        )
        return cls(model, processor, resolve_device(device), **options)

    def tokenize(self, text: str) -> list[int]:
        return list(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def special_ids(self) -> tuple[int, int, int]:
        return self._special

    @property
    def max_text_tokens(self) -> int:
        config = self.model.config
        return min(config.max_text_len, config.text_config.max_position_embeddings)

    def prepare_image(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        inputs = self.processor.image_processor(
            images=image, input_data_format="channels_last", return_tensors="pt"
        )
        return {
            "pixel_values": inputs["pixel_values"].to(self.device, dtype=self.model.dtype),
            "pixel_mask": inputs["pixel_mask"].to(self.device),
        }

    @torch.inference_mode()
    def forward(
        self, pixels: dict[str, torch.Tensor], input_ids: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor([list(input_ids)], dtype=torch.long, device=self.device)
        outputs = self.model(
            **pixels, input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids)
        )
        return outputs.logits[0], outputs.pred_boxes[0]


def _special_token_ids(tokenizer: Any) -> tuple[int, int, int]:
    dot = tokenizer.convert_tokens_to_ids(".")
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, dot)
    if None in ids or dot == tokenizer.unk_token_id:
        raise ValueError(
            f"the tokenizer needs [CLS], [SEP] and '.' tokens for Grounding DINO prompts, got ids {ids}; "
            "load the tokenizer saved with the model"
        )
    return ids


def _warn_on_delimiter_mismatch(model: Any, special: tuple[int, int, int]) -> None:
    """``transformers`` hard-codes BERT's delimiter ids; another vocabulary silently breaks phrase masks."""
    known = getattr(getattr(model, "model", None), "special_tokens", None)
    if known is not None and not set(special) <= set(known.tolist()):
        logger.warning(
            "the tokenizer's [CLS]/[SEP]/'.' ids %s are not the model's phrase delimiters %s; phrases will "
            "not be separated inside the text encoder",
            special,
            known.tolist(),
        )


def reference_post_process(
    processor: GroundingDinoProcessor,
    outputs: Any,
    input_ids: torch.Tensor,
    image_size: tuple[int, int],
    *,
    box_threshold: float,
    text_threshold: float,
) -> dict[str, Any]:
    """``transformers``' own grounded post-processing of one image, under our threshold names.

    ``transformers`` renamed ``box_threshold`` to ``threshold`` in 4.55; this passes whichever the
    installed version takes. Useful to compare :class:`GroundingDinoDetector` with the reference.
    Returns its result dict for the image (``scores``, ``boxes`` XYXY pixels, ``text_labels``).
    """
    method = processor.post_process_grounded_object_detection
    box_name = "threshold" if "threshold" in inspect.signature(method).parameters else "box_threshold"
    results = method(
        outputs,
        input_ids=input_ids,
        text_threshold=text_threshold,
        target_sizes=[tuple(image_size)],
        **{box_name: box_threshold},
    )
    return results[0]
