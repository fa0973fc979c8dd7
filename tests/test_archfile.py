"""Arch files (tools/models/archfile.py): legacy pickles, the project format, validation, converter."""
import os
import stat

import pytest
import torch

from tests.reliability_helpers import Payload
from tools.convert_arch import main as convert_main
from tools.models.archfile import (ARCH_FORMAT, METRIC_KEYS, ArchFileError, LegacyArchFileError,
                                   arch_file_name, arch_parameters, convert_arch, load_arch, load_arch_dir,
                                   load_legacy_arch, published_arch_path, save_arch, tensor_keys, validate_arch)

PUBLISHED_METRICS = {"mIoU02": 0.027548216556921325, "latency02": 6.260467391822158,
                     "mIoU12": 0.06233587477048027, "latency12": 6.4139770511337275}


def _legacy(test_data_dir, idx):
    return os.path.join(test_data_dir, f"arch_{idx}.pt")


@pytest.mark.parametrize("idx", [0, 1])
def test_legacy_file_converts_to_the_shipped_file(test_data_dir, idx):
    legacy = load_legacy_arch(_legacy(test_data_dir, idx))
    shipped = load_arch(published_arch_path(idx))
    assert list(shipped) == ["format", "arch_idx"] + tensor_keys(idx) + list(METRIC_KEYS)
    assert shipped["format"] == ARCH_FORMAT and shipped["arch_idx"] == idx
    for key in tensor_keys(idx):
        assert torch.equal(legacy[key], shipped[key])
        assert type(shipped[key]) is torch.Tensor and shipped[key].dtype == torch.float32
        assert shipped[key].device.type == "cpu" and not shipped[key].requires_grad
    for key, value in PUBLISHED_METRICS.items():
        assert type(shipped[key]) is float and shipped[key] == value


@pytest.mark.parametrize("idx", [0, 1])
def test_shipped_files_load_with_weights_only(idx):
    record = torch.load(published_arch_path(idx), weights_only=True)
    assert record["format"] == ARCH_FORMAT
    ratio_columns = 1 if idx == 0 else 5
    assert tuple(record[f"ratio_{idx}_0"].shape) == (15, ratio_columns)


