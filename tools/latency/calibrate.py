"""Calibrating a lookup table against whole networks measured on the same machine.

The table's premise is that a network's latency is the sum of its operators' latencies, each timed alone. On a
GPU that held (the published 1080Ti table); on a 2-thread CPU the sum misses by 10-40 % in a direction that
depends on the machine: an operator timed alone in a loop keeps its weights, its input and each thread's share of
the data in that core's caches, and the threads never wait on a neighbour's different partition of the previous
operator's output; inside a network none of this holds (measured on an AVX-512 EPYC: the ranking of 8 networks by
the sum was exact, the sum 0.65-0.9x their latency; an AVX2 EPYC showed the opposite sign). What the sum gets
right is the *ranking*; what it gets wrong is close to one factor per machine, thread count and resolution.

So a table made by latency/latency_lookup_table.py ends with a calibration: ``count`` random architectures of the
search space (:func:`random_network`, the same family as benchmarks/bench_lut_fidelity.py, from seeds that
benchmark never draws) are derived and their entries added to the table. Then, in each of ``rounds`` passes, each
network is measured whole together with each of its entries timed again alone (a short budget), interleaved
slice by slice (:func:`interleaved_pair_measurer`): the ratio of the two is taken over one window that both
sides sample alike, so a slow or fast phase of the machine (on a shared 2-core VM the same network's latency
drifts by 1.5x over tens of seconds) cancels out of it. ``scale`` = the mean of these paired ratios is stored in
``meta["calibration"]`` with the networks' figures, and every lookup returns ``entry x scale``.
History (docs/benchmarks.md): a first version divided the whole networks' latency by the table's stored sums;
measured in one 20-second window, it carried that window's speed into the scale (1.25 and 1.55 for the same
kind of table). The next timed the network and then its entries right after it (still the way for backends
whose ``Backend.interleaves`` is False): one table recalibrated four times got 1.10-1.22 (sd 0.053);
interleaved, 1.168-1.183 (sd 0.006).
"""
import datetime

import torch

from tools.latency.expected import derived_specs, table_has_glue
from tools.latency.table import fill_table
from tools.models.derive import DerivationError
from tools.models.derived import Network_Multi_Path_Infer
from tools.ops.primitives import OPERATORS

WIDTHS = (4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.)
CALIBRATION_SEED = 1000     # bench_lut_fidelity draws its test networks from seeds 0, 1, 2, ...
PAIR_SLICES = 5             # slices per network and entry when a pair is timed interleaved


def random_network(seed, layers=16, Fch=12, width_mult_list=WIDTHS, stem_head_width=(8. / 12, 8. / 12),
                   num_classes=19):
    """A derived network (eval mode, no aux heads) from random architecture parameters
    (:func:`random_arch_parameters`); None when the derivation rules reject them. lasts [2, 1] (three seeds in
    four) or [2, 0].
    """
    alphas, betas, ratios = random_arch_parameters(seed, layers, len(width_mult_list))
    lasts = [2, 1] if seed % 4 else [2, 0]
    try:
        net = Network_Multi_Path_Infer(alphas, betas, ratios, num_classes=num_classes, layers=layers, Fch=Fch,
                                       width_mult_list=list(width_mult_list), stem_head_width=tuple(stem_head_width),
                                       aux_heads=False)
        return net.build_structure(lasts).eval()
    except DerivationError:
        return None


def random_arch_parameters(seed, layers=16, widths=len(WIDTHS)):
    """(alphas, betas, ratios) of a random architecture of the search space, one alpha column per operator of
    ``OPERATORS`` (tools/ops/primitives.py), so a changed operator table changes the draws with it.

    alphas/betas/ratios ~ N(0, scale^2) with scale 0.5, 1 or 3 by seed, plus a per-architecture preference for
    thin or wide widths and light or heavy operators (as searches under different latency weights would give).
    """
    generator = torch.Generator().manual_seed(seed)
    scale = (0.5, 1.0, 3.0)[seed % 3]
    operators = len(OPERATORS)
    width_bias = 4 * (torch.rand(1, generator=generator) - 0.5) * torch.linspace(-1, 1, widths)
    op_bias = 2 * torch.randn(operators, generator=generator)
    alphas = [scale * torch.randn(layers - k, operators, generator=generator) + op_bias for k in range(3)]
    betas = [None] + [scale * torch.randn(layers - k, 2, generator=generator) for k in (2, 3)]
    ratios = [scale * torch.randn(n, widths, generator=generator) + width_bias
              for n in (layers - 1, layers - 1, layers - 2)]
    return alphas, betas, ratios


