"""The latency report of searched architectures: what latency/run_latency.py prints and writes.

Replaces the body of the original latency/run_latency.py: load arch_{idx}.pt, build the derived network as
train.py does, log ops/paths/params/FLOPs, plot the operator table and path/width diagram, and time it
(TensorRT else PyTorch). Added: the lookup-table estimate (``lut_latency_ms``), a choice of backend, device and
precision, the published teacher and student by default, and a JSON report.
"""
import torch

from tools.latency.backends import device_name, measure_latency, resolve_backend, resolve_device
from tools.latency.expected import derived_latency, derived_specs
from tools.latency.table import table_for
from tools.models.build import arch_name, derived_from_config
from tools.models.flops import thop_flops

AUX_HEADS = ("heads16", "heads32")


def build_networks(config):
    """[(name, arch_idx, derived network)] built exactly as train.py builds them (training-mode aux heads), with
    PyTorch's default initialisation (the report reads sizes and times, not values)."""
    return [(arch_name(arch_idx), arch_idx, derived_from_config(config, arch_idx, init=False))
            for arch_idx in config.arch_idx]


def derived_table_specs(config, glue=True):
    """[(section, OpSpec)] of every table entry the config's derived networks read (both B2 variants; with the
    upsamplings and concatenations when ``glue``)."""
    specs, seen = [], set()
    size = (3, config.image_height, config.image_width)
    for name, _, net in build_networks(config):
        for legacy_b2 in (False, True):
            for part, spec in derived_specs(net, size, legacy_b2=legacy_b2, glue=glue)[0]:
                if spec.key not in seen:
                    seen.add(spec.key)
                    specs.append((f"{name} {part}", spec))
    return specs


def count_params(net):
    """(all parameters as train.py counts them, parameters used in eval: without the aux heads)."""
    total = sum(p.numel() for p in net.parameters())
    aux = sum(p.numel() for name in AUX_HEADS if hasattr(net, name) for p in getattr(net, name).parameters())
    return total, total - aux


def open_table(config, device):
    """The lookup table for the config's resolution: ``lut_path``, else the published 1080Ti table at
    1024x2048, else None (no table estimate; the log says how to make one)."""
    return table_for((config.image_height, config.image_width), config.lut_path,
                     measure=bool(config.lut_path) and config.lut_measure_misses, backend=config.latency_backend,
                     device=device, precision=config.precision, budget_s=config.lut_budget_s,
                     calib_s=config.lut_calib_s)


def describe(net, config, input_size):
    """The first-version report of one network: lasts, ops, paths, widths, params, params_eval, flops_g."""
    params, params_eval = count_params(net)
    return {
        "lasts": list(net.lasts),
        "ops": [list(map(int, ops)) for ops in net.ops],
        "paths": [list(map(int, path)) for path in net.paths],
        "widths": [list(map(float, widths)) for widths in net.widths],
        "params": int(params),
        "params_eval": int(params_eval),
        "flops_g": thop_flops(net, input_size, eval_mode=True) / 1e9,
        "input_size": list(input_size),
    }


def latency_fields(net, config, table, device, input_size):
    """What the original's report lacks: table estimate, measured latency and FPS, backend, device, precision."""
    backend = resolve_backend(config.latency_backend, device)
    fields = {"lut_latency_ms": None, "lut_table": None, "latency_ms": None, "fps": None, "backend": backend,
              "device": device_name(device), "precision": config.precision}
    if table is not None:
        estimate = derived_latency(net, input_size[1:], table, legacy_b2=config.legacy_b2)
        fields["lut_latency_ms"] = estimate.latency_ms
        fields["lut_table"] = table.describe()
    if config.measure:
        timing = measure_latency(net.eval(), input_size, backend=backend, device=device,
                                 precision=config.precision, budget_s=config.budget_s, calib_s=config.calib_s)
        fields["latency_ms"] = timing.latency_ms
        fields["fps"] = timing.fps
        fields["device"] = timing.device   # where it ran (onnxruntime without its CUDA provider: the CPU)
    return fields


def save_plots(net, arch_idx, config, folder):
    """ops_{arch}_{last}.png per branch, path_width{arch}.png and path_width_all{arch}.png (as the original)."""
    from tools.plots import save_arch_plots
    head_width = config.stem_head_width[config.arch_idx.index(arch_idx)][1]
    return save_arch_plots(net.genotype, arch_idx, folder, F_base=config.Fch, head_width=head_width,
                           with_widths=len(net._width_mult_list) > 1)


def latency_report(config, folder=None, log=print):
    """{name: report} for every architecture of the config; plots go to ``folder`` when given."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    input_size = (1, 3, config.image_height, config.image_width)
    table = open_table(config, device)
    if table is None:
        log(f"no lookup table for {config.image_height}x{config.image_width}: lut_latency_ms is null; make one "
            "with latency/latency_lookup_table.py and pass lut_path=...")
    report = {}
    for name, arch_idx, net in build_networks(config):
        entry = describe(net, config, input_size)
        entry.update(latency_fields(net, config, table, device, input_size))
        if folder and config.plots:
            entry["plots"] = save_plots(net, arch_idx, config, folder)
        report[name] = entry
        log(format_entry(name, entry))
    return report


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def format_entry(name, entry):
    """A few human-readable lines for one network."""
    lines = [f"{name}: lasts {entry['lasts']}  params {entry['params']:,} (eval {entry['params_eval']:,})  "
             f"FLOPs {entry['flops_g']:.2f} G at {entry['input_size'][2]}x{entry['input_size'][3]}"]
    for ops, path, widths in zip(entry["ops"], entry["paths"], entry["widths"]):
        lines.append(f"  ops {ops}\n  path {path}\n  widths {[round(w, 3) for w in widths]}")
    lines.append(f"  lookup-table latency {_fmt(entry['lut_latency_ms'], '.3f')} ms"
                 + (f" ({entry['lut_table']})" if entry.get("lut_table") else ""))
    lines.append(f"  measured latency {_fmt(entry['latency_ms'], '.3f')} ms, FPS {_fmt(entry['fps'], '.1f')} "
                 f"({entry['backend']}, {entry['device']}, {entry['precision']})")
    return "\n".join(lines)
