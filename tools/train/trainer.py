"""One training run's inner loop: the loss, the optimizer step (with optional AMP), the epoch.

Replaces ``train()`` of the original train/train.py (the networks' Kaiming initialisation is the builder's,
tools/models/build.py). The math is the original's:

* loss = OHEM(pred8) + 0.2 * (OHEM(pred16) + OHEM(pred32)) for the trained network, plus, in student mode, the
  KL distillation of the student's pred8 towards the frozen teacher's output (tools/train/distill.py);
* the teacher runs in eval mode under ``no_grad`` and is never given to the optimizer;
* SGD (lr 0.01, momentum 0.9, weight decay 5e-4); the learning rate follows the schedule of
  tools/engine/recipe.py (the original's x0.992 per epoch), which the run steps: ``train_epoch`` calls its
  ``after_step`` hook after every optimizer step, where the per-iteration schedules ('poly', 'cosine') move on;
* the train mIoU of every network is accumulated over the epoch from its pred8 (the original's Seg_Metrics).

Beyond the original: mixed precision (fp16 with a GradScaler on CUDA, bf16 on CPU; losses in float32), and a
non-finite loss stops the run after saving the weights from before that step. What resume needs (model,
optimizer, schedule, scaler) is saved by the run (tools/train/loop.py).
"""
import contextlib

import torch
from tqdm import tqdm

from tools.utils.errors import UserError
from tools.engine import distributed as dist_utils
from tools.engine.metrics import RunningIoU
from tools.ops.interpolation import upsample_bilinear
from tools.utils.checkpoint import save_checkpoint


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; the message names the iteration and where the weights were saved."""


def build_optimizer(model, config):
    """SGD over the trained network only (the teacher is never handed to the optimizer, as the original)."""
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def segmentation_loss(outputs, target, criterion, aux_weight=0.2):
    """OHEM(pred8) + aux_weight * (OHEM(pred16) + OHEM(pred32)); an absent auxiliary output is skipped."""
    pred8, pred16, pred32 = outputs
    loss = criterion(pred8.float(), target)
    for aux in (pred16, pred32):
        if aux is not None:
            loss = loss + aux_weight * criterion(aux.float(), target)
    return loss


def label_size_logits(logits, target, grad):
    """``logits`` at the size of ``target``: as they are when the network upsampled them, else upsampled here
    the way the network does (bilinear, ``align_corners=True``), with autograd only when ``grad``."""
    if logits.shape[-2:] == target.shape[-2:]:
        return logits
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return upsample_bilinear(logits, tuple(target.shape[-2:]))


def amp_dtype(device):
    """fp16 on CUDA (with a GradScaler), bf16 elsewhere (CPU autocast supports bf16 only)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16


