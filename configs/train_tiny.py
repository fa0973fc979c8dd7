"""A tiny teacher/student preset for the demo and the tests: configs/train.py with small crops and few steps.

Everything not listed here is the original default (loss, optimizer, lr schedule, OHEM, distillation). The data
is the embedded demo dataset (``python dataset/make_demo_dataset.py --prepare`` writes it to data/demo: 256x512
scenes, read at half size as the search does). 128x256 crops, 2 images a step, 8 epochs of 10 steps with the
original's schedule. The main job (tools/pipeline.py) trains the teacher and the student for 1,000 steps each with
a short-run schedule on top of this preset (teacher 0.268, student 0.256 val mIoU against chance 0.015 on 2 CPU
cores in about 4 minutes for both; docs/benchmarks.md "Main job"). The tests shrink it
further with overrides.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import inherit, use_dataset  # noqa: E402

_base = inherit("train")

C = _base.C
use_dataset(C, "cityscapes", "data/demo")
C.down_sampling = 2
C.image_height = 128
C.image_width = 256
C.batch_size = 2
C.nepochs = 8
C.niters_per_epoch = 10
C.num_workers = 0
C.eval_flip = False
C.eval_crop_size = 128
C.eval_base_size = 128
C.flops_input = [128, 256]
C.val_interval = 4
C.test_start_epoch = 4
C.test_interval = 4

def finalize(C, explicit):
    _base.finalize(C, explicit)
