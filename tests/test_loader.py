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
