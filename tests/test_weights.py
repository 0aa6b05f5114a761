"""Weights resolution order, integrity checks and messages."""

from __future__ import annotations

import fnmatch
import hashlib
import types

import pytest

from grounded_sam.weights import (
    WeightsIntegrityError,
    WeightsNotFoundError,
    WeightsSpec,
    resolve_weights,
    sha256_of,
    weights_home,
)


def test_home_defaults_to_the_user_cache(monkeypatch) -> None:
    monkeypatch.delenv("GROUNDED_SAM_HOME", raising=False)
    assert weights_home().parts[-2:] == (".cache", "grounded_sam")


def test_explicit_path_wins_over_home(offline_home, tmp_path) -> None:
    spec = WeightsSpec("w.bin", "ours")
    (offline_home / "w.bin").write_bytes(b"home")
    explicit = tmp_path / "mine.bin"
    explicit.write_bytes(b"mine")
    assert resolve_weights("m", spec, explicit) == explicit
    assert resolve_weights("m", spec) == offline_home / "w.bin"


def test_sha256_is_checked(offline_home) -> None:
    data = b"weights" * 1000
    good = WeightsSpec("w.bin", "ours", sha256=hashlib.sha256(data).hexdigest())
    (offline_home / "w.bin").write_bytes(data)
    assert sha256_of(offline_home / "w.bin") == good.sha256
    assert resolve_weights("m", good) == offline_home / "w.bin"
    (offline_home / "w.bin").write_bytes(data[:-1])
    with pytest.raises(WeightsIntegrityError, match="corrupt, truncated"):
        resolve_weights("m", good)


def test_missing_everywhere_is_one_clear_error(offline_home) -> None:
    spec = WeightsSpec("big.pth", "official", hf_repo_id="someone/repo", hf_filename="big.pth")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("big_model", spec)
    message = str(info.value)
    assert "'big.pth'" in message and str(offline_home) in message
    assert "HF_HUB_OFFLINE" in message and "GROUNDED_SAM_HOME" in message


def test_snapshot_message_names_the_folder(offline_home) -> None:
    spec = WeightsSpec("gdino-tiny", "hf", hf_repo_id="org/gdino")
    with pytest.raises(WeightsNotFoundError, match="repository 'org/gdino' in the folder"):
        resolve_weights("gdino", spec)


def test_explicit_missing_path_and_unpublished_weights(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="not found at"):
        resolve_weights("m", None, tmp_path / "nope.pth")
    with pytest.raises(WeightsNotFoundError, match="no published weights"):
        resolve_weights("m", None)


def test_bundled_weights_come_before_home(offline_home, monkeypatch, tmp_path) -> None:
    import grounded_sam.weights as weights

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "demo.safetensors").write_bytes(b"shipped")
    (offline_home / "demo.safetensors").write_bytes(b"home")
    monkeypatch.setattr(weights, "bundled_path", lambda name: assets / name)
    spec = WeightsSpec(
        "demo.safetensors", "ours", sha256=hashlib.sha256(b"shipped").hexdigest(), bundled=True
    )
    assert resolve_weights("demo", spec) == assets / "demo.safetensors"
    (assets / "demo.safetensors").write_bytes(b"tampered")
    with pytest.raises(WeightsIntegrityError):
        resolve_weights("demo", spec)


def test_no_network_fails_fast_instead_of_retrying(tmp_path, monkeypatch) -> None:
    import time

    import grounded_sam.weights as weights

    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "_hub_reachable", lambda timeout=2.0: False)
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="could not be reached"):
        resolve_weights("m", WeightsSpec("w.pth", "official", hf_repo_id="org/repo", hf_filename="w.pth"))
    assert time.perf_counter() - start < 5


def test_snapshots_skip_duplicate_weight_files(tmp_path, monkeypatch) -> None:
    import grounded_sam.weights as weights

    calls: list[list[str]] = []

    def fake_snapshot(repo_id, allow_patterns, local_files_only):
        calls.append(allow_patterns)
        folder = tmp_path / repo_id.replace("/", "--")
        folder.mkdir(exist_ok=True)
        if has_safetensors:
            (folder / "model.safetensors").write_bytes(b"w")
        return str(folder)

    hub = types.SimpleNamespace(snapshot_download=fake_snapshot)
    has_safetensors = True
    weights._snapshot(hub, "org/new", local_only=True)
    assert calls == [list(weights.SNAPSHOT_PATTERNS)] and "*.bin" not in calls[0]
    assert not any(fnmatch.fnmatch("sam2.1_hiera_tiny.pt", p) for p in calls[0])

    calls.clear()
    has_safetensors = False  # an older repository with only pytorch_model.bin
    weights._snapshot(hub, "org/old", local_only=True)
    assert len(calls) == 2 and "*.bin" in calls[1]
