"""TinyViT image encoder of MobileSAM: a drop-in replacement for SAM's ViT image encoder.

The encoder maps a normalised (B, 3, S, S) image to the same (B, 256, S/16, S/16) embedding as SAM's ViT:
a convolutional stem (stride 4), an MBConv stage, then windowed-attention stages joined by patch-merging
convolutions. As in MobileSAM, only the first two merges halve the grid, so the total stride is 16.

Module and parameter names follow MobileSAM's `image_encoder.*` checkpoint keys, so its weights load
strictly once the prefix is stripped and the keys in `UNUSED_CHECKPOINT_KEYS` are dropped.

Example:
    >>> encoder = TinyViTEncoder().eval()
    >>> with torch.inference_mode():
    ...     embedding = encoder(torch.zeros(1, 3, 1024, 1024))
    >>> embedding.shape
    torch.Size([1, 256, 64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam.modeling.common import LayerNorm2d

__all__ = ["UNUSED_CHECKPOINT_KEYS", "TinyViTEncoder"]

# Prefixes (after stripping `image_encoder.`) of MobileSAM checkpoint keys that this encoder has no use
# for: the ImageNet classification head left over from TinyViT. The attention index buffers are
# non-persistent in MobileSAM, so they are not in the checkpoint.
UNUSED_CHECKPOINT_KEYS: tuple[str, ...] = ("norm_head.", "head.")

# The stem divides the image side by 4 and each of the first `_HALVING_MERGES` patch merges by 2.
_STEM_STRIDE = 4
_HALVING_MERGES = 2
_TOTAL_STRIDE = _STEM_STRIDE * 2**_HALVING_MERGES


class ConvBatchNorm(nn.Module):
    """Bias-free convolution followed by batch norm, "same" padding for odd kernels. NCHW in and out."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))


