"""The teacher / student training run of train/train.py: a :class:`~tools.engine.run.Run` (folder, resume,
checkpoint, finish) whose hooks are the networks' epochs, validation and test predictions.

Replaces ``main()`` of the original train/train.py with the same work flow and defaults:

* ``mode='teacher'`` (arch_idx [0]): derive the teacher (ignore_skip) from ``load_path/arch_0.pt``, Kaiming
  init, train it alone; ``mode='student'`` (arch_idx [0, 1]): the teacher's ``weights0.pt`` from
  ``teacher_path``, frozen, and the student trained with the distillation term;
* lasts from objective_acc_lat, ops-table and path-width plots, params/FLOPs in log.txt;
* validation after the first epoch and every 10 epochs, weights{0,1}.pt after every epoch, lr x 0.992 per epoch;
* ``is_eval``: evaluate once on val; ``is_test``: train on train+val and write Cityscapes-submission
  predictions every 10 epochs from epoch 250 (with ``is_eval``: write them once from ``eval_path``).

Beyond it: torchrun DDP (tools/engine/distributed.py), AMP, and the shared run lifecycle (tools/engine/run.py):
``config.json``, a lock, ``FAILED`` / ``DONE`` markers, and ``checkpoint.pt`` while the run is unfinished
(the trained network, SGD, lr schedule, and in ``extra`` the GradScaler and ``arch_idx``), written once per epoch
before its validation; ``resume`` continues it with the same weights as an uninterrupted run. Checkpoints of the
layout before (``{epoch, trainer, rng, history, arch_idx}``) still resume. Every list the run reads is checked
before the folder is made. The original's bugs fixed here are listed in docs/differences.md (teacher_path joined
with "/weights0.pt", silent partial weight loading, test predictions never written in teacher mode).
"""
import os

from tools.utils.errors import UserError
from tools.engine import distributed as dist_utils
from tools.engine.recipe import build_criterion, build_lr_scheduler, resolve_fast_path
from tools.engine.run import CHECKPOINT_NAME, Run, warn_if_unfinished
from tools.engine.run_outputs import append_metrics, best_value, keep_best
from tools.engine.weights import best_weights_path, save_weights, weights_path
from tools.models.build import arch_name, derived_from_config
from tools.train.distill import build_distillation
from tools.train.evaluation import Evaluation, epoch_loader, evaluation_sets, train_dataset
from tools.train.networks import TEACHER_STAGE, describe_network, load_pretrained
from tools.train.trainer import Trainer, build_optimizer


class TrainSetupError(UserError, ValueError):
    """A training/evaluation setting that cannot work; the message names the key and the stage that fixes it."""


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


def upgrade_training_checkpoint(state):
    """A training checkpoint written before the shared layout (``{epoch, trainer: {model, optimizer, scaler},
    rng, history, arch_idx}``) in the shared one; None when ``state`` is no training checkpoint. It holds no
    schedule: the run moves its freshly built scheduler to the checkpoint's epoch."""
    if not all(key in state for key in ("epoch", "trainer", "rng", "history", "arch_idx")):
        return None
    trainer = state["trainer"]
    return {"epoch": state["epoch"], "model": trainer["model"], "optimizers": {"weights": trainer["optimizer"]},
            "schedulers": {}, "rng": state["rng"], "history": state["history"],
            "extra": {"scaler": trainer.get("scaler") or {}, "arch_idx": list(state["arch_idx"]),
                      "pending_eval": bool(state.get("pending_eval", False))}}


def run(config):
    """Entry point of train/train.py; returns a summary dict (run folder, mIoUs, losses)."""
    check_config(config)
    info = dist_utils.init_distributed_mode(config.device)
    try:
        return TrainingRun(config, info).launch()
    finally:
        dist_utils.cleanup()


