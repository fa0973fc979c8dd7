"""The derived network of a config: the one place a config's arch keys become a network (detectron2's
``from_config`` edge), and the one name of each architecture index.

Replaces the model construction of the original train/train.py and latency/run_latency.py (each loaded
``load_path/arch_{idx}.pt`` and built ``Network_Multi_Path_Infer`` with its own code) and, in this project, the
three builders of the training run, the latency report and the predictor/deployment. Keys read: ``load_path``
(empty: the published FasterSeg shipped in tools/models/published), ``load_epoch``, ``arch_idx``,
``stem_head_width``, ``num_classes``, ``layers``, ``Fch``, ``width_mult_list`` and, for the Kaiming
initialisation, ``bn_eps``/``bn_momentum``.
"""
import os

from tools.models.archfile import PUBLISHED_DIR, ArchFileError, arch_path, load_arch
from tools.models.derived import build_derived

ARCH_NAMES = {0: "teacher", 1: "student"}
SEARCH_STAGE = "the search (python search/train_search.py), or leave load_path empty for the published FasterSeg"


def arch_name(arch_idx):
    """'teacher' (0), 'student' (1): the name of an architecture index in logs, metrics and reports."""
    return ARCH_NAMES.get(arch_idx, f"arch{arch_idx}")


def arch_folder(config):
    """Where the config's arch files are: ``load_path``, or the published FasterSeg."""
    return config.load_path or PUBLISHED_DIR


def load_config_arch(config, arch_idx):
    """``load_path/arch_{idx}.pt`` (or ``arch_{idx}_{epoch}.pt``) in the project format, validated against the
    config's ``layers`` and ``width_mult_list``."""
    path = arch_path(arch_folder(config), arch_idx, config.load_epoch)
    if not os.path.isfile(path):
        raise ArchFileError(f"arch file {path} does not exist; it is written by {SEARCH_STAGE}.")
    return load_arch(path, arch_idx, config.layers, config.width_mult_list)


def derived_from_config(config, arch_idx, device=None, init=True):
    """The derived network ``arch_idx`` of the config, exactly as train.py builds it (genotype of the arch file:
    ignore_skip for the teacher, lasts from its metrics; training-mode aux heads), Kaiming-initialised unless
    ``init`` is False, on ``device`` (None: where it was built)."""
    if arch_idx not in config.arch_idx:
        raise ValueError(f"arch_idx {arch_idx} is not one of the config's networks {list(config.arch_idx)}.")
    position = list(config.arch_idx).index(arch_idx)
    model = build_derived(load_config_arch(config, arch_idx), arch_idx, num_classes=config.num_classes,
                          layers=config.layers, Fch=config.Fch, width_mult_list=config.width_mult_list,
                          stem_head_width=tuple(config.stem_head_width[position]))
    if init:
        model.init_weights(config.bn_eps, config.bn_momentum)
    return model if device is None else model.to(device)
