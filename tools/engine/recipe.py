"""What the search (tools/search/loop.py) and the training (tools/train/loop.py) share of the optimisation recipe:
the OHEM criterion, the CPU fast path and the learning-rate schedules, each built in one place from the config.

* :func:`build_criterion`: ``ProbOhemCrossEntropy2d(thresh 0.7)`` with the ``min_kept`` formula of the original
  train_search.py / train.py (one 16th of the label pixels a process sees per step); on the fast path its fused
  form (the same pixels and loss from one log-softmax);
* :func:`resolve_fast_path`: config key ``fast`` ('auto' by default): on a CPU, the fused OHEM loss and, where
  the CPU has native bf16 (AVX512-BF16 or AMX, read from its flags), bf16 autocast of the networks; the
  original's fp32 eager path on CUDA and with ``fast=False`` (docs/differences.md TR17);
* :func:`build_lr_scheduler`: one mechanism, torch's ``LRScheduler``, for every schedule. ``'exponential'`` (the
  original's, both stages: lr x ``lr_decay`` after every epoch) is ``ExponentialLR``, stepped by the run after each
  epoch (tools/engine/run.py); ``'poly'`` and ``'cosine'`` with a linear warm-up (training only, ours, for short
  runs) are :class:`IterationLR`, stepped by the trainer after every iteration. Either way the scheduler's state
  travels in the checkpoint's ``schedulers``, and the rates are the same floats the two hand-written rules gave.
"""
import math
from dataclasses import dataclass

import torch

from tools.losses import FusedProbOhemCrossEntropy2d, ProbOhemCrossEntropy2d, ohem_min_kept
from tools.utils.device import cpu_native_bf16

LR_SCHEDULES = ("exponential", "poly", "cosine")
FAST_SETTINGS = ("auto", True, False)


@dataclass(frozen=True)
class FastPath:
    """What a run changes from the original's fp32 eager path, and why (a line for its log)."""
    fused_loss: bool
    bf16: bool
    why: str


def resolve_fast_path(fast, device, native_bf16=None):
    """The fast path of ``fast`` ('auto', True, False) on ``device``.

    'auto' (default): on a CPU the fused OHEM loss, plus bf16 autocast where the CPU has native bf16
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
    if flags:
        return FastPath(True, True, f"CPU with native bf16 ({', '.join(flags)}): fused OHEM loss, bf16 autocast")
    if fast is True:
        return FastPath(True, True, "fast=True: fused OHEM loss, bf16 autocast (this CPU emulates bf16: slow)")
    return FastPath(True, False, "CPU without native bf16: fused OHEM loss, fp32")


def build_criterion(config, batch_size=None, fused=False):
    """ProbOhemCrossEntropy2d(ignore ``ignore_label``, thresh 0.7) with the original's ``min_kept`` for
    ``batch_size`` images (default ``config.batch_size``; training passes the batch of one process); ``fused``:
    :class:`~tools.losses.FusedProbOhemCrossEntropy2d` (the same pixels and loss)."""
    batch = config.batch_size if batch_size is None else batch_size
    min_kept = ohem_min_kept(batch, config.image_height, config.image_width, config.gt_down_sampling)
    criterion = FusedProbOhemCrossEntropy2d if fused else ProbOhemCrossEntropy2d
    return criterion(ignore_label=config.ignore_label, thresh=0.7, min_kept=min_kept, use_weight=False)


def iteration_lr(base_lr, schedule, iteration, total_iters, warmup_iters=0, power=0.9):
    """The learning rate of iteration ``iteration`` for the per-iteration schedules 'poly' and 'cosine'.

    A linear warm-up from ``base_lr / warmup_iters`` to ``base_lr`` over the first ``warmup_iters`` iterations,
    then ``(1 - t/T)^power`` ('poly') or ``(1 + cos(pi t/T)) / 2`` ('cosine') of ``base_lr`` with ``t`` counted
    after the warm-up and ``T = total_iters - warmup_iters``. Not the original's: it decays x0.992 per epoch
    ('exponential'), made for 600,000 GPU iterations (docs/differences.md TR12).
    """
    if iteration < warmup_iters:
        return base_lr * (iteration + 1) / warmup_iters
    progress = min(1.0, (iteration - warmup_iters) / max(1, total_iters - warmup_iters))
    if schedule == "poly":
        return base_lr * (1.0 - progress) ** power
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"lr_schedule={schedule!r} has no per-iteration rate; use one of {LR_SCHEDULES}.")


class IterationLR(torch.optim.lr_scheduler.LRScheduler):
    """``lr = iteration_lr(initial lr, schedule, n)`` before iteration ``n``: stepped after every iteration.

    The rate is computed from the iteration count (not chained from the previous rate), so a scheduler moved to
    an iteration (:func:`seek`) gives exactly the rate an uninterrupted run had there.
    """
    per_iteration = True

    def __init__(self, optimizer, schedule, total_iters, warmup_iters=0):
        self.schedule = schedule
        self.total_iters = int(total_iters)
        self.warmup_iters = int(warmup_iters)
        super().__init__(optimizer)

    def get_lr(self):
        return [iteration_lr(base, self.schedule, self.last_epoch, self.total_iters, self.warmup_iters)
                for base in self.base_lrs]


def build_lr_scheduler(optimizer, config):
    """The scheduler of ``config.lr_schedule`` (default 'exponential': ``ExponentialLR(lr_decay)`` per epoch)."""
    schedule = config.get("lr_schedule", "exponential")
    if schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, config.lr_decay)
    return IterationLR(optimizer, schedule, config.nepochs * config.niters_per_epoch, config.get("warmup_iters", 0))


def per_iteration(scheduler):
    """True for a scheduler the trainer steps after every iteration, False for one the run steps per epoch."""
    return bool(getattr(scheduler, "per_iteration", False))


def seek(scheduler, epochs_done, niters_per_epoch):
    """Move a freshly built scheduler to the end of ``epochs_done`` epochs, for a checkpoint written before
    checkpoints held the schedule: a per-iteration rate is recomputed there; a per-epoch one (chained) keeps the
    rate of the optimizer state just loaded."""
    if not per_iteration(scheduler):
        scheduler.last_epoch = int(epochs_done)
        return
    scheduler.last_epoch = int(epochs_done) * int(niters_per_epoch)
    rates = scheduler.get_lr()
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = list(rates)
