"""Measure a latency lookup table for one resolution on this machine (the original latency/latency_lookup_table.py).

    python latency/latency_lookup_table.py image_height=512 image_width=1024 device=cpu \
        latency_backend=pytorch lut_path=runs/lut_cpu_512x1024.json

``lut_plan="full"`` times the original's grid (every cell operator x scale x in/out width x stride, stem,
arms/refines, FFM and heads for ``lut_fch_cells`` / ``lut_fch_heads``); ``lut_plan="derived"`` only the entries
the derived networks of ``load_path`` read. The table is saved after every entry and an interrupted run resumes
where it stopped; a table made on another device or at another resolution is refused. Every entry is timed in
``lut_rounds`` passes, each in a shuffled order (median kept); the table then holds the glue between the modules
(upsamplings, concatenations) and ends with a calibration against ``lut_calibration_networks`` random networks of
the search space measured whole (tools/latency/calibrate.py).
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.latency.backends import make_measurer, resolve_device  # noqa: E402
from tools.latency.calibrate import calibrate_table  # noqa: E402
from tools.latency.expected import table_has_glue  # noqa: E402
from tools.latency.keys import glue_table_specs, original_table_specs  # noqa: E402
from tools.latency.report import derived_table_specs  # noqa: E402
from tools.latency.table import TableError, fill_table, load_table  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def table_specs(config, glue=True):
    """The entries to time for the config's plan (with the glue entries when the table holds glue)."""
    if config.lut_plan == "full":
        grid = (config.image_height, config.image_width)
        specs = original_table_specs(*grid, config.lut_fch_cells, config.lut_fch_heads, config.width_mult_list,
                                     max(config.lut_fch_cells), config.num_classes)
        if glue:
            specs += glue_table_specs(*grid, config.lut_fch_heads, config.width_mult_list,
                                      max(config.lut_fch_cells), config.num_classes)
        return specs
    if config.lut_plan == "derived":
        return derived_table_specs(config, glue=glue)
    raise TableError(f"lut_plan must be 'full' or 'derived', got {config.lut_plan!r}.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, "latency")
    config = config_from_args(parser.parse_args(argv))
    path = config.lut_path or f"latency_lookup_table_{config.image_height}x{config.image_width}.json"
    if not path.endswith(".json"):
        raise TableError(f"lut_path {path} must be a .json file (the project's table format); original .npy "
                         "tables are read-only imports.")
    device = resolve_device(config.device)
    measurer = make_measurer(config.latency_backend, device, config.precision, budget_s=config.lut_budget_s,
                             calib_s=config.lut_calib_s)
    table = load_table(path, resolution=(config.image_height, config.image_width), device=device,
                       backend=measurer.backend, precision=config.precision, measurer=measurer)
    specs = table_specs(config, glue=table_has_glue(table))
    print(f"{len(specs)} entries planned, {sum(s.key in table for _, s in specs)} already in {path}; "
          f"timing on {measurer.device} with {measurer.backend} ({config.precision})")
    added = fill_table(table, specs, rounds=config.lut_rounds)
    print(f"added {len(added)} entries; {path} now holds {len(table)}")
    if config.lut_calibration_networks > 0 and (added or "calibration" not in table.meta):
        calibration = calibrate_table(table, (3, config.image_height, config.image_width),
                                      count=config.lut_calibration_networks, rounds=config.lut_rounds,
                                      budget_s=config.lut_calibration_budget_s, **calibration_networks(config))
        ratios = ", ".join(f"{sum(row['paired_ratios']) / len(row['paired_ratios']):.2f}"
                           for row in calibration["networks"])
        print(f"calibration: whole network / its entries timed alone at the same time {ratios} over "
              f"{len(calibration['networks'])} random networks; lookups are scaled by {calibration['scale']:.3f}")


def calibration_networks(config):
    """The random networks' settings: the config's space, at a cell width and a head width the table holds."""
    Fch = config.Fch if config.Fch in config.lut_fch_cells else config.lut_fch_cells[0]
    head = min(config.lut_fch_heads) / Fch
    return dict(layers=config.layers, Fch=Fch, width_mult_list=list(config.width_mult_list),
                stem_head_width=(head, head), num_classes=config.num_classes)


if __name__ == "__main__":
    sys.exit(run_script(main))
