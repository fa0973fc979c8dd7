"""tools/train/trainer.py and tools/engine/recipe.py: the original's loss, optimizer and schedule (one
scheduler mechanism for every schedule); distillation only with a teacher; the teacher never changes; AMP; a
non-finite loss stops and saves."""

import math

import pytest
import torch
from easydict import EasyDict

from tests.train_helpers import StandIn, fixed_batch
from tools.engine.recipe import build_criterion, build_lr_scheduler, find_schedule
from tools.losses import ProbOhemCrossEntropy2d
from tools.train.distill import DistillationLoss
from tools.train.trainer import NonFiniteLossError, Trainer, build_optimizer, segmentation_loss

CONFIG = EasyDict(lr=0.01, momentum=0.9, weight_decay=5e-4, image_height=16, image_width=16, gt_down_sampling=1,
                  ignore_label=255)


def make_trainer(teacher=None, amp=False, model=None, nan_path=None):
    model = model or StandIn()
    criterion = build_criterion(CONFIG, batch_size=2)
    distill = DistillationLoss() if teacher is not None else None
    return Trainer(model, build_optimizer(model, CONFIG), criterion, "cpu", teacher=teacher, distill=distill,
                   amp=amp, num_classes=4, show_progress=False, nan_path=nan_path)


def test_criterion_is_the_original_ohem_with_train_py_min_kept():
    criterion = build_criterion(EasyDict(CONFIG, image_height=512, image_width=1024), batch_size=12)
    assert isinstance(criterion, ProbOhemCrossEntropy2d)
    assert (criterion.thresh, criterion.min_kept, criterion.ignore_label) == (0.7, 12 * 512 * 1024 // 16, 255)


def test_class_weights_are_off_by_default_and_enet_weighs_rare_classes_up():
    """class_weight (a key of ours): '' keeps the original's unweighted loss; 'enet' derives 1/ln(1.02 + p) from
    the training labels' pixels per class, so the rarest class weighs most."""
    assert build_criterion(EasyDict(CONFIG, num_classes=3), batch_size=2, class_pixels=[10, 80, 10]).criterion \
        .weight is None
    weighted = build_criterion(EasyDict(CONFIG, num_classes=3, class_weight="enet"), batch_size=2, fused=True,
                               class_pixels=[5, 90, 5])
    weight = weighted.criterion.weight.tolist()
    assert weight == pytest.approx([1 / math.log(1.07), 1 / math.log(1.92), 1 / math.log(1.07)], rel=1e-6)


def test_loss_is_ohem8_plus_0_2_times_aux_losses():
    outputs = tuple(torch.randn(2, 4, 16, 16) for _ in range(3))
    target = torch.randint(0, 4, (2, 16, 16))
    criterion = ProbOhemCrossEntropy2d(ignore_label=255, thresh=0.7, min_kept=32)
    expected = criterion(outputs[0], target) + 0.2 * criterion(outputs[1], target) + 0.2 * criterion(outputs[2],
                                                                                                      target)
    assert segmentation_loss(outputs, target, criterion).item() == pytest.approx(expected.item(), rel=1e-6)
    no_aux = segmentation_loss((outputs[0], None, None), target, criterion)
    assert no_aux.item() == pytest.approx(criterion(outputs[0], target).item(), rel=1e-6)


def test_optimizer_is_sgd_with_the_original_settings_and_lr_decays_by_0_992():
    optimizer = build_optimizer(StandIn(), CONFIG)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)
    scheduler = build_lr_scheduler(optimizer, EasyDict(CONFIG, lr_decay=0.992, nepochs=3))
    assert scheduler.unit == "epoch"                 # the run steps it after every epoch
    expected = 0.01
    for _ in range(3):
        optimizer.step()
        scheduler.step()
        expected = expected * 0.992                  # the original's rule, the same float
        assert group["lr"] == expected
    assert group["lr"] == pytest.approx(0.01 * 0.992 ** 3, rel=1e-12)


def test_per_iteration_schedules_give_their_rows_rate_and_resume_at_any_epoch():
    config = EasyDict(CONFIG, lr=0.1, nepochs=3, niters_per_epoch=4, warmup_iters=2)
    for schedule in ("poly", "cosine"):
        optimizer = build_optimizer(StandIn(), config)
        scheduler = build_lr_scheduler(optimizer, EasyDict(config, lr_schedule=schedule))
        assert scheduler.unit == "iteration"
        seen = []
        for _ in range(12):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        rate = find_schedule(schedule).rate
        assert seen == [rate(0.1, it, 12, {"warmup_iters": 2}) for it in range(12)]   # exactly
        later = build_optimizer(StandIn(), config)        # an old checkpoint without a schedule, after epoch 2
        build_lr_scheduler(later, EasyDict(config, lr_schedule=schedule)).seek(2, 4)
        assert later.param_groups[0]["lr"] == seen[8]


