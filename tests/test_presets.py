"""Every preset loads, the dataset key drives the data keys, and docs/configs.md documents every key."""
import os
import re

import pytest

from conftest import REPO_ROOT
from tools.config import load_config

PRESETS = sorted(name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, "configs"))
                 if name.endswith(".py") and not name.startswith("_"))


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("name,id,trainId,color_r,color_g,color_b\nground,0,0,0,0,0\nlane,1,1,255,0,0\ncar,2,2,0,0,255\n")
    return str(path)


def _load(preset, labels_file):
    overrides = [f"labels_file='{labels_file}'"] if preset.startswith("custom") else []
    return load_config(preset, overrides)


def test_the_expected_presets_exist():
    assert {"search", "train", "latency", "search_tiny", "train_tiny", "camvid_search", "camvid_train",
            "custom_search", "custom_train"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_key_is_documented(preset, labels_file):
    with open(os.path.join(REPO_ROOT, "docs", "configs.md")) as handle:
        documented = set(re.findall(r"`(\w+)`", handle.read()))
    keys = set(_load(preset, labels_file)) - {"config_path"}
    assert sorted(keys - documented) == []


def test_camvid_preset_has_eleven_classes_and_its_lists():
    config = load_config("camvid_train")
    assert config.num_classes == 11 and config.eval_source.endswith("camvid_val.txt")
    assert config.image_height % 32 == 0 and config.image_width % 32 == 0


def test_custom_preset_takes_its_classes_from_the_labels_file(labels_file, tmp_path):
    config = load_config("custom_search", [f"labels_file='{labels_file}'", f"dataset_path='{tmp_path}'"])
    assert config.num_classes == 3
    assert config.train_source == os.path.join(str(tmp_path), "train_mapping_list.txt")


def test_custom_preset_without_labels_file_says_which_key():
    with pytest.raises(FileNotFoundError, match="labels_file"):
        load_config("custom_train", ["labels_file='/nonexistent/labels.csv'"])


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_config("train", ["dataset='kitti'"])
