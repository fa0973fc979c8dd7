"""What the search (tools/search/loop.py) and the training (tools/train/loop.py) share of the optimisation recipe:
the OHEM criterion, the CPU fast path and the learning-rate schedules, each built in one place from the config.

* :func:`build_criterion`: ``ProbOhemCrossEntropy2d(thresh 0.7)`` with the ``min_kept`` formula of the original
  train_search.py / train.py (one 16th of the label pixels a process sees per step); on the fast path its fused
  form (the same pixels, loss and gradient from one softmax, upsampling the heads' logits itself);
* :func:`resolve_fast_path`: config key ``fast`` ('auto' by default): on a CPU, the fused OHEM loss and, where
  the CPU has native bf16 (AVX512-BF16 or AMX, read from its flags), bf16 autocast of the networks; the
  original's fp32 eager path on CUDA and with ``fast=False`` (docs/differences.md TR17);
* :data:`LR_SCHEDULES`: the one table of learning-rate schedules, a :class:`Schedule` row each (name, the unit
  the run steps it by, its rate function, the config keys it reads, a line for the docs). ``lr_schedule`` is
  checked against it (:func:`check_schedule`, by both stages before anything is built), docs/configs.md holds its
  table (:func:`schedules_markdown`), and :func:`build_lr_scheduler` makes a :class:`ScheduledLR` (torch's
  ``LRScheduler``) from the row, which declares its unit; the run (tools/engine/run.py) steps it after every
  epoch or after every optimizer step accordingly, in the search and the training alike. ``'exponential'`` (the
  original's, both stages, per epoch) gives the same floats as the original's ``lr * lr_decay``; ``'poly'`` and
  ``'cosine'`` with a linear warm-up (ours, for short runs) are set every iteration. Adding a schedule = one row.
"""
import math
from dataclasses import dataclass
from typing import Callable

import torch

from tools.losses import FusedProbOhemCrossEntropy2d, ProbOhemCrossEntropy2d, class_weights, ohem_min_kept
from tools.utils.device import cpu_native_bf16, keep_freed_memory
from tools.utils.errors import UserError

FAST_SETTINGS = ("auto", True, False)


@dataclass(frozen=True)
class FastPath:
    """What a run changes from the original's fp32 eager path, and why (a line for its log). ``keep_memory``:
    glibc keeps freed memory for reuse (:func:`tools.utils.device.keep_freed_memory`; the same numbers)."""
    fused_loss: bool
    bf16: bool
    why: str
    keep_memory: bool = False

    def apply(self):
        """The process-wide part (the allocator), done by the run that resolved it, before building anything."""
        if self.keep_memory:
            keep_freed_memory()


def resolve_fast_path(fast, device, native_bf16=None):
    """The fast path of ``fast`` ('auto', True, False) on ``device``.

    'auto' (default): on a CPU the fused OHEM loss and glibc's freed memory kept for reuse, plus bf16 autocast
    where the CPU has native bf16
    (``native_bf16``: the flags found, default :func:`tools.utils.device.cpu_native_bf16`); on CUDA nothing (the
    original's fp32; ``amp=True`` asks for fp16). True: on a CPU both, bf16 even where it is emulated (slow);
    on CUDA the fused loss. False: the original's fp32 eager path everywhere.
    """
    if fast not in FAST_SETTINGS:
        raise ValueError(f"fast={fast!r} must be one of {FAST_SETTINGS}.")
    if fast is False:
        return FastPath(False, False, "fast=False: the original's fp32 eager path")
    if torch.device(device).type != "cpu":
        if fast is True:
            return FastPath(True, False, "fast=True on CUDA: fused OHEM loss (amp=True for fp16)")
        return FastPath(False, False, "CUDA: the original's fp32 path (amp=True for fp16)")
    flags = cpu_native_bf16() if native_bf16 is None else tuple(native_bf16)
    memory = ", freed memory reused"
    if flags:
        return FastPath(True, True, f"CPU with native bf16 ({', '.join(flags)}): fused OHEM loss, bf16 autocast"
                        + memory, keep_memory=True)
    if fast is True:
        return FastPath(True, True, "fast=True: fused OHEM loss, bf16 autocast (this CPU emulates bf16: slow)"
                        + memory, keep_memory=True)
    return FastPath(True, False, "CPU without native bf16: fused OHEM loss, fp32" + memory, keep_memory=True)


def resolve_search_fast_path(fast, device, native_bf16=None):
    """The search's fast path: the training's fused loss and allocator, but bf16 autocast (of the weight steps
    only; the architecture step stays fp32) only with ``fast=True``: the training's accuracy check does not cover
    the architecture the search settles on (docs/differences.md TR17)."""
    path = resolve_fast_path(fast, device, native_bf16)
    if not path.fused_loss:
        return path
    bf16 = path.bf16 and fast is True
    why = ("fused OHEM loss" + (", freed memory reused" if path.keep_memory else "")
           + (", bf16 autocast of the weight steps (the architecture step stays fp32)" if bf16
              else ", fp32 (fast=True: bf16 weight steps)"))
    return FastPath(True, bf16, why, path.keep_memory)


