"""The embedded demo model: text → masks out of the box, with no downloaded weights.

Two small models trained here on the synthetic shape scenes ship in ``grounded_sam/assets/``:
``demo_sam`` (a SAM of our family at 256 px) and ``demo_clip`` (a small open_clip CLIP). The text route
is CLIP over segment-everything: SAM proposes every object from a point grid, CLIP names each proposal
against the user's phrases (plus the demo vocabulary and "background"), and the boxes of the matching
proposals are decoded again by SAM as box prompts, as in the Grounding DINO route (small boxes in a
zoomed window, see :class:`~grounded_sam.sam.zoom.ZoomPredictor`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms

from grounded_sam.demo_filters import boundary_contrast, parts_of_wholes
from grounded_sam.devices import Device, PrecisionRequest, resolve_device
from grounded_sam.ops.boxes import masks_to_boxes
from grounded_sam.ops.masks import drop_parts
from grounded_sam.pipeline import GroundedSAM
from grounded_sam.sam.build import build_sam
from grounded_sam.sam.everything import EverythingConfig, MaskGenerator
from grounded_sam.sam.predictor import SamPredictor
from grounded_sam.sam.zoom import ZoomConfig, ZoomPredictor
from grounded_sam.text.base import Detections, Labeler
from grounded_sam.text.demo_clip import (
    demo_clip_labeler,
    findable,
    phrase_scores,
    phrase_vocabulary,
    warn_untaught,
)

DEMO_SAM = "demo_sam"

# Proposals for the demo scenes: a 24 x 24 grid with loose filters, so that almost every object has a
# proposal (tuned on synthetic scenes of seed 2000; the measurements are in the git history). The extra
# proposals are mostly parts and merges of objects, which CLIP names "background" or the part rule drops.
# The grid is decoded in four batches, which a CPU decodes side by side with one thread each (see
# grounded_sam.sam.everything.batch_workers): the decoder's many mid-sized ops then wait at no thread
# barrier, which on a busy machine made one 576-point batch on two threads several times slower than on one.
DEMO_EVERYTHING = EverythingConfig(
    points_per_side=24,
    points_per_batch=144,
    pred_iou_thresh=0.3,
    stability_score_thresh=0.4,
    box_nms_thresh=0.7,
)

# What `grounded-sam everything` (and the app's and server's segment everything) shows on the demo model:
# the proposal filters above are for recall and leave parts and merges for CLIP to weed out (46 masks a
# 4-object scene, seed 1000); these keep 7.3 a scene and still find 11 of 12 objects at mask IoU >= 0.7
# (IoU 0.88 / stability 0.95, SAM's defaults, keep 1.7 and find 5).
DEMO_EVERYTHING_OUTPUT = dataclasses.replace(
    DEMO_EVERYTHING, pred_iou_thresh=0.6, stability_score_thresh=0.8, box_nms_thresh=0.5
)

# Small boxes are decoded again in a window three times their size (see grounded_sam.sam.zoom).
DEMO_ZOOM = ZoomConfig(factor=3.0, max_box_fraction=0.25)

# CLIP names each proposal twice (its grid mask and SAM's mask of its box) in four quarter turns; a
# phrase's score is the lower of the two masks' scores (each the mean over the turns), and a box that is a
# part of a more confident box of its phrase is dropped. The box threshold is the highest one on the
# tuning scenes' recall plateau (the goal is recall at a precision floor of 0.90); the precision / recall
# of each setting tried are in the git history of this file.
DEMO_CLIP_ROTATIONS = 4
# Proposals and CLIP's naming work on the image scaled to this longer side (when larger), the final masks
# at full resolution from the boxes found: segment everything keeps a mask per proposal, so its memory
# grew with the pixels (about 0.9 GB per megapixel; a 12 MP photo needed 14 GB). The demo SAM sees 256
# pixels and CLIP 64-pixel crops, so a larger working image adds memory, not detail.
DEMO_WORK_SIDE = 640
DEMO_BOX_THRESHOLD = 0.3
DEMO_PART_THRESHOLD = 0.5
# What is no object (see grounded_sam.demo_filters): a mask whose outline follows colour edges of less than
# this mean strength (levels per pixel; a patch of a smooth background: gradients 0.3, photo-like
# backgrounds up to 2.4, noise up to 4.8; the outlines of the 294 objects of 100 held-out scenes 17.7 and
# up), and a mask 80 % inside a larger one of its colour that CLIP names a shape with at least this
# probability (star arms as "triangle", a ring's arcs as "green shape"). Chosen on 30 held-out scenes
# (seed 1000): broad phrases precision / recall 0.718 / 0.779 -> 0.801 / 0.805, colour + shape pairs
# 0.913 / 0.884 -> 0.955 / 0.895; an object-free gradient photo: 10 detections -> 0.
DEMO_MIN_CONTRAST = 6.0
DEMO_WHOLE_CONFIDENCE = 0.8
# A final mask 80 % inside a larger final mask of its phrase (a part's box drawn as the whole) is dropped.
DEMO_PART_OVERLAP = 0.8


class EverythingTextDetector:
    """A :class:`~grounded_sam.text.base.Detector` made of segment-everything and a CLIP labeler.

    ``box_threshold`` is the minimum CLIP probability of a phrase for a proposal to be one of its
    boxes (default 0.4; see :func:`~grounded_sam.text.demo_clip.phrase_scores`);
    ``text_threshold`` is not used (CLIP names whole phrases). Boxes of one phrase overlapping by more
    than ``nms_threshold`` (IoU) are suppressed, the more confident kept.

    With ``refine`` (the default), CLIP names the mask SAM draws for each proposal's box rather than the
    grid proposal itself: the masks it names are then the ones the pipeline returns, and parts or
    ragged proposals are less often named as something else. With ``name_proposals`` as well, CLIP
    also names the grid proposal and a phrase's score is the lower of its scores on the two masks: both
    must name it.

    A box whose mask shares at least ``part_threshold`` of the smaller mask's area with the mask of a more
    confident box of the same phrase (a part of that object, or a region around it) is dropped
    (``None``: none is; see :func:`~grounded_sam.ops.masks.drop_parts`).

    A mask whose inner and outer rims differ in colour by less than ``min_contrast`` (a patch of a
    smooth background, see :func:`~grounded_sam.demo_filters.boundary_contrast`) or that is a part of a
    larger mask CLIP confidently names an object of its colour and another shape (at least
    ``whole_confidence``, see :func:`~grounded_sam.demo_filters.parts_of_wholes`) is no box of any phrase
    (``None``: no such rule).

    An image whose longer side exceeds ``work_side`` is searched at that size (``None``: at its own);
    the boxes come back in the input's pixels, so memory stays bounded on large photos.
    ``everything_config``: the settings segment everything is shown with on this model (the app's
    Everything tab), when they differ from the proposals' recall-tuned ones.
    """

    def __init__(
        self,
        generator: MaskGenerator,
        labeler: Labeler,
        box_threshold: float = 0.4,
        nms_threshold: float = 0.5,
        refine: bool = True,
        name_proposals: bool = False,
        part_threshold: float | None = None,
        work_side: int | None = DEMO_WORK_SIDE,
        min_contrast: float | None = None,
        whole_confidence: float | None = None,
        everything_config: EverythingConfig | None = None,
    ) -> None:
        self.generator = generator
        self.work_side = work_side
        self.labeler = labeler
        self.box_threshold = box_threshold
        self.nms_threshold = nms_threshold
        self.refine = refine
        self.name_proposals = name_proposals
        self.part_threshold = part_threshold
        self.min_contrast = min_contrast
        self.whole_confidence = whole_confidence
        self.everything_config = everything_config

    def detect(
        self,
        image: np.ndarray,
        phrases: Sequence[str],
        *,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
    ) -> Detections:
        """Boxes of the proposals CLIP finds likely enough to be one of ``phrases`` (see
        :func:`~grounded_sam.text.demo_clip.phrase_scores`); a proposal may be a box of several phrases."""
        phrases = list(phrases)
        if not phrases:
            return Detections.empty()
        warn_untaught(phrases, stacklevel=2)
        if not any(findable(phrase) for phrase in phrases):
            return Detections.empty(phrases)
        threshold = self.box_threshold if box_threshold is None else box_threshold
        small, scale = downscale(image, self.work_side)
        found = self._detect(small, phrases, threshold)
        return Detections(found.boxes * scale, found.scores, found.phrase_ids, found.phrases)

    def _detect(self, image: np.ndarray, phrases: list[str], threshold: float) -> Detections:
        """:meth:`detect` on an image of the working size."""
        proposals = self.generator.generate_result(image)
        if len(proposals) == 0:
            return Detections.empty(phrases)
        masks, boxes = (
            self._box_masks(image, proposals.boxes) if self.refine else (proposals.masks, proposals.boxes)
        )
        classes = phrase_vocabulary(phrases)
        likely = self._phrase_scores(image, masks, classes, phrases)
        if self.refine and self.name_proposals:
            likely = self._lower_to_proposals(image, proposals.masks, likely, classes, phrases, threshold)
        rows, ids = np.nonzero(likely >= threshold)
        boxes, scores = boxes[rows], likely[rows, ids]
        # Parts and wholes of one object often get the same name: keep the best box per object.
        kept = batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(ids), self.nms_threshold
        ).numpy()
        if self.part_threshold is not None and len(kept) > 1:
            parts = drop_parts(masks[rows[kept]], scores[kept], ids[kept], self.part_threshold)
            kept = kept[parts]
        return Detections(boxes[kept], scores[kept], ids[kept], tuple(phrases))

    def _phrase_scores(
        self, image: np.ndarray, masks: np.ndarray, classes: list[str], phrases: list[str]
    ) -> np.ndarray:
        """(N, P) CLIP's score of each phrase for each of the (N, H, W) masks (see
        :func:`~grounded_sam.text.demo_clip.phrase_scores`); 0 for the masks that are no objects: too
        little rim contrast (never shown to CLIP) or parts of a confidently named whole."""
        likely = np.zeros((len(masks), len(phrases)), dtype=np.float32)
        shown = self._contrasted(image, masks)
        if len(shown) == 0:
            return likely
        named = self.labeler.label(image, masks[shown], classes)
        likely[shown] = phrase_scores(named, phrases)
        if self.whole_confidence is not None and named.probabilities is not None:
            confident = self.whole_confidence
            likely[
                shown[parts_of_wholes(masks[shown], named.probabilities, classes, confident=confident)]
            ] = 0
        return likely

    def _lower_to_proposals(
        self,
        image: np.ndarray,
        proposals: np.ndarray,
        likely: np.ndarray,
        classes: list[str],
        phrases: list[str],
        threshold: float,
    ) -> np.ndarray:
        """``likely`` where the (N, H, W) grid ``proposals`` score their phrases at least as high, else
        their scores: both masks must name a phrase. Only the rows that can reach ``threshold`` are named."""
        asked = np.flatnonzero((likely >= threshold).any(axis=1))
        raw = np.zeros_like(likely)
        if len(asked):
            raw[asked] = phrase_scores(self.labeler.label(image, proposals[asked], classes), phrases)
        return np.minimum(likely, raw)

    def _contrasted(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Indices of the (N, H, W) ``masks`` whose rims differ in colour by at least ``min_contrast``
        (all of them when it is ``None``; see :func:`~grounded_sam.demo_filters.boundary_contrast`)."""
        if self.min_contrast is None:
            return np.arange(len(masks))
        return np.flatnonzero(boundary_contrast(image, masks) >= self.min_contrast)

    def _box_masks(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SAM's masks for the (N, 4) proposal boxes and their own boxes; an empty mask keeps its box."""
        predictor = self.generator.predictor
        predictor.set_image(image)  # the generator's embedding of this image, when it kept it
        # The whole image's masks, even from a ZoomPredictor: zooming every small proposal costs an
        # encoding each and makes CLIP name more false positives (tuning scenes: precision 0.92, not 0.96).
        masks = SamPredictor.predict_boxes(predictor, boxes, multimask_output=False)[0][:, 0]
        empty = ~masks.reshape(len(masks), -1).any(axis=1)
        return masks, np.where(empty[:, None], boxes, masks_to_boxes(masks)).astype(boxes.dtype)


def downscale(image: np.ndarray, side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) ``image`` resized so that its longer side is at most ``side``, and the (4,) float32 XYXY
    factors that take boxes on it back to ``image``'s pixels (ones when it is returned as it is)."""
    height, width = image.shape[:2]
    if side is None or max(height, width) <= side:
        return image, np.ones(4, dtype=np.float32)
    ratio = side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    factors = np.array([width / size[0], height / size[1]] * 2, dtype=np.float32)
    return small, factors


def build_demo_pipeline(
    device: Device = None, box_threshold: float = DEMO_BOX_THRESHOLD, precision: PrecisionRequest = "float32"
) -> GroundedSAM:
    """The pipeline :func:`grounded_sam.predict` uses by default: the two shipped demo models
    (SAM in ``precision``, see :class:`~grounded_sam.sam.predictor.SamPredictor`).

    Example:
        >>> pipeline = build_demo_pipeline()
        >>> result = pipeline.predict(image, "red circle")  # doctest: +SKIP
    """
    torch_device = resolve_device(device)
    sam = build_sam(DEMO_SAM, device=torch_device)
    predictor = ZoomPredictor(sam, precision, zoom=DEMO_ZOOM)
    # One embedding per image for the proposals and the box decoding.
    generator = MaskGenerator(sam, config=DEMO_EVERYTHING, predictor=predictor)
    labeler = demo_clip_labeler(device=torch_device, rotations=DEMO_CLIP_ROTATIONS)
    detector = EverythingTextDetector(
        generator,
        labeler,
        box_threshold,
        name_proposals=True,
        part_threshold=DEMO_PART_THRESHOLD,
        min_contrast=DEMO_MIN_CONTRAST,
        whole_confidence=DEMO_WHOLE_CONFIDENCE,
        everything_config=DEMO_EVERYTHING_OUTPUT,
    )
    return GroundedSAM(detector, predictor, part_overlap=DEMO_PART_OVERLAP)
