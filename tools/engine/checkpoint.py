"""Atomic checkpoint files and resume.

The original saved with ``torch.save(obj, path)`` straight into the run folder, so a kill during the write left
a truncated file and the run could not be resumed. Here every file is written next to its destination and
renamed into place (``os.replace`` is atomic on POSIX and Windows), and everything is read back with
``weights_only=True``: a checkpoint holds tensors, numbers, strings, lists and dicts only.
"""
import os
import tempfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the file and what produces it."""


def atomic_write(path, write_fn, mode="wb"):
    """Call ``write_fn(file)`` on a temporary file beside ``path`` and rename it onto ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def save_checkpoint(obj, path):
    """``torch.save`` through a temporary file, so ``path`` is either the old or the new file, never half."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def load_checkpoint(path, map_location="cpu", produced_by=None):
    """``torch.load(weights_only=True)`` with a sentence that names the file (and the stage that writes it)."""
    if not os.path.isfile(path):
        hint = f" It is written by {produced_by}." if produced_by else ""
        raise CheckpointError(f"checkpoint {path} does not exist.{hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} cannot be read safely ({error}); "
                              f"delete it and rerun the stage that writes it.") from error


def rng_state():
    """Every random generator the pipelines use, as tensors/lists that survive weights_only loading."""
    import random

    import numpy as np
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype("int64")), int(numpy_state[2]),
                  int(numpy_state[3]), float(numpy_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore what :func:`rng_state` captured."""
    import random

    import numpy as np
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"][1], state["python"][0], state["python"][2]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
