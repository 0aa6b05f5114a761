"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny test models run faster on one thread than on two (thread start-up dominates them)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """An empty $GROUNDED_SAM_HOME with the Hugging Face Hub offline and its cache empty."""
    monkeypatch.setenv("GROUNDED_SAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"
