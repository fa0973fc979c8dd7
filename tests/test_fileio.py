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


def _folder(path, **files):
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_atomic_folder_replaces_the_whole_folder_and_deletes_only_the_listed_files(tmp_path):
    from tools.utils.fileio import atomic_folder, folder_mode
    out = _folder(tmp_path / "out", a="old", b="old")
    with atomic_folder(str(out), lambda folder: {"a", "b"}) as stage:
        (tmp_path / stage / "a").write_text("new")
        assert not os.path.exists(out / "a.new")
    assert sorted(os.listdir(out)) == ["a"] and (out / "a").read_text() == "new"     # b of the old version: gone
    assert os.stat(out).st_mode & 0o777 == folder_mode() and os.listdir(tmp_path) == ["out"]
    with atomic_folder(str(tmp_path / "new" / "deep"), None) as stage:               # nothing there: no check
        open(os.path.join(stage, "x"), "w").close()
    assert os.listdir(tmp_path / "new" / "deep") == ["x"]


def test_atomic_folder_that_fails_or_is_refused_leaves_the_old_folder(tmp_path):
    from tools.utils.fileio import atomic_folder
    out = _folder(tmp_path / "out", a="old", mine="user")
    with pytest.raises(RuntimeError, match="export failed"):
        with atomic_folder(str(out), lambda folder: {"a", "mine"}) as stage:
            open(os.path.join(stage, "a"), "w").write("half")
            raise RuntimeError("export failed")

    def refuse(folder):
        raise ValueError(f"{folder} holds mine")

    with pytest.raises(ValueError, match="holds mine"):
        with atomic_folder(str(out), refuse) as stage:
            open(os.path.join(stage, "a"), "w").write("new")
    assert sorted(os.listdir(out)) == ["a", "mine"] and (out / "a").read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]                                  # no temporary folder left


def test_a_file_put_in_the_folder_during_the_swap_stops_it_and_is_kept(tmp_path):
    from tools.utils.fileio import FolderChangedError, atomic_folder
    out = _folder(tmp_path / "out", a="old")

    def listed_then_changed(folder):
        (out / "notes.txt").write_text("user")           # arrives after the check, before the swap
        return {"a"}

    with pytest.raises(FolderChangedError, match=rf"^{out} changed while .* also holds notes.txt\); nothing in it "):
        with atomic_folder(str(out), listed_then_changed) as stage:
            open(os.path.join(stage, "a"), "w").write("new")
    assert sorted(os.listdir(out)) == ["a", "notes.txt"] and (out / "a").read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def test_atomic_folder_through_a_link_replaces_the_folder_it_points_to(tmp_path):
    from tools.utils.fileio import atomic_folder
    real = _folder(tmp_path / "real", a="old")
    os.symlink(real, tmp_path / "link")
    with atomic_folder(str(tmp_path / "link"), lambda folder: {"a"}) as stage:
        open(os.path.join(stage, "b"), "w").write("new")
    assert os.path.islink(tmp_path / "link") and os.listdir(real) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]


def test_atomic_folder_on_a_full_disk_is_one_sentence(tmp_path, monkeypatch):
    import errno

    from tools.utils import fileio
    out = _folder(tmp_path / "out", a="old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio.os, "fsync", full)            # a file of the new folder: named as in ``out``
    with pytest.raises(fileio.WriteError, match=rf"^cannot write {out / 'sub' / 'b'}: No space left on device; "
                                                rf".*\(the previous version of the folder, if any, is unchanged\)"):
        with fileio.atomic_folder(str(out), lambda folder: {"a"}) as stage:
            write_text(os.path.join(stage, "sub", "b"), "new")
    monkeypatch.setattr(fileio.tempfile, "mkdtemp", full)
    with pytest.raises(fileio.WriteError, match=rf"^cannot write {out}: No space left on device; free space"):
        with fileio.atomic_folder(str(out), lambda folder: {"a"}):
            pass
    assert os.listdir(out) == ["a"] and os.listdir(tmp_path) == ["out"]
