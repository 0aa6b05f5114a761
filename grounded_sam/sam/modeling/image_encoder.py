"""The SAM ViT image encoder (ViTDet-style backbone with windowed and global attention).

State-dict names and shapes match `segment_anything.modeling.ImageEncoderViT`, so official checkpoints load
once their `image_encoder.` prefix is stripped. The attention runs through `scaled_dot_product_attention`
with the decomposed relative-position bias passed as an additive mask, built for a few windows, or a few
heads and query rows, at a time so the full (heads, tokens, tokens) bias of a global block never exists.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam import budgets
from grounded_sam.sam.modeling.common import FeedForward, LayerNorm2d


def relative_position_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """Look up a relative-position table for every (query, key) pair along one axis.

    `table` is (L, C) with L ideally `2 * size - 1`; a table of another length is first resized by linear
    interpolation along L. Returns (size, size, C) where entry [i, j] is the embedding of offset i - j.
    """
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t()[None], size=length, mode="linear")[0].t()
    offsets = torch.arange(size, device=table.device)
    return table[offsets[:, None] - offsets[None, :] + (size - 1)]


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, in_chans, H, W) -> (B, H/p, W/p, embed_dim)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last once here: every later op (layer norms, linears, residual adds) then runs on
        # contiguous rows instead of copying a permuted view again and again.
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) token grid, within non-overlapping windows or global,
    optionally with decomposed relative positions (separate learned tables for row and column offsets,
    as in MViTv2). The tables are sized for the window, or for `grid_size` when attention is global."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        grid_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            rows, cols = (window_size, window_size) if window_size > 0 else grid_size
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rows - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * cols - 1, head_dim))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A checkpoint trained at another resolution carries tables of another length: adopt its shape
        # (forward interpolates it to the grid), instead of failing the strict size check.
        for name in ("rel_pos_h", "rel_pos_w"):
            incoming = state_dict.get(prefix + name)
            current = getattr(self, name, None)
            if (
                isinstance(current, nn.Parameter)
                and isinstance(incoming, torch.Tensor)
                and incoming.dim() == 2
                and incoming.shape[1] == current.shape[1]
                and incoming.shape[0] != current.shape[0]
            ):
                resized = current.new_empty(incoming.shape)
                setattr(self, name, nn.Parameter(resized, requires_grad=current.requires_grad))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); tokens attend within `window_size` windows, or globally if 0."""
        h, w, dim = x.shape[1:]
        weight, bias = self.qkv.weight, self.qkv.bias
        projections = []
        # q, k and v are projected one at a time: each (B, H, W, C) result of ViT-B then stays below glibc's
        # 32 MiB mmap threshold, so its memory is recycled instead of page-faulted in anew at every block.
        for part in (slice(0, dim), slice(dim, 2 * dim), slice(2 * dim, 3 * dim)):
            part_bias = None if bias is None else bias[part]
            projected = F.linear(x, weight[part], part_bias)
            if self.window_size > 0:
                # The reference pads the normalised tokens with zeros before projecting them, so padding
                # tokens project to the bias: projecting only the real tokens and padding with the bias
                # gives the same windows for ~16 % fewer FLOPs at ViT-B/1024.
                projected = window_partition(projected, self.window_size, fill=part_bias)
            projections.append(projected)
        n, gh, gw, _ = projections[0].shape
        # Three (N, heads, gh*gw, hd) views; SDPA takes the strides as they are.
        q, k, v = (p.view(n, gh * gw, self.num_heads, -1).transpose(1, 2) for p in projections)
        if self.use_rel_pos:
            out = self._attend_with_rel_pos(q, k, v, gh, gw)
        else:
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        out = out.reshape(n, gh, gw, dim)
        if self.window_size > 0:
            out = window_unpartition(out, (h, w))
        return self.proj(out)

    def _attend_with_rel_pos(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int, w: int
    ) -> torch.Tensor:
        """Attention with bias[i, j] = q_i . Rh[row_i - row_j] + q_i . Rw[col_i - col_j] (q unscaled).

        q, k, v: (N, heads, h*w, hd) -> (N, h*w, heads, hd). The additive bias is materialised only for
        a chunk of grids or of query rows at a time.
        """
        n, heads, tokens, head_dim = q.shape
        grid_q = q.view(n, heads, h, w, head_dim)
        rel_rows = relative_position_table(self.rel_pos_h, h)  # (h, h, hd)
        rel_cols = relative_position_table(self.rel_pos_w, w)  # (w, w, hd)
        bias_rows = torch.einsum("nayxc,ykc->nayxk", grid_q, rel_rows)[..., None]  # (N, heads, h, w, h, 1)
        bias_cols = torch.einsum("nayxc,xkc->nayxk", grid_q, rel_cols)[..., None, :]  # (N, heads, h, w, 1, w)

        chunks = _bias_chunks(n, heads, h, w)
        # One buffer reused by every chunk (the first is the largest); the bias is added into it explicitly
        # because einsum may return permuted layouts while SDPA wants (N, heads, queries, keys) rows.
        # When training, the bias gets a fresh tensor per chunk (out= writes are not differentiable), and so
        # it does in an ONNX export (a graph has no buffers to write into).
        fresh = (torch.is_grad_enabled() and q.requires_grad) or torch.compiler.is_exporting()
        buffer = None if fresh else q.new_empty(math.prod(_length(s) for s in chunks[0]) * w * tokens)
        out = q.new_empty(n, tokens, heads, v.shape[-1])
        for grids, hs, rs in chunks:
            size = (_length(grids), _length(hs), _length(rs))
            if buffer is None:
                mask = bias_rows[grids, hs, rs] + bias_cols[grids, hs, rs]
            else:
                mask = buffer[: math.prod(size) * w * tokens].view(*size, w, h, w)
                torch.add(bias_rows[grids, hs, rs], bias_cols[grids, hs, rs], out=mask)
            span = slice(rs.start * w, rs.stop * w)
            mask = mask.reshape(size[0], size[1], size[2] * w, tokens)
            chunk = F.scaled_dot_product_attention(
                q[grids, hs, span], k[grids, hs], v[grids, hs], attn_mask=mask
            )
            out[grids, span, hs] = chunk.transpose(1, 2)
        return out


