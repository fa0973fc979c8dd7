"""Teacher / student training and evaluation (the original train/config_train.py, same keys and values).

``mode="teacher"`` trains the teacher (arch 0); ``mode="student"`` trains the student (arch 1) distilled from
the teacher in ``teacher_path``. The keys the original set inside its ``if C.mode`` block are filled by
:func:`finalize` unless a layer above the stage gives them (a dataset fragment, a preset or the command line:
tools/config.py load_config).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import data_keys  # noqa: E402

C = data_keys()
C.target_size = 1024
C.down_sampling = 1
C.gt_down_sampling = 1
C.lr = 0.01
C.lr_decay = 0.992             # lr x 0.992 per epoch (train.py)
C.lr_schedule = "exponential"  # the original's x lr_decay per epoch; 'poly' / 'cosine': per iteration (short runs)
C.warmup_iters = 0             # linear warm-up iterations of 'poly' / 'cosine'
C.nepochs = 600
C.niters_per_epoch = 1000
C.num_workers = 6
C.eval_flip = False           # the original since 47fccfb (config_train.py:68); True adds a flipped pass
C.eval_base_size = 1024
C.eval_crop_size = 1024

C.mode = "student"             # "teacher" or "student"
C.arch_idx = None              # teacher [0]; student [0, 1]; [1]: the student alone, without distillation
C.branch = None
C.stem_head_width = None       # teacher [(1, 1)]; student [(1, 1), (8/12, 8/12)]
C.load_path = ""               # searched folder with arch_0.pt / arch_1.pt; empty: the published FasterSeg
C.teacher_path = ""            # run folder with the trained teacher's weights0.pt (student mode)
C.init_path = ""               # fine-tuning: weights file or run folder the trained network starts from ('': scratch)
C.load_epoch = "last"          # "last" or an epoch number: which searched architecture to load
C.batch_size = 12
C.image_height = 512
C.image_width = 1024
C.save = None
C.is_test = False              # train on train+val and write test-list submissions periodically (with is_eval: once)
C.is_eval = False              # evaluate once and stop
C.eval_path = ""               # run folder with the weights to evaluate (is_eval; is_eval + is_test: predict test)
C.aux_weight = 0.2             # loss = OHEM(pred8) + 0.2 * (OHEM(pred16) + OHEM(pred32))
C.distill_reduction = "mean"   # the original's KLDivLoss default (mean over N*C*H*W); batchmean, pixelmean, sum
C.distill_temperature = 1.0    # softening T of both softmaxes, loss x T^2 (1 = the original)
C.amp = False                  # mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU
C.fast = "auto"               # CPU fast path: fused OHEM + bf16 autocast where native; False: fp32 eager
C.class_weight = ""            # OHEM class weights: '' none (the original), 'enet' from the training labels, or a list
C.sync_bn = False              # SyncBatchNorm under torchrun (CUDA only)
C.resume = False               # True: continue the newest unfinished run folder of this `save`; or a run folder
C.val_interval = 10            # validate after the first epoch and every 10 epochs (train.py), and after the last
C.test_start_epoch = 250       # is_test while training: test predictions every test_interval epochs from here
C.test_interval = 10
C.flops_input = [1024, 2048]   # input (H, W) at which params/FLOPs are logged (train.py: 1024x2048)
C.plots = True                 # ops-table and path-width PNGs of the derived networks in the run folder


def finalize(C, explicit):
    """Fill the teacher/student dependent defaults exactly as the original's if/elif block."""
    if C.mode not in ("teacher", "student"):
        raise ValueError(f"mode must be 'teacher' or 'student', got {C.mode!r}.")
    teacher = C.mode == "teacher"
    defaults = dict(arch_idx=[0], branch=[2], stem_head_width=[(1, 1)]) if teacher else \
        dict(arch_idx=[0, 1], branch=[2, 2], stem_head_width=[(1, 1), (8. / 12, 8. / 12)])
    student_alone = dict(arch_idx=[1], branch=[2], stem_head_width=[(8. / 12, 8. / 12)])
    if not teacher and "arch_idx" in explicit and C.arch_idx is not None and list(C.arch_idx) == [1]:
        # the student alone, as the original trains whatever arch_idx lists (no teacher, no distillation)
        defaults = student_alone
    elif not teacher and "arch_idx" not in explicit and C.is_eval and _only_student_weights(C.eval_path):
        # evaluating a student trained alone or shipped without its teacher (e.g. pretrained/camvid)
        defaults = student_alone
    for key, value in defaults.items():
        if key not in explicit or C[key] is None:
            C[key] = value
    if "save" not in explicit or C.save is None:
        C.save = "%dx%d_%s_batch%d" % (C.image_height, C.image_width, C.mode, C.batch_size)


def _only_student_weights(folder):
    """True when ``folder`` holds weights1.pt but no weights0.pt (nothing to evaluate for the teacher)."""
    return bool(folder) and osp.isfile(osp.join(folder, "weights1.pt")) and \
        not osp.isfile(osp.join(folder, "weights0.pt"))
