"""tools/latency/calibrate.py: random networks of the search space and the table's calibration."""
import json

import pytest

from tools.latency.calibrate import CALIBRATION_SEED, calibrate_table, random_network, random_networks
from tools.latency.expected import derived_latency, derived_specs
from tools.latency.table import LatencyTable, read_json

TINY = dict(layers=6, Fch=3, width_mult_list=[4. / 12, 8. / 12, 1.], stem_head_width=(1., 1.), num_classes=19)
SIZE = (3, 64, 128)


def measurer(module, input_size):
    """A deterministic 'latency' from the module's size and input."""
    params = sum(p.numel() for p in module.parameters())
    return 0.01 + params * input_size[2] * input_size[3] * 1e-8
measurer.device, measurer.backend, measurer.precision = "CPU test", "pytorch", "fp32"  # noqa: E305


def test_random_networks_are_reproducible_and_skip_what_does_not_derive():
    first = random_networks(3, CALIBRATION_SEED, **TINY)
    again = random_networks(3, CALIBRATION_SEED, **TINY)
    assert [seed for seed, _ in first] == [seed for seed, _ in again]
    assert all(seed >= CALIBRATION_SEED for seed, _ in first)
    for (_, a), (_, b) in zip(first, again):
        assert a.genotype == b.genotype and a.lasts == b.lasts and not a.training
    assert all(random_network(seed, **TINY) is not None for seed, _ in first)


def test_calibration_pairs_each_network_with_its_entries_timed_at_the_same_moment(tmp_path):
    """A machine where every network runs 1.25x the sum of its entries, and whose first pass is a slow phase
    (everything 1.4x slower): the paired ratio is 1.25 in both passes, so the scale is 1.25, not the 1.4 x 1.25 a
    whole-network time divided by the stored (fast) entries would give. Stored with the networks' figures and
    applied to every lookup."""
    table = LatencyTable(meta={"glue": True}, path=str(tmp_path / "t.json"), measurer=measurer)
    phase = {"speed": 1.0, "networks": 0}
    network_count = 3

    def measure_network(net, input_size):
        assert input_size == (1,) + SIZE
        phase["speed"] = 1.4 if phase["networks"] < network_count else 1.0     # the first pass is slow
        phase["networks"] += 1
        raw = derived_latency(net, SIZE, table).latency_ms / table.scale
        return 1.25 * raw * phase["speed"]

    def measure_entry(spec):
        return table.entries[spec.key] * phase["speed"]
    calibration = calibrate_table(table, SIZE, count=network_count, rounds=2, measure_network=measure_network,
                                  measure_entry=measure_entry, progress=False, **TINY)
    assert calibration["scale"] == pytest.approx(1.25)
    assert [row["seed"] for row in calibration["networks"]] == [seed for seed, _ in random_networks(3, 1000, **TINY)]
    for row in calibration["networks"]:
        assert row["paired_ratios"] == pytest.approx([1.25, 1.25])
        assert row["measured_ms"] == pytest.approx(1.25 * row["table_ms"])
        assert row["measured_rounds_ms"][0] == pytest.approx(1.4 * 1.25 * row["table_ms"])
    assert calibration["rounds"] == 2 and calibration["glue"] is True and calibration["network"]["Fch"] == 3
    assert calibration["pairing"] == "sequential" and calibration["slices"] == 1     # custom timers: one by one
    key = next(iter(table.entries))
    assert table.lookup(key) == pytest.approx(1.25 * table.entries[key])
    saved = read_json(str(tmp_path / "t.json"))     # saved atomically with the entries it timed
    assert saved.meta["calibration"]["scale"] == pytest.approx(1.25) and saved.entries == table.entries
    json.dumps(saved.meta)                           # plain JSON


def test_without_a_custom_entry_timer_the_table_measurer_times_the_pairs():
    table = LatencyTable(meta={"glue": True}, measurer=measurer)

    def measure_network(net, input_size):
        return 2.0 * derived_latency(net, SIZE, table).latency_ms / table.scale
    assert calibrate_table(table, SIZE, count=2, rounds=1, measure_network=measure_network, progress=False,
                           **TINY)["scale"] == pytest.approx(2.0)


def test_recalibrating_a_calibrated_table_fits_the_raw_sums():
    table = LatencyTable(meta={"glue": True, "calibration": {"scale": 3.0}}, measurer=measurer)

    def measure_network(net, input_size):
        return 2.0 * derived_latency(net, SIZE, table).latency_ms / table.scale
    assert calibrate_table(table, SIZE, count=2, rounds=1, measure_network=measure_network, progress=False,
                           **TINY)["scale"] == pytest.approx(2.0)