class ConvStem(nn.Module):
    """Two stride-2 3×3 conv-BN layers with GELU between them: (B, C_in, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBatchNorm(in_chans, embed_dim // 2, 3, stride=2),
            nn.GELU(),
            ConvBatchNorm(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1×1 expand, 3×3 depthwise, 1×1 project) on (B, C, H, W)."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBatchNorm(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBatchNorm(hidden, hidden, 3, groups=hidden)
        self.act2 = nn.GELU()
        # A zero-initialised last BN makes each fresh block start as an identity (before act3).
        self.conv3 = ConvBatchNorm(hidden, dim, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(x + self.conv3(y))


class PatchMerging(nn.Module):
    """1×1 conv, strided 3×3 depthwise conv, 1×1 conv: (B, C, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBatchNorm(dim, out_dim)
        self.conv2 = ConvBatchNorm(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBatchNorm(out_dim, out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


def relative_offset_index(window_size: int) -> torch.Tensor:
    """(N, N) index, N = window_size², of the bias-table column for each pair of window positions.

    Positions are numbered row-major; the pair (i, j) maps to |Δrow| * window_size + |Δcol|, which is
    the order in which TinyViT enumerates offsets, so the learned tables of its checkpoints line up.
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)
    delta = (coords[:, :, None] - coords[:, None, :]).abs()
    return delta[0] * window_size + delta[1]


class WindowAttention(nn.Module):
    """Pre-norm multi-head self-attention over the tokens of one window, with a learned offset bias.

    Each head has one learned scalar per (|Δrow|, |Δcol|) offset, added to the attention logits.
    (:class:`grounded_sam.sam.fast.tiny_vit.FastWindowAttention` caches the gathered bias.)
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("attention_bias_idxs", relative_offset_index(window_size), persistent=False)

    def gathered_bias(self) -> torch.Tensor:
        """The (heads, N, N) additive attention bias for the window's N tokens."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # Original TinyViT checkpoints store the index buffer; it is derived, so accept and drop it.
        state_dict.pop(prefix + "attention_bias_idxs", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) window tokens -> (B, N, C)."""
        b, n, c = x.shape
        # The projection packs q, k, v per head: [h0: q k v | h1: q k v | ...].
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.gathered_bias().to(q.dtype)[None])
        out = out.transpose(1, 2)
        if torch.compiler.is_exporting():  # ONNX's attention decomposition lays its output out differently
            out = out.clone(memory_format=torch.contiguous_format)
        return self.proj(out.reshape(b, n, c))


class NormMlp(nn.Module):
    """LayerNorm then a GELU MLP on the last axis (`norm` -> `fc1` -> GELU -> `fc2`)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3×3 conv-BN, then an MLP, on channels-last (B, H, W, C) tokens."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.local_conv = ConvBatchNorm(dim, dim, local_conv_size, groups=dim)
        self.mlp = NormMlp(dim, int(dim * mlp_ratio))

    def windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention within non-overlapping windows: (B, H, W, C) -> (B, H, W, C).

        The grid is zero-padded at the bottom/right to whole windows. The padding tokens take part
        in attention (as keys) exactly as in TinyViT, because the pretrained weights expect that.
        """
        b, h, w, c = x.shape
        ws = self.window_size
        pad_b, pad_r = -h % ws, -w % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        nh, nw = (h + pad_b) // ws, (w + pad_r) // ws
        windows = x.reshape(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        out = self.attn(windows)
        out = out.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, nh * ws, nw * ws, c)
        return out[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.windowed_attention(x)
        # A channels-last tensor viewed as NCHW lets the depthwise conv run without a layout copy.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class Stage(nn.Module):
    """A stack of blocks followed by an optional patch merge, (B, C, H, W) in and out.

    Attention blocks (`token_blocks=True`) run on a channels-last view of the feature map.
    """

    def __init__(
        self, blocks: Sequence[nn.Module], downsample: PatchMerging | None, token_blocks: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.token_blocks = token_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_blocks:
            x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        if self.token_blocks:
            x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


class TinyViTEncoder(nn.Module):
    """MobileSAM's TinyViT image encoder: (B, in_chans, S, S) -> (B, out_chans, S/16, S/16).

    The defaults are TinyViT-5M as used by MobileSAM (≈5.7 M parameters with the neck). Stage 0 is
    convolutional (MBConv), so `num_heads[0]` and `window_sizes[0]` are unused but kept so the four
    lists line up with the published configuration. At least three stages are needed for stride 16.
    Input is a normalised image whose sides are multiples of 16 (1024 for the pretrained weights).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n_stages = len(depths)
        if n_stages < _HALVING_MERGES + 1:
            raise ValueError(f"TinyViTEncoder needs at least {_HALVING_MERGES + 1} stages, got {n_stages}")
        lengths = {len(embed_dims), len(num_heads), len(window_sizes)}
        if lengths != {n_stages}:
            raise ValueError(
                "embed_dims, depths, num_heads and window_sizes must have one entry per stage; got lengths "
                f"{len(embed_dims)}, {n_stages}, {len(num_heads)}, {len(window_sizes)}"
            )
        if img_size % _TOTAL_STRIDE:
            raise ValueError(f"img_size must be a multiple of {_TOTAL_STRIDE}, got {img_size}")
        self.img_size = img_size
        self.in_chans = in_chans

        self.patch_embed = ConvStem(in_chans, embed_dims[0])
        layers: list[Stage] = []
        for i in range(n_stages):
            dim = embed_dims[i]
            merge = None
            if i + 1 < n_stages:
                merge = PatchMerging(dim, embed_dims[i + 1], stride=2 if i < _HALVING_MERGES else 1)
            blocks: list[nn.Module]
            if i == 0:
                blocks = [MBConv(dim, mbconv_expand_ratio) for _ in range(depths[i])]
            else:
                blocks = [
                    TinyViTBlock(dim, num_heads[i], window_sizes[i], mlp_ratio, local_conv_size)
                    for _ in range(depths[i])
                ]
            layers.append(Stage(blocks, merge, token_blocks=i > 0))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(_init_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) normalised image, H and W multiples of 16 -> (B, out_chans, H/16, W/16)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected a (B, {self.in_chans}, H, W) image tensor, got shape {tuple(x.shape)}"
            )
        if x.shape[2] % _TOTAL_STRIDE or x.shape[3] % _TOTAL_STRIDE:
            raise ValueError(
                f"image height and width must be multiples of {_TOTAL_STRIDE}, got {tuple(x.shape[2:])}; "
                "resize and pad the image first"
            )
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


def _init_linear(module: nn.Module) -> None:
    # Truncated-normal linear weights and zero biases, as TinyViT trains from scratch.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
