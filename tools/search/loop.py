"""The pretrain / search run of search/train_search.py: a :class:`~tools.engine.run.Run` (folder, resume,
checkpoint, finish) whose hooks are the supernet's epochs and validation.

Replaces ``main()`` of the original search/train_search.py with the same work flow and defaults:

* ``pretrain=True``: Kaiming-initialised supernet, weights trained on the first half of train with the
  sandwich loss, no architecture step; after every epoch the five heads' mIoU at 'min', 'max' and 'random'
  widths; ``weights.pt``.
* ``pretrain="<pretrain run folder>"``: its ``weights.pt`` loaded by name and shape; every step one architecture
  step on the second half and one weight step on the first; after every epoch, per architecture, the five
  heads' mIoU, the derived networks' latency/FPS for lasts [2,0]/[2,1], the objective, the adaptive latency
  weight; ``weights.pt``, ``arch_{idx}.pt`` and ``arch_{idx}_{epoch}.pt``. (``pretrain=False`` searches from
  a Kaiming initialisation.)
* folders ``search-<save>-YYYYMMDD-HHMMSS`` under ``output_root``, ``log.txt``, TensorBoard, tqdm.
* lr x ``lr_decay`` (0.978) after every epoch; ``lr_schedule`` takes the training's schedules too
  (tools/engine/recipe.py ``LR_SCHEDULES``, stepped by the run by their unit).

Beyond the original, from the shared run lifecycle (tools/engine/run.py): ``config.json``, a lock, ``FAILED`` /
``DONE`` markers, and ``checkpoint.pt`` while the run is unfinished (model with the arch parameters, SGD, lr
schedule, and in ``extra`` the architect with its Adam optimizers and latency weights, the loaders' and the
zero gradients' state), written once per epoch before the validation; ``resume=True`` (the newest unfinished run
of this ``save`` name) or ``resume=<folder>`` continues it with the same numbers as an uninterrupted run. The data
split is drawn from the seed (the original shuffled with the unseeded ``random``), and bad input (missing
pretrain folder, a supernet config that does not match the pretrained weights, a train list too small for two
halves) is one sentence.
"""
import json
import os
import random

import numpy as np
import torch
from tqdm import tqdm

from tools.utils.errors import UserError
from tools.data.datasets import dataset_from_config, read_file_list
from tools.data.loader import get_train_loader
from tools.engine.distributed import resolve_device
from tools.engine.recipe import build_criterion, build_lr_scheduler, resolve_search_fast_path
from tools.engine.run import CONFIG_NAME, Run, config_snapshot, warn_if_unfinished
from tools.models.supernet import Network_Multi_Path
from tools.models.build import arch_name
from tools.search.arch_log import ArchReport, arch_latencies, log_report, save_arch_files
from tools.search.architect import Architect, adapt_latency_weights
from tools.search.steps import train_epoch, weight_optimizer
from tools.search.validate import HEAD_NAMES, evaluate_heads
from tools.utils.checkpoint import load_checkpoint, save_checkpoint

WEIGHTS_NAME = "weights.pt"
# Keys that decide the supernet's parameters: a search must use the pretraining run's values.
SUPERNET_KEYS = ("num_classes", "layers", "Fch", "width_mult_list", "prun_modes", "stem_head_width")


class SearchSetupError(UserError, ValueError):
    """A pretrain/search setting that cannot work; the message names the key or file and what to do."""


def is_pretraining(config):
    return config.pretrain is True


def check_config(config):
    """Settings that cannot work, found before anything is built (one sentence each)."""
    from tools.search.arch_log import FPS_SOURCES
    if config.fps_source not in FPS_SOURCES:
        raise SearchSetupError(f"fps_source={config.fps_source!r} is unknown; use one of {FPS_SOURCES}.")


