"""Every refused checkpoint gives our message (what, why, which file, what to do): wrong dtypes, damaged
safetensors and metadata, pickles that are not weights-only (also inside a SAM 2 folder), named pipes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from grounded_sam.sam import build_sam
from grounded_sam.text.demo_clip import load_demo_clip
from grounded_sam.weights import WeightsFileError, bundled_path, check_weights_path


def tensors_of(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(bundled_path(name)), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})  # noqa: SIM118


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool])
def test_integer_or_boolean_tensors_are_refused(tmp_path: Path, dtype) -> None:
    sam, meta = tensors_of("demo_sam.safetensors")
    save_file({k: v.to(dtype) for k, v in sam.items()}, str(tmp_path / "sam.safetensors"), metadata=meta)
    with pytest.raises(
        WeightsFileError, match=r"refused .*sam.safetensors: \d+ tensor\(s\) are integer or boolean"
    ):
        build_sam(checkpoint=tmp_path / "sam.safetensors")
    clip, _ = tensors_of("demo_clip.safetensors")
    save_file({k: v.to(dtype) for k, v in clip.items()}, str(tmp_path / "clip.safetensors"))
    with pytest.raises(WeightsFileError, match=r"clip\.safetensors.*integer or boolean"):
        load_demo_clip(tmp_path / "clip.safetensors")


def test_damaged_safetensors_and_metadata_are_explained(tmp_path: Path) -> None:
    data = bundled_path("demo_clip.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.safetensors").write_bytes(b"")
    for name in ("half", "empty"):
        with pytest.raises(
            WeightsFileError, match=f"the demo CLIP from .*{name}.safetensors: corrupt.*download"
        ):
            load_demo_clip(tmp_path / f"{name}.safetensors")
    sam, meta = tensors_of("demo_sam.safetensors")
    key = next(iter(meta))
    for broken in ("{not json", "[1, 2]", '"a string"'):
        save_file(sam, str(tmp_path / "meta.safetensors"), metadata={key: broken})
        with pytest.raises(WeightsFileError, match=r"architecture stored in .*meta\.safetensors.s metadata"):
            build_sam(checkpoint=tmp_path / "meta.safetensors")


def test_pickles_that_are_not_weights_only_never_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsFileError, match=r"evil\.pth: it holds Python objects"):
        build_sam(checkpoint=tmp_path / "evil.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsFileError, match=r"empty.pth \(EOFError"):
        build_sam(checkpoint=tmp_path / "empty.pth")
    assert not (tmp_path / "PWNED").exists()


def test_a_sam2_folder_with_a_malicious_bin_is_refused_in_our_words(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("transformers")
    from grounded_sam.sam2.build import build_sam2
    from tests.sam2.builders import tiny_sam2

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "sam2"
    tiny_sam2().save_pretrained(folder)
    (folder / "model.safetensors").unlink()  # transformers then reads pytorch_model.bin
    torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(WeightsFileError, match=r"cannot load SAM 2 from .*sam2: it holds Python objects"):
        build_sam2(None, folder)
    assert not (tmp_path / "PWNED").exists()


def test_a_named_pipe_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    pipe = tmp_path / "weights.pth"
    os.mkfifo(pipe)
    raised: list[BaseException] = []

    def load() -> None:
        try:
            build_sam(checkpoint=pipe)
        except BaseException as error:  # handed to the test thread
            raised.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "build_sam blocked on a named pipe"
    assert isinstance(raised[0], WeightsFileError) and "named pipe" in str(raised[0])
    with pytest.raises(WeightsFileError, match="a device or socket"):
        check_weights_path("/dev/null")
    with pytest.raises(WeightsFileError, match="named pipe"):
        load_demo_clip(pipe)
