"""The CPU fast path (config key ``fast``, tools/engine/recipe.py ``resolve_fast_path``): chosen per machine from
the CPU's flags, the original's fp32 eager path one key away, and what a training run builds from it."""
import pytest
import torch
from easydict import EasyDict

from tests.test_train import config as train_config, workspace  # noqa: F401  (the module fixture)
from tools.engine import recipe
from tools.engine.recipe import build_criterion, resolve_fast_path
from tools.losses import FusedProbOhemCrossEntropy2d, ProbOhemCrossEntropy2d
from tools.models.archfile import load_arch, published_arch_path
from tools.models.derived import build_derived, upsample_logits
from tools.train.distill import DistillationLoss
from tools.train.loop import run
from tools.train.trainer import Trainer, build_optimizer
from tools.utils import device as device_utils


def test_cpu_flags_decide_native_bf16(tmp_path):
    sapphire = tmp_path / "spr"
    sapphire.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    epyc_zen3 = tmp_path / "zen3"
    epyc_zen3.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    assert {"avx512_bf16", "amx_bf16"} <= device_utils.cpu_flags(str(sapphire))
    assert not set(device_utils.NATIVE_BF16_FLAGS) & device_utils.cpu_flags(str(epyc_zen3))
    assert device_utils.cpu_flags(str(tmp_path / "absent")) == frozenset()


@pytest.mark.parametrize("fast, device, flags, expected", [
    ("auto", "cpu", ("amx_bf16", "avx512_bf16"), (True, True, True)),
    ("auto", "cpu", (), (True, False, True)),    # AVX2 / plain AVX512: bf16 would be emulated, several times slower
    (True, "cpu", (), (True, True, True)),
    (False, "cpu", ("avx512_bf16",), (False, False, False)),
    ("auto", "cuda", ("avx512_bf16",), (False, False, False)),   # the GPU keeps the original's path (amp on request)
    (True, "cuda", (), (True, False, False)),
])
def test_the_fast_path_is_chosen_per_machine(fast, device, flags, expected):
    path = resolve_fast_path(fast, device, native_bf16=flags)
    assert (path.fused_loss, path.bf16, path.keep_memory) == expected and path.why


def test_kept_memory_is_reused_with_the_same_numbers():
    """glibc keeps freed memory (where it is the C library): a tensor allocated again after a free gets the
    same numbers computed, and the setting can be put back."""
    from tools.utils.device import keep_freed_memory
    x = torch.randn(64, 1024, 1024)
    before = (x * 2).sum()
    applied = keep_freed_memory()
    try:
        assert torch.equal((x * 2).sum(), before)
    finally:
        keep_freed_memory(False)
    assert applied == (device_utils._glibc() is not None)


@pytest.mark.parametrize("fast, device, flags, expected", [
    ("auto", "cpu", ("amx_bf16",), (True, False, True)),     # the search's default: fp32, fused loss, allocator
    (True, "cpu", ("amx_bf16",), (True, True, True)),        # bf16 weight steps on request
    (False, "cpu", ("amx_bf16",), (False, False, False)),
    ("auto", "cuda", (), (False, False, False)),
])
def test_the_search_takes_bf16_only_with_fast_true(fast, device, flags, expected):
    path = recipe.resolve_search_fast_path(fast, device, native_bf16=flags)
    assert (path.fused_loss, path.bf16, path.keep_memory) == expected and path.why


def test_an_unknown_fast_setting_is_refused():
    with pytest.raises(ValueError, match="fast='yes'"):
        resolve_fast_path("yes", "cpu", native_bf16=())


def test_bf16_logits_are_upsampled_in_float32():
    low = torch.randn(1, 3, 4, 5)
    up = upsample_logits(low.bfloat16(), scale_factor=8, mode="bilinear", align_corners=True)
    assert up.dtype == torch.float32 and up.shape == (1, 3, 32, 40)
    torch.testing.assert_close(up, upsample_logits(low.bfloat16().float(), scale_factor=8, mode="bilinear",
                                                   align_corners=True), rtol=0, atol=0)
    assert upsample_logits(low, scale_factor=2, mode="bilinear", align_corners=True).dtype == torch.float32


@pytest.mark.parametrize("fast, flags, fused, autocast", [
    ("auto", ("amx_bf16",), True, True), ("auto", (), True, False), (False, ("amx_bf16",), False, False)])