class TrainingRun(Run):
    """One invocation of train/train.py (networks, data, trainer); the lifecycle is :class:`Run`'s."""

    def __init__(self, config, info):
        """Check every list the run reads (files, image sizes), then choose and lock the run folder."""
        super().__init__(config)
        self.info = info
        self.device = info.device
        self.prefix = "eval" if config.is_eval else "train"
        self.resume = bool(config.resume) and not config.is_eval
        self.sets = evaluation_sets(config)
        self.train_set = None if config.is_eval else train_dataset(config, test=config.is_test)
        self.open_folder()

    def setup(self):
        """Networks (and their plots), pretrained weights, and the trainer of a training run."""
        config, info = self.config, self.info
        self.logger.info("args = %s", dict(config))
        self.logger.info("run folder %s, device %s, %d process(es)", self.run_dir, self.device, info.world_size)
        for key in ("load_path", "teacher_path", "eval_path"):
            warn_if_unfinished(self.logger, key, config.get(key))
        if config.amp and self.device.type == "cpu":
            self.logger.info("amp on CPU means bf16 autocast: fast only with native bf16 (AVX512-BF16, AMX); "
                             "elsewhere it is several times slower than fp32 (docs/benchmarks.md)")
        self.fast = resolve_fast_path(config.get("fast", False), self.device)
        self.fast.apply()
        self.logger.info("fast path (fast=%r): %s", config.get("fast", False), self.fast.why)
        self.evaluation = Evaluation(config, info, self.run_dir, self.logger, self.writer, sets=self.sets)
        self.seed()
        self.models, self.descriptions = {}, {}
        for arch_idx in config.arch_idx:
            model = derived_from_config(config, arch_idx, self.device)
            if info.is_main:
                self.descriptions[arch_idx] = describe_network(model, config, arch_idx, self.run_dir, self.logger)
            self.models[arch_idx] = model
        load_pretrained(config, self.models, self.logger)
        self.trained_idx = config.arch_idx[-1]
        self.cached_val = {}
        self.history = []
        if not config.is_eval:
            self.build_trainer()

    def build_trainer(self):
        """The trainer of the trained network (DDP-wrapped under torchrun), registered for the checkpoint."""
        config = self.config
        self.batch = dist_utils.per_rank_batch_size(config.batch_size, self.info.world_size)
        student = dist_utils.wrap_model(self.models[self.trained_idx], self.info, sync_bn=config.sync_bn)
        teacher = self.models[0] if len(self.models) > 1 else None
        optimizer = build_optimizer(student, config)
        criterion = build_criterion(config, self.batch, self.fast.fused_loss, self.train_set.class_pixels)
        if criterion.criterion.weight is not None:
            self.logger.info("class weights (class_weight=%r): %s", config.class_weight,
                             ", ".join(f"{w:.2f}" for w in criterion.criterion.weight.tolist()))
        self.trainer = Trainer(student, optimizer, criterion,
                               self.device, teacher=teacher,
                               distill=build_distillation(config) if teacher is not None else None,
                               aux_weight=config.aux_weight, amp=config.amp or self.fast.bf16,
                               num_classes=config.num_classes,
                               ignore_label=config.ignore_label, writer=self.writer,
                               nan_path=lambda it: os.path.join(self.run_dir, f"nonfinite_iter{it}.pt"))
        self.model = self.models[self.trained_idx]
        self.optimizers = {"weights": optimizer}
        self.schedulers = {"lr": build_lr_scheduler(optimizer, config)}     # stepped by the run, by its unit

    # ---- modes ------------------------------------------------------------------------------------------
    def execute(self):
        """Training: the shared epochs (:meth:`Run.execute`); ``is_eval``: one evaluation, no checkpoint."""
        if not self.config.is_eval:
            return super().execute()
        summary = self.summarize(self.evaluate_once())
        self.finish()
        return summary

    def evaluate_once(self):
        """is_eval: every network's val mIoU; with is_test also the trained network's test submissions."""
        summary = {"val_mIoU": {arch_name(a): self.evaluation.validate(m, arch_name(a), 0)
                                for a, m in self.models.items()}}
        if self.info.is_main:           # one record (epoch 0: no training) so every run folder has metrics.jsonl
            append_metrics(self.run_dir, {"epoch": 0, "val_mIoU": summary["val_mIoU"], "val_class_IoU": dict(
                self.evaluation.class_iou)})
        if self.config.is_test:
            summary["test_dir"] = self.evaluation.write_test(self.models[self.trained_idx], "test")
        return summary

    def result(self):
        history = self.history
        return self.summarize({"history": history, "val_mIoU": last_value(history, "val_mIoU"),
                               "test_dir": last_value(history, "test_dir")})

    def summarize(self, summary):
        summary.update(run_dir=self.run_dir, networks={arch_name(a): d for a, d in self.descriptions.items()})
        self.logger.info("finished: run folder %s, val mIoU %s", self.run_dir, summary.get("val_mIoU"))
        return summary

    # ---- epochs -----------------------------------------------------------------------------------------
    def train_one_epoch(self, epoch):
        """One epoch of the trainer on this epoch's loader; its history record; weights{idx}.pt."""
        config, trainer = self.config, self.trainer
        lr = trainer.optimizer.param_groups[0]["lr"]
        self.logger.info("epoch %d/%d, lr: %s", epoch + 1, config.nepochs, lr)
        self.writer.add_scalar("lr", lr, epoch)
        loader = epoch_loader(self.train_set, config, self.info, self.batch, epoch)
        stats = trainer.train_epoch(loader, epoch, config.niters_per_epoch, tuple(self.models),
                                    after_step=self.end_iteration)
        record = {"epoch": epoch + 1, "lr": lr, "loss": stats["loss"],
                  "train_mIoU": {arch_name(a): v for a, v in stats["mIoU"].items()}}
        for arch_idx, value in stats["mIoU"].items():
            self.writer.add_scalar(f"mIoU/train_{arch_name(arch_idx)}", value, epoch)
            self.logger.info("%s's train_mIoU %.3f, loss %.4f", arch_name(arch_idx), value, stats["loss"])
        dist_utils.broadcast_buffers(trainer.model)
        self.history.append(record)
        if self.is_main:
            for arch_idx, model in self.models.items():
                save_weights(model, self.run_dir, arch_idx)

    def evals_due(self, epoch):
        """(validate, write test predictions) after ``epoch``: validation after epoch 1, every val_interval
        epochs and the last; test predictions in is_test mode from test_start_epoch every test_interval."""
        config, done = self.config, epoch + 1
        validate = not config.is_test and (done % config.val_interval == 0 or epoch == 0 or done == config.nepochs)
        test = config.is_test and done >= config.test_start_epoch and done % config.test_interval == 0
        return validate, test

    def evaluate(self, epoch):
        """The validation / test predictions due after ``epoch`` (:meth:`evals_due`), recorded in its history
        entry; True when something ran."""
        validate, test = self.evals_due(epoch)
        result = {}
        if validate:
            result["val_mIoU"] = {arch_name(a): self.validate(a, m, epoch) for a, m in self.models.items()}
            result["val_class_IoU"] = {arch_name(a): self.evaluation.class_iou.get(arch_name(a))
                                       for a in self.models}
            self.keep_best(result["val_mIoU"][arch_name(self.trained_idx)])
        if test:
            result["test_dir"] = self.evaluation.write_test(self.models[self.trained_idx],
                                                            f"test_{self.trained_idx}_{epoch}")
        self.history[-1].update(result)
        return bool(result)

    def epoch_record(self, epoch):
        return self.history[-1]

    def keep_best(self, value):
        """weights{idx}_best.pt of the trained network when its val mIoU beats every earlier validation."""
        name = arch_name(self.trained_idx)
        if self.is_main and keep_best(weights_path(self.run_dir, self.trained_idx),
                                      best_weights_path(self.run_dir, self.trained_idx), value,
                                      best_value(self.history, "val_mIoU", name)):
            self.logger.info("best val mIoU so far (%.3f): %s", value,
                             best_weights_path(self.run_dir, self.trained_idx))

    def validate(self, arch_idx, model, epoch):
        """The frozen teacher's val mIoU cannot change in student mode: it is computed once."""
        if arch_idx != self.trained_idx and arch_idx in self.cached_val:
            return self.cached_val[arch_idx]
        value = self.evaluation.validate(model, arch_name(arch_idx), epoch)
        self.cached_val[arch_idx] = value
        return value

    # ---- checkpoint: what training keeps besides model, optimizer and schedule ---------------------------
    def extra_state(self):
        return {"scaler": self.trainer.scaler.state_dict(), "arch_idx": list(self.config.arch_idx)}

    def load_extra(self, extra):
        if list(extra["arch_idx"]) != list(self.config.arch_idx):
            raise TrainSetupError(f"checkpoint {os.path.join(self.run_dir, CHECKPOINT_NAME)} was written for "
                                  f"arch_idx {extra['arch_idx']}, not {list(self.config.arch_idx)}; resume it with "
                                  f"the same mode.")
        if extra.get("scaler"):
            self.trainer.scaler.load_state_dict(extra["scaler"])

    def upgrade_checkpoint(self, state):
        return upgrade_training_checkpoint(state)


def last_value(history, key):
    """The newest value of ``key`` in the per-epoch records (None if never recorded)."""
    for record in reversed(history):
        if key in record:
            return record[key]
    return None
