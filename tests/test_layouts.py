"""Dataset layouts are one table (tools/data/prepare.py ``LAYOUTS``): every row is complete, every consumer (the
dataset/ scripts' --layout choices, the dispatch, the config's list names and message, the module docstring,
docs/usage.md) reads it, and a made-up layout added to that table alone flows through all of them."""
import dataclasses
import glob
import os
import types

import numpy as np
import pytest
from easydict import EasyDict

import tools.data.prepare as prepare
from tests.test_prepare import REPO, run_script
from tools.config import ConfigError, dataset_paths, follow_dataset
from tools.data.errors import DataError, DataFileNotFoundError
from tools.data.prepare import (LAYOUTS, LIST_NAMES, LIST_SPLITS, Layout, create_label_images, create_mapping_lists,
                                dataset_layouts, held_out_list_names, layout_names, per_split)
from tools.utils.fileio import write_json, write_png


def one_sentence(message):
    """The project's error form: one sentence (no '. ' inside), ending with a full stop."""
    return message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_row_fills_every_field(name):
    layout = LAYOUTS[name]
    assert layout.name == name and layout.summary.strip()
    assert set(layout.list_names) == set(LIST_SPLITS)
    assert all(list_name.endswith(".txt") for list_name in layout.list_names.values())
    assert len(set(layout.list_names.values())) == len(LIST_SPLITS)              # four different files
    assert callable(layout.pairs)
    assert layout.missing_label.strip().endswith(".") and layout.missing_label.format(root="R")
    if layout.convert is None:
        assert one_sentence(layout.no_convert) and not layout.polygon_globs
    else:
        assert callable(layout.convert) and not layout.no_convert
    reader = LAYOUTS[layout.config_dataset]                                        # a config dataset reads it
    assert reader.config_dataset == reader.name and dict(reader.list_names) == dict(layout.list_names)
    assert isinstance(layout.labels_file, bool)
    assert all(isinstance(folder, str) and folder for folder in layout.split_folders + layout.polygon_globs)


