"""SAM 3 through ``transformers``: phrases → instance masks, boxes and scores, with no separate SAM stage.

SAM 3 (Segment Anything with Concepts) finds every instance of a short noun phrase and segments it. One
image encoding is shared by all phrases of a call; SAM 3 judges one concept per prompt, so each phrase is
its own prompt (several phrases go through the detection and mask heads as one batch) and every object is
labelled with exactly the phrase that found it.

Weights: the Hugging Face repository ``facebook/sam3`` (gated), kept as a folder; see :data:`GATED_NOTE`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torchvision.ops import batched_nms

from grounded_sam.devices import Device, resolve_device
from grounded_sam.hf_folders import config_model_type, folder_or_repo, load_pretrained, transformers_classes
from grounded_sam.io import as_rgb_array
from grounded_sam.text.base import Detections, Segments, check_fraction
from grounded_sam.text.grounding_dino import snapshot_spec
from grounded_sam.text.prompts import check_phrases
from grounded_sam.weights import HOME_ENV, WeightsNotFoundError, WeightsSpec, resolve_weights

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

SAM3_REPO = "facebook/sam3"
SAM3_WEIGHTS = snapshot_spec(SAM3_REPO)
MIN_TRANSFORMERS = "5.0"
GATED_NOTE = (
    f"SAM 3's weights are gated on the Hugging Face Hub: accept the licence at "
    f"https://huggingface.co/{SAM3_REPO}, log in with `hf auth login`, then either let it download "
    f"(online) or fetch the folder with `hf download {SAM3_REPO} --local-dir "
    f"${HOME_ENV}/{SAM3_WEIGHTS.filename}` (or pass checkpoint= with the downloaded folder)"
)
_SAM3_MODEL_TYPES = frozenset({"sam3", "sam3_video"})
_UPSAMPLE_CHUNK = 16  # masks upsampled at once: bounds the (chunk, H, W) float buffer on large images


def sam3_classes() -> tuple[Any, Any]:
    """``(Sam3Model, Sam3Processor)`` from ``transformers``.

    Raises:
        ImportError: the installed ``transformers`` predates SAM 3; the message names the version needed.
    """
    return transformers_classes("SAM 3", MIN_TRANSFORMERS, "Sam3Model", "Sam3Processor")


def resolve_sam3_weights(
    name: str = "sam3",
    checkpoint: str | os.PathLike[str] | None = None,
    spec: WeightsSpec = SAM3_WEIGHTS,
) -> Path:
    """The SAM 3 folder, found like every other model's weights; a missing one explains the gated access."""
    try:
        return resolve_weights(name, spec, checkpoint)
    except WeightsNotFoundError as error:
        if checkpoint is not None:
            raise
        raise WeightsNotFoundError(f"{error}. {GATED_NOTE}") from error


def is_sam3_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a saved SAM 3 model: its ``config.json`` names a SAM 3 model type."""
    return config_model_type(path) in _SAM3_MODEL_TYPES


class Sam3Objects(NamedTuple):
    """Objects kept for one image, masks still at the model's low resolution.

    Attributes:
        boxes: (K, 4) float32 XYXY in image pixels, clipped to the image.
        scores: (K,) float32 instance confidence (query score × presence score), decreasing.
        phrase_ids: (K,) int64 index of each object's phrase.
        mask_logits: (K, h, w) float32 mask logits over the whole (resized) image.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    phrase_ids: torch.Tensor
    mask_logits: torch.Tensor


