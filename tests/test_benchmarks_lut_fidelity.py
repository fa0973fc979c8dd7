"""benchmarks/bench_lut_fidelity.py: the level probe rebuilds the calibration's networks and compares their
latency now with their latency during the calibration."""
import pytest

from tools.latency.calibrate import CALIBRATION_SEED, random_networks
from tools.latency.table import LatencyTable
from tools.pipeline import load_script

TINY = dict(layers=6, Fch=3, width_mult_list=[4. / 12, 8. / 12, 1.], stem_head_width=[1., 1.], num_classes=19)


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_lut_fidelity.py")


def test_the_level_probe_rebuilds_the_calibration_networks_and_divides_now_by_then(bench):
    found = random_networks(2, CALIBRATION_SEED, **TINY)
    rows = [{"seed": seed, "lasts": list(net.lasts), "measured_rounds_ms": [4.0, 6.0]} for seed, net in found]
    rows.append({"seed": found[0][0], "lasts": [9, 9], "measured_rounds_ms": [1.0]})   # not this network: skipped
    table = LatencyTable(meta={"calibration": {"networks": rows, "network": TINY}})
    probe = bench.calibration_probe(table)
    assert [seed for seed, _, _ in probe] == [seed for seed, _ in found]
    assert [then for _, _, then in probe] == [5.0, 5.0]                       # the mean of its passes
    assert all(net.genotype == ref.genotype for (_, net, _), (_, ref) in zip(probe, found))
    level = bench.level_probe(probe, [[6.0, 6.0], [4.5, 5.5]])              # 1.2x and 1.0x: the machine is slower
    assert level["level"] == pytest.approx(1.1) and level["now_ms"] == [6.0, 5.0]
    assert bench.calibration_probe(LatencyTable(meta={})) == []            # an uncalibrated table: no probe
