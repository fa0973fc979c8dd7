"""The learning-rate schedules as one table (tools/engine/recipe.py ``LR_SCHEDULES``): every row complete, the
``lr_schedule`` check and the docs table read it, the run steps each scheduler by the unit its row declares, in
the search and the training alike, and a made-up row added to the table alone goes through all of it."""
import dataclasses
import math
import os

import pytest
import torch
from easydict import EasyDict

from tests.demo_helpers import make_small_demo
from tests.helpers import REPO_ROOT
from tools.config import load_config
from tools.engine import recipe
from tools.engine.recipe import (LR_SCHEDULES, SCHEDULE_UNITS, Schedule, ScheduleError, build_lr_scheduler,
                                 check_schedule, find_schedule, schedules_markdown)
from tools.engine.run import Run

# What each registered schedule must give over a run of TOTAL steps of its unit from LR (no warm-up): the rate
# of the first step and of the last one. A new row adds its line here.
LR, TOTAL, DECAY = 0.1, 10, 0.9
FIRST_AND_LAST = {"exponential": (LR, LR * DECAY ** (TOTAL - 1)),
                  "poly": (LR, LR * (1 / TOTAL) ** recipe.POLY_POWER),
                  "cosine": (LR, LR * 0.5 * (1 + math.cos(math.pi * (TOTAL - 1) / TOTAL)))}


def schedule_config(name, **values):
    """A config holding every key a schedule reads, with TOTAL steps of the schedule's unit."""
    niters = 1 if find_schedule(name).unit == "epoch" else TOTAL
    return EasyDict(dict(lr=LR, lr_decay=DECAY, warmup_iters=0, lr_schedule=name, nepochs=TOTAL // niters,
                         niters_per_epoch=niters), **values)


