from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam.io import IMAGE_SUFFIXES, ImageLoadError, iter_image_files, load_image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(h: int = 16, w: int = 24) -> np.ndarray:
    """(H, W, 3) uint8 with red / green / blue / white quadrants (TL, TR, BL, BR)."""
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[: h // 2, : w // 2] = RED
    img[: h // 2, w // 2 :] = GREEN
    img[h // 2 :, : w // 2] = BLUE
    img[h // 2 :, w // 2 :] = WHITE
    return img


def check_rgb(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.dtype == np.uint8
    assert out.shape == (*shape, 3)
    assert out.flags.c_contiguous


# ---------------------------------------------------------------- files


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    img = quadrants()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    check_rgb(out, (16, 24))
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), img)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = quadrants(32, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    out = load_image(tmp_path / "rot.jpg")
    check_rgb(out, (48, 32))
    expected = np.rot90(stored, k=-1)
    assert np.abs(out.astype(int) - expected).mean() < 8


def test_16bit_png_is_scaled_to_8bit(tmp_path: Path) -> None:
    levels = np.array([0, 1, 128, 200, 255], dtype=np.uint16)
    arr = np.tile(levels * 257, (3, 1))
    Image.fromarray(arr).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode in ("I;16", "I")
    out = load_image(tmp_path / "deep.png")
    check_rgb(out, (3, 5))
    np.testing.assert_array_equal(out[0, :, 0], levels)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    out = load_image(tmp_path / "cmyk.jpg")
    check_rgb(out, (8, 16))
    assert np.abs(out.astype(int) - RED).max() < 6


def test_palette_with_transparency_composites_over_white(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 2))
    pal.putpalette([*RED, *GREEN] + [0] * 762)
    pal.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    pal.save(tmp_path / "pal.png", transparency=1)
    out = load_image(tmp_path / "pal.png")
    check_rgb(out, (2, 4))
    np.testing.assert_array_equal(out[0, 0], RED)
    np.testing.assert_array_equal(out[0, 1], WHITE)  # the transparent green entry
    np.testing.assert_array_equal(out[1, 3], RED)


def test_first_frame_of_animated_gif(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 4), RED), Image.new("RGB", (6, 4), BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out = load_image(tmp_path / "anim.gif")
    check_rgb(out, (4, 6))
    assert np.abs(out.astype(int) - RED).max() < 10


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("directory", "is a directory"),
        ("empty", "empty"),
        ("text", "not an image"),
        ("truncated", "truncated"),
    ],
)
def test_unusable_files_raise_image_load_error(tmp_path: Path, setup: str, match: str) -> None:
    path = tmp_path / "bad.png"
    if setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.touch()
    elif setup == "text":
        path.write_text("this is not a PNG, just text\n" * 10)
    else:
        rng = np.random.default_rng(0)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=match):
        load_image(path)


