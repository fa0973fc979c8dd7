"""tools/engine/distributed.py: a 2-process gloo torchrun run keeps both ranks' weights identical and gives the
same loss and weights as one process on the same global batch; helpers are no-ops on one process."""
import os
import subprocess
import sys

import pytest
import torch

from tests import dist_worker
from tests.train_helpers import StandIn
from tools.engine import distributed as dist_utils

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "dist_worker.py")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One torchrun launch shared by the tests below (about 10 s on 2 CPU cores)."""
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, PYTHONPATH=REPO)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", WORKER, str(out)]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_both_ranks_hold_identical_weights(two_ranks):
    rank0, rank1 = two_ranks
    assert rank0["world_size"] == rank1["world_size"] == 2
    for part in ("state_a", "state_b"):
        assert rank0[part].keys() == rank1[part].keys()
        for key in rank0[part]:
            assert torch.equal(rank0[part][key], rank1[part][key]), (part, key)


def test_same_loss_and_weights_as_one_process_with_the_global_batch(two_ranks, tmp_path, monkeypatch):
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(variable, raising=False)
    dist_worker.main(str(tmp_path), parts="a")
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    assert single["world_size"] == 1
    assert two_ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert single["losses"][-1] < single["losses"][0]
    for key, value in single["state_a"].items():
        assert torch.allclose(two_ranks[0]["state_a"][key], value, rtol=1e-5, atol=1e-6), key


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = dist_utils.init_distributed_mode("cpu")
    assert (info.rank, info.world_size, info.distributed, info.is_main) == (0, 1, False, True)
    model = StandIn()
    assert dist_utils.wrap_model(model, info) is model and dist_utils.unwrap_model(model) is model
    assert dist_utils.make_sampler(range(10), info) is None
    tensor = torch.ones(3)
    assert dist_utils.all_reduce(tensor, "mean") is tensor and torch.equal(tensor, torch.ones(3))
    assert dist_utils.all_reduce_mean(2.5) == 2.5 and dist_utils.broadcast_object("x") == "x"


def test_sampler_gives_disjoint_shares():
    shares = [list(dist_utils.make_sampler(list(range(12)), dist_utils.DistInfo(rank=r, world_size=2,
                                                                                 distributed=True), seed=3))
              for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 6 and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(12))


@pytest.mark.parametrize("call, words", [
    (lambda: dist_utils.per_rank_batch_size(5, 2), "batch_size=5 cannot be split evenly over 2 processes"),
    (lambda: dist_utils.wrap_model(StandIn(), dist_utils.DistInfo(), sync_bn=True), "sync_bn=True needs CUDA"),
    (lambda: dist_utils.resolve_device("cuda:3") if not torch.cuda.is_available() else
     (_ for _ in ()).throw(dist_utils.DistributedConfigError("sees no CUDA GPU")), "sees no CUDA GPU"),
])
def test_bad_settings_are_one_clear_sentence(call, words):
    with pytest.raises(dist_utils.DistributedConfigError, match=words):
        call()


@pytest.mark.parametrize("script", ["search/train_search.py", "train/train.py"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_training_and_search_on_cuda_set_cudnn_benchmark_as_the_original(fake_cuda, monkeypatch, script,
                                                                        deterministic):
    """train.py and train_search.py turn cudnn.benchmark on for a CUDA run (CUDA faked),
    unless deterministic=True asks for reproducible algorithms."""
    from tools.pipeline import load_script
    for flag in ("enabled", "benchmark", "deterministic"):
        monkeypatch.setattr(torch.backends.cudnn, flag, False)
    module = load_script(script)
    seen = {}
    monkeypatch.setattr(module, "run", lambda config: seen.update(benchmark=torch.backends.cudnn.benchmark,
                                                                  deterministic=torch.backends.cudnn.deterministic))
    module.main([f"deterministic={deterministic}"])
    assert seen == {"benchmark": not deterministic, "deterministic": deterministic}
    assert not dist_utils.configure_cudnn("cpu") and torch.backends.cudnn.benchmark == (not deterministic)