def rates(config, steps):
    """The rate before each of ``steps`` steps of a freshly built scheduler (optimizer step, then scheduler)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = build_lr_scheduler(optimizer, config)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_every_schedule_row_is_complete():
    """Every field filled, names unique, units known, frozen; each row builds a scheduler that declares its unit
    and starts and ends where it should."""
    names = [row.name for row in LR_SCHEDULES]
    assert len(names) == len(set(names)) and recipe.DEFAULT_SCHEDULE in names
    assert set(names) == set(FIRST_AND_LAST), "a new schedule adds its first and last rate to FIRST_AND_LAST"
    for row in LR_SCHEDULES:
        assert isinstance(row, Schedule) and row.name and row.description and callable(row.rate)
        assert row.unit in SCHEDULE_UNITS and isinstance(row.chained, bool)
        assert isinstance(row.keys, tuple) and all(isinstance(key, str) and key for key in row.keys)
        config = schedule_config(row.name)
        scheduler = build_lr_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR), config)
        assert scheduler.unit == row.unit and row.total(config) == TOTAL
        seen = rates(config, TOTAL)
        assert (seen[0], seen[-1]) == pytest.approx(FIRST_AND_LAST[row.name], rel=1e-12), row.name
        assert all(math.isfinite(rate) and 0 <= rate <= LR for rate in seen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        LR_SCHEDULES[0].name = "renamed"
    with pytest.raises(ValueError, match="unit 'batch' is not one of"):
        Schedule("bad", "batch", LR_SCHEDULES[0].rate)


def test_the_exponential_schedule_is_the_originals_chain_of_floats():
    """lr x lr_decay after every epoch, each rate the previous one times the factor (train.py
    adjust_learning_rate, train_search.py ExponentialLR(0.978)): the same floats, not lr * decay ** epoch."""
    expected, chain = [], 0.01
    for _ in range(50):
        expected.append(chain)
        chain = chain * 0.992
    assert rates(schedule_config("exponential", lr=0.01, lr_decay=0.992, nepochs=50), 50) == expected


def test_poly_and_cosine_warm_up_then_decay():
    poly = rates(schedule_config("poly", warmup_iters=2), TOTAL)
    assert poly[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert all(a > b for a, b in zip(poly[2:], poly[3:])) and poly[-1] == pytest.approx(0.1 * (1 / 8) ** 0.9)
    cosine = find_schedule("cosine").rate
    assert cosine(0.1, 5, 10, {"warmup_iters": 0}) == pytest.approx(0.05)
    assert cosine(0.1, 10, 10, {"warmup_iters": 0}) == pytest.approx(0.0, abs=1e-12)


def test_a_scheduler_state_of_the_classes_before_the_table_continues_with_the_same_rates():
    """Checkpoints written before the table hold an ExponentialLR state or an IterationLR one ({schedule,
    total_iters, warmup_iters} + torch's fields): loaded into the scheduler of the table, the rates go on."""
    whole = {name: rates(schedule_config(name, warmup_iters=2 if name != "exponential" else 0), TOTAL)
             for name in ("exponential", "poly")}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    old = torch.optim.lr_scheduler.ExponentialLR(optimizer, DECAY)
    for _ in range(4):
        optimizer.step()
        old.step()
    iteration_state = {"schedule": "poly", "total_iters": TOTAL, "warmup_iters": 2, "base_lrs": [LR],
                       "last_epoch": 4, "_step_count": 5, "_is_initial": False,
                       "_get_lr_called_within_step": False, "_last_lr": [whole["poly"][4]]}
    for name, state, lr in (("exponential", old.state_dict(), whole["exponential"][4]),
                            ("poly", iteration_state, whole["poly"][4])):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        scheduler = build_lr_scheduler(optimizer, schedule_config(name, warmup_iters=2 if name == "poly" else 0))
        optimizer.param_groups[0].update(lr=lr, initial_lr=LR)          # the optimizer state of the checkpoint
        scheduler.load_state_dict(state)
        seen = []
        for _ in range(TOTAL - 4):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert seen == whole[name][4:], name


def test_an_unknown_schedule_or_an_ignored_warm_up_is_one_sentence_listing_the_table():
    with pytest.raises(ScheduleError) as error:
        check_schedule(schedule_config("exponential", lr_schedule="step"))
    assert str(error.value).startswith("lr_schedule='step' is unknown; use one of: ")
    assert all(f"'{row.name}' (" in str(error.value) for row in LR_SCHEDULES)
    with pytest.raises(ScheduleError, match="warmup_iters=5 needs lr_schedule='poly' or 'cosine'; 'exponential' "
                                            "has no warm-up"):
        check_schedule(schedule_config("exponential", warmup_iters=5))
    with pytest.raises(ScheduleError, match="reads lr_decay, which this config does not set"):
        check_schedule(EasyDict(lr_schedule="exponential", lr=0.1))


@pytest.mark.parametrize("stage, decay", [("search", 0.978), ("train", 0.992)])
def test_both_stages_take_the_same_schedule_keys_with_the_originals_defaults(stage, decay):
    """The search takes lr_schedule / warmup_iters as the training does; by default both keep the original's
    exponential decay per epoch (0.978 search, 0.992 train)."""
    config = load_config(stage)
    assert (config.lr_schedule, config.warmup_iters, config.lr_decay) == ("exponential", 0, decay)
    assert check_schedule(config).unit == "epoch"
    assert load_config(stage, ["lr_schedule='poly'", "warmup_iters=3"]).lr_schedule == "poly"
    with pytest.raises(ScheduleError, match="lr_schedule='step' is unknown"):
        Run(load_config(stage, ["lr_schedule='step'"]))            # before any folder or network


def test_the_docs_hold_the_schedules_table_as_the_code_makes_it():
    with open(os.path.join(REPO_ROOT, "docs", "configs.md"), encoding="utf-8") as handle:
        text = handle.read()
    assert schedules_markdown() in text
    row = next(line for line in text.splitlines()
               if line.startswith("| `lr_schedule` |") and line not in schedules_markdown())
    assert all(f"`'{record.name}'`" in row for record in LR_SCHEDULES)


# ---- a schedule added to the table alone -------------------------------------------------------------------
def made_up(unit):
    """A schedule that exists only in this test: lr x lr_decay ** step, stepped by ``unit``."""
    return Schedule(f"made_up_{unit}", unit, lambda lr, step, total, settings: lr * settings["lr_decay"] ** step,
                    ("lr_decay",), "a made-up schedule for the tests")


def register(monkeypatch, row):
    monkeypatch.setattr(recipe, "LR_SCHEDULES", recipe.LR_SCHEDULES + (row,))


def expected_rates(unit, nepochs=2, niters=2, lr=0.1, decay=0.5):
    """The rate of every iteration of ``nepochs`` x ``niters`` under ``made_up(unit)``."""
    return [lr * decay ** (epoch if unit == "epoch" else epoch * niters + step)
            for epoch in range(nepochs) for step in range(niters)]


class RateRun(Run):
    """The smallest stage: its epoch records the rate of each step and calls end_iteration after it, as the search
    and the training do."""

    prefix = "rates"

    def __init__(self, config):
        super().__init__(config)
        self.model = torch.nn.Linear(1, 1)
        self.open_folder()

    def setup(self):
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr)
        self.optimizers = {"weights": self.optimizer}
        self.schedulers = {"lr": build_lr_scheduler(self.optimizer, self.config)}
        self.history = []

    def train_one_epoch(self, epoch):
        for _ in range(self.config.niters_per_epoch):
            self.history.append(self.optimizer.param_groups[0]["lr"])
            self.optimizer.step()
            self.end_iteration()

    def evaluate(self, epoch):
        return False

    def epoch_record(self, epoch):
        return {"epoch": epoch + 1}

    def result(self):
        return self.history