def test_on_the_pytorch_backend_each_network_is_timed_interleaved_with_its_entries(monkeypatch):
    """The network and each distinct entry it reads go to one interleaved timing (network first, its own input
    size and budget, the entries' sizes and a short budget), so both sides of the paired ratio see the same phases
    of the machine; a read repeated in the network counts as often as it is read."""
    from tools.latency import backends
    table = LatencyTable(meta={"glue": True}, measurer=backends.make_measurer("pytorch", "cpu", budget_s=0.05))
    calls = []

    def fake_interleaved(models, input_sizes, budget_s, slices, **timing):
        calls.append({"models": models, "sizes": input_sizes, "budget_s": budget_s, "slices": slices})
        return [backends.Timing(10.0)] + [backends.Timing(1.0) for _ in models[1:]]
    monkeypatch.setattr(backends, "measure_interleaved", fake_interleaved)
    monkeypatch.setattr(LatencyTable, "time_entry", lambda self, spec: 1.0)   # fill_table without timing
    calibration = calibrate_table(table, SIZE, count=2, rounds=1, budget_s=0.3, slices=4, progress=False, **TINY)
    assert calibration["pairing"] == "interleaved" and calibration["slices"] == 4
    networks = random_networks(2, CALIBRATION_SEED, **TINY)
    ratios = []
    for call, (seed, net) in zip(calls, networks):
        reads = [spec for _, spec in derived_specs(net, SIZE, glue=True)[0]]
        distinct = {spec.key: spec for spec in reads}
        assert call["models"][0].genotype == net.genotype and len(call["models"]) == 1 + len(distinct)
        assert call["sizes"] == [(1,) + SIZE] + [spec.input_size for spec in distinct.values()]
        assert call["budget_s"] == [0.3] + [0.05] * len(distinct) and call["slices"] == 4
        ratios.append(10.0 / len(reads))                   # every entry 1 ms, the network 10 ms
    assert len(calls) == 2 and len(reads) > len(distinct)      # the last network reads some entry twice
    assert [row["paired_ratios"] for row in calibration["networks"]] == [pytest.approx([r]) for r in ratios]
    assert calibration["scale"] == pytest.approx(sum(ratios) / 2)


def test_the_random_draws_have_one_alpha_column_per_operator_of_the_table(monkeypatch):
    """The operator count comes from tools/ops/primitives.OPERATORS: a table with a sixth row (here a copy of
    one) gives six alpha columns, with no other change."""
    from tools.latency import calibrate
    from tools.ops.primitives import OPERATORS
    alphas, betas, ratios = calibrate.random_arch_parameters(CALIBRATION_SEED, layers=6, widths=3)
    assert [tuple(a.shape) for a in alphas] == [(6, len(OPERATORS)), (5, len(OPERATORS)), (4, len(OPERATORS))]
    assert betas[0] is None and [tuple(r.shape) for r in ratios] == [(5, 3), (5, 3), (4, 3)]
    monkeypatch.setattr(calibrate, "OPERATORS", OPERATORS + (OPERATORS[1],))
    alphas, _, _ = calibrate.random_arch_parameters(CALIBRATION_SEED, layers=6, widths=3)
    assert [a.shape[1] for a in alphas] == [len(OPERATORS) + 1] * 3


def test_the_random_draws_of_the_original_space_are_the_ones_calibrations_always_drew():
    """Same generator calls in the same order: a table calibrated before reading the operator count from the
    table draws the same networks now (values pinned for seed 1000)."""
    from tools.latency.calibrate import random_arch_parameters
    from tools.ops.primitives import PRIMITIVES
    if PRIMITIVES != ["skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup"]:
        pytest.skip("the pinned draws are those of the original five-operator search space")
    alphas, betas, ratios = random_arch_parameters(CALIBRATION_SEED, layers=6, widths=3)
    assert alphas[0][0].tolist() == pytest.approx([0.6467, 0.9637, 4.7874, -0.9207, 0.3649], abs=1e-4)
    assert alphas[2][-1].tolist() == pytest.approx([0.9129, -0.1143, 4.9011, -0.1185, 1.1778], abs=1e-4)
    assert betas[2][-1].tolist() == pytest.approx([1.5456, 0.3631], abs=1e-4)
    assert ratios[2][-1].tolist() == pytest.approx([2.0036, 0.1034, 0.5238], abs=1e-4)
