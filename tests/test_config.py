"""Config loading: original defaults, derived keys, overrides, unknown keys."""
import pytest

from tools.config import ConfigError, load_config, parse_overrides


def test_search_pretrain_defaults_match_the_original():
    config = load_config("search")
    assert (config.batch_size, config.lr, config.image_height, config.image_width) == (3, 2e-2, 256, 512)
    assert config.niters_per_epoch == max(2975 // 2 // 3, 400)
    assert config.save == "pretrain-256x512_F12.L16_batch3"
    assert config.latency_weight == [0, 0] and config.nepochs == 20


def test_search_mode_defaults_follow_pretrain_override():
    config = load_config("search", ["pretrain='search-pretrain-x'"])
    assert (config.batch_size, config.image_height, config.nepochs) == (2, 224, 30)
    assert config.latency_weight == [0, 1e-2]
    assert config.save == "224x448_F12.L16_batch2"


def test_explicit_override_beats_derived_default():
    config = load_config("search", ["batch_size=5", "Fch=8"])
    assert config.batch_size == 5 and config.save == "pretrain-256x512_F8.L16_batch5"


def test_train_modes():
    teacher = load_config("train", ["mode='teacher'"])
    assert teacher.arch_idx == [0] and teacher.save == "512x1024_teacher_batch12"
    student = load_config("train")
    assert student.arch_idx == [0, 1] and student.stem_head_width[1] == (8. / 12, 8. / 12)


def test_dataset_path_reroots_lists():
    config = load_config("train", ["dataset_path='/data/cs'"])
    assert config.train_source == "/data/cs/cityscapes_train_fine.txt" and config.img_root_folder == "/data/cs"


def test_unknown_key_lists_close_matches():
    with pytest.raises(ConfigError, match="Did you mean: batch_size"):
        load_config("search", ["batch_szie=4"])


def test_values_are_python_literals_or_strings():
    assert parse_overrides(["a=[1, 2]", "b=True", "c=some/path", "d=1e-3"]) == \
        {"a": [1, 2], "b": True, "c": "some/path", "d": 1e-3}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["oops"])


def test_unknown_preset_names_the_presets():
    with pytest.raises(ConfigError, match="presets:"):
        load_config("nonexistent")
