"""Parity of `ViTImageEncoder` with the official `segment_anything` ImageEncoderViT on random weights."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from segment_anything.modeling import image_encoder as reference
from torch import nn

from grounded_sam.sam import budgets, fast
from grounded_sam.sam.modeling import image_encoder
from grounded_sam.sam.modeling.image_encoder import ViTImageEncoder

SMALL = dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4.0, out_chans=16)

CONFIGS = {
    # grid 8, window 4: windows tile the grid exactly; block 1 global.
    "no-padding": dict(SMALL, img_size=128, window_size=4, global_attn_indexes=(1,)),
    # grid 10, window 4: windows need 2 rows/columns of padding.
    "padding": dict(
        SMALL, img_size=160, embed_dim=48, depth=3, num_heads=4, window_size=4, global_attn_indexes=(2,)
    ),
    # grid 14, window 5, no relative positions, two global blocks.
    "no-rel-pos": dict(
        SMALL, img_size=224, depth=4, window_size=5, use_rel_pos=False, global_attn_indexes=(0, 3)
    ),
    # grid 24 (patch 8), window 7 needs padding; no absolute position embedding, no qkv bias; all windowed.
    "no-abs-pos": dict(
        SMALL,
        img_size=192,
        patch_size=8,
        embed_dim=64,
        num_heads=4,
        window_size=7,
        use_abs_pos=False,
        qkv_bias=False,
        global_attn_indexes=(),
    ),
    # no window at all: every block global.
    "all-global": dict(SMALL, img_size=128, window_size=0, global_attn_indexes=(), qkv_bias=False),
}


def _reference_encoder(config: dict) -> reference.ImageEncoderViT:
    # The official builders use LayerNorm(eps=1e-6) and relative positions; the class defaults differ.
    defaults = dict(use_rel_pos=True, window_size=14, global_attn_indexes=(2, 5, 8, 11))
    return reference.ImageEncoderViT(
        **{**defaults, **config}, norm_layer=partial(nn.LayerNorm, eps=1e-6)
    ).eval()


def _randomise(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with every entry random (norm scales around 1, rel-pos tables large enough to matter)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in module.state_dict().items():
        noise = torch.randn(tensor.shape, generator=generator)
        if "rel_pos" in name:
            state[name] = noise * 0.5
        elif name == "pos_embed":
            state[name] = noise * 0.1
        elif name.endswith("weight") and tensor.dim() == 1:
            state[name] = 1.0 + 0.1 * noise
        else:
            fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
            state[name] = noise * (0.5 / fan_in**0.5 if tensor.dim() > 1 else 0.1)
    return state


@pytest.fixture(params=[True, False], ids=["accelerated", "plain"])
def accelerated(request: pytest.FixtureRequest) -> bool:
    return request.param


def _loaded_pair(config: dict, seed: int = 0, accelerated: bool = True) -> tuple[nn.Module, ViTImageEncoder]:
    ref = _reference_encoder(config)
    ours = ViTImageEncoder(**config).eval()
    if accelerated:
        fast.accelerate(ours)
    state = _randomise(ref, seed)
    ref.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    return ref, ours


def _assert_parity(ref: nn.Module, ours: nn.Module, x: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    with torch.inference_mode():
        expected, actual = ref(x), ours(x)
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)
    return actual


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_reference(name: str, accelerated: bool) -> None:
    torch.manual_seed(0)
    config = CONFIGS[name]
    ref, ours = _loaded_pair(config, accelerated=accelerated)
    x = torch.randn(1, 3, config["img_size"], config["img_size"])
    out = _assert_parity(ref, ours, x)
    grid = config["img_size"] // config["patch_size"]
    assert out.shape == (1, config["out_chans"], grid, grid)


def test_batch_of_two_matches_reference_and_single_images(accelerated: bool) -> None:
    torch.manual_seed(1)
    ref, ours = _loaded_pair(CONFIGS["padding"], seed=1, accelerated=accelerated)
    x = torch.randn(2, 3, 160, 160)
    batched = _assert_parity(ref, ours, x)
    with torch.inference_mode():
        torch.testing.assert_close(batched[1:], ours(x[1:]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("budget", [1, 2_500, 20_000])
def test_chunked_computation_matches_reference(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny budgets force one query row or head (or a few windows) per bias chunk and MLP bands of a
    few rows; results must not change."""
    torch.manual_seed(2)
    monkeypatch.setattr(budgets, "MAX_BIAS_ELEMENTS", budget)
    monkeypatch.setattr(budgets, "MIN_CHUNK_QUERIES", 1)
    monkeypatch.setattr(budgets, "MLP_CHUNK_TOKENS", budget // 200)
    ref, ours = _loaded_pair(CONFIGS["padding"], seed=2)
    _assert_parity(ref, ours, torch.randn(2, 3, 160, 160))


def test_rel_pos_tables_of_another_length_are_interpolated_like_the_reference(accelerated: bool) -> None:
    torch.manual_seed(3)
    config = CONFIGS["padding"]
    ref = _reference_encoder(config)
    state = _randomise(ref, seed=3)
    head_dim = config["embed_dim"] // config["num_heads"]
    # Window blocks are trained for 2*4-1 = 7 offsets, the global block for 2*10-1 = 19: give other lengths.
    lengths = {0: (5, 11), 1: (9, 7), 2: (31, 13)}
    for i, (len_h, len_w) in lengths.items():
        for axis, length in (("h", len_h), ("w", len_w)):
            key = f"blocks.{i}.attn.rel_pos_{axis}"
            state[key] = torch.randn(length, head_dim) * 0.5
            setattr(ref.blocks[i].attn, f"rel_pos_{axis}", nn.Parameter(torch.empty(length, head_dim)))
    ref.load_state_dict(state, strict=True)
    ours = ViTImageEncoder(**config).eval()
    ours.load_state_dict(state, strict=True)
    if accelerated:
        fast.accelerate(ours)
    assert ours.blocks[2].attn.rel_pos_h.shape == (31, head_dim)
    _assert_parity(ref, ours, torch.randn(1, 3, 160, 160))


@pytest.mark.parametrize(("length", "size"), [(27, 14), (13, 14), (127, 64), (7, 4)])
def test_relative_position_table_matches_reference_lookup(length: int, size: int) -> None:
    torch.manual_seed(4)
    table = torch.randn(length, 8)
    expected = reference.get_rel_pos(size, size, table)
    torch.testing.assert_close(image_encoder.relative_position_table(table, size), expected)


def test_state_dict_keys_and_shapes_match_reference_vit_b() -> None:
    with torch.device("meta"):
        ref = _reference_encoder(dict(img_size=1024, embed_dim=768, depth=12, num_heads=12))
        ours = ViTImageEncoder()
    expected = {name: tuple(t.shape) for name, t in ref.state_dict().items()}
    actual = {name: tuple(t.shape) for name, t in ours.state_dict().items()}
    assert actual == expected
    assert actual["blocks.2.attn.rel_pos_h"] == (127, 64)
    assert actual["blocks.0.attn.rel_pos_w"] == (27, 64)


def test_img_size_is_read_only() -> None:
    encoder = ViTImageEncoder(**CONFIGS["no-padding"])
    assert encoder.img_size == 128
    with pytest.raises(AttributeError):
        encoder.img_size = 256  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(1, 1, 128, 128), (3, 128, 128), (1, 3, 96, 96)])
