"""Masks upsampled whole, as the reference does: for candidates whose contours are ragged everywhere.

:class:`~grounded_sam.sam.everything.tiled_logits.TiledCuts` sends here the masks for which the tiles'
products would cost more than one bilinear pass. The resizes write into buffers kept from batch to batch
(fresh pages for every batch cost about as much as the resize itself) and the thresholds are compared and
counted in numpy (several times faster than torch's comparison and bool sum on one thread).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from grounded_sam.sam import budgets
from grounded_sam.sam.everything.mask_ops import CompactMask, mask_box


class WholeUpsampler:
    """``upsample_logits(low_res, square, input_size, size)`` of a few masks at a time, cut at thresholds.

    Holds its buffers between calls: one instance per thread.
    """

    def __init__(self, square: int, input_size: tuple[int, int], size: tuple[int, int]) -> None:
        self.square, self.input_size, self.size = int(square), tuple(input_size), tuple(size)
        self._buffers: dict[str, torch.Tensor] = {}
        self._binary = np.empty(self.size, dtype=bool)

    def logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """(n, H, W) full-resolution logits of (n, h, w) float32 CPU ``low_res`` (n at most :meth:`batch`),
        equal to ``upsample_logits``'s bit for bit (the kernel ``F.interpolate`` calls, writing into the
        buffers); valid until the next call."""
        square, (height, width) = self.square, self.input_size
        first = self._buffer("first", (self.square, self.square))[: len(low_res)]
        torch.ops.aten.upsample_bilinear2d.out(low_res[:, None], [square, square], False, out=first)
        cropped = first[..., :height, :width]
        if self.input_size == self.size:
            return cropped[:, 0]
        second = self._buffer("second", self.size)[: len(low_res)]
        torch.ops.aten.upsample_bilinear2d.out(cropped, list(self.size), False, out=second)
        return second[:, 0]

    def batch(self) -> int:
        """Masks upsampled at once (:data:`~grounded_sam.sam.budgets.WHOLE_MASK_BYTES` of logits)."""
        pixels = max(self.square * self.square, self.size[0] * self.size[1])
        return max(1, budgets.WHOLE_MASK_BYTES // (4 * pixels))

    def cut(
        self, low_res: torch.Tensor, thresholds: Sequence[float], wanted: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[CompactMask]]:
        """Counts (n, K) int64 of pixels above each threshold where (n, K) bool ``wanted`` (else -1; the last
        threshold's always), XYXY boxes (n, 4) int64 (zeros if empty) and masks of the last threshold, for
        (n, h, w) float32 CPU ``low_res``."""
        counts = np.full(wanted.shape, -1, dtype=np.int64)
        boxes = np.zeros((len(low_res), 4), dtype=np.int64)
        masks = []
        cuts = [np.float32(t) for t in thresholds]  # float32 comparisons, as torch's with Python numbers
        step = self.batch()
        for start in range(0, len(low_res), step):
            logits = self.logits(low_res[start : start + step]).numpy()
            for offset, values in enumerate(logits):
                i = start + offset
                for k in np.flatnonzero(wanted[i, :-1]):
                    counts[i, k] = np.count_nonzero(np.greater(values, cuts[k], out=self._binary))
                binary = np.greater(values, cuts[-1], out=self._binary)
                box = mask_box(binary)
                masks.append(CompactMask.from_mask(binary, box))
                counts[i, -1] = masks[-1].area
                boxes[i] = box or (0, 0, 0, 0)
        return counts, boxes, masks

    def _buffer(self, name: str, size: tuple[int, int]) -> torch.Tensor:
        """(batch, 1, *size) float32 buffer ``name``, made at the first call or when the batch grew."""
        shape = (self.batch(), 1, *size)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = self._buffers[name] = torch.empty(shape)
        return buffer