class Sam3Segmenter:
    """SAM 3 (``transformers``' ``Sam3Model`` + ``Sam3Processor``) as a text segmenter and a detector.

    Args:
        model, processor: a loaded ``Sam3Model`` and its ``Sam3Processor``.
        device: where to run (default: the model's device).
        box_threshold: instance confidence to keep an object, ``sigmoid(query logit) × sigmoid(presence
            logit)`` (the ``threshold`` of transformers' post-processing; SAM 3's own demo default 0.5).
        mask_threshold: probability above which a mask pixel is set (after upsampling the probabilities).
        max_boxes: the most objects returned per image, best first.
        nms_threshold: IoU above which a box suppresses a lower-scored box of the same phrase; ``None``
            (default) keeps all: SAM 3 is trained with one-to-one matching and rarely duplicates.
        phrase_batch: phrases decoded per forward pass against the shared image encoding (memory vs. speed).

    ``text_threshold`` is accepted by :meth:`segment` and :meth:`detect` for the shared protocols and
    ignored: SAM 3 scores whole phrases, there are no per-token scores to threshold.

    Example:
        >>> segmenter = Sam3Segmenter.from_pretrained("facebook/sam3", box_threshold=0.4)  # doctest: +SKIP
        >>> found = segmenter.segment(image, ["person", "bicycle"])  # doctest: +SKIP
        >>> found.detections.labels, found.masks.shape  # doctest: +SKIP
        (['person', 'bicycle'], (2, 480, 640))
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        device: Device = None,
        *,
        box_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        max_boxes: int = 100,
        nms_threshold: float | None = None,
        phrase_batch: int = 4,
    ) -> None:
        self.box_threshold = check_fraction("box_threshold", box_threshold)
        self.mask_threshold = check_fraction("mask_threshold", mask_threshold)
        self.nms_threshold = None if nms_threshold is None else check_fraction("nms_threshold", nms_threshold)
        for name, value in (("max_boxes", max_boxes), ("phrase_batch", phrase_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.max_boxes = max_boxes
        self.phrase_batch = phrase_batch
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(
        cls, path_or_name: str | os.PathLike[str] = SAM3_REPO, *, device: Device = None, **options: Any
    ) -> Sam3Segmenter:
        """Load model, tokenizer and image processor from one folder (or the Hub repo id), offline.

        A repo id such as ``"facebook/sam3"`` is found through :func:`resolve_sam3_weights`
        (``$GROUNDED_SAM_HOME/sam3``, then the Hugging Face cache or hub); everything is then read from
        that folder with ``local_files_only=True``. ``options`` are the constructor's keyword arguments.

        Raises:
            ImportError: ``transformers`` is too old for SAM 3.
            WeightsNotFoundError: no such folder, or it lacks the model or processor files.
        """
        model_cls, processor_cls = sam3_classes()
        folder = folder_or_repo(
            path_or_name,
            SAM3_REPO,
            "the registered name goes through build_detector('sam3')",
            lambda name: resolve_sam3_weights(name, spec=snapshot_spec(name)),
        )
        processor, model = load_pretrained(
            folder,
            "SAM 3",
            "is not a complete SAM 3 folder: it needs the model (config.json and weights), the tokenizer and "
            f"the image processor files of the Hugging Face repository {SAM3_REPO!r}",
            processor_cls,
            model_cls,
            note=f". {GATED_NOTE}",
        )
        return cls(model, processor, resolve_device(device), **options)

    def segment(
        self,
        image: np.ndarray | Image.Image,
        phrases: str | Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Segments:
        """Objects for ``phrases`` in an image, each with its mask.

        Args:
            image: (H, W, 3) uint8 RGB array (or a PIL image).
            phrases: the phrases to find, used as given (``phrase_ids`` index this list); a single string
                is split with :func:`~grounded_sam.text.prompts.parse_prompt` first.
            box_threshold: overrides the instance confidence threshold for this call.
            text_threshold: ignored (SAM 3 has no per-token scores).

        Returns:
            :class:`Segments`: (N, 4) XYXY pixel boxes sorted by decreasing score, (N, H, W) bool masks at
            the image's size; ``mask_scores`` are the instance scores (SAM 3 predicts no separate mask
            quality). Empty (N = 0) when no phrase is given or nothing is found.
        """
        rgb = as_rgb_array(image)
        phrase_list, found = self.find(rgb, phrases, box_threshold=box_threshold)
        detections = self._detections(found, phrase_list)
        masks = upsample_masks(found.mask_logits, rgb.shape[:2], self.mask_threshold)
        return Segments(detections, masks, detections.scores)

    def detect(
        self,
        image: np.ndarray | Image.Image,
        phrases: str | Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Detections:
        """The boxes of :meth:`segment` alone (no mask upsampling), e.g. to prompt another SAM."""
        rgb = as_rgb_array(image)
        phrase_list, found = self.find(rgb, phrases, box_threshold=box_threshold)
        return self._detections(found, phrase_list)

    def find(
        self, image: np.ndarray, phrases: str | Sequence[str], *, box_threshold: float | None = None
    ) -> tuple[list[str], Sam3Objects]:
        """The phrase list and the objects kept (threshold, optional NMS, ``max_boxes``), masks low-res.

        ``image`` is an (H, W, 3) uint8 RGB array; it is encoded once for all phrases.
        """
        threshold = (
            self.box_threshold if box_threshold is None else check_fraction("box_threshold", box_threshold)
        )
        phrase_list = check_phrases(phrases)
        if not phrase_list:
            return phrase_list, self._no_objects()
        height, width = image.shape[:2]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        vision = self.encode_image(image)
        parts: list[Sam3Objects] = []
        for start in range(0, len(phrase_list), self.phrase_batch):
            texts = phrase_list[start : start + self.phrase_batch]
            scores, boxes, mask_logits = self.decode(vision, texts)
            batch_ids, query_ids = torch.nonzero(scores > threshold, as_tuple=True)
            pixel_boxes = boxes[batch_ids, query_ids] * scale
            parts.append(
                Sam3Objects(
                    torch.minimum(pixel_boxes.clamp(min=0), scale),
                    scores[batch_ids, query_ids],
                    batch_ids + start,
                    mask_logits[batch_ids, query_ids],
                )
            )
        kept = Sam3Objects(*(torch.cat(column) for column in zip(*parts, strict=True)))
        return phrase_list, self._best(kept)

    @torch.inference_mode()
    def encode_image(self, image: np.ndarray) -> Any:
        """SAM 3's vision features (backbone + FPN) of an (H, W, 3) uint8 RGB image, batch of one."""
        if not image.flags.writeable:  # e.g. decoded images; torch warns on read-only buffers
            image = image.copy()
        inputs = self.processor.image_processor(
            images=image, input_data_format="channels_last", return_tensors="pt"
        )
        pixels = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        return self.model.get_vision_features(pixel_values=pixels)

    @torch.inference_mode()
    def decode(self, vision: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward of the text, detection and mask heads for ``texts`` against encoded ``vision``.

        Returns, on the CPU in float32: (B, Q) instance scores, (B, Q, 4) XYXY boxes normalised to [0, 1]
        (not clipped) and (B, Q, h, w) mask logits, for B = ``len(texts)`` and SAM 3's Q queries.
        """
        tokens = self.processor.tokenizer(
            list(texts),
            padding="max_length",
            max_length=self.max_text_tokens,
            truncation=True,
            return_tensors="pt",
        )
        count = len(texts)
        # The heads need a batch dimension matching the text; expanded views share the one encoding.
        shared = type(vision)(
            last_hidden_state=vision.last_hidden_state,
            fpn_hidden_states=tuple(f.expand(count, *f.shape[1:]) for f in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(f.expand(count, *f.shape[1:]) for f in vision.fpn_position_encoding),
        )
        outputs = self.model(
            vision_embeds=shared,
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
        )
        scores = outputs.pred_logits.float().sigmoid()
        if outputs.presence_logits is not None:
            scores = scores * outputs.presence_logits.float().sigmoid()
        return scores.cpu(), outputs.pred_boxes.float().cpu(), outputs.pred_masks.float().cpu()

    def _best(self, found: Sam3Objects) -> Sam3Objects:
        if self.nms_threshold is None:
            order = found.scores.argsort(descending=True, stable=True)
        else:
            order = batched_nms(found.boxes, found.scores, found.phrase_ids, self.nms_threshold)
        order = order[: self.max_boxes]
        return Sam3Objects(*(column[order] for column in found))

    @staticmethod
    def _no_objects() -> Sam3Objects:
        return Sam3Objects(
            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 1, 1)
        )

    @staticmethod
    def _detections(found: Sam3Objects, phrases: Sequence[str]) -> Detections:
        return Detections(found.boxes.numpy(), found.scores.numpy(), found.phrase_ids.numpy(), tuple(phrases))


def upsample_masks(mask_logits: torch.Tensor, size: tuple[int, int], threshold: float) -> np.ndarray:
    """(K, h, w) logits → (K, H, W) bool masks: probabilities resized bilinearly, then ``> threshold``.

    Probabilities (not logits) are resized, as SAM 3's reference post-processing does, so that the same
    ``threshold`` gives the same pixels.
    """
    height, width = size
    masks = np.zeros((mask_logits.shape[0], height, width), dtype=bool)
    for start in range(0, mask_logits.shape[0], _UPSAMPLE_CHUNK):
        chunk = mask_logits[start : start + _UPSAMPLE_CHUNK].sigmoid()[None]
        resized = torch.nn.functional.interpolate(
            chunk, size=(height, width), mode="bilinear", align_corners=False
        )
        masks[start : start + _UPSAMPLE_CHUNK] = (resized[0] > threshold).numpy()
    return masks
