"""weights0.pt / weights1.pt: the trained networks' state_dicts in the original's format, saved and loaded safely.

The original saved ``model.state_dict()`` with ``torch.save`` (tools/utils/darts_utils.py ``save``) and loaded
the teacher with ``{k: v for k, v in partial.items() if k in state}`` (train/train.py:128-139), which silently
keeps random weights for every key that does not match. It also joined ``os.path.join(teacher_path,
"/weights0.pt")``, which drops ``teacher_path`` and reads ``/weights0.pt`` from the file-system root.

Here the files hold the same plain state_dict (same keys, so weights trained by the original load and ours
load in the original), written atomically, read with ``weights_only=True``, and matched strictly: a file for a
different architecture is an error naming the first mismatching keys. Two harmless differences are accepted:
a ``module.`` prefix (saved from a DDP wrapper) and the ``total_ops``/``total_params`` buffers that thop 0.0.31
(the original's pinned version) leaves in every module it profiled. Missing auxiliary heads (a network built
for inference) are tolerated: they only serve the training loss.
"""
import os

import torch

from tools.utils.errors import UserError
from tools.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

THOP_KEYS = ("total_ops", "total_params")
AUX_PREFIXES = ("heads16.", "heads32.")


class WeightsMismatchError(UserError, ValueError):
    """A weights file whose keys or shapes do not fit the network built from the arch file."""


def weights_name(arch_idx):
    return f"weights{int(arch_idx)}.pt"


def weights_path(folder, arch_idx):
    return os.path.join(folder, weights_name(arch_idx))


def best_weights_path(folder, arch_idx):
    """``weights{idx}_best.pt``: the epoch with the best val mIoU, kept beside the last (``weights{idx}.pt``)."""
    return os.path.join(folder, f"weights{int(arch_idx)}_best.pt")


def save_weights(model, folder, arch_idx):
    """Write ``folder/weights{arch_idx}.pt`` (a plain state_dict on CPU, as the original's file)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    path = weights_path(folder, arch_idx)
    save_checkpoint(state, path)
    return path


def clean_state_dict(state):
    """Drop a DDP ``module.`` prefix and thop's bookkeeping buffers from a loaded state_dict."""
    cleaned = {}
    for key, value in state.items():
        if key.split(".")[-1] in THOP_KEYS:
            continue
        cleaned[key[len("module."):] if key.startswith("module.") else key] = value
    return cleaned


def _describe(keys, limit=3):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_compatible(state, model_state, path):
    """Raise one sentence naming the mismatching keys unless ``state`` fits ``model_state`` (aux heads optional)."""
    missing = [key for key in model_state if key not in state and not key.startswith(AUX_PREFIXES)]
    unexpected = [key for key in state if key not in model_state]
    shapes = [key for key in state if key in model_state and tuple(state[key].shape) != tuple(model_state[key].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys missing ({_describe(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_describe(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches ({_describe(shapes)})")
        raise WeightsMismatchError(f"weights file {path} does not fit the network built from the arch file: "
                                   f"{'; '.join(parts)}; use the weights trained with the same arch file, "
                                   f"Fch, layers and stem_head_width.")


def load_weights(model, path, produced_by=None):
    """Load a weights file (the original's or ours) into ``model`` strictly; returns ``model``."""
    state = load_checkpoint(path, map_location="cpu", produced_by=produced_by, what="weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} does not hold a state_dict (a dict of tensors); "
                              f"pass a weights0.pt / weights1.pt written by train/train.py.")
    state = clean_state_dict(state)
    model_state = model.state_dict()
    check_compatible(state, model_state, path)
    merged = dict(model_state)
    merged.update(state)
    model.load_state_dict(merged)
    return model
