"""CamVid training recipe for a CPU (2 cores): the train stage on CamVid with a schedule that converges in hours.

The original's schedule (configs/train.py: lr 0.01 x 0.992 per epoch, 600 epochs x 1000 iterations of 12
images) is made for 600,000 GPU iterations; on 2 CPU cores a student step of 8 images at 352x480 takes ~2.2 s,
so this preset trains for ``nepochs`` passes over the 367 training images (45 iterations of 8) with a
short linear warm-up and a poly decay of a larger learning rate (docs/differences.md TR12). Everything else
(OHEM, aux heads, distillation, augmentation: mirror + a scale from {0.75, 1, 1.25} + crop) is the original's.

Budget on 2 cores (AMD EPYC, torch 2.13): student alone ~2 min per epoch, teacher ~3.5 min, distilled student
~2.7 min; validation on the 101 val images (whole 360x480) ~20 s. 60 epochs of the student ~2 h.

    python train/train.py --config camvid_train_cpu mode='teacher' dataset_path=data/camvid
    python train/train.py --config camvid_train_cpu mode='student' teacher_path=runs/train-...teacher... \
        dataset_path=data/camvid
    python train/train.py --config camvid_train_cpu mode='student' arch_idx=[1] dataset_path=data/camvid
"""
STAGE = "train"
C = dict(
    dataset="camvid",
    lr=0.05, lr_schedule="poly", warmup_iters=200,
    nepochs=60, batch_size=8, niters_per_epoch=45,      # 367 train images // 8
    val_interval=5,
    num_workers=1,
    flops_input=[384, 480],      # a 360x480 image padded to a multiple of 32, as evaluated
)
