"""Every preset loads, the dataset key drives the data keys, and docs/configs.md documents every key."""
import os
import re

import pytest

from tests.helpers import REPO_ROOT
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


def _without_path(config):
    return {key: value for key, value in config.items() if key != "config_path"}


@pytest.mark.parametrize("alias, stage, dataset", [
    ("camvid_search", "search", "camvid"), ("camvid_train", "train", "camvid"),
    ("custom_search", "search", "custom"), ("custom_train", "train", "custom")])
def test_per_dataset_presets_are_the_stage_with_its_fragment(alias, stage, dataset, labels_file):
    extra = [f"labels_file='{labels_file}'"] if dataset == "custom" else []
    assert _without_path(load_config(alias, extra)) == \
        _without_path(load_config(stage, [f"dataset={dataset}"] + extra))


def test_presets_only_add_keys_over_stage_and_fragment():
    """No preset has a finalize of its own (the stage's runs once, after every layer) or repeats a stage."""
    import importlib.util
    for preset in PRESETS:
        spec = importlib.util.spec_from_file_location(preset, os.path.join(REPO_ROOT, "configs", preset + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "STAGE"):
            assert module.STAGE in ("search", "train") and not hasattr(module, "finalize"), preset


def test_demo_fragment_keeps_the_cityscapes_layout():
    config = load_config("train_tiny")
    assert (config.dataset, config.dataset_path, config.num_classes) == ("cityscapes", "data/demo", 19)
    assert config.eval_source == os.path.join("data/demo", "cityscapes_val_fine.txt")


def test_dataset_on_the_command_line_replaces_the_presets_fragment_not_its_recipe():
    config = load_config("camvid_train_cpu", ["dataset=cityscapes"])
    assert (config.num_classes, config.eval_height, config.image_height) == (19, 1024, 512)
    assert (config.lr, config.lr_schedule, config.dataset_path) == (0.05, "poly", "data/cityscapes")


def test_a_presets_derived_keys_follow_pretrain_and_lose_to_the_command_line():
    assert load_config("camvid_search_cpu", ["pretrain=True"]).image_height == 256
    search = load_config("camvid_search_cpu", ["pretrain='runs/x'"])
    assert (search.image_height, search.image_width, search.batch_size) == (224, 288, 2)
    assert load_config("camvid_search_cpu", ["image_height=160"]).image_height == 160


def test_camvid_evaluation_command_of_the_docs(tmp_path):
    """python train/train.py --config camvid_train is_eval=True eval_path=pretrained/camvid dataset_path=DIR"""
    config = load_config("camvid_train", ["is_eval=True", "eval_path=pretrained/camvid", f"dataset_path={tmp_path}"])
    assert (config.num_classes, config.eval_height, config.eval_width) == (11, 360, 480)
    assert config.eval_source == os.path.join(str(tmp_path), "camvid_val.txt")


def test_latency_reads_the_shared_keys_of_the_other_stages():
    latency, search = load_config("latency"), load_config("search")
    for key in ("seed", "layers", "Fch", "width_mult_list", "num_classes", "device", "output_root"):
        assert latency[key] == search[key], key
    assert (latency.image_height, latency.image_width) == (search.eval_height, search.eval_width)


def test_a_preset_file_with_an_unknown_key_names_it(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text('STAGE = "train"\nC = dict(dataset="camvid", batch_szie=3)\n')
    with pytest.raises(ValueError, match="unknown config key 'batch_szie' for mine.py. Did you mean: batch_size"):
        load_config(str(path))
