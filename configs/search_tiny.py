"""A tiny pretrain/search preset for the tests and the demo: configs/search.py with a small supernet and crops.

Everything not listed here is the original default (sandwich loss, OHEM, SGD/Adam settings, lr decay, latency
weights [0, 1e-2] when searching, FPS bounds, train/arch halves). The data is the embedded demo dataset
(``python dataset/make_demo_dataset.py --prepare`` writes it to data/demo: 256x512 scenes, 128x256 after
down_sampling 2). The supernet has 6 layers (the fewest whose 1/32 branch derives: 6 >= round(6/3) + 4),
Fch 3 and widths {4/12, 8/12, 1} (with Fch 3 the widths 6/12 and 10/12 give FactorizedReduce halves that do
not add up, docs/differences.md SN4); crops are 64x128 and latency is estimated at 128x256 with a lookup
table measured on demand on this machine (short timing budgets). Pretrain then search each take a few
minutes on 2 CPU cores.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import inherit, use_dataset  # noqa: E402

_base = inherit("search")

C = _base.C
use_dataset(C, "cityscapes", "data/demo")
C.num_train_imgs = 24
C.num_eval_imgs = 8
C.layers = 6
C.Fch = 3
C.width_mult_list = [4. / 12, 8. / 12, 1.]
C.num_workers = 0
C.latency_height = 128
C.latency_width = 256
C.latency_backend = "pytorch"
C.lut_budget_s = 0.02
C.lut_calib_s = 0.005

# Keys that configs/search.py's finalize would otherwise set from `pretrain` (crop, batch, epochs, steps).
TINY = dict(image_height=64, image_width=128, batch_size=2, nepochs=2, niters_per_epoch=4)


def finalize(C, explicit):
    for key, value in TINY.items():
        if key not in explicit:
            C[key] = value
    _base.finalize(C, set(explicit) | set(TINY))