def autocast(device, enabled):
    """An autocast context for ``device`` when ``enabled``, otherwise a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    device = torch.device(device)
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def make_grad_scaler(device, amp):
    """A GradScaler that is active only for fp16 on CUDA; bf16 and fp32 need no loss scaling."""
    return torch.amp.GradScaler("cuda", enabled=bool(amp) and torch.device(device).type == "cuda")


class Trainer:
    """Trains ``model`` (the teacher alone, or the student) with an optional frozen ``teacher`` for distillation.

    ``model`` may be DDP-wrapped (tools.engine.distributed.wrap_model). ``arch_indices`` names the networks in
    the metrics (teacher 0, student 1) and ``nan_path(iteration)`` says where to save on a non-finite loss.
    """

    def __init__(self, model, optimizer, criterion, device, teacher=None, distill=None, aux_weight=0.2,
                 amp=False, num_classes=19, ignore_label=255, writer=None, nan_path=None, show_progress=True):
        if (teacher is None) != (distill is None):
            raise ValueError("a teacher needs a distillation loss and a distillation loss needs a teacher.")
        self.model = model
        self.teacher = teacher
        self.optimizer = optimizer
        self.criterion = criterion
        self.distill = distill
        self.device = torch.device(device)
        self.aux_weight = aux_weight
        self.amp = bool(amp)
        self.scaler = make_grad_scaler(self.device, amp)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.writer = writer
        self.nan_path = nan_path
        self.show_progress = show_progress
        if teacher is not None:
            freeze(teacher)
        network = dist_utils.unwrap_model(model)
        if hasattr(network, "upsample_train_logits"):     # a loss that upsamples the logits itself gets them small
            network.upsample_train_logits = not getattr(criterion, "upsamples_logits", False)

    def _forward_losses(self, images, target):
        """(total loss, segmentation loss, distillation loss or None, student pred8, teacher output or None)."""
        teacher_out = None
        if self.teacher is not None:
            with torch.no_grad(), autocast(self.device, self.amp):
                teacher_out = self.teacher(images)
        with autocast(self.device, self.amp):
            outputs = self.model(images)
        if self.teacher is None:
            pred8 = label_size_logits(outputs[0], target, grad=False)      # for the train mIoU only
        else:   # the KL needs pred8 at label size with autograd: the loss gets that tensor too (one upsampling)
            pred8 = label_size_logits(outputs[0].float(), target, grad=True)
            outputs = (pred8,) + tuple(outputs[1:])
        seg = segmentation_loss(outputs, target, self.criterion, self.aux_weight)
        kl = None
        if self.teacher is not None:
            kl = self.distill(pred8, teacher_out)
        total = seg if kl is None else seg + kl
        return total, seg, kl, pred8, teacher_out

    def train_step(self, images, target, iteration=0):
        """One SGD step on a batch; returns a dict of floats ``loss``, ``seg``, ``kl`` and the logits."""
        images = images.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        total, seg, kl, pred8, teacher_out = self._forward_losses(images, target)
        self._check_finite(total, iteration)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": float(total.detach()), "seg": float(seg.detach()),
                "kl": None if kl is None else float(kl.detach()), "pred8": pred8.detach(),
                "teacher": None if teacher_out is None else teacher_out.detach()}

    def _check_finite(self, loss, iteration):
        """Stop every process together on a NaN/inf loss, after saving the weights from before this step."""
        bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=self.device)
        dist_utils.all_reduce(bad, "max")
        if bad.item() == 0:
            return
        where = ""
        if self.nan_path is not None and dist_utils.is_main_process():
            path = self.nan_path(iteration)
            save_checkpoint({"iteration": iteration, "model": dist_utils.unwrap_model(self.model).state_dict(),
                             "optimizer": self.optimizer.state_dict()}, path)
            where = f" the weights from before this step were saved to {path};"
        raise NonFiniteLossError(f"the training loss became {float(loss.detach())} at iteration {iteration};{where}"
                                 f" lower lr, turn amp off, or check the labels of this batch.")

    def train_epoch(self, loader, epoch, niters, arch_indices=(1,), after_step=None):
        """Run ``niters`` steps of ``loader``; return {'loss': mean loss, 'mIoU': {arch_idx: train mIoU}}.

        ``arch_indices`` lists the networks as the metrics name them: (teacher, student) in student mode.
        ``after_step()`` is called after every optimizer step: the run steps its per-iteration schedules there.
        """
        self.model.train()
        if self.teacher is not None:
            self.teacher.eval()
        metrics = {arch: RunningIoU(self.num_classes, self.ignore_label, self.device)
                   for arch in arch_indices}
        trained_arch = arch_indices[-1]
        bar = tqdm(range(niters), ncols=100, leave=False, disable=not (self.show_progress and
                                                                     dist_utils.is_main_process()))
        batches = iter(loader)
        total = 0.0
        for step in bar:
            images, target = unpack_batch(next_batch(batches, loader, epoch, step))
            iteration = epoch * niters + step
            result = self.train_step(images, target, iteration)
            if after_step is not None:
                after_step()
            total += result["loss"]
            target = target.to(self.device)
            metrics[trained_arch].update(result["pred8"].argmax(1), target)
            if result["teacher"] is not None:
                metrics[arch_indices[0]].update(result["teacher"].argmax(1), target)
            if self.writer is not None:
                self.writer.add_scalar("loss/train", result["loss"], iteration)
            bar.set_description(f"[Epoch {epoch + 1}][Step {step + 1}/{niters}]" + "".join(
                f"[mIoU{arch}: {metric.miou():.3f}]" for arch, metric in metrics.items()))
        for metric in metrics.values():
            metric.all_reduce()
        loss = dist_utils.all_reduce_mean(total / max(niters, 1), self.device)
        return {"loss": loss, "mIoU": {arch: metric.miou() for arch, metric in metrics.items()}}


def freeze(model):
    """The teacher in student mode: eval mode (running BN statistics) and no gradients, so it never changes."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def unpack_batch(batch):
    """(images, labels) from the original's dict batches ``{'data', 'label', ...}`` or from a pair."""
    if isinstance(batch, dict):
        return batch["data"], batch["label"]
    return batch[0], batch[1]


def next_batch(batches, loader, epoch, step):
    try:
        return next(batches)
    except StopIteration:
        raise RuntimeError(f"the train loader ran out after {step} batches in epoch {epoch + 1}; it must yield "
                           f"niters_per_epoch batches (dataset length batch_size * niters_per_epoch).") from None
