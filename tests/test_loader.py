"""tools/data/loader.py: the original get_train_loader, seeded, with and without workers."""
import pytest
import torch

from demo_helpers import make_small_demo, small_config
from tools.data.loader import get_train_loader


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_small_demo(str(tmp_path_factory.mktemp("demo")))


def batches(loader):
    return [(b["data"].clone(), b["label"].clone(), list(b["fn"])) for b in loader]


def test_batches_have_the_crop_and_label_down_sampling(demo):
    config = small_config(demo.dataset_path, gt_down_sampling=8, niters_per_epoch=3, batch_size=2)
    loader, sampler = get_train_loader(config)
    assert sampler is None and len(loader) == 3
    got = batches(loader)
    assert len(got) == 3
    data, label, _ = got[0]
    assert data.shape == (2, 3, 32, 64) and data.dtype == torch.float32
    assert label.shape == (2, 4, 8) and label.dtype == torch.int64


def test_drop_last_and_portion(demo):
    config = small_config(demo.dataset_path, batch_size=3, niters_per_epoch=1)
    loader, _ = get_train_loader(config, portion=0.5)
    assert len(loader.dataset) == 3 and len(loader) == 1
    names = {fn for b in loader for fn in b["fn"]}
    second, _ = get_train_loader(config, portion=-0.5)
    assert names.isdisjoint({fn for b in second for fn in b["fn"]})
    test_loader, _ = get_train_loader(config, test=True)            # train + val list
    assert len(test_loader.dataset._file_names) == 8


def test_same_seed_same_batches_different_seed_different(demo):
    config = small_config(demo.dataset_path)
    a = batches(get_train_loader(config)[0])
    b = batches(get_train_loader(config)[0])
    c = batches(get_train_loader(config, seed=7)[0])
    for (da, la, fa), (db, lb, fb) in zip(a, b):
        assert fa == fb and torch.equal(da, db) and torch.equal(la, lb)
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(a, c))


def test_workers_are_reproducible(demo):
    config = small_config(demo.dataset_path, niters_per_epoch=2)
    a = batches(get_train_loader(config, worker=2)[0])
    b = batches(get_train_loader(config, worker=2)[0])
    assert len(a) == 2
    for (da, la, fa), (db, lb, fb) in zip(a, b):
        assert fa == fb and torch.equal(da, db) and torch.equal(la, lb)


def fake_world(monkeypatch, world_size, rank=0):
    import tools.data.loader as loader_module
    monkeypatch.setattr(loader_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(loader_module.dist, "get_world_size", lambda *a, **k: world_size)
    monkeypatch.setattr(loader_module.dist, "get_rank", lambda *a, **k: rank)


def test_distributed_batch_size_is_the_global_batch(demo, monkeypatch):
    """Two processes with batch_size 4 load 2 images each per step from disjoint halves of every epoch."""
    config = small_config(demo.dataset_path, batch_size=4, niters_per_epoch=2)
    fake_world(monkeypatch, 2, rank=0)
    loader0, sampler0 = get_train_loader(config)
    fake_world(monkeypatch, 2, rank=1)
    loader1, sampler1 = get_train_loader(config)
    assert sampler0 is not None and loader0.batch_size == loader1.batch_size == 2
    assert len(loader0) == len(loader1) == 2           # steps per epoch unchanged
    assert set(sampler0).isdisjoint(set(sampler1))


def test_global_batch_must_split_over_the_processes(demo, monkeypatch):
    config = small_config(demo.dataset_path, batch_size=3, niters_per_epoch=2)
    fake_world(monkeypatch, 2)
    with pytest.raises(ValueError, match="batch_size 3 cannot be split evenly over 2 processes"):
        get_train_loader(config)