def test_teacher_mode_has_no_distillation_term():
    trainer = make_trainer()
    images, target = fixed_batch()
    result = trainer.train_step(images, target)
    assert result["kl"] is None and result["teacher"] is None
    assert result["loss"] == pytest.approx(result["seg"])


def test_student_mode_adds_the_kl_to_the_frozen_teacher_which_never_changes():
    torch.manual_seed(1)
    teacher = StandIn()
    teacher.train()                                # Trainer must put it in eval mode itself
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = make_trainer(teacher=teacher)
    assert all(id(p) not in {id(q) for q in teacher.parameters()}
               for g in trainer.optimizer.param_groups for p in g["params"])
    images, target = fixed_batch()
    student_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_step(images, target)
    teacher_out = teacher(images)
    trainer.model.load_state_dict(student_before)
    trainer.model.train()
    expected_kl = DistillationLoss()(trainer.model(images)[0], teacher_out)
    assert result["kl"] == pytest.approx(expected_kl.item(), rel=1e-5) and result["kl"] > 0
    assert result["loss"] == pytest.approx(result["seg"] + result["kl"], rel=1e-6)
    for _ in range(2):
        trainer.train_step(images, target)
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN stats too
    assert all(p.grad is None for p in teacher.parameters())


def test_loss_goes_down_on_a_fixed_batch():
    trainer = make_trainer()
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.1
    images, target = fixed_batch(size=(8, 8))
    losses = [trainer.train_step(images, target)["loss"] for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]


def test_train_epoch_returns_mean_loss_and_train_miou_per_network():
    teacher = StandIn()
    trainer = make_trainer(teacher=teacher)
    batches = [fixed_batch(seed=s) for s in range(3)]
    stats = trainer.train_epoch([{"data": x, "label": y} for x, y in batches], epoch=0, niters=3,
                                arch_indices=(0, 1))
    assert set(stats["mIoU"]) == {0, 1} and all(0 <= v <= 1 for v in stats["mIoU"].values())
    assert stats["loss"] > 0


def test_short_loader_is_one_clear_sentence():
    trainer = make_trainer()
    with pytest.raises(RuntimeError, match="ran out after 1 batches in epoch 1"):
        trainer.train_epoch([fixed_batch()], epoch=0, niters=2)


def test_amp_on_cpu_trains_in_bf16_without_a_scaler():
    trainer = make_trainer(amp=True)
    assert not trainer.scaler.is_enabled()
    images, target = fixed_batch()
    result = trainer.train_step(images, target)
    assert result["pred8"].dtype == torch.bfloat16 and torch.isfinite(torch.tensor(result["loss"]))


def test_nonfinite_loss_stops_saves_the_weights_before_the_step_and_names_the_iteration(tmp_path):
    model = StandIn()
    trainer = make_trainer(model=model, nan_path=lambda it: str(tmp_path / f"nonfinite_iter{it}.pt"))
    with torch.no_grad():
        model.heads8.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.named_parameters()}
    images, target = fixed_batch()
    with pytest.raises(NonFiniteLossError, match=r"became nan at iteration 17;.*nonfinite_iter17\.pt"):
        trainer.train_step(images, target, iteration=17)
    saved = torch.load(tmp_path / "nonfinite_iter17.pt", weights_only=True)
    assert saved["iteration"] == 17
    assert all(torch.equal(saved["model"][k], v) or torch.isnan(v).any() for k, v in before.items())
    assert all(torch.equal(p, before[k]) or torch.isnan(p).any() for k, p in model.named_parameters())  # no step


def test_train_epoch_calls_after_step_once_per_optimizer_step():
    """The run's hook for the per-iteration schedules: called after each step, never before the first."""
    trainer = make_trainer()
    steps, calls = [], []
    original = trainer.optimizer.step
    trainer.optimizer.step = lambda *args, **kwargs: steps.append(len(calls)) or original(*args, **kwargs)
    trainer.train_epoch([fixed_batch(seed=s) for s in range(3)], epoch=0, niters=3,
                        after_step=lambda: calls.append(len(steps)))
    assert steps == [0, 1, 2] and calls == [1, 2, 3]
