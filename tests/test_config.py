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


def test_override_values_take_the_kind_of_their_key():
    config = load_config("train", ["plots=false", "amp=false", "eval_flip=true", "save=2020", "load_epoch=30",
                                   "dataset_path=data/2020", "lr=1/200"])
    assert config.plots is False and config.amp is False and config.eval_flip is True
    assert config.save == "2020" and config.load_epoch == 30 and config.dataset_path == "data/2020"
    assert config.lr == 0.005
    search = load_config("search", ["width_mult_list=[1/3, 2/3, 1.0]", "pretrain=runs/search-pretrain-x",
                                    "stem_head_width=[(1, 1), (8/12, 8/12)]"])
    assert search.width_mult_list == [1 / 3, 2 / 3, 1.0] and search.pretrain == "runs/search-pretrain-x"
    assert search.stem_head_width[1] == (8 / 12, 8 / 12)
    assert load_config("search", ["pretrain=false"]).pretrain is False


@pytest.mark.parametrize("override, words", [
    ("batch_size='a'", r"batch_size='a' is not an integer; write it like batch_size=12\."),
    ("amp=1", r"amp=1 is not True or False; write it like amp=False"),
    ("plots=yes", r"plots=yes is not True or False; write it like plots=True"),
    ("width_mult_list=[1/3, x]", r"width_mult_list=\[1/3, x\] is not a list of numbers"),
    ("width_mult_list=[1/3, 1/0]", r"width_mult_list=\[1/3, 1/0\] is not a list of numbers"),
    ("lr=abc", r"lr=abc is not a number; write it like lr=0.01"),
])
def test_a_value_of_the_wrong_kind_is_one_sentence(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config("train", [override])


@pytest.mark.parametrize("override, words", [
    ("lr=-1", r"lr=-1 must be a positive number"),
    ("image_height=100", r"training crop size 100x1024 .* is not a positive multiple of 32"),
    ("eval_crop_size=1000", r"evaluation crop size 1000x1000 \(config keys eval_crop_size\) is not a positive "),
    ("seed=-1", r"seed=-1 must be between 0 and 2\*\*32 - 1"),
    ("eval_stride_rate=0", r"eval_stride_rate=0 must be in \(0, 1\]"),
    ("train_scale_array=[0.5, -1]", r"train_scale_array=\[0.5, -1\] must be a non-empty list of positive scales"),
])
def test_values_that_can_only_be_wrong_are_refused_at_load(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config("train", [override])


@pytest.mark.parametrize("override", ["lr=1e400", "lr=-1e400", "train_scale_array=[0.75, 1e999]",
                                      "stem_head_width=[(1, 1e400)]"])
def test_a_number_that_overflows_to_inf_is_refused(override):
    """``lr=1e400`` parses as inf; a run must not start with it (it would end with non-finite weights)."""
    with pytest.raises(ConfigError, match="is not a finite number"):
        load_config("train", [override])
