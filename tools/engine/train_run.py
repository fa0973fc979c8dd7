"""The teacher / student training run of train/train.py: networks from arch files, run folder, epochs, eval, test.

Replaces ``main()`` of the original train/train.py with the same work flow and defaults:

* ``mode='teacher'`` (arch_idx [0]): derive the teacher (ignore_skip) from ``load_path/arch_0.pt``, Kaiming
  init, train it alone; ``mode='student'`` (arch_idx [0, 1]): the teacher's ``weights0.pt`` from
  ``teacher_path``, frozen, and the student trained with the distillation term;
* lasts from objective_acc_lat, ops-table and path-width plots, params/FLOPs in log.txt;
* validation after the first epoch and every 10 epochs, weights{0,1}.pt after every epoch, lr x 0.992 per epoch;
* ``is_eval``: evaluate once on val; ``is_test``: train on train+val and write Cityscapes-submission
  predictions every 10 epochs from epoch 250 (with ``is_eval``: write them once from ``eval_path``).

Beyond it: torchrun DDP (tools/engine/distributed.py), AMP, and resume from ``checkpoint.pt`` (written
atomically after every epoch, before its validation, with model, optimizer, scaler, epoch and RNG states; the
folder lock, ``FAILED`` marker and resume rule are shared with the search: tools/engine/run.py). Every list the
run reads is checked before the folder is made. The original's bugs fixed here
are listed in docs/differences.md (teacher_path joined with "/weights0.pt", silent partial weight loading,
test predictions never written in teacher mode).
"""
import os
import random

import numpy as np
import torch

from tools.distill import build_distillation
from tools.engine import distributed as dist_utils
from tools.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tools.engine.run import (RunFolderError, get_logger, guarded_run, mark_done, open_stage_dir, summary_writer,
                              warn_if_unfinished)
from tools.engine.run_outputs import append_metrics, best_value, keep_best
from tools.engine.train_eval import Evaluation, epoch_loader, evaluation_sets, train_dataset
from tools.engine.trainer import (LR_SCHEDULES, Trainer, adjust_learning_rate, build_criterion, build_optimizer,
                                  init_weight, iteration_lr)
from tools.engine.weights import best_weights_path, load_weights, save_weights, weights_path
from tools.models.archfile import ArchFileError, PUBLISHED_DIR, arch_path, load_arch
from tools.models.derived import build_derived

CHECKPOINT_NAME = "checkpoint.pt"
SEARCH_STAGE = "the search (python search/train_search.py), or leave load_path empty for the published FasterSeg"
TEACHER_STAGE = "teacher training (python train/train.py mode='teacher')"


class TrainSetupError(ValueError):
    """A training/evaluation setting that cannot work; the message names the key and the stage that fixes it."""


def role(arch_idx):
    return "teacher" if arch_idx == 0 else "student"


def check_config(config):
    """The mode-specific keys must name things that exist before any network is built."""
    if list(config.arch_idx) not in ([0], [1], [0, 1]):
        raise TrainSetupError(f"arch_idx={config.arch_idx} is not supported; use [0] (teacher), [1] (student "
                              f"alone, no distillation) or [0, 1] (student distilled from the teacher).")
    if len(config.stem_head_width) != len(config.arch_idx):
        raise TrainSetupError(f"stem_head_width has {len(config.stem_head_width)} entries but arch_idx has "
                              f"{len(config.arch_idx)}; give one (stem, head) width pair per network.")
    if config.is_eval and not config.eval_path:
        raise TrainSetupError("is_eval=True needs eval_path=<run folder holding weights0.pt/weights1.pt>, "
                              f"written by {TEACHER_STAGE} or student training.")
    if len(config.arch_idx) > 1 and not config.teacher_path and not config.is_eval:
        raise TrainSetupError(f"mode='student' needs teacher_path=<run folder holding weights0.pt>, written by "
                              f"{TEACHER_STAGE}.")
    schedule, warmup = config.get("lr_schedule", "exponential"), config.get("warmup_iters", 0)
    if schedule not in LR_SCHEDULES:
        raise TrainSetupError(f"lr_schedule={schedule!r} is unknown; use one of {', '.join(LR_SCHEDULES)} "
                              f"('exponential' is the original's x lr_decay per epoch).")
    if warmup and schedule == "exponential":
        raise TrainSetupError(f"warmup_iters={warmup} needs lr_schedule='poly' or 'cosine'; the original's "
                              f"'exponential' schedule has no warm-up.")


