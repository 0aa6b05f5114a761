from __future__ import annotations

import pytest
import torch

from tests.labeling.helpers import write_folder


@pytest.fixture(autouse=True)
def one_thread():
    """The CPU is shared: one torch thread keeps the tiny models fast and the timings stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """(image folder, ground truth by relative path): 8 nested scenes, a text file and a corrupt PNG."""
    folder = tmp_path_factory.mktemp("scenes")
    return folder, write_folder(folder)