def test_load_arch_on_a_legacy_file_says_convert(test_data_dir):
    with pytest.raises(LegacyArchFileError, match="convert_arch.py"):
        load_arch(_legacy(test_data_dir, 1))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_arch(str(tmp_path / "arch_1.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_legacy_arch(str(tmp_path / "arch_1.pt"))


def test_save_round_trip_is_atomic_and_readable(tmp_path):
    record = load_arch(published_arch_path(1))
    path = str(tmp_path / "sub" / "arch_1.pt")
    save_arch(record, path)
    assert os.listdir(tmp_path / "sub") == ["arch_1.pt"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~_umask()
    again = load_arch(path)
    assert list(again) == list(record)
    for key in tensor_keys(1):
        assert torch.equal(again[key], record[key])


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_save_accepts_an_original_style_dict(tmp_path):
    state = {key: torch.nn.Parameter(value.clone()) if isinstance(value, torch.Tensor) else value
             for key, value in load_arch(published_arch_path(1)).items() if key not in ("format", "arch_idx")}
    path = str(tmp_path / "arch_1_20.pt")
    save_arch(state, path)
    record = load_arch_dir(str(tmp_path), 1, load_epoch=20)
    assert record["arch_idx"] == 1 and type(record["alpha_1_0"]) is torch.Tensor


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    record = load_arch(published_arch_path(1))
    missing = {k: v for k, v in record.items() if k != "beta_1_2"}
    with pytest.raises(ArchFileError, match="missing 'beta_1_2'"):
        validate_arch(missing)
    bad = dict(record, alpha_1_1=torch.zeros(14, 5))
    with pytest.raises(ArchFileError, match=r"'alpha_1_1' has shape \(14, 5\) but layers=16 needs \(15, 5\)"):
        validate_arch(bad)
    with pytest.raises(ArchFileError, match="layers=12"):
        validate_arch(record, layers=12)
    with pytest.raises(ArchFileError, match="width_mult_list has 3 entries"):
        validate_arch(record, width_mult_list=[0.5, 0.75, 1.0])
    no_metric = {k: v for k, v in record.items() if k != "latency12"}
    with pytest.raises(ArchFileError, match="metric 'latency12'"):
        validate_arch(no_metric)
    torch.save(missing, str(tmp_path / "broken.pt"))
    with pytest.raises(ArchFileError, match="broken.pt is missing 'beta_1_2'"):
        load_arch(str(tmp_path / "broken.pt"))
    torch.save({k: v for k, v in record.items() if k != "format"}, str(tmp_path / "unmarked.pt"))
    with pytest.raises(ArchFileError, match="format marker"):
        load_arch(str(tmp_path / "unmarked.pt"))
    with pytest.raises(ArchFileError, match="missing 'beta_1_2'"):
        save_arch(missing, str(tmp_path / "arch_1.pt"))
    assert not os.path.exists(tmp_path / "arch_1.pt")


def test_arch_index_must_be_unique():
    record = load_arch(published_arch_path(1))
    both = dict(record, alpha_0_0=record["alpha_1_0"])
    with pytest.raises(ArchFileError, match="exactly one"):
        validate_arch(both)
    with pytest.raises(ArchFileError, match="exactly one"):
        validate_arch({"mIoU02": 0.1})


def test_arch_file_names():
    assert arch_file_name(1) == "arch_1.pt"
    assert arch_file_name(0, 30) == "arch_0_30.pt"
    assert arch_file_name(1, "30") == "arch_1_30.pt"
    with pytest.raises(ArchFileError, match="neither 'last' nor an epoch"):
        arch_file_name(1, "best")


def test_arch_parameters_as_train_py_passes_them():
    record = load_arch(published_arch_path(0))
    alphas, betas, ratios = arch_parameters(record, 0)
    assert [tuple(a.shape) for a in alphas] == [(16, 5), (15, 5), (14, 5)]
    assert betas[0] is None and [tuple(b.shape) for b in betas[1:]] == [(14, 2), (13, 2)]
    assert [tuple(r.shape) for r in ratios] == [(15, 1), (15, 1), (14, 1)]


def test_converter_script_and_function(test_data_dir, tmp_path):
    out_dir = tmp_path / "converted"
    convert_main([test_data_dir, str(out_dir)])
    assert sorted(os.listdir(out_dir)) == ["arch_0.pt", "arch_1.pt"]
    for idx in (0, 1):
        converted = load_arch_dir(str(out_dir), idx)
        shipped = load_arch(published_arch_path(idx))
        assert all(torch.equal(converted[k], shipped[k]) for k in tensor_keys(idx))
    record = convert_arch(_legacy(test_data_dir, 0), str(tmp_path / "t.pt"))
    assert record["arch_idx"] == 0 and load_arch(str(tmp_path / "t.pt"))["mIoU12"] == PUBLISHED_METRICS["mIoU12"]
    with pytest.raises(FileNotFoundError, match="no arch_"):
        convert_main([str(_empty_dir(tmp_path)), str(tmp_path / "x")])


def _empty_dir(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path



@pytest.mark.parametrize("zip_format", [True, False])
def test_a_malicious_arch_file_is_refused_and_nothing_runs(tmp_path, zip_format):
    pwned = str(tmp_path / "pwned")
    path = str(tmp_path / "arch_1.pt")
    record = dict(load_arch(published_arch_path(1)), alpha_1_0=Payload(pwned))
    torch.save(record, path, _use_new_zipfile_serialization=zip_format)
    for attempt in (lambda: load_arch(path), lambda: load_legacy_arch(path),
                    lambda: convert_main([path, str(tmp_path / "out.pt")])):
        with pytest.raises(ArchFileError, match=r"arch file .*arch_1.pt asks to run 'posix.mkdir' when loaded.*"
                                                r"refused without running anything") as info:
            attempt()
        assert not isinstance(info.value, LegacyArchFileError) and "convert" not in str(info.value)
    assert not os.path.exists(pwned) and not os.path.exists(tmp_path / "out.pt")


def test_only_legacy_pickles_get_the_advice_to_convert(test_data_dir, tmp_path):
    with pytest.raises(LegacyArchFileError, match="original FasterSeg arch pickle.*convert_arch.py"):
        load_arch(_legacy(test_data_dir, 0))
    truncated, text = tmp_path / "truncated.pt", tmp_path / "text.pt"
    truncated.write_bytes(open(_legacy(test_data_dir, 1), "rb").read()[:1000])
    text.write_text("alpha_1_0 = [[0.1, 0.2]]\n")
    torch.save([1, 2, 3], str(tmp_path / "foreign.pt"), _use_new_zipfile_serialization=False)
    for path, words in ((truncated, "cannot be read"), (text, "cannot be read"), (tmp_path / "foreign.pt", "list")):
        with pytest.raises(ArchFileError, match=words) as info:
            load_arch(str(path))
        assert not isinstance(info.value, LegacyArchFileError) and "convert_arch" not in str(info.value)
