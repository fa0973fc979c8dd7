"""Supernet pretraining and architecture search (the original search/config_search.py, same keys and values).

``pretrain=True`` pretrains the supernet; ``pretrain="<pretrain run folder>"`` searches from it. The keys the
original set inside its ``if C.pretrain`` block are filled by :func:`finalize` unless a layer above the stage
gives them (a dataset fragment, a preset or the command line: tools/config.py load_config).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import data_keys  # noqa: E402

C = data_keys()
C.down_sampling = 2            # first down_sampling then crop
C.image_height = None          # after down_sampling; pretrain 256, search 224
C.image_width = None
C.gt_down_sampling = 8         # the supernet's output size without final upsampling
C.lr = None                    # pretrain 2e-2, search 1e-2
C.num_workers = 4
C.eval_flip = False
C.eval_base_size = None
C.eval_crop_size = None

C.grad_clip = 5
C.train_portion = 0.5
C.arch_learning_rate = 3e-4
C.arch_weight_decay = 0
C.branch = 2
C.pretrain = True
C.prun_modes = ['max', 'arch_ratio', ]
C.stem_head_width = [(1, 1), (8. / 12, 8. / 12), ]
C.FPS_min = [0, 155.]
C.FPS_max = [0, 175.]
C.batch_size = None            # pretrain 3, search 2
C.niters_per_epoch = None      # max(num_train_imgs // 2 // batch_size, 400)
C.latency_weight = None        # pretrain [0, 0], search [0, 1e-2]
C.nepochs = None               # pretrain 20, search 30
C.save = None
# (the original's `unrolled` key is gone: its DARTS second-order step never ran, see docs/differences.md S2)
C.lr_decay = 0.978             # exponential lr decay per epoch (train_search.py)
C.lr_schedule = "exponential"  # the original's x lr_decay per epoch; 'poly' / 'cosine': per iteration (short runs)
C.warmup_iters = 0             # linear warm-up iterations of 'poly' / 'cosine'
C.latency_height = 1024        # resolution of the latency estimate (the original: 1024x2048)
C.latency_width = 2048
C.lut_path = ""                # lookup table (project JSON or original .npy); empty: the published 1080Ti table
#                                at 1024x2048, else a table measured on demand in the run folder
C.lut_measure_misses = True    # time table misses with latency_backend (never for .npy / the published table)
C.lut_budget_s = 1.0           # timing budget per measured table entry (the original: 6 s)
C.lut_calib_s = 0.2
C.latency_backend = "auto"     # 'auto' (TensorRT if present, else PyTorch), 'pytorch', 'onnxruntime', 'tensorrt'
C.precision = "fp32"
C.arch_plots = True           # TensorBoard operator tables and path/width diagrams of every epoch's networks
C.fps_source = "table"         # derived networks' FPS per epoch: 'table' (lookup table) or 'backend' (measured)
C.legacy_latency = False       # True: the original's latency figures end to end (loss: B2+B3; FPS: B1+B2, no ignore_skip)
C.fast = "auto"               # CPU: fused OHEM loss + allocator (same numbers); True: + bf16 weight steps; False: the original's
C.resume = False               # True: continue the newest unfinished run of this `save`; or a run folder


def finalize(C, explicit):
    """Fill the pretrain/search dependent defaults exactly as the original's if/else block."""
    pretraining = C.pretrain is True
    defaults = dict(batch_size=3, lr=2e-2, latency_weight=[0, 0], image_height=256, image_width=512,
                    nepochs=20) if pretraining else \
        dict(batch_size=2, lr=1e-2, latency_weight=[0, 1e-2], image_height=224, image_width=448, nepochs=30)
    for key, value in defaults.items():
        if key not in explicit or C[key] is None:
            C[key] = value
    if "niters_per_epoch" not in explicit or C.niters_per_epoch is None:
        C.niters_per_epoch = max(C.num_train_imgs // 2 // C.batch_size, 400)
    if "save" not in explicit or C.save is None:
        prefix = "pretrain-" if pretraining else ""
        C.save = "%s%dx%d_F%d.L%d_batch%d" % (prefix, C.image_height, C.image_width, C.Fch, C.layers, C.batch_size)
    lengths = {len(C.latency_weight), len(C.stem_head_width), len(C.FPS_min), len(C.FPS_max)}
    if len(lengths) != 1:
        raise ValueError("latency_weight, stem_head_width, FPS_min and FPS_max must have one entry per "
                         f"architecture; got lengths {len(C.latency_weight)}, {len(C.stem_head_width)}, "
                         f"{len(C.FPS_min)}, {len(C.FPS_max)}.")