@pytest.mark.parametrize("unit", SCHEDULE_UNITS)
def test_a_made_up_schedule_is_accepted_documented_and_stepped_by_the_run_at_its_unit(unit, monkeypatch, tmp_path):
    row = made_up(unit)
    register(monkeypatch, row)
    config = EasyDict(lr=0.1, lr_decay=0.5, warmup_iters=0, lr_schedule=row.name, nepochs=2, niters_per_epoch=2,
                      resume=False, output_root=str(tmp_path), save="x", seed=0)
    assert check_schedule(config) is row
    assert f"| `'{row.name}'` | {unit} | `lr_decay` | a made-up schedule for the tests |" in schedules_markdown()
    assert RateRun(config).launch() == expected_rates(unit)
    with pytest.raises(ScheduleError, match=f"'{row.name}' \\(a made-up schedule for the tests\\)"):
        check_schedule(EasyDict(config, lr_schedule="step"))


# ---- both stages, end to end (validation left out: the schedule is what is looked at) ----------------------
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("schedules")
    make_small_demo(str(root), counts={"train": 4, "val": 2, "test": 0})
    return str(root)


def search_rates(monkeypatch, demo_root, out, *overrides):
    """The rate of every weight step of a 2 x 2 step pretraining with ``overrides``."""
    from tools.search import loop, steps
    seen, original = [], steps.weight_step

    def spy(model, optimizer, *args):
        seen.append(optimizer.param_groups[0]["lr"])
        return original(model, optimizer, *args)

    monkeypatch.setattr(steps, "weight_step", spy)
    monkeypatch.setattr(loop.SearchRun, "_evaluate", lambda self: [0.0] * 5)       # the five heads' mIoU
    config = load_config("search_tiny", [f"dataset_path='{demo_root}'", "down_sampling=1", f"output_root='{out}'",
                                         "nepochs=2", "niters_per_epoch=2", "lr=0.1", *overrides])
    loop.run(config, progress=False)
    return seen


def train_rates(monkeypatch, demo_root, out, *overrides):
    """The rate of every optimizer step of a 2 x 2 step training of the student alone with ``overrides``."""
    from tools.train import loop
    from tools.train.trainer import Trainer
    seen, original = [], Trainer.train_step

    def spy(self, images, target, iteration=0):
        seen.append(self.optimizer.param_groups[0]["lr"])
        return original(self, images, target, iteration)

    monkeypatch.setattr(Trainer, "train_step", spy)
    monkeypatch.setattr(loop.TrainingRun, "evaluate", lambda self, epoch: False)
    config = load_config("train_tiny", [f"dataset_path='{demo_root}'", f"output_root='{out}'", "plots=False",
                                        "down_sampling=1", "image_height=64", "image_width=128",
                                        "flops_input=[64, 128]", "mode='student'", "arch_idx=[1]", "nepochs=2",
                                        "niters_per_epoch=2", "lr=0.1", *overrides])
    loop.run(config)
    return seen


STAGES = {"search": search_rates, "train": train_rates}


def test_a_poly_schedule_in_the_search_sets_the_rate_of_every_iteration(monkeypatch, demo_root, tmp_path):
    """The search steps a per-iteration schedule after every weight step (it used to keep the warm-up rate)."""
    seen = search_rates(monkeypatch, demo_root, tmp_path, "lr_schedule='poly'", "warmup_iters=1")
    assert seen == pytest.approx([0.1, 0.1, 0.1 * (2 / 3) ** 0.9, 0.1 * (1 / 3) ** 0.9], rel=1e-12)


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("unit", SCHEDULE_UNITS)
def test_a_made_up_schedule_is_stepped_at_its_unit_in_both_stages(stage, unit, monkeypatch, demo_root, tmp_path):
    row = made_up(unit)
    register(monkeypatch, row)
    seen = STAGES[stage](monkeypatch, demo_root, tmp_path, f"lr_schedule='{row.name}'", "lr_decay=0.5")
    assert seen == pytest.approx(expected_rates(unit), rel=1e-12)