def build_criterion(config, batch_size=None, fused=False, class_pixels=None):
    """ProbOhemCrossEntropy2d(ignore ``ignore_label``, thresh 0.7) with the original's ``min_kept`` for
    ``batch_size`` images (default ``config.batch_size``; training passes the batch of one process); ``fused``:
    :class:`~tools.losses.FusedProbOhemCrossEntropy2d` (the same pixels and loss). ``class_weight`` (a key of
    ours, off by default) weighs the classes, from ``class_pixels`` (the training labels' pixels per class)."""
    batch = config.batch_size if batch_size is None else batch_size
    min_kept = ohem_min_kept(batch, config.image_height, config.image_width, config.gt_down_sampling)
    criterion = FusedProbOhemCrossEntropy2d if fused else ProbOhemCrossEntropy2d
    weight = class_weights(config.get("class_weight"), class_pixels)
    return criterion(ignore_label=config.ignore_label, thresh=0.7, min_kept=min_kept, weight=weight)


# ---- learning-rate schedules --------------------------------------------------------------------------------
SCHEDULE_UNITS = ("epoch", "iteration")
DEFAULT_SCHEDULE = "exponential"
POLY_POWER = 0.9


class ScheduleError(UserError, ValueError):
    """An ``lr_schedule`` setting that cannot work; the message lists the registered schedules."""


@dataclass(frozen=True)
class Schedule:
    """One learning-rate schedule; the config check, the scheduler, who steps it and the docs table read it here.

    ``name``: its ``lr_schedule`` value. ``unit``: what the run steps it after (tools/engine/run.py): ``'epoch'``
    (each epoch's training) or ``'iteration'`` (each optimizer step). ``rate(lr, step, total, settings)``: the
    learning rate of step ``step`` (0: the first epoch or iteration), ``total`` being the run's steps of that unit
    (``nepochs``, or ``nepochs * niters_per_epoch``) and ``settings`` the config's values of ``keys``; ``lr`` is
    the base rate (``config.lr``), or, when ``chained``, the rate of the step before: the original's
    ``lr = lr * lr_decay`` after every epoch, kept as the same floats, and a resumed run continues from the rate
    in its optimizer state. ``keys``: the config keys ``rate`` reads (each stage's config holds them).
    ``description``: one line for docs/configs.md and the messages.
    """
    name: str
    unit: str
    rate: Callable
    keys: tuple = ()
    description: str = ""
    chained: bool = False

    def __post_init__(self):
        if self.unit not in SCHEDULE_UNITS:
            raise ValueError(f"schedule {self.name!r}: unit {self.unit!r} is not one of {SCHEDULE_UNITS}")

    def total(self, config):
        """The run's steps of this schedule's unit."""
        epochs = int(config.nepochs)
        return epochs if self.unit == "epoch" else epochs * int(config.niters_per_epoch)

    def settings(self, config):
        """The config's values of :attr:`keys`; a key the config lacks is one sentence."""
        missing = [key for key in self.keys if config.get(key) is None]
        if missing:
            raise ScheduleError(f"lr_schedule={self.name!r} reads {', '.join(missing)}, which this config does "
                                f"not set; give {missing[0]}=<value>.")
        return {key: config[key] for key in self.keys}


def _exponential(lr, step, total, settings):
    """The original's: the rate before x ``lr_decay`` (train.py ``adjust_learning_rate``, train_search.py
    ``ExponentialLR(0.978)``), so every epoch gets exactly the float the original computed."""
    return lr if step == 0 else lr * settings["lr_decay"]


def _warmup_then(decay):
    """A rate with a linear warm-up from ``lr / warmup_iters`` to ``lr`` over the first ``warmup_iters`` steps, then
    ``lr * decay(progress)`` with progress ``t / T`` counted after the warm-up (``T = total - warmup_iters``)."""
    def rate(lr, step, total, settings):
        warmup = int(settings["warmup_iters"])
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return decay(lr, progress)
    return rate


def _poly(lr, progress):
    return lr * (1.0 - progress) ** POLY_POWER


def _cosine(lr, progress):
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# THE learning-rate schedules: ``lr_schedule`` accepts these names and nothing else lists them. 'exponential' is
# the original's (both stages); 'poly' and 'cosine' are ours, for short CPU runs (docs/differences.md TR12).
LR_SCHEDULES = (
    Schedule("exponential", "epoch", _exponential, ("lr_decay",),
             "lr x `lr_decay` after every epoch (the original's: 0.992 train, 0.978 pretrain/search)", chained=True),
    Schedule("poly", "iteration", _warmup_then(_poly), ("warmup_iters",),
             f"linear warm-up over `warmup_iters`, then lr x (1 - t/T)^{POLY_POWER} over the remaining iterations"),
    Schedule("cosine", "iteration", _warmup_then(_cosine), ("warmup_iters",),
             "linear warm-up over `warmup_iters`, then lr x (1 + cos(pi t/T)) / 2 over the remaining iterations"),
)


