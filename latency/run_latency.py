"""Describe and time searched FasterSeg networks (the original latency/run_latency.py).

    python latency/run_latency.py                         # the published teacher and student
    python latency/run_latency.py load_path=DIR json=report.json image_height=512 image_width=1024

For each network: lasts, ops, paths, widths, parameters, FLOPs (thop), the lookup-table latency
(``lut_path``: a project JSON table or the original .npy; default the published 1080Ti table at 1024x2048) and
the measured latency / FPS with ``latency_backend`` on ``device`` in ``precision`` (``measure=False`` skips it).
Plots (operator tables, path/width diagrams) and log.txt go to a run folder under ``output_root``.
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.utils.fileio import check_log_files, write_json  # noqa: E402
from tools.engine.run import get_logger, new_run_dir  # noqa: E402
from tools.latency.report import latency_report  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, "latency")
    config = config_from_args(parser.parse_args(argv))
    folder = new_run_dir(config.output_root, "latency", config.save)
    logger = get_logger(folder)
    logger.info("args = %s", dict(config))
    report = latency_report(config, folder=folder, log=logger.info)
    if config.json:
        write_json(config.json, report)
        logger.info("report written to %s", config.json)
    check_log_files(logger)             # a log.txt that missed a line (full disk) fails the command
    return report


if __name__ == "__main__":
    sys.exit(run_script(main))
