"""The SAM ViT image encoder (ViTDet-style backbone with windowed and global attention).

State-dict names and shapes match `segment_anything.modeling.ImageEncoderViT`, so official checkpoints load
once their `image_encoder.` prefix is stripped. The attention runs through `scaled_dot_product_attention`
with the decomposed relative-position bias passed as an additive mask. This is the plain computation (it
builds the full (heads, tokens, tokens) bias of a global block); the memory-bounded version is
:mod:`grounded_sam.sam.fast.image_encoder`, swapped in by :func:`grounded_sam.sam.fast.accelerate`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
        if self.window_size > 0:
            x = window_partition(x, self.window_size)  # zero padding, projected like real tokens
        n, gh, gw, _ = x.shape
        # (3, N, heads, gh*gw, hd)
        qkv = self.qkv(x).view(n, gh * gw, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        mask = self.rel_pos_bias(q, gh, gw) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
        out = out.reshape(n, gh, gw, dim)
        if self.window_size > 0:
            out = window_unpartition(out, (h, w))
        return self.proj(out)

    def rel_pos_bias(self, q: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The (N, heads, h*w, h*w) bias q_i . Rh[row_i - row_j] + q_i . Rw[col_i - col_j] (q unscaled).

        q: (N, heads, h*w, hd) for a grid of h x w tokens.
        """
        n, heads, tokens, head_dim = q.shape
        grid_q = q.reshape(n, heads, h, w, head_dim)
        rel_rows = relative_position_table(self.rel_pos_h, h)  # (h, h, hd)
        rel_cols = relative_position_table(self.rel_pos_w, w)  # (w, w, hd)
        bias_rows = torch.einsum("nayxc,ykc->nayxk", grid_q, rel_rows)  # (N, heads, h, w, h)
        bias_cols = torch.einsum("nayxc,xkc->nayxk", grid_q, rel_cols)  # (N, heads, h, w, w)
        bias = bias_rows[..., :, None] + bias_cols[..., None, :]  # (N, heads, h, w, h, w)
        return bias.reshape(n, heads, tokens, tokens)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


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
        return x + self.mlp(self.norm2(x))


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