def find_schedule(name):
    """The :data:`LR_SCHEDULES` row named ``name``; any other name is one sentence listing the registered ones."""
    for schedule in LR_SCHEDULES:
        if schedule.name == name:
            return schedule
    listed = "; ".join(f"'{s.name}' ({s.description.replace('`', '')})" for s in LR_SCHEDULES)
    raise ScheduleError(f"lr_schedule={name!r} is unknown; use one of: {listed}.")


def check_schedule(config):
    """The row of ``config.lr_schedule`` (default the original's 'exponential'), refusing an unknown name and a
    warm-up the schedule would ignore; checked before anything is built. Returns the row."""
    schedule = find_schedule(config.get("lr_schedule", DEFAULT_SCHEDULE))
    warmup = config.get("warmup_iters", 0)
    if warmup and "warmup_iters" not in schedule.keys:
        readers = " or ".join(f"'{s.name}'" for s in LR_SCHEDULES if "warmup_iters" in s.keys)
        raise ScheduleError(f"warmup_iters={warmup} needs lr_schedule={readers}; '{schedule.name}' has no warm-up "
                            f"({schedule.description.replace('`', '')}).")
    schedule.settings(config)
    return schedule


class ScheduledLR(torch.optim.lr_scheduler.LRScheduler):
    """The rates of one :class:`Schedule` (a torch ``LRScheduler``, so its state travels in the checkpoint's
    ``schedulers``); :attr:`unit` tells the run when to step it.

    Its state holds the schedule's name, ``total`` and ``settings`` (plain values: checkpoints load with
    ``weights_only``); the row itself is looked up by name. A rate that is not chained is computed from the
    step count, so a scheduler moved to a step (:meth:`seek`) gives exactly the rate an uninterrupted run had.
    """

    def __init__(self, optimizer, schedule, total, settings):
        self.schedule = schedule.name
        self.total = int(total)
        self.settings = dict(settings)
        super().__init__(optimizer)

    @property
    def record(self):
        return find_schedule(self.schedule)

    @property
    def unit(self):
        """'epoch' or 'iteration': what the run steps this scheduler after."""
        return self.record.unit

    def get_lr(self):
        record = self.record
        starts = [group["lr"] for group in self.optimizer.param_groups] if record.chained else self.base_lrs
        return [record.rate(lr, self.last_epoch, self.total, self.settings) for lr in starts]

    def load_state_dict(self, state_dict):
        """A state of :meth:`state_dict`, or of the two scheduler classes before the table (``ExponentialLR``:
        ``gamma``, the same ``lr_decay``; ``IterationLR``: ``total_iters``, ``warmup_iters``): its rates go on.
        The checkpoint's ``total`` wins over the config's, as it always did (a resumed run may change ``nepochs``
        without moving the schedule's end)."""
        state = dict(state_dict)
        state.pop("gamma", None)
        if "total_iters" in state:
            state["total"] = state.pop("total_iters")
            state["settings"] = dict(self.settings, warmup_iters=state.pop("warmup_iters", 0))
        super().load_state_dict(state)

    def seek(self, epochs_done, niters_per_epoch):
        """Move a freshly built scheduler to the end of ``epochs_done`` epochs, for a checkpoint written before
        checkpoints held the schedule: a rate that is not chained is recomputed there; a chained one keeps the
        rate of the optimizer state just loaded."""
        steps = int(epochs_done) * (1 if self.unit == "epoch" else int(niters_per_epoch))
        self.last_epoch = steps
        if self.record.chained:
            return
        rates = self.get_lr()
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"] = rate
        self._last_lr = list(rates)


def build_lr_scheduler(optimizer, config):
    """The scheduler of ``config.lr_schedule`` (default 'exponential': lr x ``lr_decay`` per epoch), from its row
    of :data:`LR_SCHEDULES`; the run steps it by its unit."""
    schedule = check_schedule(config)
    return ScheduledLR(optimizer, schedule, schedule.total(config), schedule.settings(config))


def schedules_markdown():
    """The schedules table of docs/configs.md, made from :data:`LR_SCHEDULES` (a test checks the docs hold it)."""
    lines = ["| `lr_schedule` | stepped after every | keys it reads | rate |", "|---|---|---|---|"]
    for schedule in LR_SCHEDULES:
        keys = ", ".join(f"`{key}`" for key in schedule.keys) or "-"
        lines.append(f"| `'{schedule.name}'` | {schedule.unit} | {keys} | {schedule.description} |")
    return "\n".join(lines)
