"""Supernet pretraining (pretrain=True) and teacher/student architecture search (pretrain=<pretrain run folder>).

    python search/train_search.py                                   # pretrain, original settings
    python search/train_search.py pretrain=runs/search-pretrain-256x512_F12.L16_batch3-20200101-012345
    python search/train_search.py --config configs/search_tiny.py   # the tiny demo preset
    python search/train_search.py resume=True                       # continue the newest unfinished run
"""
import os, sys  # noqa: E401
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.engine.distributed import configure_cudnn  # noqa: E402
from tools.search.loop import run  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    """Run the stage; returns the run folder."""
    parser = add_config_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "search")
    config = config_from_args(parser.parse_args(argv))
    configure_cudnn(config.device, config.deterministic)
    run_dir = run(config)
    print(run_dir)
    return run_dir


if __name__ == "__main__":
    sys.exit(run_script(main))