def lr_function(config):
    """iteration -> lr for the per-iteration schedules; None for the original's per-epoch exponential decay."""
    schedule = config.get("lr_schedule", "exponential")
    if schedule == "exponential":
        return None
    total = config.nepochs * config.niters_per_epoch
    warmup = config.get("warmup_iters", 0)
    return lambda iteration: iteration_lr(config.lr, schedule, iteration, total, warmup)


def arch_folder(config):
    return config.load_path or PUBLISHED_DIR


def load_arch_record(config, arch_idx):
    """``load_path/arch_{idx}.pt`` (or ``arch_{idx}_{epoch}.pt``) in the project format, validated."""
    path = arch_path(arch_folder(config), arch_idx, config.load_epoch)
    if not os.path.isfile(path):
        raise ArchFileError(f"arch file {path} does not exist; it is written by {SEARCH_STAGE}.")
    return load_arch(path, arch_idx, config.layers, config.width_mult_list)


def build_network(config, position, arch_idx, device):
    """Derive a network exactly as train.py (ignore_skip for the teacher, lasts from the metrics), Kaiming init."""
    record = load_arch_record(config, arch_idx)
    model = build_derived(record, arch_idx, num_classes=config.num_classes, layers=config.layers, Fch=config.Fch,
                          width_mult_list=config.width_mult_list,
                          stem_head_width=tuple(config.stem_head_width[position]))
    init_weight(model, config.bn_eps, config.bn_momentum)
    return model.to(device)


def describe_network(model, config, position, arch_idx, run_dir, logger):
    """log.txt lines (ops, paths, lasts, params, FLOPs) and the plots of train.py for one network."""
    logger.info("%s: lasts %s, ops %s, paths %s, widths %s", role(arch_idx), model.lasts, model.ops, model.paths,
                model.widths)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, config.flops_input)
    logger.info("%s: params = %fMB, FLOPs = %fGB at %dx%d", role(arch_idx), params / 1e6, flops / 1e9,
                *config.flops_input)
    if config.plots:
        save_plots(model, config, position, arch_idx, run_dir)
    return {"params": params, "flops": flops}


def count_flops(model, input_size):
    """thop's count at (1, 3, H, W) as train.py logs it, on a copy so no thop buffers reach the weights files."""
    from tools.models.flops import thop_flops
    return thop_flops(model, (1, 3, int(input_size[0]), int(input_size[1])))


def save_plots(model, config, position, arch_idx, run_dir):
    """ops_{arch}_{last}.png per branch, path_width{arch}.png and path_width_all{arch}.png (train.py's files)."""
    from tools.plots import plot_op, plot_path_width, save_figure
    head_width = config.stem_head_width[position][1]
    for last in model.lasts:
        ops, path = getattr(model, f"ops{last}"), getattr(model, f"path{last}")
        if len(config.width_mult_list) > 1:
            fig = plot_op(ops, path, width=getattr(model, f"widths{last}"), head_width=head_width, F_base=config.Fch)
        else:
            fig = plot_op(ops, path, F_base=config.Fch)
        save_figure(fig, os.path.join(run_dir, f"ops_{arch_idx}_{last}.png"))
    save_figure(plot_path_width(model.lasts, model.paths, model.widths),
                os.path.join(run_dir, f"path_width{arch_idx}.png"))
    save_figure(plot_path_width([2, 1, 0], [model.path2, model.path1, model.path0],
                                [model.widths2, model.widths1, model.widths0]),
                os.path.join(run_dir, f"path_width_all{arch_idx}.png"))


