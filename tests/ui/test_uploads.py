"""Upload checks (type, size, pixels, corrupt data) with friendly messages, image ids and examples."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from grounded_sam.ui.uploads import EXAMPLES, UploadError, example_scene, image_id, read_upload
from tests.pipelines import SCENE


def _encoded(image: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "fmt"), [("scene.png", "PNG"), ("SCENE.BMP", "BMP"), ("a.webp", "WEBP")])
def test_lossless_uploads_decode_to_the_same_pixels(name: str, fmt: str) -> None:
    options = {"lossless": True} if fmt == "WEBP" else {}
    np.testing.assert_array_equal(read_upload(name, _encoded(SCENE.image, fmt, **options)), SCENE.image)


def test_exif_rotation_and_other_modes_become_upright_rgb() -> None:
    picture = Image.fromarray(SCENE.image)
    exif = picture.getexif()
    exif[0x0112] = 6  # rotated 90° clockwise
    rotated = read_upload("photo.jpg", _encoded(picture, "JPEG", exif=exif, quality=95))
    assert rotated.shape == (160, 120, 3)
    gray = read_upload("gray.png", _encoded(picture.convert("L"), "PNG"))
    assert gray.shape == (120, 160, 3) and gray.dtype == np.uint8


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("notes.txt", b"hello", "not a supported image type; upload one of: PNG"),
        ("noext", b"hello", "not a supported image type"),
        ("empty.png", b"", "empty"),
        ("junk.png", b"this is not a png at all", "could not be read as an image"),
    ],
)
def test_bad_files_get_friendly_messages(name: str, data: bytes, match: str) -> None:
    with pytest.raises(UploadError, match=match):
        read_upload(name, data)


def test_truncated_file_is_reported() -> None:
    data = _encoded(SCENE.image, "PNG")
    with pytest.raises(UploadError, match=r"truncated|could not be"):
        read_upload("cut.png", data[: len(data) // 2])


def test_size_and_pixel_limits() -> None:
    data = _encoded(SCENE.image, "PNG")
    with pytest.raises(UploadError, match=r"the limit is 0.001 MB"):
        read_upload("big.png", data, max_mb=0.001)
    with pytest.raises(UploadError, match=r"160×120 pixels; the limit is 0.01 megapixels"):
        read_upload("big.png", data, max_pixels=10_000)
    assert issubclass(UploadError, ValueError)


def test_image_id_depends_on_content_and_shape() -> None:
    assert image_id(SCENE.image) == image_id(SCENE.image.copy())
    changed = SCENE.image.copy()
    changed[0, 0, 0] ^= 1
    assert image_id(changed) != image_id(SCENE.image)
    flat = np.zeros((4, 6, 3), np.uint8)
    assert image_id(flat) != image_id(flat.reshape(6, 4, 3))


def test_examples_are_deterministic_scenes() -> None:
    for name in EXAMPLES:
        scene = example_scene(name)
        assert scene.image.shape == (240, 320, 3) and len(scene.labels) >= 3
    first = next(iter(EXAMPLES))
    np.testing.assert_array_equal(example_scene(first).image, example_scene(first).image)
    with pytest.raises(ValueError, match="unknown example"):
        example_scene("nope")


def test_thin_images_and_decompression_bombs_are_refused_before_decoding() -> None:
    for size in ((20000, 2), (2, 20000), (400, 4), (1000, 10)):
        data = _encoded(Image.new("RGB", size, (9, 9, 9)), "PNG")
        with pytest.raises(UploadError, match=rf"{size[0]}×{size[1]} pixels: too thin"):
            read_upload("thin.png", data)
    assert read_upload("ok.png", _encoded(Image.new("RGB", (500, 10)), "PNG")).shape == (10, 500, 3)
    bomb = _encoded(Image.new("1", (20000, 20000)), "PNG")  # 400 megapixels in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(UploadError, match=r"bomb\.png” declares far more pixels than the limit of 40 mega"):
        read_upload("bomb.png", bomb)
    large = _encoded(Image.new("1", (9000, 9000)), "PNG")  # 81 megapixels: under Pillow's own limit
    with pytest.raises(UploadError, match="9000×9000 pixels; the limit is 40 megapixels"):
        read_upload("large.png", large)


def test_long_prompts_are_cut_at_a_phrase_boundary_with_a_notice() -> None:
    from grounded_sam.ui.uploads import MAX_PROMPT_CHARS, limit_prompt

    assert limit_prompt("red circle. blue square") == ("red circle. blue square", None)
    long = ". ".join(f"shape number {i}" for i in range(2000))
    kept, notice = limit_prompt(long)
    assert len(kept) <= MAX_PROMPT_CHARS and long.startswith(kept) and kept.endswith(tuple("0123456789"))
    assert notice is not None and f"{len(long):,} characters" in notice
    assert limit_prompt("x" * 5000)[0] == "x" * MAX_PROMPT_CHARS