def random_networks(count, first_seed=0, **network):
    """[(seed, network)] of the first ``count`` seeds from ``first_seed`` whose parameters derive."""
    found, seed = [], first_seed
    while len(found) < count:
        if seed - first_seed > 50 * count + 100:
            raise RuntimeError(f"no {count} derivable random networks among seeds {first_seed}..{seed}; "
                               f"check the network settings {network}.")
        net = random_network(seed, **network)
        if net is not None:
            found.append((seed, net))
        seed += 1
    return found


def _timing_options(measurer):
    """The statistic, clock and repeat groups the table's entries were timed with (backends.make_measurer)."""
    timing = getattr(measurer, "timing", {})
    return {name: timing[name] for name in ("statistic", "clock", "repeats") if name in timing}


def _time_like(measurer, module, input_size, budget_s, calib_s):
    """ms of ``module`` timed with ``measurer``'s backend, device, precision and timing options, on this budget."""
    from tools.latency.backends import measure_latency
    return measure_latency(module, input_size, backend=measurer.backend, device=measurer.torch_device,
                           precision=measurer.precision, budget_s=budget_s, calib_s=calib_s,
                           **_timing_options(measurer)).latency_ms


def network_measurer(table, budget_s=1.0, calib_s=0.2):
    """``measure(net, input_size) -> ms`` with the table measurer's backend, device, precision and statistic."""
    def measure(net, input_size):
        return _time_like(table.measurer, net, input_size, budget_s, calib_s)
    return measure


def entry_measurer(table, budget_s=0.1, calib_s=0.02):
    """``measure(spec) -> ms``: one entry timed alone with a short budget (the table's backend, device, precision
    and statistic); a table whose measurer is not a backend measurer (tests) times with that measurer."""
    measurer = table.measurer
    if not hasattr(measurer, "torch_device"):
        return table.time_entry
    budget_s = min(budget_s, getattr(measurer, "timing", {}).get("budget_s", budget_s))

    def measure(spec):
        with torch.random.fork_rng(devices=[]):    # building draws from the RNG: leave the caller's stream
            module = spec.build()
        return _time_like(measurer, module, spec.input_size, budget_s, calib_s)
    return measure


def _interleaves(backend):
    """Whether backend ``backend`` times what :func:`tools.latency.backends.measure_interleaved` times (its row's
    ``interleaves``), so that the pairs may be timed slice by slice."""
    from tools.latency import backends
    return any(record.name == backend and record.interleaves for record in backends.BACKENDS)


def interleaved_pair_measurer(table, budget_s=1.0, entry_budget_s=0.1, slices=PAIR_SLICES, calib_s=0.05):
    """``measure(net, specs, input_size) -> (whole ms, {key: ms})``: the network and each of its entries timed
    in turn, slice by slice (:func:`tools.latency.backends.measure_interleaved`), so the two sides of a paired
    ratio see the same phases of the machine; None when the table's measurer is not a backend measurer whose
    backend interleaves (then the pair is timed one after the other, :func:`network_measurer` and
    :func:`entry_measurer`).

    Why: timed one after the other (the network for ``budget_s``, then its ~40 entries for 0.1 s each), the two
    sides of a pair fell in different phases often enough that one network's ratio read 1.10 in one pass and
    1.58 in the next while its whole time moved by 2 %; one table recalibrated four times got scales of
    1.10-1.22 that way and 1.168-1.183 interleaved (docs/benchmarks.md).
    """
    measurer = table.measurer
    if not hasattr(measurer, "torch_device") or not _interleaves(measurer.backend):
        return None
    timing = getattr(measurer, "timing", {})
    entry_budget_s = min(entry_budget_s, timing.get("budget_s", entry_budget_s))
    calib_s = min(calib_s, entry_budget_s)      # the warm-up and rate of ~40 entries: not more than their timing

    def measure(net, specs, input_size):
        from tools.latency.backends import measure_interleaved
        unique = {spec.key: spec for spec in specs}
        with torch.random.fork_rng(devices=[]):    # building draws from the RNG: leave the caller's stream
            modules = [spec.build() for spec in unique.values()]
        timings = measure_interleaved([net] + modules, [tuple(input_size)] + [spec.input_size for spec in
                                                                              unique.values()],
                                      device=measurer.torch_device, precision=measurer.precision,
                                      clock=timing.get("clock", "wall"), statistic=timing.get("statistic", "median"),
                                      budget_s=[budget_s] + [entry_budget_s] * len(modules), slices=slices,
                                      calib_s=calib_s)
        return timings[0].latency_ms, {key: t.latency_ms for key, t in zip(unique, timings[1:])}
    return measure