def load_pretrained(config, models, logger):
    """Teacher weights in student mode (teacher_path), and every evaluated network's weights in eval mode."""
    for arch_idx, model in models.items():
        if arch_idx == 0 and len(models) > 1 and config.teacher_path:
            path = weights_path(config.teacher_path, 0)
            load_weights(model, path, produced_by=TEACHER_STAGE)
        elif config.is_eval:
            path = weights_path(config.eval_path, arch_idx)
            load_weights(model, path, produced_by=f"{role(arch_idx)} training (python train/train.py "
                                                  f"mode='{role(arch_idx)}')")
        else:
            continue
        logger.info("%s weights loaded from %s", role(arch_idx), path)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run_dir(config, info):
    """The run folder (new, or the one being resumed; docs/configs.md "Resume"), chosen and locked on rank 0 and
    shared with every process. Returns ``(folder, lock or None, notes for log.txt)``."""
    folder, lock, notes, error = None, None, [], None
    if info.is_main:
        resume = bool(config.resume) and not config.is_eval
        try:
            folder, lock, notes = open_stage_dir(config, "eval" if config.is_eval else "train", CHECKPOINT_NAME,
                                                 resume)
        except RunFolderError as exc:   # every process must stop, not only rank 0
            error = exc
    folder, error = dist_utils.broadcast_object((folder, error))
    if error is not None:
        raise error
    return folder, lock, notes


def run(config):
    """Entry point of train/train.py; returns a summary dict (run folder, mIoUs, losses)."""
    check_config(config)
    info = dist_utils.init_distributed_mode(config.device)
    try:
        training = TrainingRun(config, info)
        with guarded_run(training.run_dir if info.is_main else None, training.lock):
            training.setup()
            return training.execute()
    finally:
        dist_utils.cleanup()


