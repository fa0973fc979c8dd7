"""Training data loaders: shuffled, ``drop_last``, with workers, reproducible from one seed.

Replaces ``get_train_loader`` of the original ``search/dataloader.py`` and ``train/dataloader.py``: the dataset
is the train list (``train_eval_source`` when ``test``), optionally a ``portion`` of it after ``index_select``,
repeated to ``batch_size * niters_per_epoch`` items, through the training transform. The original left the
augmentation to the global ``random`` state of each process; here the shuffling generator and the
transform's own RNG are seeded, and each worker re-seeds its copy of the transform from the per-worker seed
that PyTorch derives from the loader's generator, so the batches are the same on every run.
"""
import torch
import torch.distributed as dist
from torch.utils import data

from tools.data.datasets import dataset_from_config
from tools.data.transforms import TrainTransform


def seed_worker(worker_id):
    """``worker_init_fn``: give this worker's transform its own reproducible stream."""
    info = data.get_worker_info()
    preprocess = getattr(info.dataset, "preprocess", None)
    if hasattr(preprocess, "reseed"):
        preprocess.reseed(info.seed)


def make_train_loader(dataset, batch_size, num_workers=0, seed=0, shuffle=True, drop_last=True,
                      sampler=None, pin_memory=None):
    """A DataLoader over ``dataset``; a given ``sampler`` (e.g. DistributedSampler) replaces shuffling."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(int(seed))
    return data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, drop_last=drop_last,
                           shuffle=shuffle and sampler is None, sampler=sampler, pin_memory=pin_memory,
                           generator=generator, worker_init_fn=seed_worker)


def get_train_loader(config, portion=None, worker=None, test=False, index_select=None, seed=None,
                     distributed=None):
    """The original entry point: returns ``(loader, sampler)``; the sampler is None unless distributed.

    ``config.batch_size`` is the global batch, as in tools/train/evaluation.py: with N processes each loads
    ``batch_size / N`` images per step from its DistributedSampler share.
    """
    seed = config.get("seed", 0) if seed is None else seed
    preprocess = TrainTransform.from_config(config, seed=seed)
    dataset = dataset_from_config(config, "train", preprocess=preprocess,
                                  file_length=config.batch_size * config.niters_per_epoch, portion=portion,
                                  index_select=index_select, test=test)
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    world_size = dist.get_world_size() if distributed else 1
    if config.batch_size % world_size:
        raise ValueError(f"batch_size {config.batch_size} cannot be split evenly over {world_size} processes; "
                         f"use a multiple of {world_size}")
    sampler = data.DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True) if distributed else None
    num_workers = config.num_workers if worker is None else worker
    loader = make_train_loader(dataset, config.batch_size // world_size, num_workers=num_workers, seed=seed,
                               sampler=sampler)
    return loader, sampler
