"""Calibrating a lookup table against whole networks measured on the same machine (issue 17).

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
network is measured whole and, right after it, each of its entries is timed again alone (a short budget): the
ratio of the two is taken at one moment, so a slow or fast phase of the machine (on a shared 2-core VM the same
network's latency drifts by 1.5x over tens of seconds) cancels out of it. ``scale`` = the mean of these paired
ratios is stored in ``meta["calibration"]`` with the networks' figures, and every lookup returns
``entry x scale``. (A first version divided the whole networks' latency by the table's stored sums: measured in
one 20-second window, it carried that window's speed into the scale: 1.25 and 1.55 for the same kind of table,
where the paired ratios gave 1.09-1.23 in four runs; docs/benchmarks.md.)
"""
import datetime

import torch

from tools.latency.expected import derived_specs, table_has_glue
from tools.latency.table import fill_table
from tools.models.derive import DerivationError
from tools.models.derived import Network_Multi_Path_Infer

WIDTHS = (4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.)
CALIBRATION_SEED = 1000     # bench_lut_fidelity draws its test networks from seeds 0, 1, 2, ...


def random_network(seed, layers=16, Fch=12, width_mult_list=WIDTHS, stem_head_width=(8. / 12, 8. / 12),
                   num_classes=19):
    """A derived network (eval mode, no aux heads) from random architecture parameters; None when the
    derivation rules reject them.

    alphas/betas/ratios ~ N(0, scale^2) with scale 0.5, 1 or 3 by seed, plus a per-architecture preference for
    thin or wide widths and light or heavy operators (as searches under different latency weights would give);
    lasts [2, 1] (three seeds in four) or [2, 0].
    """
    generator = torch.Generator().manual_seed(seed)
    scale = (0.5, 1.0, 3.0)[seed % 3]
    widths = len(width_mult_list)
    width_bias = 4 * (torch.rand(1, generator=generator) - 0.5) * torch.linspace(-1, 1, widths)
    op_bias = 2 * torch.randn(5, generator=generator)
    alphas = [scale * torch.randn(layers - k, 5, generator=generator) + op_bias for k in range(3)]
    betas = [None] + [scale * torch.randn(layers - k, 2, generator=generator) for k in (2, 3)]
    ratios = [scale * torch.randn(n, widths, generator=generator) + width_bias
              for n in (layers - 1, layers - 1, layers - 2)]
    lasts = [2, 1] if seed % 4 else [2, 0]
    try:
        net = Network_Multi_Path_Infer(alphas, betas, ratios, num_classes=num_classes, layers=layers, Fch=Fch,
                                       width_mult_list=list(width_mult_list), stem_head_width=tuple(stem_head_width),
                                       aux_heads=False)
        return net.build_structure(lasts).eval()
    except DerivationError:
        return None


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


def calibrate_table(table, size, count=4, rounds=2, budget_s=1.0, calib_s=0.2, measure_network=None,
                    measure_entry=None, first_seed=CALIBRATION_SEED, progress=True, **network):
    """Fit and store ``meta["calibration"]`` of ``table`` for inputs ``size`` = (3, H, W); returns it.

    ``network``: the random networks' settings (layers, Fch, width_mult_list, stem_head_width, num_classes),
    which the table must hold or be able to time (it needs a measurer). ``measure_network(net, (1, 3, H, W))``
    defaults to :func:`network_measurer` (``budget_s`` per network), ``measure_entry(spec)`` to
    :func:`entry_measurer`. Entries the networks read that are missing are first added to the table with
    ``rounds`` passes, like :func:`tools.latency.table.fill_table`.
    """
    size = tuple(int(v) for v in size)
    glue = table_has_glue(table)
    networks = random_networks(count, first_seed, **network)
    reads = {seed: [spec for _, spec in derived_specs(net, size, glue=glue)[0]] for seed, net in networks}
    fill_table(table, [("calibration", spec) for seed, _ in networks for spec in reads[seed]], progress=progress,
               rounds=rounds)
    measure_network = measure_network or network_measurer(table, budget_s, calib_s)
    measure_entry = measure_entry or entry_measurer(table)
    measured = {seed: [] for seed, _ in networks}
    paired = {seed: [] for seed, _ in networks}
    for _ in range(rounds):
        for seed, net in networks:
            whole = float(measure_network(net, (1,) + size))
            alone = {spec.key: float(measure_entry(spec)) for spec in reads[seed]}   # right after it
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
                                             "its entries timed alone right after it)",
                   "networks": rows, "rounds": int(rounds), "budget_s": float(budget_s),
                   "threads": torch.get_num_threads(), "glue": glue,
                   "network": {name: (list(value) if isinstance(value, (tuple, list)) else value)
                               for name, value in network.items()},
                   "date": datetime.datetime.now().isoformat(timespec="seconds")}
    table.meta["calibration"] = calibration
    if table.path:
        table.save()
    return calibration