def test_decompression_bomb_guard_stays_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)
    with pytest.raises(ImageLoadError, match="MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "big.png")


# ---------------------------------------------------------------- PIL modes


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, WHITE),
        ("LA", (10, 0), WHITE),  # fully transparent -> white
        ("RGBA", (200, 100, 50, 255), (200, 100, 50)),
        ("RGBA", (0, 0, 0, 0), WHITE),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),  # half black over white
        ("I", 65535, WHITE),
        ("I", 257 * 40, (40, 40, 40)),
        ("F", 0.5, (128, 128, 128)),
        ("YCbCr", (255, 128, 128), WHITE),
        ("RGB", BLUE, BLUE),
    ],
)
def test_pil_modes(mode: str, value: object, expected: tuple[int, int, int]) -> None:
    out = load_image(Image.new(mode, (5, 3), value))
    check_rgb(out, (3, 5))
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_float_pil_image_out_of_range_is_rejected() -> None:
    with pytest.raises(ImageLoadError, match=r"\[0, 1\]"):
        load_image(Image.new("F", (4, 4), 255.0))


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.full((3, 5), 9, np.uint8), (9, 9, 9)),
        (np.full((3, 5, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((3, 5, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.full((3, 5, 4), (10, 20, 30, 255), np.uint8), (10, 20, 30)),
        (np.full((3, 5, 4), (10, 20, 30, 0), np.uint8), WHITE),
        (np.full((3, 5, 3), (0, 257 * 100, 65535), np.uint16), (0, 100, 255)),
        (np.full((3, 5), True), WHITE),
        (np.full((3, 5, 3), (0.0, 0.5, 1.0), np.float32), (0, 128, 255)),
        (np.full((3, 5, 3), (0.0, 0.25, 1.0), np.float64), (0, 64, 255)),
        (np.full((3, 5, 3), (0, 7, 255), np.int64), (0, 7, 255)),
    ],
)
def test_numpy_inputs(arr: np.ndarray, expected: tuple[int, int, int]) -> None:
    out = load_image(arr)
    check_rgb(out, (3, 5))
    assert (out == np.array(expected, dtype=np.uint8)).all()


def test_non_contiguous_array_gives_contiguous_copy() -> None:
    img = quadrants()
    out = load_image(img[:, ::-1])
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, img[:, ::-1])


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros((2, 3, 4, 5), np.uint8), "must have shape"),
        (np.zeros((3, 8, 9), np.uint8), "transpose CHW"),
        (np.zeros((3, 5, 2), np.uint8), "must have shape"),
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.full((3, 5), np.nan, np.float32), "NaN"),
        (np.full((3, 5), 2.0), r"\[0, 1\]"),
        (np.full((3, 5), 300, np.int32), r"\[0, 255\]"),
        (np.full((3, 5), -1, np.int8), r"\[0, 255\]"),
        (np.zeros((3, 5), np.complex64), "unsupported dtype"),
    ],
)
def test_bad_arrays_raise(arr: np.ndarray, match: str) -> None:
    with pytest.raises(ImageLoadError, match=match):
        load_image(arr)


def test_unsupported_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="file path, a PIL image"):
        load_image([[0, 1], [2, 3]])  # type: ignore[arg-type]


# ---------------------------------------------------------------- tensors


def test_tensor_chw_float_and_hwc_uint8_agree() -> None:
    torch.manual_seed(0)
    img = quadrants()
    chw = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(load_image(chw), img)
    np.testing.assert_array_equal(load_image(torch.from_numpy(img)), img)
    np.testing.assert_array_equal(load_image(chw.half()), img)


def test_tensor_layout_rule() -> None:
    # first dim 1/3/4 and last not -> CHW
    assert load_image(torch.zeros(1, 7, 9)).shape == (7, 9, 3)
    assert load_image(torch.zeros(4, 7, 9, dtype=torch.uint8)).shape == (7, 9, 3)
    # both ends are 3 -> HWC (H = 3, W = 5)
    assert load_image(torch.zeros(3, 5, 3)).shape == (3, 5, 3)
    assert load_image(torch.zeros(7, 9, dtype=torch.bool)).shape == (7, 9, 3)
    # a tensor that needs grad is detached
    assert load_image(torch.rand(3, 4, 6, requires_grad=True)).shape == (4, 6, 3)


def test_batched_tensor_is_rejected_with_hint() -> None:
    with pytest.raises(ImageLoadError, match=r"images\[0\]"):
        load_image(torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------- folders


def test_iter_image_files(tmp_path: Path) -> None:
    for rel in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tif", "notes.txt", ".hidden/e.png", "._f.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tif"]
    assert list(iter_image_files(tmp_path / "b.png")) == [tmp_path / "b.png"]
    assert {".jpg", ".png", ".tif"} <= IMAGE_SUFFIXES


def test_iter_image_files_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(iter_image_files(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not an image file"):
        list(iter_image_files(tmp_path / "notes.txt"))
