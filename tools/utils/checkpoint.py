"""Checkpoint files: written atomically, read back with ``weights_only=True``, plus the random generators' state.

The original saved with ``torch.save(obj, path)`` straight into the run folder, so a kill during the write left
a truncated file and the run could not be resumed. Here every file goes through the project's one atomic writer
(:func:`tools.utils.fileio.atomic_write`), and everything is read back with ``weights_only=True``: a checkpoint
holds tensors, numbers, strings, lists and dicts only. What a checkpoint contains (its layout) is the run's
business (tools/engine), not this module's.
"""
import os
import random
import re

import numpy as np
import torch

from tools.utils.errors import UserError
from tools.utils.fileio import atomic_write
from tools.utils.legacy_files import UnsafeFileError, refused_global

# the start of torch's message for a file weights_only cannot load (its advice, weights_only off, runs it)
UNSAFE_MARK = "Weights only load failed"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing or cannot be read; the message names the file and what produces it."""


def save_checkpoint(obj, path):
    """``torch.save`` through a temporary file, so ``path`` is either the old or the new file, never half."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def load_checkpoint(path, map_location="cpu", produced_by=None, what="checkpoint"):
    """``torch.load(weights_only=True)`` with a sentence that names the file (and the stage that writes it).

    A file that needs a global ``weights_only`` refuses (it could run code) raises :class:`UnsafeFileError`, in
    the project's words: torch's own message advises turning weights_only off, the one setting that would run it.
    """
    if not os.path.isfile(path):
        hint = f" It is written by {produced_by}." if produced_by else ""
        raise CheckpointError(f"{what} {path} does not exist.{hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - every failure becomes one sentence naming the file
        name = refused_global(error)
        if name is not None:
            raise UnsafeFileError(path, name, what) from None
        raise CheckpointError(f"{what} {path} cannot be read ({_reason(error)}: truncated or not a torch file); "
                              f"rerun the stage that writes it.") from None


def _reason(error):
    """torch's reason for a failed load without its advice: after "Weights only load failed" torch advises turning
    weights_only off, which would run whatever the file holds; the unpickler's own words are kept."""
    text = str(error)
    if UNSAFE_MARK in text:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
        return " ".join(found.group(1).split()) if found else "not a file of tensors"
    return text.split(". ")[0].strip()


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