def test_a_layout_row_is_frozen_and_refuses_missing_fields():
    layout = LAYOUTS["cityscapes"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.name = "other"
    with pytest.raises(TypeError):
        layout.list_names["train"] = "mine.txt"
    fields = dict(summary="s", list_names=dict(layout.list_names), pairs=layout.pairs, missing_label="m.")
    with pytest.raises(ValueError, match="list_names must name the lists"):
        Layout("x", **dict(fields, list_names={"train": "t.txt"}), convert=layout.convert)
    with pytest.raises(ValueError, match="either convert or no_convert"):
        Layout("x", **fields)
    with pytest.raises(ValueError, match="either convert or no_convert"):
        Layout("x", **fields, convert=layout.convert, no_convert="none.")


def test_module_docstring_and_usage_name_every_layout():
    usage = open(os.path.join(REPO, "docs", "usage.md")).read()
    for name in LAYOUTS:
        assert f"- ``{name}``: " in prepare.__doc__
        assert f"| `{name}` |" in usage, f"docs/usage.md 'Dataset layouts' has no row for the layout {name}"
    assert prepare.layouts_doc().count("\n- ``") == len(LAYOUTS)


def test_consumers_read_the_table():
    assert layout_names() == tuple(LAYOUTS)
    assert layout_names(convertible=True) == tuple(name for name in LAYOUTS if name != "camvid")
    assert dataset_layouts() == ("cityscapes", "custom", "camvid")
    assert list(LIST_NAMES) == list(LAYOUTS) and LIST_NAMES["masks"] == LAYOUTS["custom"].list_names
    with pytest.raises(ValueError, match=r"layout 'coco' is unknown; use one of \['camvid', 'cityscapes'"):
        create_mapping_lists(".", "coco")


def _fragment_of_another_layout(monkeypatch):
    """Make tools.config see a dataset fragment whose layout is not its name: the config's layout message."""
    monkeypatch.setattr("tools.config.load_fragment", lambda name: types.SimpleNamespace(C={"dataset": "custom"}))


def test_config_message_lists_the_config_layouts(monkeypatch):
    _fragment_of_another_layout(monkeypatch)
    with pytest.raises(ConfigError, match=r"dataset must be one of the layouts cityscapes, custom, camvid, got 'x'"):
        follow_dataset(EasyDict(dataset="x"), set())


# ---- the same missing-label check for every layout ---------------------------------------------------------
def _image(root, rel):
    write_png(os.path.join(root, rel), np.zeros((4, 6, 3), np.uint8))


def _labelme(root):
    _image(root, "train/a.png")
    write_json(os.path.join(root, "train", "a.json"),
               {"imageWidth": 6, "imageHeight": 4, "imagePath": "a.png", "shapes": []})


# one train image of each layout, with its annotations (mask, LabelMe file) but no label image
UNLABELLED = {
    "cityscapes": lambda root: _image(root, "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"),
    "custom": lambda root: _image(root, "original_images/train/s0_raw.png"),
    "camvid": lambda root: _image(root, "train/0001TP_006690.png"),
    "masks": lambda root: (_image(root, "images/train/a.png"), _image(root, "masks/train/a.png")),
    "labelme": _labelme,
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_lists_before_label_images_are_one_sentence_for_every_layout(tmp_path, name):
    if name not in UNLABELLED:
        pytest.fail(f"add an unlabelled sample of the layout {name} to UNLABELLED")
    root = str(tmp_path / name)
    UNLABELLED[name](root)
    with pytest.raises(DataFileNotFoundError) as error:
        create_mapping_lists(root, name)
    message = str(error.value)
    assert one_sentence(message) and root in message
    assert message.endswith(LAYOUTS[name].missing_label.format(root=root))
    if LAYOUTS[name].convert is not None:
        assert "dataset/createTrainIdLabelImgs.py" in message
    assert not os.path.exists(os.path.join(root, prepare.MANIFEST_NAME))          # no list was written


def test_masks_lists_before_label_images_say_which_command(tmp_path):
    root = str(tmp_path / "own")
    UNLABELLED["masks"](root)
    with pytest.raises(DataFileNotFoundError, match=rf"--root {root} --layout masks --labels-file"):
        create_mapping_lists(root, "masks")


def test_camvid_has_nothing_to_convert_and_no_polygons(tmp_path):
    with pytest.raises(DataError, match="CamVid ships label images"):
        create_label_images(str(tmp_path), "camvid")
    with pytest.raises(DataError, match="the masks layout has no \\*_polygons.json files"):
        prepare.find_polygon_files(str(tmp_path), "masks")


# ---- a made-up layout, added to the table alone -----------------------------------------------------------
def _coco_pairs(root, split):
    images = sorted(glob.glob(os.path.join(root, "images", split, "*.png")))
    return [(os.path.relpath(image, root), os.path.join("label_images", split, os.path.basename(image)))
            for image in images]


def _coco_convert(root, layout, label_set, encodings, progress):
    written = []
    for split in ("train", "val"):
        for _, label in _coco_pairs(root, split):
            write_png(os.path.join(root, label), np.zeros((4, 6), np.uint8))
            written.append(os.path.join(root, label))
    return written


COCO = Layout("coco", "``images/{split}/*.png`` and one ``instances_{split}.json``",
              {"train": "coco_train.txt", "val": "coco_val.txt", "test": "coco_test.txt",
               "train_val": "coco_train_val.txt"},
              pairs=per_split(_coco_pairs), missing_label="run dataset/createTrainIdLabelImgs.py --layout coco first.",
              convert=_coco_convert)
KITTI = Layout("kitti", "``image_2/*.png`` and ``semantic/*.png``",
               {split: f"kitti_{split}.txt" for split in LIST_SPLITS}, pairs=per_split(lambda root, split: []),
               missing_label="copy semantic/ there.",
               no_convert="KITTI ships label images; there is nothing to convert.")


def test_a_made_up_layout_in_the_table_alone_flows_through_scripts_config_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(LAYOUTS, "coco", COCO)
    monkeypatch.setitem(LAYOUTS, "kitti", KITTI)
    root = str(tmp_path / "coco")
    for split in ("train", "val"):
        _image(root, f"images/{split}/{split}0.png")

    with pytest.raises(DataFileNotFoundError, match="--layout coco first"):
        create_mapping_lists(root, "coco")
    run_script("createTrainIdLabelImgs", ["--root", root, "--layout", "coco"])
    run_script("create_mapping_lists", ["--root", root, "--layout", "coco"])
    lines = open(os.path.join(root, "coco_train.txt")).read()
    assert lines == "images/train/train0.png label_images/train/train0.png\n"
    assert sorted(name for name in os.listdir(root) if name.endswith(".txt")) == [
        "coco_train.txt", "coco_train_val.txt", "coco_val.txt"]
    run_script("clean_up_datasets", ["--root", root, "--layout", "coco"])
    assert not glob.glob(os.path.join(root, "*.txt"))                            # the recorded lists are gone

    assert held_out_list_names("coco", "train0")["held_out"] == "coco_heldout_train0.txt"
    assert dataset_paths("coco", root)["train_source"] == os.path.join(root, "coco_train.txt")
    assert dataset_layouts()[-2:] == ("coco", "kitti")
    assert prepare.options_from_config(EasyDict(dataset="coco", dataset_path=root))[1] == "coco"
    _fragment_of_another_layout(monkeypatch)
    with pytest.raises(ConfigError, match="cityscapes, custom, camvid, coco, kitti, got"):
        follow_dataset(EasyDict(dataset="x"), set())

    with pytest.raises(DataError, match="KITTI ships label images"):             # no converter: its reason
        create_label_images(root, "kitti")
    with pytest.raises(SystemExit):                                               # not a choice where none converts
        run_script("createTrainIdLabelImgs", ["--root", root, "--layout", "kitti"])
    assert "invalid choice: 'kitti'" in capsys.readouterr().err
