from __future__ import annotations

import pytest

from tests.labeling.helpers import write_folder


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """(image folder, ground truth by relative path): 8 nested scenes, a text file and a corrupt PNG."""
    folder = tmp_path_factory.mktemp("scenes")
    return folder, write_folder(folder)