def test_a_training_run_builds_what_the_machine_gets(workspace, monkeypatch, fast, flags, fused,  # noqa: F811
                                                      autocast):
    """The run's trainer gets the fused loss and bf16 autocast as resolved for this CPU's flags, logs the choice,
    and trains (the loss goes down); ``fast=False`` is the original's criterion in fp32."""
    monkeypatch.setattr(recipe, "cpu_native_bf16", lambda: flags)
    seen = {}
    original_step = Trainer.train_step

    def spy(self, images, target, iteration=0):
        seen.setdefault("trainer", (type(self.criterion), self.amp))
        result = original_step(self, images, target, iteration)
        seen.setdefault("losses", []).append(result["loss"])
        return result

    monkeypatch.setattr(Trainer, "train_step", spy)
    summary = run(train_config(workspace, "mode='student'", "arch_idx=[1]", f"fast={fast!r}", "niters_per_epoch=4",
                               output=f"fast_{fast}_{len(flags)}"))
    criterion, amp = seen["trainer"]
    assert criterion is (FusedProbOhemCrossEntropy2d if fused else ProbOhemCrossEntropy2d)
    assert amp is autocast
    assert seen["losses"][-1] < seen["losses"][0]
    log = open(f"{summary['run_dir']}/log.txt").read()
    assert f"fast path (fast={fast!r}): {resolve_fast_path(fast, 'cpu', flags).why}" in log



def _step_config():
    """The training keys of a 64x96 SGD step of the student (tests below)."""
    return EasyDict(lr=0.05, momentum=0.9, weight_decay=5e-4, image_height=64, image_width=96,
                    gt_down_sampling=1, ignore_label=255)


def _student(seed):
    torch.manual_seed(seed)
    return build_derived(load_arch(published_arch_path(1)), 1, num_classes=5, stem_head_width=(8. / 12, 8. / 12))


@pytest.mark.parametrize("distilled", [False, True])
def test_the_fused_step_gives_the_original_steps_losses_and_gradients(distilled):
    """One fp32 SGD step of the published student (64x96, batch 2; distilled from a teacher or alone): with the
    fused criterion the network hands over its logits at 1/8, 1/16, 1/32 and the loss upsamples them, and the
    losses, the train-mIoU logits and every weight's gradient equal the original step's within float rounding."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 64, 96, generator=g)
    target = torch.randint(0, 5, (2, 64, 96), generator=g)
    target[:, :4] = 255
    config = _step_config()
    results, grads = [], []
    for fused in (False, True):
        model = _student(1)
        teacher = _student(2) if distilled else None
        trainer = Trainer(model, build_optimizer(model, config), build_criterion(config, 2, fused), "cpu",
                          teacher=teacher, distill=DistillationLoss() if distilled else None, num_classes=5,
                          show_progress=False)
        assert model.upsample_train_logits is not fused
        results.append(trainer.train_step(images, target))
        grads.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    original, fast = results
    assert fast["pred8"].shape == original["pred8"].shape == (2, 5, 64, 96)
    torch.testing.assert_close(fast["pred8"], original["pred8"], rtol=1e-4, atol=1e-5)
    for key in ("loss", "seg", "kl"):
        assert fast[key] == (pytest.approx(original[key], rel=1e-5) if distilled or key != "kl" else None)
    assert grads[1].keys() == grads[0].keys() and len(grads[0]) > 100
    for name, value in grads[0].items():
        torch.testing.assert_close(grads[1][name], value, rtol=0, atol=1e-4 * float(value.abs().max()), msg=name)
    model.train()
    assert [tuple(p.shape[2:]) for p in model(images)] == [(8, 12), (4, 6), (2, 3)]


def test_the_distilled_fused_step_upsamples_each_head_once(monkeypatch):
    """Distilled with the fused loss, pred8 is upsampled once (by the trainer, for the KL) and the loss takes
    that tensor as it is; the auxiliary heads are upsampled inside the loss, once each."""
    from tools import losses
    from tools.train import trainer as trainer_module
    sizes = []

    def counting(original):
        def upsample(x, size):
            sizes.append(tuple(x.shape[2:]))
            return original(x, size)
        return upsample

    monkeypatch.setattr(losses, "upsample_bilinear", counting(losses.upsample_bilinear))
    monkeypatch.setattr(trainer_module, "upsample_bilinear", counting(trainer_module.upsample_bilinear))
    config = _step_config()
    model = _student(1)
    trainer = Trainer(model, build_optimizer(model, config), build_criterion(config, 2, True), "cpu",
                      teacher=_student(2), distill=DistillationLoss(), num_classes=5, show_progress=False)
    g = torch.Generator().manual_seed(0)
    trainer.train_step(torch.randn(2, 3, 64, 96, generator=g), torch.randint(0, 5, (2, 64, 96), generator=g))
    assert sorted(sizes) == [(2, 3), (4, 6), (8, 12)]
