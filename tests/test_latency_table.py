"""tools/latency/table.py: JSON tables with metadata, the original .npy importer, misses, refusals, resuming."""
import json
import os

import pytest

from tools.latency.keys import OpSpec
from tools.latency.table import PUBLISHED_TABLE
from tools.latency.table import (LatencyTable, TableError, TableMissError, fill_table, import_npy, load_table,
                                 read_json)


def fake_measurer(calls=None, fail_after=None):
    """A measurer returning a value from the input size, recording calls; optionally failing (interruption)."""
    def measure(module, input_size):
        if calls is not None:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt
            calls.append(input_size)
        return 0.001 * input_size[1] + 1e-6 * input_size[2] * input_size[3]
    measure.device, measure.backend, measure.precision = "CPU test", "pytorch", "fp32"
    return measure


SPECS = [("cells", OpSpec("BasicResidual1x", 16, 32, 8, 8, 1)),
         ("cells", OpSpec("BasicResidual_downup_2x", 16, 32, 8, 16, 2)),
         ("cells", OpSpec("FactorizedReduce", 16, 32, 8, 16, 2)),
         ("stem", OpSpec("ConvNorm", 64, 128, 3, 16, 2, kernel_size=3, padding=1)),
         ("ffm", OpSpec("FeatureFusion", 16, 32, 32, 32)),
         ("head", OpSpec("Head", 16, 32, 32, 19))]


@pytest.fixture
def npy_path(test_data_dir):
    return os.path.join(test_data_dir, "latency_lookup_table_1080ti.npy")


def test_import_of_the_original_npy(npy_path):
    table = import_npy(npy_path)
    assert len(table) == 667
    assert table.meta["device"] == "NVIDIA GeForce GTX 1080 Ti" and table.meta["resolution"] == [1024, 2048]
    # read with the restricted unpickler: the same numbers as the original's np.load (the shipped JSON was
    # converted from it), e.g. these two entries
    assert table.entries["ConvNorm_H64_W128_Cin192_Cout96_kernel1_stride1"] == 0.0691542635609141
    assert table.entries["FactorizedReduce_H64_W128_Cin96_Cout256_stride2"] == 0.03829489988530615
    assert table.entries == read_json(PUBLISHED_TABLE).entries


def test_shipped_published_table_is_the_imported_npy(npy_path):
    shipped = read_json(PUBLISHED_TABLE)
    assert shipped.entries == import_npy(npy_path).entries
    assert shipped.meta["device"] == "NVIDIA GeForce GTX 1080 Ti"


def test_json_round_trip_is_atomic_and_keeps_meta(tmp_path, npy_path):
    table = import_npy(npy_path)
    path = str(tmp_path / "t.json")
    table.save(path)
    assert os.listdir(tmp_path) == ["t.json"]
    again = load_table(path, resolution=(1024, 2048))
    assert again.entries == table.entries and again.meta == table.meta and again.path == path


def test_refuses_another_resolution_with_the_command_to_make_one(npy_path):
    with pytest.raises(TableError, match=r"resolution \[1024, 2048\].*latency/latency_lookup_table.py "
                                         r"image_height=512 image_width=1024"):
        load_table(npy_path, resolution=(512, 1024))


def test_refuses_to_mix_devices_when_measuring(npy_path):
    with pytest.raises(TableError, match="made for device 'NVIDIA GeForce GTX 1080 Ti'.*'CPU test'"):
        load_table(npy_path, resolution=(1024, 2048), measure=True, measurer=fake_measurer())


def test_forbidden_miss_names_the_key_and_the_fix(npy_path):
    table = load_table(npy_path)
    with pytest.raises(TableMissError, match="'head_H1_W1_Cin1_Cout1' is not in the latency table.*measure=True"):
        table.lookup("head_H1_W1_Cin1_Cout1")


def test_misses_are_measured_saved_and_recorded(tmp_path):
    path = str(tmp_path / "new.json")
    calls = []
    table = load_table(path, resolution=(64, 128), measure=True, measurer=fake_measurer(calls))
    with table.recording() as reads:
        first = table.get(SPECS[0][1])
        table.get(SPECS[0][1])
    assert len(calls) == 1 and calls[0] == (1, 8, 16, 32)
    assert reads == [(SPECS[0][1].key, first)] * 2
    saved = json.load(open(path))
    assert saved["entries"] == {SPECS[0][1].key: first}
    assert saved["meta"]["device"] == "CPU test" and saved["meta"]["resolution"] == [64, 128]
    assert {"torch", "date", "backend", "precision"} <= set(saved["meta"])


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"entries": {}}', "is not a 'fasterseg-latency-table/1' file"),
    ('{"format": "fasterseg-latency-table/1", "entries": {"k": "fast"}}', "invalid entry 'k'"),
    ('{"format": "fasterseg-latency-table/1", "entries": {"k": -1}}', "invalid entry 'k'"),
])
def test_corrupt_tables_get_one_sentence(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TableError, match=message):
        load_table(str(path))


def test_missing_file_without_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="latency_lookup_table.py"):
        load_table(str(tmp_path / "absent.json"), resolution=(64, 128), create=False)


