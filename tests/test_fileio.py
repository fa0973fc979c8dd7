"""tools/utils/fileio.py: atomic PNG / JSON / text writes."""
import json
import os

import cv2
import numpy as np
import pytest

from tools.utils.fileio import atomic_path, read_json, write_json, write_png, write_text


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
    assert json.load(open(tmp_path / "a.json")) == {"x": 1} == read_json(str(tmp_path / "a.json"))
    assert open(tmp_path / "a.json").read() == '{\n  "x": 1\n}\n'
    write_text(str(tmp_path / "a.txt"), "old")
    with pytest.raises(ValueError, match="a.txt"):
        write_png(str(tmp_path / "a.txt"), np.zeros((0, 0), np.uint8))    # cannot encode: old file kept
    assert open(tmp_path / "a.txt").read() == "old"


def _written_modes(folder):
    """Write one file through every writer of the project and return {name: permission bits}."""
    from PIL import Image

    from tools.data.prepare import split_dataset
    from tools.utils.checkpoint import save_checkpoint
    from tools.utils.fileio import copy_file
    write_png(str(folder / "a.png"), np.zeros((2, 2), np.uint8))
    write_text(str(folder / "list.txt"), "x")
    write_json(str(folder / "a.json"), {})
    copy_file(str(folder / "a.png"), str(folder / "copy.png"))
    save_checkpoint({"x": 1}, str(folder / "ck.pt"))
    with atomic_path(str(folder / "named.onnx")) as tmp:      # writers that want a file name (torch.onnx.export)
        open(tmp, "w").write("x")
    flat = folder / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "s_raw.png")
    (flat / "s_polygons.json").write_text("{}")
    split_dataset(str(flat), str(folder / "own"), ratios=(1, 0, 0), seed=0)     # the split copies
    modes = {name: os.stat(folder / name).st_mode & 0o777 for name in ("a.png", "list.txt", "a.json", "copy.png",
                                                                        "ck.pt", "named.onnx")}
    modes["split copy"] = os.stat(folder / "own" / "original_images" / "train" / "s_raw.png").st_mode & 0o777
    return modes


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    from tools.utils.fileio import file_mode
    old = os.umask(umask)
    try:
        assert file_mode() == mode
        modes = _written_modes(tmp_path)
    finally:
        os.umask(old)
    assert modes == {name: mode for name in modes}


def test_a_full_disk_is_one_sentence_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno

    import torch

    from tools.utils import fileio
    from tools.utils.checkpoint import save_checkpoint
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, str(path))

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(fileio.WriteError, match=rf"cannot write {path}: No space left on device; free space"):
        save_checkpoint({"epoch": 2}, str(path))
    monkeypatch.undo()

    def torch_full(handle):                  # torch.save turns the OSError into a RuntimeError
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")

    with pytest.raises(fileio.WriteError, match="No space left on device"):
        fileio.atomic_write(str(path), torch_full)
    assert torch.load(str(path), weights_only=True) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_a_folder_that_cannot_be_written_is_one_sentence(tmp_path, monkeypatch):
    import errno

    from tools.utils import fileio

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", denied)
    with pytest.raises(fileio.WriteError, match=r"cannot write .*a.json: Permission denied; .* a folder you can "):
        write_json(str(tmp_path / "a.json"), {})


def test_a_failed_named_writer_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="exporter failed"):
        with atomic_path(str(path)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("exporter failed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.onnx"]
    with atomic_path(str(path)) as tmp:
        open(tmp, "w").write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["model.onnx"]
