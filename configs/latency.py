"""Latency report of searched architectures (the original latency/config.py keys and values, plus backends).

``mode="both"`` (default here) describes the teacher (arch 0) and the student (arch 1) in one run, as the
project's main job does; ``mode="teacher"`` / ``"student"`` reproduce the original, which described one of
them. The keys the original set inside its ``if C.mode`` block are filled by :func:`finalize` unless given on
the command line. The keys it shares with the other stages (seed, supernet size, classes, the Cityscapes
resolution, device, output_root) are read from configs/_common.py, not written again here.
"""
import os.path as osp
import sys

from easydict import EasyDict

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import data_keys  # noqa: E402

_shared = data_keys()   # seed, supernet size, classes, resolution: the search and train values
C = EasyDict()
C.seed = _shared.seed
C.layers = _shared.layers
C.mode = "both"                # "teacher", "student" or "both"
C.arch_idx = None              # teacher [0]; student [1]; both [0, 1]
C.branch = None
C.width_mult_list = _shared.width_mult_list
C.stem_head_width = None       # teacher [(1, 1)]; student [(8/12, 8/12)]; both: the two
C.load_path = ""               # folder with arch_0.pt / arch_1.pt; empty: the published FasterSeg (shipped)
C.teacher_path = ""            # kept from the original config (unused by the latency report)
C.load_epoch = "last"          # "last" or an epoch number
C.Fch = _shared.Fch
C.num_classes = _shared.num_classes
C.image_height = _shared.eval_height   # the whole Cityscapes image
C.image_width = _shared.eval_width
C.save = None                  # run-folder name; default "<H>x<W>_<mode>"
C.output_root = _shared.output_root   # where the run folder (log, plots, JSON) is created

C.latency_backend = "auto"     # "auto" (TensorRT if installed with CUDA, else PyTorch), "pytorch",
                               # "onnxruntime", "tensorrt"
C.precision = "fp32"           # "fp32", "fp16" (CUDA/TensorRT), "bf16" (PyTorch)
C.device = _shared.device      # "auto" (cuda if present), "cpu", "cuda", "cuda:1"
C.lut_path = ""                # lookup table: project JSON or the original .npy; empty: the published 1080Ti
                               # table when the resolution is 1024x2048, else no table estimate
C.legacy_b2 = False            # True: read the BasicResidual2x keys for conv_2x_downup as the original (B2)
C.measure = True               # False: table estimate only (no timing of the networks)
C.budget_s = 6.0               # seconds of timed iterations per network (the original: 6)
C.calib_s = 1.0                # the iteration count is calibrated on runs of at least this long (original: 1)
C.lut_measure_misses = False   # run_latency: time entries missing from lut_path (saved to it if .json)
C.lut_plan = "full"            # latency_lookup_table.py: "full" (the original's grid) or "derived" (only the
                               # entries of the networks in load_path, for a quick table)
C.lut_fch_cells = [12]         # Fch of the cell entries (the original: [12])
C.lut_fch_heads = [8, 12]      # Fch of stem/FFM/head entries (8 = the student's 8/12 width of Fch 12)
C.lut_budget_s = 1.0           # seconds of timed iterations per table entry
C.lut_calib_s = 0.25
C.lut_rounds = 2               # timing passes over the table's entries, each shuffled; median kept
C.lut_calibration_networks = 4   # random networks measured whole to calibrate the table (0: no calibration)
C.lut_calibration_budget_s = 1.0   # seconds of timed iterations per calibration network and pass
C.plots = True                 # ops-table and path-width PNGs in the run folder
C.json = ""                    # write the report as JSON to this file


def finalize(C, explicit):
    """Fill the mode-dependent defaults as the original's if/elif block (plus mode 'both')."""
    choices = {
        "teacher": dict(arch_idx=[0], branch=[2], stem_head_width=[(1, 1)]),
        "student": dict(arch_idx=[1], branch=[2], stem_head_width=[(8. / 12, 8. / 12)]),
        "both": dict(arch_idx=[0, 1], branch=[2, 2], stem_head_width=[(1, 1), (8. / 12, 8. / 12)]),
    }
    if C.mode not in choices:
        raise ValueError(f"mode must be 'teacher', 'student' or 'both', got {C.mode!r}.")
    for key, value in choices[C.mode].items():
        if key not in explicit or C[key] is None:
            C[key] = value
    if len(C.arch_idx) != len(C.stem_head_width):
        raise ValueError(f"arch_idx {C.arch_idx} and stem_head_width {C.stem_head_width} must have one entry "
                         "per architecture.")
    if "save" not in explicit or C.save is None:
        C.save = "%dx%d_%s" % (C.image_height, C.image_width, C.mode)
