"""tools/data/fileio.py: atomic PNG / JSON / text writes."""
import json
import os

import cv2
import numpy as np
import pytest

from tools.data.fileio import write_json, write_png, write_text


def test_png_is_rgb_on_disk_and_nothing_is_left_behind(tmp_path):
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 200                                               # red
    path = tmp_path / "sub" / "a.png"
    write_png(str(path), image)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 200]       # cv2 reads BGR
    write_png(str(tmp_path / "l.png"), np.full((2, 2), 7, np.uint8))
    assert cv2.imread(str(tmp_path / "l.png"), cv2.IMREAD_UNCHANGED).tolist() == [[7, 7], [7, 7]]
    assert sorted(os.listdir(tmp_path / "sub")) == ["a.png"]


def test_json_and_text(tmp_path):
    write_json(str(tmp_path / "a.json"), {"x": 1})
    assert json.load(open(tmp_path / "a.json")) == {"x": 1}
    write_text(str(tmp_path / "a.txt"), "old")
    with pytest.raises(ValueError, match="a.txt"):
        write_png(str(tmp_path / "a.txt"), np.zeros((0, 0), np.uint8))    # cannot encode: old file kept
    assert open(tmp_path / "a.txt").read() == "old"
