"""Checkpoint files: written atomically, read back with ``weights_only=True``, plus the random generators' state.

The original saved with ``torch.save(obj, path)`` straight into the run folder, so a kill during the write left
a truncated file and the run could not be resumed. Here every file goes through the project's one atomic writer
(:func:`tools.utils.fileio.atomic_write`), and everything is read back with ``weights_only=True``: a checkpoint
holds tensors, numbers, strings, lists and dicts only. What a checkpoint contains (its layout) is the run's
business (tools/engine), not this module's.
"""
import os
import random

import numpy as np
import torch

from tools.utils.fileio import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the file and what produces it."""


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
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype("int64")), int(numpy_state[2]),
                  int(numpy_state[3]), float(numpy_state[4])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # this process's device only: get_rng_state_all() makes a CUDA context on every visible GPU (per rank
        # under torchrun) and its list cannot be restored on a machine with fewer GPUs
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"][1], state["python"][0], state["python"][2]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):   # older checkpoints held every GPU's state: take this device's
            index = torch.cuda.current_device()
            cuda = cuda[index] if index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)
