"""Data preparation never deletes or overwrites a file it did not write, never deletes the only copy of an image
(split_dataset --move, then clean_up --remove-splits), and keeps paths read from annotation files inside the
dataset root (LabelMe imagePath); symlinked split folders keep working."""
import json
import os

import numpy as np
import pytest

from tests.test_prepare import LABELS_CSV, polygon_json, run_script, square
from tools.data.errors import DataError
from tools.data.labels import load_labels_file
from tools.data.prepare import (MANIFEST_NAME, clean_up_dataset, create_label_images, create_mapping_lists,
                                split_dataset)
from tools.utils.fileio import write_json, write_png


def flat_folder(folder, count=3):
    """``count`` tiny *_raw.png + *_polygons.json pairs (s0, s1, ...) in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        write_png(os.path.join(folder, f"s{i}_raw.png"), np.full((8, 12, 3), i * 40, np.uint8))
        polygon_json(os.path.join(folder, f"s{i}_polygons.json"), [square("route", 0, 4, 11, 7)])


def files_under(folder):
    """{relative path: bytes} of every file under ``folder``: what a refusal must leave exactly as it was."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


def one_sentence(message):
    """The project's error form: one sentence (no '. ' inside), ending with a full stop."""
    return message.count(". ") == 0 and message.endswith(".")


def test_remove_splits_refuses_after_move_and_every_file_survives(tmp_path):
    """The reported case: after --move the split files are the only copies; --remove-splits must refuse."""
    flat, root = str(tmp_path / "flat"), str(tmp_path / "own")
    flat_folder(flat)
    run_script("split_dataset", [flat, "--root", root, "--move"])
    assert not os.listdir(flat)
    before = files_under(root)
    assert len(before) == 6 + 1 and MANIFEST_NAME in before
    expected = (f"6 file(s) under {root} (first {os.path.join(root, 'original_images', 'train', 's0_raw.png')}) "
                f"were moved there from {flat} by split_dataset.py --move, so they are the only copies and "
                f"--remove-splits removes nothing; move them back into {flat} or delete them by hand.")
    for argv in (["--dry-run"], []):
        with pytest.raises(DataError) as error:
            run_script("clean_up_datasets", ["--root", root, "--layout", "custom", "--remove-splits"] + argv)
        assert str(error.value) == expected and one_sentence(expected)
        assert files_under(root) == before
    run_script("clean_up_datasets", ["--root", root, "--layout", "custom"])      # no generated file: nothing
    assert files_under(root) == before


def test_remove_splits_removes_copies_and_keeps_the_sources(tmp_path):
    flat, root = str(tmp_path / "flat"), str(tmp_path / "own")
    flat_folder(flat)
    sources = files_under(flat)
    split_dataset(flat, root)
    manifest = json.load(open(os.path.join(root, MANIFEST_NAME)))
    assert manifest["split"]["annotations/val/s2_polygons.json"] == {
        "source": os.path.join(flat, "s2_polygons.json"), "moved": False}
    removed = clean_up_dataset(root, "custom", remove_splits=True)
    assert len(removed) == 6 and not files_under(root)                  # the manifest goes with the last entry
    assert files_under(flat) == sources


def test_remove_splits_refuses_an_edited_copy_and_a_file_it_did_not_write(tmp_path):
    flat, root = str(tmp_path / "flat"), str(tmp_path / "own")
    flat_folder(flat)
    split_dataset(flat, root)
    edited = os.path.join(root, "annotations", "train", "s1_polygons.json")
    polygon_json(edited, [square("obstacle", 0, 0, 3, 3)])              # a fix made in the root only
    before = files_under(root)
    with pytest.raises(DataError) as error:
        clean_up_dataset(root, "custom", remove_splits=True)
    assert str(error.value) == (
        f"1 split file(s) under {root} (first {edited}) no longer match their source "
        f"({os.path.join(flat, 's1_polygons.json')} is gone or differs), so they may be the only copies and "
        f"--remove-splits removes nothing; copy them back to the source folder or delete them by hand.")
    assert files_under(root) == before
    os.remove(edited)
    own = os.path.join(root, "original_images", "val", "mine_raw.png")
    write_png(own, np.zeros((4, 4, 3), np.uint8))
    before = files_under(root)
    with pytest.raises(DataError, match=r"^1 file\(s\) under .* \(first .*mine_raw.png\) were not written by "
                                        r"split_dataset.py .* delete them by hand if you have other copies.$"):
        clean_up_dataset(root, "custom", remove_splits=True)
    assert files_under(root) == before


def test_split_does_not_overwrite_a_different_file_nor_put_one_file_into_two_splits(tmp_path):
    flat, root = str(tmp_path / "flat"), str(tmp_path / "own")
    flat_folder(flat)
    theirs = os.path.join(root, "annotations", "val", "s2_polygons.json")
    os.makedirs(os.path.dirname(theirs))
    open(theirs, "w").write("my own annotation")
    with pytest.raises(DataError) as error:
        split_dataset(flat, root, move=True)
    assert str(error.value) == (f"{theirs} exists and differs from {os.path.join(flat, 's2_polygons.json')}; "
                                f"split_dataset.py does not overwrite it, so move it away or choose another --root "
                                f"(nothing was moved).")
    assert open(theirs).read() == "my own annotation" and len(os.listdir(flat)) == 6
    assert not os.path.exists(os.path.join(root, "original_images")) and not os.path.exists(
        os.path.join(root, MANIFEST_NAME))
    os.remove(theirs)
    assert split_dataset(flat, root) == split_dataset(flat, root)       # the same split again: same bytes, fine
    with pytest.raises(DataError, match=r"original_images/val/s2_raw.png already exists and this split puts "
                                        r"s2_raw.png into train/ \(one file in two splits\)"):
        split_dataset(flat, root, seed=3)
    assert len(files_under(root)) == 6 + 1


