from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.labeling.contact_sheet import BACKGROUND, contact_sheet, evenly_spaced
from grounded_sam.result import Result


def _item(h: int, w: int) -> tuple[str, np.ndarray, Result]:
    image = np.full((h, w, 3), 200, np.uint8)
    mask = np.zeros((1, h, w), bool)
    mask[0, h // 4 : h // 2, w // 4 : w // 2] = True
    box = np.array([[w // 4, h // 4, w // 2, h // 2]], np.float32)
    return f"{h}x{w}.png", image, Result(mask, box, ["car"], np.array([0.9]), np.array([0.8]), (h, w))


def test_grid_of_scaled_overlays() -> None:
    items = [_item(40, 60), _item(300, 100), _item(64, 64), _item(10, 200), _item(50, 50)]
    sheet = np.asarray(contact_sheet(items, thumb_size=96))
    rows, columns = 2, 3  # ceil(sqrt(5)) columns
    cell_h = sheet.shape[0] // rows
    assert sheet.shape[1] == columns * 96 and cell_h > 96
    for i in range(len(items)):
        cell = sheet[(i // columns) * cell_h : (i // columns) * cell_h + 96, (i % columns) * 96 :][:, :96]
        assert (cell == 200).all(axis=2).sum() > 200  # the grey image, scaled into the cell
        assert (np.abs(cell.astype(int) - 200).sum(axis=2) > 60).any()  # the mask / box drawn on it
    empty = sheet[cell_h:, 2 * 96 :]
    assert (empty == BACKGROUND).all()
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([])


def test_evenly_spaced() -> None:
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(3, 5) == [0, 1, 2]
    assert evenly_spaced(10, 1) == [0]
