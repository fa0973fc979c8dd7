"""Worker started by tests/test_distributed.py, under torchrun (2 gloo processes) or alone (the reference).

Part A (exactness): a BN-free stand-in student distilled from a stand-in teacher, trained on a fixed global batch
of 4 that the processes split evenly; with OHEM's min_kept above the pixel count the loss is a plain mean, so
the mean of the processes' losses and the updated weights must equal one process on the whole batch.
Part B (the real network): the published student, 2 steps at 64x128 with batch 1 per process; afterwards every
process must hold identical parameters and (after broadcast_buffers) identical BatchNorm statistics.
Writes ``OUT/rank{r}.pt`` (or ``OUT/single.pt`` when run alone).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from tests.train_helpers import StandIn, fixed_batch  # noqa: E402
from tools.engine import distributed as dist_utils  # noqa: E402
from tools.losses import ProbOhemCrossEntropy2d  # noqa: E402
from tools.train.distill import DistillationLoss  # noqa: E402
from tools.train.trainer import Trainer  # noqa: E402

GLOBAL_BATCH = 4
STEPS = 3


def share(tensor, info):
    per = dist_utils.per_rank_batch_size(tensor.size(0), info.world_size)
    return tensor[info.rank * per:(info.rank + 1) * per]


def part_a(info):
    torch.manual_seed(0)
    teacher, student = StandIn(batch_norm=False), StandIn(batch_norm=False)
    model = dist_utils.wrap_model(student, info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    criterion = ProbOhemCrossEntropy2d(ignore_label=255, thresh=0.7, min_kept=10 ** 9)
    trainer = Trainer(model, optimizer, criterion, info.device, teacher=teacher, distill=DistillationLoss(),
                      num_classes=4, show_progress=False)
    losses = []
    for step in range(STEPS):
        images, target = fixed_batch(batch=GLOBAL_BATCH, seed=step)
        result = trainer.train_step(share(images, info), share(target, info), step)
        losses.append(dist_utils.all_reduce_mean(result["loss"]))
    return losses, {k: v.detach().clone() for k, v in student.state_dict().items()}


def part_b(info):
    from tools.models.archfile import load_arch, published_arch_path
    from tools.models.derived import build_derived
    torch.manual_seed(0)
    student = build_derived(load_arch(published_arch_path(1)), 1, stem_head_width=(8. / 12, 8. / 12))
    model = dist_utils.wrap_model(student, info)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    criterion = ProbOhemCrossEntropy2d(ignore_label=255, thresh=0.7, min_kept=64 * 128 // 16)
    trainer = Trainer(model, optimizer, criterion, info.device, num_classes=19, show_progress=False)
    for step in range(2):
        generator = torch.Generator().manual_seed(100 * step + info.rank)
        images = torch.randn(1, 3, 64, 128, generator=generator)
        target = torch.randint(0, 19, (1, 64, 128), generator=generator)
        trainer.train_step(images, target, step)
    dist_utils.broadcast_buffers(model)
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


def main(out_dir, parts="ab"):
    info = dist_utils.init_distributed_mode("cpu")
    result = {"world_size": info.world_size}
    if "a" in parts:
        result["losses"], result["state_a"] = part_a(info)
    if "b" in parts:
        result["state_b"] = part_b(info)
    name = f"rank{info.rank}.pt" if info.distributed else "single.pt"
    torch.save(result, os.path.join(out_dir, name))
    dist_utils.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ab")