def clean_up_checked(root):
    """clean_up_dataset after its dry run: both must name the same files, and the dry run removes none."""
    before = files_under(root)
    planned = clean_up_dataset(root, "custom", dry_run=True)
    assert files_under(root) == before
    assert clean_up_dataset(root, "custom") == planned
    return planned


def test_clean_up_removes_only_what_the_scripts_recorded(tmp_path):
    """A downloaded or hand-made label image / list is not removed by clean-up, nor is a recorded file the user
    has replaced since (its size changed)."""
    flat, root = str(tmp_path / "flat"), str(tmp_path / "own")
    flat_folder(flat)
    split_dataset(flat, root)
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS_CSV)
    written = create_label_images(root, "custom", load_labels_file(str(labels)), progress=False)
    lists = create_mapping_lists(root, "custom")
    downloaded = os.path.join(root, "annotations", "train", "s0_color.png")
    write_png(downloaded, np.zeros((8, 12, 3), np.uint8))
    replaced = os.path.join(root, "annotations", "val", "s2_labelIds.png")
    write_png(replaced, np.zeros((80, 120), np.uint8))
    own_list = os.path.join(root, "my_mapping_list.txt")
    open(own_list, "w").write("x\n")
    removed = clean_up_checked(root)
    assert sorted(removed) == sorted(set(written + list(lists.values())) - {replaced})
    assert all(os.path.exists(path) for path in (downloaded, replaced, own_list))
    assert len([p for p in files_under(root) if p.endswith(("_raw.png", "_polygons.json"))]) == 6


def test_a_manifest_entry_outside_the_root_is_refused(tmp_path):
    root = tmp_path / "own"
    root.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    write_json(str(root / MANIFEST_NAME), {"split": {}, "generated": {"../precious.txt": 4}})
    with pytest.raises(DataError) as error:
        clean_up_dataset(str(root), "custom")
    assert str(error.value) == (f"{root / MANIFEST_NAME} names '../precious.txt', which lies outside the dataset "
                                f"root {root}; delete that entry (the dataset scripts only write inside the root).")
    assert outside.read_text() == "keep"


def labelme_json(path, image_path):
    """A LabelMe file with one polygon whose imagePath is ``image_path`` (written as given)."""
    write_json(path, {"shapes": [{"label": "route", "points": [[0, 0], [5, 0], [5, 5]], "shape_type": "polygon"}],
                      "imagePath": image_path, "imageHeight": 8, "imageWidth": 12})


@pytest.mark.parametrize("absolute", [False, True])
def test_labelme_image_path_outside_the_root_is_refused(tmp_path, absolute):
    """An imagePath out of the root (even to an existing file) would put that file into the lists."""
    root = str(tmp_path / "labelme")
    outside = tmp_path / "elsewhere" / "a.png"
    write_png(str(outside), np.zeros((8, 12, 3), np.uint8))
    image_path = str(outside) if absolute else "../elsewhere/a.png"
    for stem in ("a", "b"):
        labelme_json(os.path.join(root, stem + ".json"), image_path if stem == "a" else "b.png")
    write_png(os.path.join(root, "b.png"), np.zeros((8, 12, 3), np.uint8))
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS_CSV)
    expected = (f"LabelMe file {os.path.join(root, 'a.json')} names the image '{image_path}' (imagePath), which "
                f"lies outside the dataset root {root}; put the image beside the .json and set imagePath to its "
                f"file name.")
    for call in (lambda: create_label_images(root, "labelme", load_labels_file(str(labels)), progress=False),
                 lambda: create_mapping_lists(root, "labelme", ratios=(0.5, 0.5, 0))):
        with pytest.raises(DataError) as error:
            call()
        assert str(error.value) == expected and one_sentence(expected)
    assert sorted(os.listdir(root)) == ["a.json", "b.json", "b.png"]      # no label image, no list, no record
    write_png(os.path.join(root, "a.png"), np.zeros((8, 12, 3), np.uint8))   # fixed: the image beside the json
    labelme_json(os.path.join(root, "a.json"), "a.png")
    create_label_images(root, "labelme", load_labels_file(str(labels)), progress=False)
    lists = create_mapping_lists(root, "labelme", ratios=(0.5, 0.5, 0))  # the record beside them is no annotation
    assert open(lists["train_val"]).read().split() == ["a.png", "label_images/a_labelTrainIds.png",
                                                       "b.png", "label_images/b_labelTrainIds.png"]


def test_labelme_split_folders_that_are_symlinks_keep_working(tmp_path):
    """data/x/train -> a shared copy elsewhere: imagePath is compared lexically, so it is inside the root."""
    root, shared = tmp_path / "labelme", tmp_path / "shared"
    for split in ("train", "val"):
        write_png(str(shared / split / "a.png"), np.zeros((8, 12, 3), np.uint8))
        labelme_json(str(shared / split / "a.json"), f"../{split}/a.png")
    root.mkdir()
    for split in ("train", "val"):
        os.symlink(str(shared / split), str(root / split))
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS_CSV)
    create_label_images(str(root), "labelme", load_labels_file(str(labels)), progress=False)
    lists = create_mapping_lists(str(root), "labelme")
    assert open(lists["train"]).read() == "train/a.png label_images/train/a_labelTrainIds.png\n"