def test_fill_table_resumes_after_an_interruption(tmp_path):
    path = str(tmp_path / "t.json")
    calls = []
    table = load_table(path, resolution=(64, 128), measurer=fake_measurer(calls, fail_after=3))
    with pytest.raises(KeyboardInterrupt):
        fill_table(table, SPECS, progress=False)
    first = set(read_json(path).entries)
    assert len(first) == 3
    calls2 = []
    table = load_table(path, resolution=(64, 128), measurer=fake_measurer(calls2))
    added = fill_table(table, SPECS, progress=False)
    assert len(calls2) == 3 and sorted(added) == sorted({spec.key for _, spec in SPECS} - first)
    assert set(read_json(path).entries) == {spec.key for _, spec in SPECS}
    assert fill_table(table, SPECS, progress=False) == []


def test_table_for_picks_the_published_table_only_at_its_resolution(tmp_path):
    from tools.latency.table import table_for
    published = table_for((1024, 2048))
    assert len(published) == 667 and published.path == PUBLISHED_TABLE and not published.measure
    assert table_for((512, 1024)) is None
    on_demand = table_for((64, 128), measure=True, budget_s=0.01, calib_s=0.005)
    assert on_demand.measure and on_demand.path is None and on_demand.meta["resolution"] == [64, 128]
    assert on_demand.get(SPECS[0][1]) > 0 and on_demand.meta["device"].startswith("CPU")
    saved = table_for((64, 128), str(tmp_path / "t.json"), measure=True, budget_s=0.01, calib_s=0.005)
    saved.get(SPECS[1][1])
    assert len(read_json(str(tmp_path / "t.json"))) == 1


def test_a_measurer_of_another_device_is_refused_at_the_first_miss(npy_path):
    table = load_table(npy_path)
    table.measure, table.measurer = True, fake_measurer()
    with pytest.raises(TableError, match="made for device 'NVIDIA GeForce GTX 1080 Ti'"):
        table.get(SPECS[0][1])
    assert SPECS[0][1].key not in table


def test_calibration_scales_every_lookup_and_survives_a_round_trip(tmp_path):
    """Entries stay the raw timings; lookups return entry x scale; tables without one read as before."""
    key = "ConvNorm_H16_W32_Cin8_Cout8_kernel3_stride1"
    table = LatencyTable({key: 2.0}, meta={"calibration": {"scale": 1.5}}, path=str(tmp_path / "c.json"))
    with table.recording() as reads:
        assert table.lookup(key) == 3.0
    assert reads == [(key, 3.0)] and table.entries[key] == 2.0 and table.scale == 1.5
    table.save()
    again = read_json(str(tmp_path / "c.json"))
    assert again.lookup(key) == 3.0 and again.meta["calibration"] == {"scale": 1.5}
    assert LatencyTable({key: 2.0}).lookup(key) == 2.0
    assert read_json(PUBLISHED_TABLE).scale == 1.0 and "glue" not in read_json(PUBLISHED_TABLE).meta


def test_fill_table_keeps_the_median_of_shuffled_passes_and_records_how_it_timed(tmp_path):
    specs = [spec for _, spec in SPECS]
    passes = {spec.key: [5.0 + i, 9.0 + i, 1.0 + i] for i, spec in enumerate(specs)}   # median: the first pass
    orders = []

    def measure(module, input_size):
        raise AssertionError("timed through time_entry")
    measure.device, measure.backend, measure.precision = "CPU test", "pytorch", "fp32"
    measure.timing = {"budget_s": 0.1, "statistic": "median", "clock": "wall"}
    table = load_table(str(tmp_path / "r.json"), resolution=(64, 128), measurer=measure)
    assert table.meta["glue"] is True        # a new table holds the glue between the modules

    def time_entry(spec):
        if not orders or len(orders[-1]) == len(specs):
            orders.append([])
        orders[-1].append(spec.key)
        return passes[spec.key][len(orders) - 1]
    table.time_entry = time_entry
    added = fill_table(table, SPECS + SPECS[:1], progress=False, rounds=3)   # a key read twice: timed once
    assert sorted(added) == sorted(passes) and len(orders) == 3
    assert all(sorted(order) == sorted(passes) for order in orders)
    listed = [spec.key for spec in specs]
    assert len({tuple(order) for order in orders + [listed]}) == 4   # every pass in its own order, none the listing's
    assert {key: table.entries[key] for key in passes} == {key: values[0] for key, values in passes.items()}
    timing = read_json(str(tmp_path / "r.json")).meta["timing"]
    assert timing["rounds"] == 3 and timing["passes"] == "median" and timing["order"] == "shuffled"
    assert timing["budget_s"] == 0.1 and timing["threads"] >= 1


def test_two_passes_give_the_mean_and_one_pass_the_single_timing(tmp_path):
    for rounds, expected in ((2, 4.0), (1, 5.0)):
        values = iter([5.0, 3.0])
        table = load_table(None, resolution=(64, 128), measurer=fake_measurer())
        table.time_entry = lambda spec: next(values)
        fill_table(table, SPECS[:1], progress=False, rounds=rounds)
        assert table.entries[SPECS[0][1].key] == expected


def test_an_uncalibrated_measured_table_loads_with_a_note(tmp_path, capsys):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "fasterseg-latency-table/1", "meta": {"device": "CPU x", "resolution": [64, 128]},
                                "entries": {"ff_H8_W16_C16": 0.5}}))
    table = read_json(str(path))
    assert table.lookup("ff_H8_W16_C16") == 0.5
    note = capsys.readouterr().err
    assert f"note: latency table {path} has no calibration" in note and "latency_lookup_table.py" in note
    read_json(PUBLISHED_TABLE)
    assert capsys.readouterr().err == ""      # the published table is the reference: no note
