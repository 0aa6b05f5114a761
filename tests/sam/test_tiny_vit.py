"""Tests for grounded_sam.sam.modeling.tiny_vit (MobileSAM's TinyViT image encoder)."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.sam import fast
from grounded_sam.sam.fast.tiny_vit import FastWindowAttention
from grounded_sam.sam.modeling.tiny_vit import (
    UNUSED_CHECKPOINT_KEYS,
    TinyViTBlock,
    TinyViTEncoder,
    WindowAttention,
    relative_offset_index,
)

KEYS_FILE = Path(__file__).parent / "data" / "mobile_sam_tiny_vit_5m_keys.txt"

# A tiny three-stage configuration: still stride 16, padded windows in every attention stage at 64².
TINY = dict(
    img_size=64,
    embed_dims=(8, 16, 24),
    depths=(1, 2, 1),
    num_heads=(1, 2, 3),
    window_sizes=(3, 3, 3),
    out_chans=32,
)


@pytest.fixture(params=[True, False], ids=["accelerated", "plain"])
def accelerated(request: pytest.FixtureRequest) -> bool:
    return request.param


def _variant(model: nn.Module, accelerated: bool) -> nn.Module:
    return fast.accelerate(model) if accelerated else fast.plain(model)


def read_mobile_sam_keys() -> dict[str, tuple[int, ...]]:
    """MobileSAM `image_encoder.*` keys (prefix stripped) -> shape, from the fixture file."""
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split()
        shapes[key] = () if shape == "-" else tuple(int(s) for s in shape.split("x"))
    return shapes


@torch.no_grad()
def randomize_(model: nn.Module) -> None:
    """Give norms, batch-norm statistics and attention biases non-trivial values."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
        if isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
        if isinstance(module, WindowAttention):
            module.attention_biases.normal_(0.0, 1.0)


def naive_offset_index(window_size: int) -> torch.Tensor:
    """TinyViT's definition: offsets numbered in order of first appearance over row-major pairs."""
    points = list(itertools.product(range(window_size), repeat=2))
    numbering: dict[tuple[int, int], int] = {}
    index = torch.empty(len(points), len(points), dtype=torch.long)
    for i, (r1, c1) in enumerate(points):
        for j, (r2, c2) in enumerate(points):
            offset = (abs(r1 - r2), abs(c1 - c2))
            index[i, j] = numbering.setdefault(offset, len(numbering))
    return index


def naive_windowed_attention(block: TinyViTBlock, x: torch.Tensor) -> torch.Tensor:
    """Window attention written out with explicit loops over windows, heads and token pairs' offsets."""
    attn, ws = block.attn, block.window_size
    b, h, w, c = x.shape
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    padded = torch.zeros(b, hp, wp, c)
    padded[:, :h, :w] = x
    out = torch.zeros_like(padded)
    coords = list(itertools.product(range(ws), repeat=2))
    bias = torch.empty(attn.num_heads, ws * ws, ws * ws)
    for i, (r1, c1) in enumerate(coords):
        for j, (r2, c2) in enumerate(coords):
            bias[:, i, j] = attn.attention_biases[:, abs(r1 - r2) * ws + abs(c1 - c2)]
    d = attn.head_dim
    for top, left in itertools.product(range(0, hp, ws), range(0, wp, ws)):
        tokens = padded[:, top : top + ws, left : left + ws].reshape(b, ws * ws, c)
        qkv = attn.qkv(attn.norm(tokens)).reshape(b, ws * ws, attn.num_heads, 3 * d)
        heads = []
        for head in range(attn.num_heads):
            q, k, v = qkv[:, :, head].split(d, dim=-1)
            logits = q @ k.transpose(1, 2) / math.sqrt(d) + bias[head]
            heads.append(logits.softmax(-1) @ v)
        window_out = attn.proj(torch.cat(heads, dim=-1))
        out[:, top : top + ws, left : left + ws] = window_out.reshape(b, ws, ws, c)
    return out[:, :h, :w]


