"""Run folders, log.txt and TensorBoard, as the original's ``create_exp_dir`` + logging set-up.

The original named folders ``search-<save>-%Y%m%d-%H%M%S`` / ``train-<save>-...`` / ``eval-...`` and logged
to stdout and ``log.txt``. Here :func:`create_run_dir` keeps those names and refuses to reuse a folder that
holds a finished run (``DONE`` marker) unless resuming was asked for.
"""
import logging
import os
import sys
import time


def run_name(prefix, save):
    """``{prefix}-{save}-YYYYMMDD-HHMMSS`` as the original's experiment folders."""
    return f"{prefix}-{save}-{time.strftime('%Y%m%d-%H%M%S')}"


def unused_name(root, name):
    """``name``, or ``name-2``, ``name-3``... when a run started in the same second already took it."""
    candidate, number = name, 1
    while os.path.exists(os.path.join(root, candidate)):
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def create_run_dir(root, name):
    """Make ``root/name`` (and parents); return its path."""
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    return path


def mark_done(run_dir):
    """Write the marker that tells later invocations this run finished and must not be overwritten."""
    with open(os.path.join(run_dir, "DONE"), "w") as handle:
        handle.write(time.strftime("%Y-%m-%d %H:%M:%S\n"))


def is_done(run_dir):
    return os.path.isfile(os.path.join(run_dir, "DONE"))


def latest_run(root, prefix):
    """The newest folder under ``root`` whose name starts with ``prefix`` (for resume), or None."""
    if not os.path.isdir(root):
        return None
    names = sorted(name for name in os.listdir(root)
                   if name.startswith(prefix) and os.path.isdir(os.path.join(root, name)))
    return os.path.join(root, names[-1]) if names else None


def get_logger(run_dir, name="fasterseg", rank=0):
    """A logger printing to stdout and appending to ``run_dir/log.txt`` (rank 0 only writes)."""
    logger = logging.getLogger(f"{name}.{os.path.abspath(run_dir)}")
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    if not logger.handlers:
        formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(formatter)
        logger.addHandler(stream)
        if rank == 0:
            file_handler = logging.FileHandler(os.path.join(run_dir, "log.txt"))
            file_handler.setFormatter(formatter)
            logger.addHandler(file_handler)
    return logger


def summary_writer(run_dir, rank=0):
    """A tensorboardX SummaryWriter on rank 0, a no-op stand-in elsewhere."""
    if rank != 0:
        return _NullWriter()
    from tensorboardX import SummaryWriter
    return SummaryWriter(log_dir=os.path.join(run_dir, "tb"))


class _NullWriter:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None
