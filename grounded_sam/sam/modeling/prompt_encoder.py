"""SAM's prompt encoder: points, boxes and low-resolution masks → sparse and dense prompt embeddings.

Coordinates are XY in the pixel frame of the encoder's (padded) input image, e.g. 0..1024; state-dict
keys and shapes are those of ``segment_anything.modeling.PromptEncoder``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from grounded_sam.sam.modeling.common import LayerNorm2d

# Indices into `point_embeddings`.
NEGATIVE, POSITIVE, BOX_CORNER_1, BOX_CORNER_2 = range(4)
PAD_LABEL = -1


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier positional encoding of XY positions in the unit square.

    A fixed Gaussian matrix (the buffer ``positional_encoding_gaussian_matrix``, shape (2, F)) maps a
    position to F frequencies; the encoding is ``[sin, cos]`` of them, 2F channels.
    """

    def __init__(self, num_pos_feats: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def encode(self, xy: torch.Tensor) -> torch.Tensor:
        """(..., 2) XY in [0, 1] → (..., 2F) encoding, computed in float32."""
        matrix = self.positional_encoding_gaussian_matrix.float()
        phase = (2 * math.pi) * ((2 * xy.float() - 1) @ matrix)
        return torch.cat([phase.sin(), phase.cos()], dim=-1)

    def grid(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an (h, w) grid of cells → (2F, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return self.encode(xy).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for the mask decoder.

    Example::

        encoder = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024))
        sparse, dense = encoder(points=None, boxes=torch.tensor([[10.0, 20.0, 300.0, 400.0]]), masks=None)
        # sparse: (1, 2, 256), dense: (1, 256, 64, 64)
    """

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even (sin and cos halves), got {embed_dim}")
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe: tuple[tuple, torch.Tensor] | None = None

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of every cell of the image embedding → (1, embed_dim, h, w).

        In eval mode the result is cached (treat it as read-only); the cache is keyed on the Gaussian
        matrix's storage, version counter (bumped by ``load_state_dict`` and any in-place change), device
        and dtype, so it never goes stale.
        """
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        version = None if matrix.is_inference() else matrix._version  # inference tensors have no counter
        key = (matrix.data_ptr(), version, matrix.device, matrix.dtype, torch.is_inference_mode_enabled())
        if self._dense_pe is not None and self._dense_pe[0] == key and not self.training:
            return self._dense_pe[1]
        pe = self.pe_layer.grid(self.image_embedding_size).unsqueeze(0).to(self._dtype)
        self._dense_pe = None if self.training else (key, pe)
        return pe

    @property
    def _dtype(self) -> torch.dtype:
        return self.no_mask_embed.weight.dtype

    def _normalise(self, xy: torch.Tensor) -> torch.Tensor:
        """Pixel XY (..., 2) → unit square, after moving to the centre of the pixel."""
        height, width = self.input_image_size
        return (xy.float() + 0.5) / torch.tensor([width, height], dtype=torch.float32, device=xy.device)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """Coords (B, N, 2) XY pixels, labels (B, N) → (B, N + pad, embed_dim).

        Label 1 is a foreground click, 0 background, -1 "not a point" (its position is ignored); any other
        label gets the positional encoding alone, as in the reference. ``pad`` appends one -1 point.
        """
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), PAD_LABEL)], dim=1)
        pe = self.pe_layer.encode(self._normalise(coords)).to(self._dtype)
        labels = labels.unsqueeze(-1)
        weights = [self.point_embeddings[NEGATIVE].weight[0], self.point_embeddings[POSITIVE].weight[0]]
        embedded = torch.where(labels == NEGATIVE, pe + weights[0], pe)
        embedded = torch.where(labels == POSITIVE, pe + weights[1], embedded)
        return torch.where(labels == PAD_LABEL, self.not_a_point_embed.weight[0], embedded)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) XYXY pixels → (B, 2, embed_dim): one token per corner."""
        pe = self.pe_layer.encode(self._normalise(boxes.reshape(-1, 2, 2))).to(self._dtype)
        corners = torch.cat(
            [self.point_embeddings[BOX_CORNER_1].weight, self.point_embeddings[BOX_CORNER_2].weight]
        )
        return pe + corners

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4h, 4w) mask logits → (B, embed_dim, h, w)."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch of B prompts.

        Args:
            points: coords (B, N, 2) XY in input-image pixels and labels (B, N) (1 fg, 0 bg, -1 ignore).
                Without boxes, one padding point (label -1) is appended, as SAM was trained.
            boxes: (B, 4) XYXY in input-image pixels.
            masks: (B, 1, 4h, 4w) low-resolution mask logits.

        Returns:
            sparse (B, K, embed_dim) with the point tokens first, then the two box-corner tokens;
            dense (B, embed_dim, h, w) from ``masks``, or, without masks, the learned no-mask vector as a
            (1, embed_dim, h, w) expanded view (no per-prompt copies; it broadcasts against B).
        """
        batch = self._check(points, boxes, masks)
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty(batch, 0, self.embed_dim, device=device, dtype=self._dtype)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            dense = self.no_mask_embed.weight.view(1, -1, 1, 1).expand(-1, -1, *self.image_embedding_size)
        return torch.cat(sparse, dim=1), dense

    def _check(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> int:
        """Validate prompt shapes; return the batch size B (1 when there is no prompt at all)."""
        sizes: dict[str, int] = {}
        if points is not None:
            coords, labels = points
            if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
                raise ValueError(
                    f"points must be coords (B, N, 2) and labels (B, N), got {tuple(coords.shape)} "
                    f"and {tuple(labels.shape)}"
                )
            sizes["points"] = coords.shape[0]
        if boxes is not None:
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"boxes must be (B, 4) XYXY, got {tuple(boxes.shape)}")
            sizes["boxes"] = boxes.shape[0]
        if masks is not None:
            height, width = self.mask_input_size
            if masks.ndim != 4 or tuple(masks.shape[1:]) != (1, height, width):
                raise ValueError(f"masks must be (B, 1, {height}, {width}), got {tuple(masks.shape)}")
            sizes["masks"] = masks.shape[0]
        if len(set(sizes.values())) > 1:
            raise ValueError(f"points, boxes and masks must share the batch size, got {sizes}")
        return next(iter(sizes.values()), 1)
