"""Train the FasterSeg teacher or the student (distilled from the teacher), or evaluate / predict the test list.

    python train/train.py mode='teacher' load_path=runs/search-...   # writes runs/train-512x1024_teacher_batch12-*/
    python train/train.py mode='student' load_path=... teacher_path=runs/train-512x1024_teacher_batch12-...
    python train/train.py is_eval=True eval_path=runs/train-512x1024_student_batch12-...
    torchrun --nproc_per_node=4 train/train.py mode='teacher' ...            # DDP, batch_size stays the global batch

The original's train/train.py; the work is done by tools.train.loop.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from tools.config import add_config_arguments, config_from_args  # noqa: E402
from tools.engine.distributed import configure_cudnn  # noqa: E402
from tools.train.loop import run  # noqa: E402
from tools.utils.cli import run_script  # noqa: E402


def main(argv=None):
    parser = add_config_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "train")
    config = config_from_args(parser.parse_args(argv))
    configure_cudnn(config.device, config.deterministic)
    return run(config)


if __name__ == "__main__":
    sys.exit(run_script(main))
