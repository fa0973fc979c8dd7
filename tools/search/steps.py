"""One epoch of supernet pretraining or architecture search; replaces ``train()`` of search/train_search.py.

Per step (as the original, with its fix 478b026): when searching, one architecture step on an arch-half batch
(tools/search/architect.py), then one weight step on a train-half batch: the sandwich loss
(``model._loss(imgs, target, pretrain)``), backward, gradient clipping at ``grad_clip`` and SGD (lr 2e-2 pretrain /
1e-2 search, momentum 0.9, weight decay 5e-4) over the weights in the original's order (stem, cells,
refine32, refine16, heads). The learning rate follows ``lr_schedule`` (tools/engine/recipe.py; by default the
original's x ``lr_decay`` = 0.978 per epoch), stepped by the run: after the epoch, or, for a per-iteration
schedule, in the ``after_step`` hook called after every weight step.

Deliberate differences (docs/differences.md, rows S4-S5):

* the clip norm is over the weights only. The original clipped ``model.parameters()``, which includes the
  architecture parameters; their ``.grad`` held the architecture step's gradient (never zeroed before the weight
  step) plus the weight loss's, and in pretraining (no architecture step at all) it accumulated over every
  iteration of the run, so the weights' clipping tightened as pretraining went on. The weight step's backward
  therefore asks autograd for the weights' gradients only (the architecture gradients it skips were only ever
  read by that clip).
* SGD runs as multi-tensor kernels (``foreach=True``: the same update, bit for bit, checked in
  tests/test_search.py; ``fused=True`` cannot take weights that get their first gradient after step one) and ``zero_grad`` keeps zero tensors (``set_to_none=False``), as torch 1.x did for the
  original: a weight reached once keeps getting weight decay and momentum on steps that do not use it.
"""
import sys
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from tqdm import tqdm


@dataclass
class EpochStats:
    """Mean losses of one epoch and the per-step values that were logged."""
    loss: list = field(default_factory=list)
    loss_arch: list = field(default_factory=list)

    @property
    def mean_loss(self):
        return sum(self.loss) / max(len(self.loss), 1)

    @property
    def mean_loss_arch(self):
        return sum(self.loss_arch) / max(len(self.loss_arch), 1)


def weight_optimizer(model, lr, momentum=0.9, weight_decay=5e-4):
    """SGD over the supernet weights (not the architecture parameters), in the original's parameter order."""
    return torch.optim.SGD(model.weight_parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                           foreach=True)


def weight_step(model, optimizer, imgs, target, pretrain, grad_clip, bf16=False):
    """The sandwich loss on a train-half batch, backward to the weights, clip, SGD; returns the loss value.

    ``bf16``: the forward under CPU bf16 autocast (the fast path on a CPU with native bf16, as in training; the
    losses stay float32); the architecture step never runs in bf16."""
    optimizer.zero_grad(set_to_none=False)
    weights = [p for group in optimizer.param_groups for p in group["params"]]
    with torch.autocast(imgs.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model._loss(imgs, target, pretrain)
    loss.backward(inputs=weights)
    nn.utils.clip_grad_norm_([p for p in weights if p.grad is not None], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)
    return float(loss.detach())


def _batch(iterator, device):
    minibatch = next(iterator)
    return (minibatch["data"].to(device, non_blocking=True), minibatch["label"].to(device, non_blocking=True))


def train_epoch(model, optimizer, loader_model, niters, pretrain, grad_clip, device, architect=None,
                loader_arch=None, writer=None, epoch=0, progress=True, log_every=10, after_step=None, bf16=False):
    """One epoch of ``niters`` steps; the architecture is updated when ``architect`` is given (search).
    ``after_step()`` is called after every weight step: the run steps its per-iteration schedules there.
    ``bf16``: the weight steps under bf16 autocast (:func:`weight_step`).

    TensorBoard (``writer``): ``loss/train`` every step; ``loss_arch/train`` and ``arch/latency_supernet`` every
    ``log_every`` steps, as the original.
    """
    model.train()
    stats = EpochStats()
    batches_model = iter(loader_model)
    batches_arch = iter(loader_arch) if architect is not None else None
    bar = tqdm(range(niters), file=sys.stdout, ncols=80, disable=not progress,
               bar_format="{desc}[{elapsed}<{remaining},{rate_fmt}]")
    for step in bar:
        global_step = epoch * niters + step
        imgs, target = _batch(batches_model, device)
        if architect is not None:
            bar.set_description(f"[Arch Step {step + 1}/{niters}]")
            arch = architect.step(*_batch(batches_arch, device))
            stats.loss_arch.append(arch.total)
            if writer is not None and (step + 1) % log_every == 0:
                writer.add_scalar("loss_arch/train", arch.total, global_step)
                writer.add_scalar("arch/latency_supernet", arch.latency_supernet, global_step)
        loss = weight_step(model, optimizer, imgs, target, pretrain, grad_clip, bf16)
        if after_step is not None:
            after_step()
        stats.loss.append(loss)
        if writer is not None:
            writer.add_scalar("loss/train", loss, global_step)
        bar.set_description(f"[Step {step + 1}/{niters}]")
    return stats
