"""A tiny teacher/student preset for the demo and the tests: configs/train.py with small crops and few steps.

Everything not listed here is the original default (loss, optimizer, lr schedule, OHEM, distillation). The data
is the embedded demo dataset (configs/datasets/demo.py: 256x512 scenes in data/demo, read at half size as the
search does). 128x256 crops, 2 images a step, 8 epochs of 10 steps with the
original's schedule. The main job (tools/pipeline.py) trains the teacher for 2,000 steps and the student for 1,000
with a short-run schedule on top of this preset (teacher 0.300, student 0.262 val mIoU against chance 0.015 on 2 CPU
cores in about 4.5 minutes for both; docs/benchmarks.md "Main job"). The tests shrink it
further with overrides.
"""
STAGE = "train"
C = dict(
    dataset="demo",
    down_sampling=2,
    image_height=128, image_width=256, batch_size=2,
    nepochs=8, niters_per_epoch=10,
    num_workers=0,
    eval_flip=False, eval_crop_size=128, eval_base_size=128,
    flops_input=[128, 256],
    val_interval=4, test_start_epoch=4, test_interval=4,
)