def test_rejects_wrong_input_shape(shape: tuple[int, ...]) -> None:
    encoder = ViTImageEncoder(**CONFIGS["no-padding"])
    with pytest.raises(ValueError, match=r"expected|patches"):
        encoder(torch.zeros(shape))


def test_rejects_inconsistent_architecture() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ViTImageEncoder(img_size=100, patch_size=16)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ViTImageEncoder(embed_dim=100, num_heads=12)


@pytest.mark.slow
def test_vit_b_1024_matches_reference(accelerated: bool) -> None:
    torch.manual_seed(5)
    config = dict(img_size=1024, embed_dim=768, depth=12, num_heads=12)
    ref, ours = _loaded_pair(config, seed=5, accelerated=accelerated)
    out = _assert_parity(ref, ours, torch.randn(1, 3, 1024, 1024), tol=1e-4)
    assert out.shape == (1, 256, 64, 64)


def test_relative_position_encoder_is_trainable(accelerated: bool) -> None:
    torch.manual_seed(0)
    encoder = ViTImageEncoder(
        img_size=64, embed_dim=32, depth=2, num_heads=2, out_chans=16, window_size=2, global_attn_indexes=(1,)
    )
    if accelerated:
        fast.accelerate(encoder)
    with torch.no_grad():
        for block in encoder.blocks:
            block.attn.rel_pos_h.normal_()
            block.attn.rel_pos_w.normal_()
    x = torch.randn(2, 3, 64, 64)
    expected = encoder(x).detach()
    with torch.enable_grad():
        out = encoder(x)
        out.square().mean().backward()
    torch.testing.assert_close(out.detach(), expected)
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert encoder.blocks[0].attn.rel_pos_h.grad.abs().sum() > 0