# ---- model, pretrained weights -------------------------------------------------------------------------
def build_supernet(config, criterion=None, device="cpu"):
    """The supernet of the config on ``device``; Kaiming init unless it will be loaded from a pretraining."""
    model = Network_Multi_Path(config.num_classes, config.layers, criterion, Fch=config.Fch,
                               width_mult_list=config.width_mult_list, prun_modes=config.prun_modes,
                               stem_head_width=config.stem_head_width)
    if not isinstance(config.pretrain, str):
        model.init_weights(config.bn_eps, config.bn_momentum)
    return model.to(device)


def check_pretrain_config(folder, config):
    """Compare the supernet keys with the pretraining run's config.json (when it has one)."""
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        return
    with open(path) as handle:
        saved = json.load(handle)
    current = config_snapshot(config)
    for key in SUPERNET_KEYS:
        if key in saved and saved[key] != current.get(key):
            raise SearchSetupError(f"pretrain folder {folder} was pretrained with {key}={saved[key]!r} but this "
                                   f"search uses {key}={config[key]!r}; search with the pretraining's {key} "
                                   f"(or pretrain again with this one).")


def load_pretrained(model, folder, config=None):
    """Load ``folder/weights.pt`` by name and shape (the original's rule), refusing a different supernet."""
    if not os.path.isdir(folder):
        raise SearchSetupError(f"pretrain folder {folder!r} does not exist; run the pretraining first "
                               f"(python search/train_search.py pretrain=True) and pass its run folder.")
    path = os.path.join(folder, WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise SearchSetupError(f"pretrain folder {folder} holds no {WEIGHTS_NAME}; it is written after the first "
                               f"pretraining epoch (python search/train_search.py pretrain=True).")
    if config is not None:
        check_pretrain_config(folder, config)
    partial = load_checkpoint(path, produced_by="the pretraining (search/train_search.py pretrain=True)")
    state = model.state_dict()
    mismatched = [k for k in state if k not in partial or tuple(partial[k].shape) != tuple(state[k].shape)]
    if mismatched:
        example = mismatched[0]
        found = tuple(partial[example].shape) if example in partial else "absent"
        raise SearchSetupError(f"{path} does not fit this supernet: {len(mismatched)} of {len(state)} tensors are "
                               f"missing or mis-shaped (e.g. {example}: {found} in the file, "
                               f"{tuple(state[example].shape)} here); use the layers, Fch, width_mult_list and "
                               f"stem_head_width of the pretraining run.")
    state.update({k: v for k, v in partial.items() if k in state})
    model.load_state_dict(state)
    return model


# ---- data -------------------------------------------------------------------------------------------------
def split_indices(config):
    """A seeded shuffle of the train list's indices; the loaders take its first / second ``train_portion``."""
    num = len(read_file_list(config.train_source))
    first = int(np.floor(config.train_portion * num))
    if first < 1 or num - first < 1:
        raise SearchSetupError(f"train list {config.train_source} has {num} image(s): too few to split into two "
                               f"non-empty halves with train_portion={config.train_portion}; add images (at least 2).")
    index_select = list(range(num))
    random.Random(config.seed).shuffle(index_select)
    return index_select


def make_loaders(config, index_select):
    """(model loader: first portion, arch loader: the rest), each ``batch_size * niters_per_epoch`` items."""
    loader_model, _ = get_train_loader(config, portion=config.train_portion, index_select=index_select,
                                       seed=config.seed)
    loader_arch, _ = get_train_loader(config, portion=config.train_portion - 1, index_select=index_select,
                                      seed=config.seed + 1)
    return loader_model, loader_arch


def loader_state(loader):
    state = {"generator": loader.generator.get_state()}
    rng = getattr(getattr(loader.dataset, "preprocess", None), "rng", None)
    if rng is not None:
        version, internal, gauss = rng.getstate()
        state["transform"] = [version, list(internal), gauss]
    return state


def set_loader_state(loader, state):
    loader.generator.set_state(state["generator"])
    rng = getattr(getattr(loader.dataset, "preprocess", None), "rng", None)
    if rng is not None and "transform" in state:
        version, internal, gauss = state["transform"]
        rng.setstate((version, tuple(internal), gauss))


# ---- latency table ------------------------------------------------------------------------------------------
def open_latency_table(config, device, run_dir=None):
    """The lookup table at the latency resolution: ``lut_path`` (project JSON or original .npy), else the
    published 1080Ti table at 1024x2048, else a table measured on demand and saved in the run folder."""
    from tools.latency.table import PUBLISHED_RESOLUTION, table_for
    resolution = (int(config.latency_height), int(config.latency_width))
    if not config.lut_path and resolution == PUBLISHED_RESOLUTION:
        return table_for(resolution)
    path = config.lut_path or (os.path.join(run_dir, "latency_lookup_table.json") if run_dir else "")
    measure = bool(config.lut_measure_misses) and not str(path).endswith(".npy")
    table = table_for(resolution, path, measure=measure, backend=config.latency_backend,
                      device=str(device), precision=config.precision,
                      budget_s=config.lut_budget_s, calib_s=config.lut_calib_s)
    if table is None:
        raise SearchSetupError(f"no latency lookup table for {resolution[0]}x{resolution[1]}: give lut_path=<table "
                               f"made by latency/latency_lookup_table.py> or allow lut_measure_misses=True.")
    return table



# ---- resume -------------------------------------------------------------------------------------------------
def restore_zero_grads(model, indices):
    """Give the parameters that had a ``.grad`` when the checkpoint was written a zero one again: with
    ``zero_grad(set_to_none=False)`` (torch 1.x, the original) they keep receiving weight decay and momentum."""
    wanted = set(indices)
    for i, p in enumerate(model.parameters()):
        if i in wanted and p.grad is None:
            p.grad = torch.zeros_like(p)


def upgrade_search_checkpoint(state):
    """A search checkpoint written before the shared layout (``optimizer``, ``scheduler``, ``architect``,
    ``loaders``... at the top level) in the shared one; None when ``state`` is no search checkpoint."""
    if not all(key in state for key in ("epoch", "model", "optimizer", "scheduler", "loaders", "rng", "history")):
        return None
    return {"epoch": state["epoch"], "model": state["model"], "optimizers": {"weights": state["optimizer"]},
            "schedulers": {"lr": state["scheduler"]}, "rng": state["rng"], "history": state["history"],
            "extra": {"architect": state.get("architect"), "loaders": state["loaders"],
                      "grad_allocated": state.get("grad_allocated", []),
                      "pending_eval": bool(state.get("pending_validation", False))}}


# ---- the run ----------------------------------------------------------------------------------------------
def run(config, table=None, progress=True):
    """Entry point of search/train_search.py; returns the run folder. ``table`` overrides the lookup table."""
    return SearchRun(config, table=table, progress=progress).launch()


class SearchRun(Run):
    """One pretrain/search invocation: supernet, architect, optimizer, loaders; the lifecycle is :class:`Run`'s."""

    prefix = "search"

    def __init__(self, config, table=None, progress=True):
        """Everything that checks the inputs (pretrained weights, lists, image sizes), then the locked folder."""
        check_config(config)
        super().__init__(config)
        self.progress = progress
        self.table = table
        self.pretrain = config.pretrain
        self.searching = not is_pretraining(config)
        self.device = resolve_device(config.device)
        self.seed()
        self.fast = resolve_search_fast_path(config.get("fast", False), self.device)
        self.fast.apply()
        self.model = build_supernet(config, build_criterion(config, fused=self.fast.fused_loss), self.device)
        if isinstance(config.pretrain, str) and not config.resume:   # a resumed run restores its own weights
            load_pretrained(self.model, config.pretrain, config)
        index_select = split_indices(config)
        self.val_set = dataset_from_config(config, "val")
        self.loader_model, self.loader_arch = make_loaders(config, index_select)
        # the folder is made (or the resumed one locked) only once the inputs above are known to be usable
        self.open_folder()

    def setup(self):
        """Optimizer, lr schedule, latency table and architect (inside the folder's failure guard)."""
        config = self.config
        if isinstance(config.pretrain, str):
            warn_if_unfinished(self.logger, "pretrain", config.pretrain)
        self.optimizer = weight_optimizer(self.model, config.lr, config.momentum, config.weight_decay)
        self.optimizers = {"weights": self.optimizer}
        self.schedulers = {"lr": build_lr_scheduler(self.optimizer, config)}   # stepped by the run, by its unit
        if self.searching and self.table is None:
            self.table = open_latency_table(config, self.device, self.run_dir)
        self.architect = None
        if self.searching:
            self.architect = Architect(self.model, config.latency_weight, self.table,
                                       (3, config.latency_height, config.latency_width), config.arch_learning_rate,
                                       legacy_latency=config.legacy_latency)
        self.history = {"mIoU": [], "fps": [], "latency_weight": [], "latency_supernet": [], "loss": []}

    def begin(self):
        config = self.config
        self.logger.info("args = %s", json.dumps(config_snapshot(config), sort_keys=True))
        self.logger.info("fast path (fast=%r): %s", config.get("fast", False), self.fast.why)
        n_params = sum(p.numel() for p in self.model.weight_parameters())
        self.logger.info("params = %.3fM (weights), arch params = %d", n_params / 1e6,
                         sum(p.numel() for p in self.model.arch_parameters()))
        if self.searching:
            for idx, weight in enumerate(self.architect.latency_weight):
                self.writer.add_scalar(f"arch/latency_weight_{arch_name(idx)}", weight, 0)
                self.logger.info("arch_latency_weight_%s = %s", arch_name(idx), weight)

    # ---- epochs -----------------------------------------------------------------------------------------
    def epochs(self):
        self.bar = tqdm(super().epochs(), ncols=80, disable=not self.progress)
        return self.bar

    def _describe(self, epoch, what):
        if getattr(self, "bar", None) is not None:
            self.bar.set_description(f"[Epoch {epoch + 1}/{self.config.nepochs}][{what}...]")

    def train_one_epoch(self, epoch):
        self._describe(epoch, "train")
        self.logger.info("pretrain: %s | run: %s", self.pretrain, self.run_dir)
        self.epoch_lr = self.optimizer.param_groups[0]["lr"]
        self.logger.info("lr: %s | update arch: %s", self.epoch_lr, self.searching)
        stats = train_epoch(self.model, self.optimizer, self.loader_model, self.config.niters_per_epoch,
                            self.pretrain, self.config.grad_clip, self.device, architect=self.architect,
                            loader_arch=self.loader_arch, writer=self.writer, epoch=epoch, progress=self.progress,
                            after_step=self.end_iteration, bf16=self.fast.bf16)
        self.history["loss"].append(stats.mean_loss)
        self.logger.info("Epoch %d: mean train loss %.4f%s", epoch, stats.mean_loss,
                         f", mean arch loss {stats.mean_loss_arch:.4f}" if self.searching else "")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def evaluate(self, epoch):
        """The epoch's validation, ``weights.pt``, the arch files and the adapted latency weights."""
        self._describe(epoch, "validation")
        with torch.no_grad():
            if self.searching:
                reports = self.validate_search(epoch)
            else:
                self.validate_pretrain(epoch)
        save_checkpoint({k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                        os.path.join(self.run_dir, WEIGHTS_NAME))
        if self.searching:
            save_arch_files(self.model, reports, self.run_dir, epoch)
            self.adapt_latency_weights(reports, epoch)
        return True

    def epoch_record(self, epoch):
        """The metrics.jsonl record of ``epoch``: lr, mean loss, the five heads' val mIoU (pretrain: per width
        mode; search: per architecture, with the derived networks' FPS and the latency weight used)."""
        history = self.history
        record = {"epoch": epoch + 1, "stage": "search" if self.searching else "pretrain",
                  "lr": getattr(self, "epoch_lr", None), "loss": history["loss"][-1] if history["loss"] else None}
        if not self.searching:
            record["val_mIoU"] = {mode: dict(zip(HEAD_NAMES, m)) for mode, m in history["mIoU"][-1].items()}
            return record
        names = [arch_name(idx) for idx in range(len(history["mIoU"][-1]))]
        record["val_mIoU"] = {name: dict(zip(HEAD_NAMES, m)) for name, m in zip(names, history["mIoU"][-1])}
        record["fps"] = {name: {"lasts_2_0": fps[0], "lasts_2_1": fps[1]}
                         for name, fps in zip(names, history["fps"][-1])}
        record["latency_weight"] = dict(zip(names, history["latency_weight"][-1]))
        record["latency_supernet"] = history["latency_supernet"][-1]
        return record

    def validate_pretrain(self, epoch):
        """mIoU of the five heads at 'min' widths, then 'max' and 'random' (when there are several widths)."""
        modes = ["min"] + (["max", "random"] if len(self.model._width_mult_list) > 1 else [])
        record = {}
        for mode in modes:
            self.model.select(mode=mode)
            mious = self._evaluate()
            record[mode] = mious
            for head, miou in zip(HEAD_NAMES, mious):
                self.writer.add_scalar(f"mIoU/val_{mode}_{head}", miou, epoch)
                self.logger.info("Epoch %d: valid_mIoU_%s_%s %.3f", epoch, mode, head, miou)
        self.history["mIoU"].append(record)

    def validate_search(self, epoch):
        """Per architecture: five-head mIoU, derived networks' latency for lasts [2,0]/[2,1], plots."""
        config = self.config
        reports = []
        for idx in range(len(self.model._arch_names)):
            self.model.select(arch_idx=idx, mode=None)
            mious = self._evaluate()
            lat02, lat12, net = arch_latencies(self.model, idx, (3, config.latency_height, config.latency_width),
                                               self.table, config.fps_source, legacy=config.legacy_latency,
                                               backend=config.latency_backend,
                                               device=str(self.device), precision=config.precision)
            report = ArchReport(idx, mious, lat02, lat12, net if config.arch_plots else None)
            log_report(self.writer, self.logger, report, epoch, config.Fch, self.architect.latency_weight[idx])
            report.network = None
            reports.append(report)
        self.history["mIoU"].append([r.mIoUs for r in reports])
        self.history["fps"].append([[r.fps0, r.fps1] for r in reports])
        self.history["latency_supernet"].append(self.architect.latency_supernet)
        self.history["latency_weight"].append(list(self.architect.latency_weight))
        return reports

    def _evaluate(self):
        return evaluate_heads(self.model, self.val_set, self.config, self.device, progress=False)

    def adapt_latency_weights(self, reports, epoch):
        architect = self.architect
        architect.latency_weight = adapt_latency_weights(architect.latency_weight, [[r.fps0, r.fps1] for r in reports],
                                                         self.config.FPS_min, self.config.FPS_max)
        for idx, weight in enumerate(architect.latency_weight):
            if self.config.latency_weight[idx] > 0:
                self.writer.add_scalar(f"arch/latency_weight_{arch_name(idx)}", weight, epoch + 1)
                self.logger.info("arch_latency_weight_%s = %s", arch_name(idx), weight)

    def result(self):
        return self.run_dir

    def finish(self):
        if self.table is not None and getattr(self.table, "path", None) and getattr(self.table, "misses", None):
            self.table.save()
        super().finish()

    # ---- checkpoint: what the search keeps besides model, optimizer and schedule -------------------------
    def extra_state(self):
        """The architect (Adam optimizers, latency weights), the loaders' generators and which weights hold a
        (zero) gradient: everything needed to continue at the next epoch exactly."""
        return {"architect": self.architect.state_dict() if self.architect is not None else None,
                "loaders": [loader_state(self.loader_model), loader_state(self.loader_arch)],
                "grad_allocated": [i for i, p in enumerate(self.model.parameters()) if p.grad is not None]}

    def load_extra(self, extra):
        if self.architect is not None and extra["architect"] is not None:
            self.architect.load_state_dict(extra["architect"])
        set_loader_state(self.loader_model, extra["loaders"][0])
        set_loader_state(self.loader_arch, extra["loaders"][1])
        restore_zero_grads(self.model, extra.get("grad_allocated", []))

    def upgrade_checkpoint(self, state):
        return upgrade_search_checkpoint(state)
