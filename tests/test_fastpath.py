"""The CPU fast path (config key ``fast``, tools/engine/recipe.py ``resolve_fast_path``): chosen per machine from
the CPU's flags, the original's fp32 eager path one key away, and what a training run builds from it."""
import pytest
import torch

from tests.test_train import config as train_config, workspace  # noqa: F401  (the module fixture)
from tools.engine import recipe
from tools.engine.recipe import resolve_fast_path
from tools.losses import FusedProbOhemCrossEntropy2d, ProbOhemCrossEntropy2d
from tools.models.derived import upsample_logits
from tools.train.loop import run
from tools.train.trainer import Trainer
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
    ("auto", "cpu", ("amx_bf16", "avx512_bf16"), (True, True)),
    ("auto", "cpu", (), (True, False)),          # AVX2 / plain AVX512: bf16 would be emulated, several times slower
    (True, "cpu", (), (True, True)),
    (False, "cpu", ("avx512_bf16",), (False, False)),
    ("auto", "cuda", ("avx512_bf16",), (False, False)),   # the GPU keeps the original's path (amp on request)
    (True, "cuda", (), (True, False)),
])
def test_the_fast_path_is_chosen_per_machine(fast, device, flags, expected):
    path = resolve_fast_path(fast, device, native_bf16=flags)
    assert (path.fused_loss, path.bf16) == expected and path.why


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