def _sequential_pair_measurer(measure_network, measure_entry):
    """``measure(net, specs, input_size)`` from a network timer and an entry timer: the network, then each of
    its distinct entries right after it."""
    def measure(net, specs, input_size):
        whole = float(measure_network(net, input_size))
        return whole, {key: float(measure_entry(spec)) for key, spec in {spec.key: spec for spec in specs}.items()}
    return measure


def _pair_measurer(table, budget_s, calib_s, slices, measure_network, measure_entry):
    """(``measure(net, specs, input_size)``, "interleaved" or "sequential") for :func:`calibrate_table`."""
    if measure_network is None and measure_entry is None:
        interleaved = interleaved_pair_measurer(table, budget_s, slices=slices)
        if interleaved is not None:
            return interleaved, "interleaved"
    return _sequential_pair_measurer(measure_network or network_measurer(table, budget_s, calib_s),
                                     measure_entry or entry_measurer(table)), "sequential"


def calibrate_table(table, size, count=4, rounds=2, budget_s=1.0, calib_s=0.2, measure_network=None,
                    measure_entry=None, first_seed=CALIBRATION_SEED, progress=True, slices=PAIR_SLICES, **network):
    """Fit and store ``meta["calibration"]`` of ``table`` for inputs ``size`` = (3, H, W); returns it.

    ``network``: the random networks' settings (layers, Fch, width_mult_list, stem_head_width, num_classes),
    which the table must hold or be able to time (it needs a measurer). On the PyTorch backend each network and
    its entries are timed interleaved in ``slices`` (:func:`interleaved_pair_measurer`, ``budget_s`` for the
    network); otherwise, or when ``measure_network(net, (1, 3, H, W))`` or ``measure_entry(spec)`` is given
    (tests), the network is timed (:func:`network_measurer`) and then each entry alone (:func:`entry_measurer`).
    Entries the networks read that are missing are first added to the table with ``rounds`` passes, like
    :func:`tools.latency.table.fill_table`.
    """
    size = tuple(int(v) for v in size)
    glue = table_has_glue(table)
    networks = random_networks(count, first_seed, **network)
    reads = {seed: [spec for _, spec in derived_specs(net, size, glue=glue)[0]] for seed, net in networks}
    fill_table(table, [("calibration", spec) for seed, _ in networks for spec in reads[seed]], progress=progress,
               rounds=rounds)
    measure_pair, pairing = _pair_measurer(table, budget_s, calib_s, slices, measure_network, measure_entry)
    measured = {seed: [] for seed, _ in networks}
    paired = {seed: [] for seed, _ in networks}
    for _ in range(rounds):
        for seed, net in networks:
            whole, alone = measure_pair(net, reads[seed], (1,) + size)
            measured[seed].append(whole)
            paired[seed].append(whole / sum(alone[spec.key] for spec in reads[seed]))
    rows = []
    for seed, net in networks:
        table_ms = sum(table.entries[spec.key] for spec in reads[seed])     # the raw stored sum
        rows.append({"seed": seed, "lasts": list(net.lasts), "table_ms": table_ms,
                     "measured_ms": min(measured[seed]), "measured_rounds_ms": measured[seed],
                     "paired_ratios": paired[seed]})
    ratios = [ratio for row in rows for ratio in row["paired_ratios"]]
    scale = sum(ratios) / len(ratios)
    calibration = {"scale": scale, "method": "mean over random networks and passes of (whole network) / (sum of "
                                             "its entries timed alone at the same time)",
                   "pairing": pairing, "slices": int(slices) if pairing == "interleaved" else 1,
                   "networks": rows, "rounds": int(rounds), "budget_s": float(budget_s),
                   "threads": torch.get_num_threads(), "glue": glue,
                   "network": {name: (list(value) if isinstance(value, (tuple, list)) else value)
                               for name, value in network.items()},
                   "date": datetime.datetime.now().isoformat(timespec="seconds")}
    table.meta["calibration"] = calibration
    if table.path:
        table.save()
    return calibration