@pytest.mark.parametrize(("height", "width", "batch"), [(64, 64, 2), (128, 96, 1)])
def test_5m_output_shape(height: int, width: int, batch: int) -> None:
    torch.manual_seed(0)
    encoder = TinyViTEncoder().eval()
    with torch.inference_mode():
        out = encoder(torch.randn(batch, 3, height, width))
    assert out.shape == (batch, 256, height // 16, width // 16)
    assert torch.isfinite(out).all()
    assert encoder.img_size == 1024


def test_tiny_config_output_shape() -> None:
    torch.manual_seed(0)
    encoder = TinyViTEncoder(**TINY).eval()
    with torch.inference_mode():
        out = encoder(torch.randn(3, 3, 64, 64))
    assert out.shape == (3, 32, 4, 4)
    assert encoder.img_size == 64


def test_state_dict_matches_mobile_sam_checkpoint_keys() -> None:
    expected = read_mobile_sam_keys()
    unused = {k for k in expected if k.startswith(UNUSED_CHECKPOINT_KEYS)}
    assert unused == {"norm_head.weight", "norm_head.bias", "head.weight", "head.bias"}
    ours = {k: tuple(v.shape) for k, v in TinyViTEncoder().state_dict().items()}
    used = {k: v for k, v in expected.items() if k not in unused}
    assert sorted(set(used) - set(ours)) == []
    assert sorted(set(ours) - set(used)) == []
    assert {k: v for k, v in ours.items() if used[k] != v} == {}


def test_mobile_sam_style_checkpoint_loads_strictly() -> None:
    torch.manual_seed(0)
    checkpoint = {
        f"image_encoder.{key}": torch.randn(shape) if shape else torch.tensor(7)
        for key, shape in read_mobile_sam_keys().items()
    }
    checkpoint["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    # What the converter does: keep the encoder's keys, strip the prefix, drop unused keys.
    encoder_part = {
        key.removeprefix("image_encoder."): value
        for key, value in checkpoint.items()
        if key.startswith("image_encoder.")
    }
    state = {key: value for key, value in encoder_part.items() if not key.startswith(UNUSED_CHECKPOINT_KEYS)}
    # Original TinyViT checkpoints also carry the derived index buffers; they must be tolerated.
    state["layers.1.blocks.0.attn.attention_bias_idxs"] = relative_offset_index(7)
    encoder = TinyViTEncoder()
    encoder.load_state_dict(state, strict=True)
    loaded = encoder.state_dict()
    key = "layers.2.blocks.5.attn.attention_biases"
    assert torch.equal(loaded[key], checkpoint[f"image_encoder.{key}"])
    assert torch.equal(encoder.layers[1].blocks[0].attn.attention_bias_idxs, relative_offset_index(7))


def test_parameter_count_5m() -> None:
    n_params = sum(p.numel() for p in TinyViTEncoder().parameters())
    assert 5_600_000 < n_params < 5_800_000


@pytest.mark.parametrize("window_size", [1, 2, 3, 7, 14])
def test_offset_index_matches_tinyvit_numbering(window_size: int) -> None:
    assert torch.equal(relative_offset_index(window_size), naive_offset_index(window_size))


def test_gathered_bias_equals_loop_over_offsets() -> None:
    torch.manual_seed(0)
    attn = WindowAttention(dim=12, num_heads=3, window_size=4)
    randomize_(attn)
    gathered = attn.gathered_bias()
    assert gathered.shape == (3, 16, 16)
    for i, j in itertools.product(range(16), repeat=2):
        dr, dc = abs(i // 4 - j // 4), abs(i % 4 - j % 4)
        assert torch.equal(gathered[:, i, j], attn.attention_biases[:, dr * 4 + dc])


@pytest.mark.parametrize(
    ("height", "width", "window_size"),
    [(7, 7, 7), (5, 6, 7), (8, 8, 4), (10, 9, 4), (3, 11, 4)],
    ids=["one-window", "one-padded-window", "exact-tiling", "padded-tiling", "thin-padded"],
)
def test_windowed_attention_matches_naive(
    height: int, width: int, window_size: int, accelerated: bool
) -> None:
    torch.manual_seed(0)
    block = TinyViTBlock(dim=12, num_heads=3, window_size=window_size, mlp_ratio=4.0, local_conv_size=3)
    _variant(block, accelerated)
    randomize_(block)
    block.eval()
    x = torch.randn(2, height, width, 12)
    with torch.no_grad():
        fast = block.windowed_attention(x)
        slow = naive_windowed_attention(block, x)
        full = block(x)
    assert fast.shape == x.shape
    assert torch.isfinite(fast).all() and torch.isfinite(full).all()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_bias_cache_is_reused_and_invalidated() -> None:
    torch.manual_seed(0)
    attn = fast.accelerate(WindowAttention(dim=8, num_heads=2, window_size=3).eval())
    assert isinstance(attn, FastWindowAttention)
    with torch.no_grad():
        first = attn.gathered_bias()
        assert attn.gathered_bias() is first
        attn.attention_biases.add_(1.0)  # an in-place edit must not serve a stale bias
        assert torch.equal(attn.gathered_bias(), first + 1.0)
        new_table = torch.randn(2, 9)
        attn.load_state_dict({**attn.state_dict(), "attention_biases": new_table})
        assert torch.equal(attn.gathered_bias(), new_table[:, attn.attention_bias_idxs])
    # With autograd on, the bias is gathered afresh so gradients reach the table, also in eval mode.
    assert attn.gathered_bias().requires_grad
    attn.train()
    assert attn._bias_cache is None
    fast.plain(attn).eval()
    with torch.no_grad():
        assert attn.gathered_bias() is not attn.gathered_bias()  # the plain module gathers every time


def test_matches_timm_tinyvit_with_mobile_sam_strides(accelerated: bool) -> None:
    timm_tiny_vit = pytest.importorskip("timm.models.tiny_vit")
    torch.manual_seed(0)
    ours = _variant(TinyViTEncoder(), accelerated)
    randomize_(ours)
    ours.eval()
    reference = timm_tiny_vit.TinyVit(
        num_classes=0,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        drop_path_rate=0.0,
    ).eval()
    reference.stages[3].downsample.conv2.conv.stride = (1, 1)  # MobileSAM keeps the last merge at 1/16

    def our_name(timm_key: str) -> str:
        key = timm_key.replace("patch_embed.conv1.", "patch_embed.seq.0.")
        key = key.replace("patch_embed.conv2.", "patch_embed.seq.2.").replace(".conv.", ".c.")
        match = re.fullmatch(r"stages\.(\d+)\.(downsample\.)?(.*)", key)
        if match is None:
            return key
        stage = int(match[1]) - (1 if match[2] else 0)  # timm merges at a stage's start, MobileSAM at the end
        return f"layers.{stage}.{match[2] or ''}{match[3]}"

    our_state = ours.state_dict()
    names = {k: our_name(k) for k in reference.state_dict() if not k.startswith("head.")}
    assert sorted(names.values()) == sorted(k for k in our_state if not k.startswith("neck."))
    result = reference.load_state_dict({k: our_state[v] for k, v in names.items()}, strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("head.") for k in result.missing_keys)

    x = torch.randn(1, 3, 256, 256)  # grids 32, 16, 16 in the attention stages: all need padding
    with torch.no_grad():
        trunk = ours.patch_embed(x)
        for layer in ours.layers:
            trunk = layer(trunk)
        expected = reference.forward_features(x)
        embedding = ours(x)
    assert trunk.shape == expected.shape == (1, 320, 16, 16)
    torch.testing.assert_close(trunk, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(embedding, ours.neck(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradients_reach_every_parameter(mode: str, accelerated: bool) -> None:
    torch.manual_seed(0)
    encoder = _variant(TinyViTEncoder(**TINY), accelerated)
    randomize_(encoder)
    with torch.no_grad():  # undo the zero-initialised MBConv output norms so every path carries signal
        for block in encoder.layers[0].blocks:
            block.conv3.bn.weight.fill_(1.0)
    encoder.train(mode == "train")
    out = encoder(torch.randn(2, 3, 64, 64))
    out.square().mean().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_deterministic_under_seed() -> None:
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        encoder = TinyViTEncoder(**TINY).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.inference_mode():
            outputs.append(encoder(x))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(embed_dims=(8, 16), depths=(1, 1), num_heads=(1, 2), window_sizes=(3, 3)),
        dict(embed_dims=(8, 16, 24), depths=(1, 1, 1, 1), num_heads=(1, 2, 3), window_sizes=(3, 3, 3)),
        dict(**{**TINY, "num_heads": (1, 3, 3)}),
        dict(**{**TINY, "img_size": 100}),
    ],
    ids=["two-stages", "ragged-lists", "heads-not-dividing-dim", "img-size-not-multiple"],
)
def test_invalid_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TinyViTEncoder(**kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 64, 64), (1, 3, 64, 72)])
def test_invalid_input_raises(shape: tuple[int, ...]) -> None:
    encoder = TinyViTEncoder(**TINY)
    with pytest.raises(ValueError, match=r"expected|multiples"):
        encoder(torch.zeros(shape))


def test_windowed_attention_pads_with_zero_tokens_like_tinyvit() -> None:
    # The padded tokens act as keys: the result must differ from attention restricted to real tokens.
    torch.manual_seed(0)
    block = TinyViTBlock(dim=8, num_heads=2, window_size=4, mlp_ratio=2.0, local_conv_size=3).eval()
    randomize_(block)
    x = torch.randn(1, 2, 2, 8)
    with torch.no_grad():
        padded = block.windowed_attention(x)
        attn = block.attn
        tokens = attn.qkv(attn.norm(x.reshape(1, 4, 8))).view(1, 4, 2, 3, 4).permute(3, 0, 2, 1, 4)
        idx = torch.tensor([0, 1, 4, 5])  # the 2×2 real tokens inside the 4×4 window
        bias = attn.gathered_bias()[:, idx][:, :, idx]
        unpadded = F.scaled_dot_product_attention(*tokens.unbind(0), attn_mask=bias)
        unpadded = attn.proj(unpadded.transpose(1, 2).reshape(1, 4, 8)).view(1, 2, 2, 8)
    assert not torch.allclose(padded, unpadded, atol=1e-3)
