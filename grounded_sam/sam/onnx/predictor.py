"""``SamPredictor``'s interface on ONNX Runtime: an exported folder instead of a PyTorch model.

Pre-processing (resize with Pillow, normalise, pad) and prompt validation are the PyTorch predictor's own
code; the network and the mask post-processing run in ONNX Runtime (``encoder.onnx``, ``decoder.onnx``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from grounded_sam.sam.base_predictor import PromptPredictor, TorchPrediction, prompt_count
from grounded_sam.sam.onnx.config import DECODER_INPUTS, ENCODER_INPUT, OnnxModelConfig
from grounded_sam.sam.predictor import ImageEmbedding
from grounded_sam.sam.transforms import normalize_and_pad, resize_longest_side, scale_coords

PAD_POINT_LABEL = -1.0
BOX_LABELS = (2.0, 3.0)
CPU = "CPUExecutionProvider"


def default_providers() -> list[str]:
    """ONNX Runtime's available execution providers in its order of preference, the CPU last."""
    import onnxruntime as ort

    available = [name for name in ort.get_available_providers() if name != CPU]
    return [*available, CPU]


class OnnxSamPredictor(PromptPredictor):
    """Embed an image once with ``encoder.onnx``; decode point, box and mask prompts with ``decoder.onnx``.

    Same methods and results as :class:`~grounded_sam.sam.SamPredictor` (``set_image``, ``predict``,
    ``predict_boxes`` with N boxes, ``predict_torch``), so ``GroundedSAM(detector, OnnxSamPredictor(dir))``
    works. Boxes are decoded one ONNX run each (the official decoder contract has batch 1).

    Args:
        model_dir: a folder written by :func:`~grounded_sam.sam.onnx.export_onnx` (``grounded-sam
            export-onnx``); its decoder must return every mask (exported without ``--return-single-mask``).
        providers: ONNX Runtime execution providers in order; default: the best available, the CPU last.
        precision: ``"float32"``, or ``"int8"`` for the quantized files (exported with ``--quantize``).

    Example:
        >>> predictor = OnnxSamPredictor("exported/sam_vit_b")  # doctest: +SKIP
        >>> predictor.set_image("street.jpg")  # doctest: +SKIP
        >>> masks, scores, logits = predictor.predict(box=np.array([10, 20, 200, 180]))  # doctest: +SKIP
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        providers: list[str] | None = None,
        precision: Literal["float32", "int8"] = "float32",
    ) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        self.config = OnnxModelConfig.load(self.model_dir)
        if self.config.return_single_mask:
            raise ValueError(
                f"{model_dir}'s decoder returns a single mask per prompt; OnnxSamPredictor needs every mask: "
                "export again without --return-single-mask"
            )
        if precision not in ("float32", "int8"):
            raise ValueError(f"precision must be 'float32' or 'int8', got {precision!r}")
        suffix = "" if precision == "float32" else "_int8"
        self.providers = list(providers) if providers else default_providers()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: not the optimizer's notes on nodes it cannot fold
        self.encoder, self.decoder = (
            ort.InferenceSession(
                str(self.config.file(self.model_dir, role + suffix)), options, providers=self.providers
            )
            for role in ("encoder", "decoder")
        )
        self._mean = torch.tensor(self.config.pixel_mean).view(-1, 1, 1)
        self._std = torch.tensor(self.config.pixel_std).view(-1, 1, 1)
        self.model = None
        self._embedding: ImageEmbedding | None = None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def get_image_embedding(self) -> torch.Tensor:
        """The (1, C, E, E) embedding of the current image."""
        return self.embedding.features

    def _embed(self, pixels: np.ndarray, digest: str) -> None:
        resized = resize_longest_side(pixels, self.image_size)
        image = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
        encoder_input = normalize_and_pad(image, self._mean, self._std, self.image_size)
        (features,) = self.encoder.run(None, {ENCODER_INPUT: encoder_input.numpy()})
        self._embedding = ImageEmbedding(
            features=torch.from_numpy(features),
            original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
            input_size=(int(resized.shape[0]), int(resized.shape[1])),
            image_digest=digest,
        )

    def _to_input_frame(self, xy: torch.Tensor) -> torch.Tensor:
        return scale_coords(xy, self.original_size, self.image_size)

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> TorchPrediction:
        """Prompts in the resized-input frame (as :meth:`SamPredictor.predict_torch`) → masks (N, C, H, W),
        IoU predictions (N, C), low-res logits (N, C, 4E, 4E); C = 3 with ``multimask_output``, else 1."""
        embedding = self.embedding
        count = prompt_count(point_coords, point_labels, boxes, mask_input)
        channels = slice(1, None) if multimask_output else slice(0, 1)
        height, width = embedding.original_size
        feeds = {
            DECODER_INPUTS[0]: embedding.features.numpy(),
            "orig_im_size": np.array([height, width], dtype=np.float32),
        }
        results = []
        for index in range(count):
            feeds.update(self._prompt_feeds(index, point_coords, point_labels, boxes, mask_input))
            masks, scores, low_res = self.decoder.run(None, feeds)
            results.append((masks[0, channels], scores[0, channels], low_res[0, channels]))
        if not results:
            return self._empty(3 if multimask_output else 1, return_logits)
        masks, scores, low_res = (torch.from_numpy(np.stack(column)) for column in zip(*results, strict=True))
        if not return_logits:
            masks = masks > self.config.mask_threshold
        return masks, scores, low_res

    def _prompt_feeds(
        self,
        index: int,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
    ) -> dict[str, np.ndarray]:
        """The decoder inputs of prompt ``index``: its points, then its box as two labelled corners, or a
        padding point when it has no box (as the PyTorch prompt encoder does); its mask input if any."""
        coords, labels = [np.zeros((0, 2), np.float32)], [np.zeros(0, np.float32)]
        if point_coords is not None and point_labels is not None:
            coords.append(point_coords[index].float().numpy())
            labels.append(point_labels[index].float().numpy())
        if boxes is not None:
            coords.append(boxes[index].reshape(2, 2).float().numpy())
            labels.append(np.array(BOX_LABELS, np.float32))
        else:
            coords.append(np.zeros((1, 2), np.float32))
            labels.append(np.array([PAD_POINT_LABEL], np.float32))
        low = 4 * self.config.embedding_size
        if mask_input is None:
            mask, has_mask = np.zeros((1, 1, low, low), np.float32), np.zeros(1, np.float32)
        else:
            mask, has_mask = mask_input[index : index + 1].float().numpy(), np.ones(1, np.float32)
        return dict(
            zip(
                DECODER_INPUTS[1:],
                (np.concatenate(coords)[None], np.concatenate(labels)[None], mask, has_mask),
                strict=True,
            )
        )

    def _empty(self, channels: int, return_logits: bool) -> TorchPrediction:
        height, width = self.embedding.original_size
        low = 4 * self.config.embedding_size
        dtype = torch.float32 if return_logits else torch.bool
        return (
            torch.zeros((0, channels, height, width), dtype=dtype),
            torch.zeros((0, channels)),
            torch.zeros((0, channels, low, low)),
        )