def _bias_chunks(n: int, heads: int, h: int, w: int) -> list[tuple[slice, slice, slice]]:
    """Split the bias of N grids of h x w tokens into chunks of (grids, heads, query rows) slices.

    Small grids (windows) are grouped whole. A large grid is split into balanced bands of query rows, each
    with at least `_MIN_CHUNK_QUERIES` queries when the grid has that many, and then into balanced groups of
    heads when a band of all heads would still exceed `_MAX_BIAS_ELEMENTS`.
    """
    tokens = h * w
    if heads * tokens * tokens <= budgets.MAX_BIAS_ELEMENTS:
        items = max(1, budgets.MAX_BIAS_ELEMENTS // (heads * tokens * tokens))
        items, group, rows = _ceil_div(n, _ceil_div(n, items)), heads, h
    else:
        items, min_rows = 1, min(h, _ceil_div(budgets.MIN_CHUNK_QUERIES, w))
        band_elements = min_rows * w * tokens  # one head
        if heads * band_elements <= budgets.MAX_BIAS_ELEMENTS:
            group, rows = heads, budgets.MAX_BIAS_ELEMENTS // (heads * w * tokens)
        else:
            group, rows = max(1, budgets.MAX_BIAS_ELEMENTS // band_elements), min_rows
            group = _ceil_div(heads, _ceil_div(heads, group))
        rows = _ceil_div(h, max(1, h // rows))  # fewer, equal bands: none shorter than `rows`
    return [
        (slice(i, min(n, i + items)), slice(a, min(heads, a + group)), slice(r, min(h, r + rows)))
        for i, a, r in itertools.product(range(0, n, items), range(0, heads, group), range(0, h, rows))
    ]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _length(s: slice) -> int:
    return s.stop - s.start


def window_partition(x: torch.Tensor, window_size: int, fill: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W, C) -> (B * nH * nW, window, window, C), padding H and W up to a window multiple.

    Padding tokens are zeros, or `fill` (C,) when given. Windows are ordered row-major over the padded grid
    (nH = ceil(H / window), nW = ceil(W / window)).
    """
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window_size, -w % window_size
    if pad_h or pad_w:
        padded = x.new_empty(b, h + pad_h, w + pad_w, c)
        padded[:, :h, :w] = x
        pad_value = 0.0 if fill is None else fill
        padded[:, h:] = pad_value
        padded[:, :h, w:] = pad_value
        x = padded
    nh, nw = (h + pad_h) // window_size, (w + pad_w) // window_size
    x = x.view(b, nh, window_size, nw, window_size, c).transpose(2, 3)
    return x.reshape(b * nh * nw, window_size, window_size, c)


def window_unpartition(windows: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nH * nW, window, window, C) -> (B, H, W, C), padding dropped.

    The result is a (possibly non-contiguous) view when the grid needed padding.
    """
    window_size, c = windows.shape[1], windows.shape[3]
    h, w = grid_size
    nh, nw = _ceil_div(h, window_size), _ceil_div(w, window_size)
    b = windows.shape[0] // (nh * nw)
    x = windows.view(b, nh, nw, window_size, window_size, c).transpose(2, 3)
    return x.reshape(b, nh * window_size, nw * window_size, c)[:, :h, :w]


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; attention is windowed when `window_size` > 0, global otherwise."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        grid_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RelPosAttention(dim, num_heads, qkv_bias, use_rel_pos, window_size, grid_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        x = x + self.attn(self.norm1(x))
        rows = max(1, budgets.MLP_CHUNK_TOKENS // (x.shape[0] * x.shape[2]))
        if rows >= x.shape[1]:
            return x + self.mlp(self.norm2(x))
        # Bands of rows keep the (tokens, 4C) hidden activation under the mmap threshold.
        return x + torch.cat([self.mlp(self.norm2(band)) for band in x.split(rows, dim=1)], dim=1)


class ViTImageEncoder(nn.Module):
    """SAM's ViT image encoder: (B, in_chans, img_size, img_size) -> (B, out_chans, img_size/p, img_size/p).

    The input is the normalised, padded image (SAM's preprocessing); the output is the image embedding
    consumed by the mask decoder. Example (ViT-B)::

        encoder = ViTImageEncoder()
        embedding = encoder(torch.zeros(1, 3, 1024, 1024))  # (1, 256, 64, 64)
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self._img_size = img_size
        grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias,
                use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                grid_size=grid,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def img_size(self) -> int:
        """Side of the square input the encoder was built for, in pixels."""
        return self._img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, img_size, img_size) normalised image -> (B, out_chans, grid, grid) embedding."""
        expected_chans = self.patch_embed.proj.in_channels
        if x.dim() != 4 or x.shape[1] != expected_chans:
            raise ValueError(
                f"expected a (B, {expected_chans}, H, W) image tensor, got shape {tuple(x.shape)}"
            )
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            if x.shape[1:3] != self.pos_embed.shape[1:3]:
                raise ValueError(
                    f"input of {tuple(x.shape[1:3])} patches does not match the position embedding's "
                    f"{tuple(self.pos_embed.shape[1:3])}; resize and pad the image to "
                    f"{self.img_size}x{self.img_size} first"
                )
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
