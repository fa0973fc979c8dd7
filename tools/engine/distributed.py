"""Multi-process training with torchrun: process group, DDP wrapping, samplers, all-reduce, rank-0 helpers.

The original trained on one GPU only (train/train.py has no torch.distributed). Here ``torchrun
--nproc_per_node=N train/train.py ...`` starts N processes; :func:`init_distributed_mode` reads the environment
torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK), joins the process group (nccl on CUDA, gloo on CPU) and picks
this process's device. A plain ``python train/train.py`` gets a single-process :class:`DistInfo` and every
helper below becomes a no-op, so the same training code serves both.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from tools.utils.errors import UserError
from tools.utils import device as device_utils


class DistributedConfigError(UserError, ValueError):
    """A multi-process setting that cannot work; the message says what to change."""


@dataclass
class DistInfo:
    """Where this process stands: rank, world size, its device, and whether a process group exists."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    distributed: bool = False

    @property
    def is_main(self):
        return self.rank == 0


def resolve_device(device="auto", local_rank=0):
    """This process's device (:func:`tools.utils.device.resolve_device` with torchrun's local rank: a bare 'cuda'
    is cuda:<local_rank>); a missing GPU is a :class:`DistributedConfigError`."""
    return device_utils.resolve_device(device, local_rank, error=DistributedConfigError)


def configure_cudnn(device="auto", deterministic=False):
    """cuDNN for a training or search run on CUDA, as the original's train.py / train_search.py ``main()``:
    ``benchmark = True`` (the fastest convolution algorithms for the run's fixed input sizes, chosen by timing);
    ``deterministic=True`` (config key) asks for reproducible algorithms instead. Nothing changes on CPU.
    Returns whether the run is on CUDA."""
    device = str(device)
    if not (torch.cuda.is_available() if device == "auto" else device.startswith("cuda")):
        return False
    torch.backends.cudnn.enabled = True
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = bool(deterministic)
    return True


def launched_by_torchrun():
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed_mode(device="auto", backend=None):
    """Join the torchrun process group when launched by torchrun; return this process's :class:`DistInfo`."""
    if not launched_by_torchrun():
        return DistInfo(device=resolve_device(device, 0))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    target = resolve_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if backend is None:
        backend = "nccl" if target.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=target, distributed=True)


def cleanup():
    """Leave the process group (at the end of a run, so torchrun sees a clean exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    return get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def all_reduce(tensor, op="sum"):
    """Sum (or 'mean', 'max') ``tensor`` over all processes in place and return it; identity on one process."""
    if not is_distributed():
        return tensor
    ops = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"all_reduce op {op!r} is unknown; use one of {tuple(ops)}.")
    dist.all_reduce(tensor, op=ops[op])
    if op == "mean":
        tensor /= get_world_size()
    return tensor


def all_reduce_mean(value, device="cpu"):
    """The mean of a Python number over all processes (loss logging)."""
    tensor = torch.tensor(float(value), dtype=torch.float64, device=device)
    return float(all_reduce(tensor, "mean"))


def broadcast_object(obj, src=0):
    """Rank ``src``'s Python object on every rank (the run folder name, for instance)."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def per_rank_batch_size(batch_size, world_size):
    """``batch_size`` is the global batch (the original's 12 on one GPU); each process takes an equal share."""
    if batch_size % world_size != 0:
        raise DistributedConfigError(f"batch_size={batch_size} cannot be split evenly over {world_size} processes; "
                                     f"choose a batch_size that is a multiple of the process count.")
    return batch_size // world_size


def wrap_model(model, info, sync_bn=False):
    """DDP-wrap ``model`` (on ``info.device``) when distributed; convert BatchNorm to SyncBatchNorm if asked.

    ``find_unused_parameters`` is on because the derived network keeps parameters its forward never uses
    (FeatureFusion.channel_attention, bug B6 kept for weight compatibility).
    """
    if sync_bn:
        if info.device.type != "cuda":
            raise DistributedConfigError("sync_bn=True needs CUDA devices (SyncBatchNorm does not run on CPU); "
                                         "set sync_bn=False.")
        if info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if not info.distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def unwrap_model(model):
    """The plain module inside a DDP wrapper (its state_dict keys have no 'module.' prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def make_sampler(dataset, info, shuffle=True, seed=0, drop_last=True):
    """A DistributedSampler giving each process a disjoint share, or None on one process."""
    if not info.distributed:
        return None
    return torch.utils.data.distributed.DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                                           shuffle=shuffle, seed=seed, drop_last=drop_last)


def broadcast_buffers(model):
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so saved models agree everywhere."""
    if not is_distributed():
        return
    for buffer in unwrap_model(model).buffers():
        dist.broadcast(buffer, src=0)
