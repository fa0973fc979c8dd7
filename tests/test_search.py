"""The pretrain/search run (tools/search/loop.py, steps.py, validate.py, arch_log.py) on a tiny demo dataset:
pretrain then search end to end, the arch files, the weight step, five-head validation, resume, bad input."""
import json
import os

import numpy as np
import pytest
import torch

from tests.demo_helpers import make_small_demo
from tests.search_helpers import WIDTHS, batch, synthetic_table, tiny_supernet
from tools.config import ConfigError, load_config
from tools.data.datasets import dataset_from_config
from tools.engine.evaluator import Evaluator
from tools.engine.run import RunFolderError, RunLock, RunLockedError
from tools.models.archfile import load_arch
from tools.models.derived import build_derived
from tools.search import loop
from tools.search.arch_log import arch_record, ArchReport
from tools.search.loop import SearchSetupError, load_pretrained, run, split_indices
from tools.search.steps import weight_optimizer, weight_step
from tools.search.validate import evaluate_heads



@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_small_demo(str(root), counts={"train": 4, "val": 2, "test": 0})
    return str(root)


def seed_all(seed):
    """torch (gumbel widths) and numpy ('random' widths use np.random.choice, as the original)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def tiny_config(root, out, **overrides):
    """configs/search_tiny.py on the 64x128 test dataset (no down-sampling), 1 epoch of 1 step."""
    values = dict(dataset_path=root, down_sampling=1, output_root=str(out), nepochs=1, niters_per_epoch=1,
                  latency_height=64, latency_width=128)
    values.update(overrides)
    return load_config("configs/search_tiny.py", values)


@pytest.fixture(scope="module")
def pretrain_then_search(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    pretrain_dir = run(tiny_config(demo_root, out), progress=False)
    search_dir = run(tiny_config(demo_root, out, pretrain=pretrain_dir, niters_per_epoch=2), table=synthetic_table(),
                     progress=False)
    return pretrain_dir, search_dir


def test_pretrain_folder(pretrain_then_search):
    folder = pretrain_then_search[0]
    assert os.path.basename(folder).startswith("search-pretrain-64x128_F3.L6_batch2-")
    names = set(os.listdir(folder))
    assert {"weights.pt", "log.txt", "config.json", "DONE", "tb"} <= names
    assert "checkpoint.pt" not in names and not any(n.startswith("arch_") for n in names)
    log = open(os.path.join(folder, "log.txt")).read()
    for mode in ("min", "max", "random"):
        for head in ("8s", "16s", "32s", "8s_32s", "16s_32s"):
            assert f"valid_mIoU_{mode}_{head}" in log


def test_search_writes_arch_files_with_their_own_metrics(pretrain_then_search):
    folder = pretrain_then_search[1]
    assert os.path.basename(folder).startswith("search-64x128_F3.L6_batch2-")
    names = set(os.listdir(folder))
    assert {"weights.pt", "arch_0.pt", "arch_1.pt", "arch_0_0.pt", "arch_1_0.pt", "DONE"} <= names
    records = [load_arch(os.path.join(folder, f"arch_{idx}.pt"), idx, 6, WIDTHS) for idx in (0, 1)]
    teacher, student = records
    assert teacher["arch_idx"] == 0 and student["arch_idx"] == 1
    # B4 fixed: the teacher's file has the teacher's numbers (the teacher is wider, so slower)
    assert teacher["latency12"] > student["latency12"] and teacher["latency02"] > student["latency02"]
    epoch_file = load_arch(os.path.join(folder, "arch_1_0.pt"), 1, 6, WIDTHS)
    assert all(torch.equal(epoch_file[k], student[k]) for k in student if torch.is_tensor(student[k]))
    weights = torch.load(os.path.join(folder, "weights.pt"), weights_only=True)
    assert torch.equal(weights["alpha_1_0"], student["alpha_1_0"])
    for idx, record in enumerate(records):      # train.py's derivation reads them
        net = build_derived(record, idx, layers=6, Fch=3, width_mult_list=WIDTHS,
                            stem_head_width=[(1, 1), (8. / 12, 8. / 12)][idx])
        assert net.lasts in ([2, 0], [2, 1])
    log = open(os.path.join(folder, "log.txt")).read()
    assert "valid_mIoU_student_16s_32s" in log and "Objective_student_16s_32s" in log
    assert "arch_latency_weight_student" in log


def test_pretrain_and_search_write_a_metrics_line_per_epoch(pretrain_then_search):
    from tools.engine.run_outputs import read_metrics
    pretrain, search = (read_metrics(folder) for folder in pretrain_then_search)
    assert [r["epoch"] for r in pretrain] == [1] and pretrain[0]["stage"] == "pretrain"
    assert set(pretrain[0]["val_mIoU"]) == {"min", "max", "random"} and pretrain[0]["lr"] > 0
    assert set(pretrain[0]["val_mIoU"]["max"]) == {"8s", "16s", "32s", "8s_32s", "16s_32s"}
    record = search[0]
    assert record["stage"] == "search" and record["loss"] > 0 and set(record["val_mIoU"]) == {"teacher", "student"}
    assert record["fps"]["student"]["lasts_2_1"] > 0 and set(record["latency_weight"]) == {"teacher", "student"}


def test_arch_record_keeps_each_architectures_numbers():
    model = tiny_supernet()
    record = arch_record(model, ArchReport(0, [0.1, 0.2, 0.3, 0.4, 0.5], 7.0, 8.0))
    assert record["arch_idx"] == 0 and record["mIoU02"] == 0.4 and record["mIoU12"] == 0.5
    assert record["latency02"] == 7.0 and record["latency12"] == 8.0
    assert set(k for k in record if k.startswith(("alpha", "beta", "ratio"))) == {
        "alpha_0_0", "alpha_0_1", "alpha_0_2", "beta_0_1", "beta_0_2", "ratio_0_0", "ratio_0_1", "ratio_0_2"}


def test_weight_step_moves_only_weights_and_equals_the_reference():
    """One weight step: the architecture parameters stay; the weights equal the original's step (full backward,
    clip over the weights, SGD for-loop), bit for bit."""
    fast, slow = tiny_supernet(), tiny_supernet()
    start = {n: p.detach().clone() for n, p in fast.named_parameters()}
    inputs, target = batch()
    seed_all(3)
    weight_step(fast, weight_optimizer(fast, 0.02), inputs, target, True, 5)
    assert all(p.grad is None for p in fast.arch_parameters())
    seed_all(3)
    weights = slow.weight_parameters()
    optimizer = torch.optim.SGD(weights, lr=0.02, momentum=0.9, weight_decay=5e-4, foreach=False)
    slow._loss(inputs, target, True).backward()
    torch.nn.utils.clip_grad_norm_([p for p in weights if p.grad is not None], 5)
    optimizer.step()
    changed = 0
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters()):
        if name.startswith(("alpha", "beta", "ratio")):
            assert torch.equal(a, start[name]), name
        else:
            assert torch.equal(a, b), name
            changed += not torch.equal(a, start[name])
    assert changed > 0


def test_a_bf16_weight_step_runs_the_convolutions_in_bf16_and_keeps_the_loss_float32():
    """``bf16=True`` (search ``fast=True`` on a CPU with native bf16): the weight step's convolutions run in bf16
    under autocast, its loss is a finite float32 and the weights move; the architecture stays as it was."""
    model = tiny_supernet()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    conv_dtypes = []
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [m.register_forward_hook(lambda m, i, o: conv_dtypes.append(o.dtype)) for m in convs]
    inputs, target = batch()
    loss = weight_step(model, weight_optimizer(model, 0.02), inputs, target, True, 5, bf16=True)
    for handle in handles:
        handle.remove()
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}
    assert np.isfinite(loss) and isinstance(loss, float)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, start[n])]
    assert moved and not [n for n in moved if n.startswith(("alpha", "beta", "ratio"))]


@pytest.mark.parametrize("fast, bf16", [("auto", False), (True, True), (False, False)])
def test_a_search_run_takes_bf16_weight_steps_only_with_fast_true(demo_root, tmp_path, monkeypatch, fast, bf16):
    """On a CPU with native bf16 the search's 'auto' stays fp32 (fused loss and allocator), ``fast=True`` gives
    bf16 weight steps; the choice is logged."""
    from tools.engine import recipe
    monkeypatch.setattr(recipe, "cpu_native_bf16", lambda: ("amx_bf16",))
    seen = []
    real = loop.train_epoch
    monkeypatch.setattr(loop, "train_epoch", lambda *a, **k: seen.append(k["bf16"]) or real(*a, **k))
    folder = run(tiny_config(demo_root, tmp_path, fast=fast), progress=False)
    assert seen == [bf16]
    log = open(os.path.join(folder, "log.txt")).read()
    assert f"fast path (fast={fast!r}): {recipe.resolve_search_fast_path(fast, 'cpu').why}" in log


def test_weight_clip_ignores_architecture_gradients():
    """S4: the original clipped model.parameters(), so stale architecture gradients shrank the weight step."""
    results = []
    for stale in (0.0, 1e6):
        model = tiny_supernet()
        for p in model.arch_parameters():
            p.grad = torch.full_like(p, stale)
        seed_all(3)
        weight_step(model, weight_optimizer(model, 0.02), *batch(), True, 5)
        results.append([p.detach().clone() for p in model.weight_parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_zero_grads_are_kept_for_weight_decay():
    """As torch 1.x zero_grad: a weight that had a gradient keeps a zero one and keeps decaying."""
    model = tiny_supernet()
    optimizer = weight_optimizer(model, 0.02)
    weight_step(model, optimizer, *batch(), True, 5)
    assert all(p.grad is None or not p.grad.any() for p in model.weight_parameters())
    kept = [p for p in model.weight_parameters() if p.grad is not None]
    assert 0 < len(kept) < len(model.weight_parameters())


def test_sgd_foreach_equals_the_for_loop():
    torch.manual_seed(0)
    params = [torch.randn(7, 5), torch.randn(3)]
    results = []
    for foreach in (False, True):
        q = [p.clone().requires_grad_() for p in params]
        optimizer = torch.optim.SGD(q, lr=0.02, momentum=0.9, weight_decay=5e-4, foreach=foreach)
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in q:
                p.grad = torch.randn(p.shape, generator=generator)
            optimizer.step()
        results.append(q)
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_five_heads_from_one_forward_equal_five_evaluator_passes(demo_root):
    config = tiny_config(demo_root, "/tmp/unused")
    dataset = dataset_from_config(config, "val")
    model = tiny_supernet()
    model.prun_mode = "max"
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    mious = evaluate_heads(model, dataset, config, "cpu")
    assert len(calls) == len(dataset)
    for idx, miou in enumerate(mious):
        evaluator = Evaluator.from_config(config, dataset, model, device="cpu", out_idx=idx, quiet=True)
        assert miou == pytest.approx(evaluator.evaluate()["mIoU"], abs=1e-12)


def write_old_search_checkpoint(folder):
    """Rewrite ``folder``'s checkpoint in the search's layout before the shared one (one file, written again
    after the validation; optimizer, scheduler, architect, loaders at the top level)."""
    state = torch.load(os.path.join(folder, "checkpoint.pt"), weights_only=True)
    evaluated = os.path.join(folder, "checkpoint_evaluated.pt")
    if os.path.isfile(evaluated):
        after = torch.load(evaluated, weights_only=True)
        if after["epoch"] == state["epoch"]:
            state.update(after)
        os.remove(evaluated)
    extra = state["extra"]
    torch.save({"epoch": state["epoch"], "pending_validation": extra["pending_eval"], "model": state["model"],
                "optimizer": state["optimizers"]["weights"], "scheduler": state["schedulers"]["lr"],
                "architect": extra["architect"], "loaders": extra["loaders"], "rng": state["rng"],
                "grad_allocated": extra["grad_allocated"], "history": state["history"], "config": {}},
               os.path.join(folder, "checkpoint.pt"))


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_result(demo_root, tmp_path, monkeypatch):
    """Search from scratch (pretrain=False), 2 epochs of 1 step: uninterrupted vs killed in epoch 2 (in its
    training, or in its validation; a checkpoint of the layout before the shared run) + resume; the folder lock
    and FAILED marker of tools/engine/run.py."""
    def config(out, **kw):
        return tiny_config(demo_root, out, pretrain=False, nepochs=2, arch_plots=False, **kw)

    full = run(config(tmp_path / "a"), table=synthetic_table(), progress=False)

    for out, method, legacy in (("b", "train_one_epoch", False), ("c", "evaluate", False),
                                ("d", "train_one_epoch", True)):
        original = getattr(loop.SearchRun, method)

        def killed_in_second_epoch(self, epoch, original=original):
            if epoch == 1:
                raise KeyboardInterrupt
            return original(self, epoch)

        monkeypatch.setattr(loop.SearchRun, method, killed_in_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            run(config(tmp_path / out), table=synthetic_table(), progress=False)
        monkeypatch.setattr(loop.SearchRun, method, original)
        interrupted = os.listdir(tmp_path / out)[0]
        folder = str(tmp_path / out / interrupted)
        assert os.path.isfile(os.path.join(folder, "checkpoint.pt"))
        if legacy:                      # as the search wrote it before the shared run lifecycle
            write_old_search_checkpoint(folder)
        assert "KeyboardInterrupt" in open(os.path.join(folder, "FAILED")).read()
        holder = RunLock(folder).acquire()
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
            run(config(tmp_path / out, resume=True), table=synthetic_table(), progress=False)
        holder.release()
        resumed = run(config(tmp_path / out, resume=True), table=synthetic_table(), progress=False)
        assert os.path.basename(resumed) == interrupted and not os.path.exists(os.path.join(folder, "FAILED"))
        for name in ("weights.pt", "arch_1.pt", "arch_0.pt"):
            a = torch.load(os.path.join(full, name), weights_only=True)
            b = torch.load(os.path.join(resumed, name), weights_only=True)
            for key in a:
                if torch.is_tensor(a[key]):
                    assert torch.equal(a[key], b[key]), (out, name, key)
                else:
                    assert a[key] == b[key], (out, name, key)
    # a finished folder is never written again
    with pytest.raises(RunFolderError, match="already finished"):
        run(config(tmp_path / "b", resume=resumed), table=synthetic_table(), progress=False)
    with pytest.raises(RunFolderError, match="no unfinished run"):
        run(config(tmp_path / "b", resume=True), table=synthetic_table(), progress=False)


def test_bad_pretrain_folders(demo_root, tmp_path):
    model = tiny_supernet()
    with pytest.raises(SearchSetupError, match="does not exist; run the pretraining first"):
        load_pretrained(model, str(tmp_path / "nowhere"))
    with pytest.raises(SearchSetupError, match="holds no weights.pt"):
        load_pretrained(model, str(tmp_path))
    other = tiny_supernet()
    other_state = {k: v for k, v in other.state_dict().items()}
    other_state["cells.0.0._op._ops.1.conv1.weight"] = torch.zeros(2, 2, 3, 3)
    torch.save(other_state, tmp_path / "weights.pt")
    with pytest.raises(SearchSetupError, match=r"does not fit this supernet: 1 of \d+ tensors.*cells.0.0._op"):
        load_pretrained(model, str(tmp_path))
    with open(tmp_path / "config.json", "w") as handle:
        json.dump({"Fch": 6, "layers": 6}, handle)
    config = tiny_config(demo_root, tmp_path)
    with pytest.raises(SearchSetupError, match="pretrained with Fch=6 but this search uses Fch=3"):
        load_pretrained(model, str(tmp_path), config)


def test_load_pretrained_by_name_and_shape(tmp_path):
    source, target = tiny_supernet(seed=1), tiny_supernet(seed=2)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    load_pretrained(target, str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_train_list_too_small_for_two_halves(demo_root, tmp_path):
    lines = open(os.path.join(demo_root, "cityscapes_train_fine.txt")).read().splitlines()
    one = tmp_path / "one.txt"
    one.write_text(lines[0] + "\n")
    config = tiny_config(demo_root, tmp_path, train_source=str(one))
    with pytest.raises(SearchSetupError, match="1 image.*too few to split into two"):
        split_indices(config)
    with pytest.raises(SearchSetupError, match="too few to split"):
        run(config, table=synthetic_table(), progress=False)
    assert not [name for name in os.listdir(tmp_path) if name.startswith("search-")]   # no run folder made
    indices = split_indices(tiny_config(demo_root, tmp_path))
    assert sorted(indices) == list(range(len(lines))) and indices == split_indices(tiny_config(demo_root, tmp_path))


def test_tiny_preset_keeps_the_original_defaults():
    pre = load_config("configs/search_tiny.py")
    search = load_config("configs/search_tiny.py", ["pretrain='x'"])
    assert (pre.lr, pre.latency_weight, pre.batch_size, pre.image_height) == (2e-2, [0, 0], 2, 64)
    assert (search.lr, search.latency_weight, search.save) == (1e-2, [0, 1e-2], "64x128_F3.L6_batch2")
    assert load_config("configs/search_tiny.py", ["batch_size=3"]).batch_size == 3


@pytest.mark.parametrize("override, error, message", [
    (dict(fps_source="fast"), SearchSetupError, "fps_source='fast' is unknown"),
    (dict(pretrain=1), ConfigError, "pretrain=1 is not True or False or a string"),
    (dict(train_portion=1.0), ConfigError, r"train_portion=1.0 must be between 0 and 1"),
    (dict(niters_per_epoch=0), ConfigError, "niters_per_epoch=0 must be at least 1"),
])
def test_bad_settings_are_one_sentence(demo_root, tmp_path, override, error, message):
    with pytest.raises(error, match=message):
        run(tiny_config(demo_root, tmp_path, **override), table=synthetic_table(), progress=False)
    assert not [name for name in os.listdir(tmp_path) if name.startswith("search-")]   # nothing created


def test_latency_is_timed_on_the_search_device_not_cuda_0(fake_cuda, monkeypatch, tmp_path):
    """With device cuda:1, table misses and backend FPS are timed on cuda:1 (CUDA faked)."""
    from types import SimpleNamespace

    import tools.latency.table as table_module
    seen = []
    monkeypatch.setattr(table_module, "table_for", lambda *args, **kwargs: seen.append(kwargs["device"]) or "table")
    monkeypatch.setattr(loop, "arch_latencies", lambda *args, **kwargs: seen.append(kwargs["device"]) or (1., 1., None))
    monkeypatch.setattr(loop, "log_report", lambda *args, **kwargs: None)
    config = load_config("search_tiny", [f"output_root='{tmp_path}'", "fps_source='backend'"])
    device = torch.device("cuda:1")
    assert loop.open_latency_table(config, device, str(tmp_path)) == "table"
    run = SimpleNamespace(config=config, device=device, table="table", writer=None, logger=None,
                          model=SimpleNamespace(_arch_names=[{}], select=lambda arch_idx=None, mode=None: None),
                          _evaluate=lambda: [0.5] * 5,
                          architect=SimpleNamespace(latency_weight=[0.0], latency_supernet=0.0),
                          history={"mIoU": [], "fps": [], "latency_supernet": [], "latency_weight": []})
    loop.SearchRun.validate_search(run, 0)
    assert seen == ["cuda:1", "cuda:1"]