class TrainingRun:
    """State of one invocation of train/train.py (networks, data, optimizer, logger, checkpoints)."""

    def __init__(self, config, info):
        """Check every list the run reads (files, image sizes), then choose and lock the run folder."""
        self.config = config
        self.info = info
        self.device = info.device
        self.sets = evaluation_sets(config)
        self.train_set = None if config.is_eval else train_dataset(config, test=config.is_test)
        self.run_dir, self.lock, self.notes = prepare_run_dir(config, info)

    def setup(self):
        """Logger, TensorBoard, networks (and their plots), pretrained weights."""
        config, info = self.config, self.info
        self.logger = get_logger(self.run_dir, rank=info.rank)
        self.writer = summary_writer(self.run_dir, rank=info.rank)
        self.logger.info("args = %s", dict(config))
        self.logger.info("run folder %s, device %s, %d process(es)", self.run_dir, self.device, info.world_size)
        for note in self.notes:
            self.logger.info("%s", note)
        for key in ("load_path", "teacher_path", "eval_path"):
            warn_if_unfinished(self.logger, key, config.get(key))
        if config.amp and self.device.type == "cpu":
            self.logger.info("amp on CPU means bf16 autocast: fast only with native bf16 (AVX512-BF16, AMX); "
                             "elsewhere it is several times slower than fp32 (docs/benchmarks.md)")
        self.evaluation = Evaluation(config, info, self.run_dir, self.logger, self.writer, sets=self.sets)
        seed_everything(config.seed)
        self.models = {}
        self.descriptions = {}
        for position, arch_idx in enumerate(config.arch_idx):
            model = build_network(config, position, arch_idx, self.device)
            if info.is_main:
                self.descriptions[arch_idx] = describe_network(model, config, position, arch_idx, self.run_dir,
                                                               self.logger)
            self.models[arch_idx] = model
        load_pretrained(config, self.models, self.logger)
        self.trained_idx = config.arch_idx[-1]
        self.cached_val = {}

    def execute(self):
        summary = self.evaluate_once() if self.config.is_eval else self.train()
        summary.update(run_dir=self.run_dir, networks={role(a): d for a, d in self.descriptions.items()})
        self.logger.info("finished: run folder %s, val mIoU %s", self.run_dir, summary.get("val_mIoU"))
        self.finish()
        return summary

    def evaluate_once(self):
        """is_eval: every network's val mIoU; with is_test also the trained network's test submissions."""
        summary = {"val_mIoU": {role(a): self.evaluation.validate(m, role(a), 0) for a, m in self.models.items()}}
        if self.info.is_main:           # one record (epoch 0: no training) so every run folder has metrics.jsonl
            append_metrics(self.run_dir, {"epoch": 0, "val_mIoU": summary["val_mIoU"], "val_class_IoU": dict(
                self.evaluation.class_iou)})
        if self.config.is_test:
            summary["test_dir"] = self.evaluation.write_test(self.models[self.trained_idx], "test")
        return summary

    def build_trainer(self):
        config = self.config
        batch = dist_utils.per_rank_batch_size(config.batch_size, self.info.world_size)
        student = dist_utils.wrap_model(self.models[self.trained_idx], self.info, sync_bn=config.sync_bn)
        teacher = self.models[0] if len(self.models) > 1 else None
        trainer = Trainer(student, build_optimizer(student, config), build_criterion(config, batch), self.device,
                          teacher=teacher, distill=build_distillation(config) if teacher is not None else None,
                          aux_weight=config.aux_weight, amp=config.amp, num_classes=config.num_classes,
                          ignore_label=config.ignore_label, writer=self.writer,
                          nan_path=lambda it: os.path.join(self.run_dir, f"nonfinite_iter{it}.pt"),
                          lr_at=lr_function(config))
        return trainer, batch

    def train(self):
        config = self.config
        trainer, batch = self.build_trainer()
        start_epoch, history, pending_eval = self.restore(trainer)
        if pending_eval:        # the run stopped during the validation of its last epoch: finish it first
            self.epoch_eval(trainer, start_epoch - 1, history)
        for epoch in range(start_epoch, config.nepochs):
            lr = trainer.optimizer.param_groups[0]["lr"] if trainer.lr_at is None else \
                trainer.lr_at(epoch * config.niters_per_epoch)
            self.logger.info("epoch %d/%d, lr: %s", epoch + 1, config.nepochs, lr)
            self.writer.add_scalar("lr", lr, epoch)
            loader = epoch_loader(self.train_set, config, self.info, batch, epoch)
            stats = trainer.train_epoch(loader, epoch, config.niters_per_epoch, tuple(self.models))
            record = {"epoch": epoch + 1, "lr": lr, "loss": stats["loss"],
                      "train_mIoU": {role(a): v for a, v in stats["mIoU"].items()}}
            for arch_idx, value in stats["mIoU"].items():
                self.writer.add_scalar(f"mIoU/train_{role(arch_idx)}", value, epoch)
                self.logger.info("%s's train_mIoU %.3f, loss %.4f", role(arch_idx), value, stats["loss"])
            if trainer.lr_at is None:
                adjust_learning_rate(trainer.optimizer, config.lr_decay)
            dist_utils.broadcast_buffers(trainer.model)
            history.append(record)
            # the epoch is saved before its validation, so a failing validation never costs the epoch
            self.save(trainer, epoch + 1, history, pending_eval=any(self.evals_due(epoch)))
            self.epoch_eval(trainer, epoch, history)
        return {"history": history, "val_mIoU": last_value(history, "val_mIoU"),
                "test_dir": last_value(history, "test_dir")}

    def evals_due(self, epoch):
        """(validate, write test predictions) after ``epoch``: validation after epoch 1, every val_interval
        epochs and the last; test predictions in is_test mode from test_start_epoch every test_interval."""
        config, done = self.config, epoch + 1
        validate = not config.is_test and (done % config.val_interval == 0 or epoch == 0 or done == config.nepochs)
        test = config.is_test and done >= config.test_start_epoch and done % config.test_interval == 0
        return validate, test

    def periodic_eval(self, epoch):
        """The validation / test predictions due after ``epoch`` (see :meth:`evals_due`)."""
        validate, test = self.evals_due(epoch)
        result = {}
        if validate:
            result["val_mIoU"] = {role(a): self.validate(a, m, epoch) for a, m in self.models.items()}
        if test:
            result["test_dir"] = self.evaluation.write_test(self.models[self.trained_idx],
                                                            f"test_{self.trained_idx}_{epoch}")
        return result

    def epoch_eval(self, trainer, epoch, history):
        """Run what is due after ``epoch`` and record it in its history entry and in checkpoint.pt."""
        result = self.periodic_eval(epoch)
        if result:
            if "val_mIoU" in result:
                result["val_class_IoU"] = {role(a): self.evaluation.class_iou.get(role(a)) for a in self.models}
                self.keep_best(result["val_mIoU"][role(self.trained_idx)], history)
            history[-1].update(result)
            self.save(trainer, epoch + 1, history, weights=False)
        if self.info.is_main:
            append_metrics(self.run_dir, history[-1])

    def keep_best(self, value, history):
        """weights{idx}_best.pt of the trained network when its val mIoU beats every earlier validation."""
        if self.info.is_main and keep_best(weights_path(self.run_dir, self.trained_idx),
                                           best_weights_path(self.run_dir, self.trained_idx), value,
                                           best_value(history, "val_mIoU", role(self.trained_idx))):
            self.logger.info("best val mIoU so far (%.3f): %s", value,
                             best_weights_path(self.run_dir, self.trained_idx))

    def validate(self, arch_idx, model, epoch):
        """The frozen teacher's val mIoU cannot change in student mode: it is computed once."""
        if arch_idx != self.trained_idx and arch_idx in self.cached_val:
            return self.cached_val[arch_idx]
        value = self.evaluation.validate(model, role(arch_idx), epoch)
        self.cached_val[arch_idx] = value
        return value

    def save(self, trainer, epochs_done, history, pending_eval=False, weights=True):
        """weights{idx}.pt of every network (the original's files) and checkpoint.pt for resume, on rank 0.
        ``pending_eval``: the epoch's validation has not run yet (a resume runs it first)."""
        if self.info.is_main:
            if weights:
                for arch_idx, model in self.models.items():
                    save_weights(model, self.run_dir, arch_idx)
            save_checkpoint({"epoch": epochs_done, "trainer": trainer.state_dict(), "rng": rng_state(),
                             "history": history, "arch_idx": list(self.config.arch_idx),
                             "pending_eval": bool(pending_eval)},
                            os.path.join(self.run_dir, CHECKPOINT_NAME))
        dist_utils.barrier()

    def restore(self, trainer):
        """(first epoch to run, history, validation pending) from checkpoint.pt when resuming, else (0, [], False)."""
        path = os.path.join(self.run_dir, CHECKPOINT_NAME)
        if not self.config.resume or not os.path.isfile(path):
            return 0, [], False
        state = load_checkpoint(path, map_location="cpu")
        if list(state["arch_idx"]) != list(self.config.arch_idx):
            raise TrainSetupError(f"checkpoint {path} was written for arch_idx {state['arch_idx']}, not "
                                  f"{list(self.config.arch_idx)}; resume it with the same mode.")
        trainer.load_state_dict(state["trainer"])
        set_rng_state(state["rng"])
        self.logger.info("resumed from %s after epoch %d", path, state["epoch"])
        return int(state["epoch"]), list(state["history"]), bool(state.get("pending_eval", False))

    def finish(self):
        if self.info.is_main:
            mark_done(self.run_dir)
            self.writer.close()
        dist_utils.barrier()


def last_value(history, key):
    """The newest value of ``key`` in the per-epoch records (None if never recorded)."""
    for record in reversed(history):
        if key in record:
            return record[key]
    return None
