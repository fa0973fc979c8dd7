"""CamVid preset for the train stage: configs/train.py with dataset='camvid' (11 classes, value 11 = Void ignored).

Put CamVid (SegNet layout: train/, trainannot/, val/, valannot/, test/, testannot/) in data/camvid and write its
lists with `python dataset/create_mapping_lists.py --root data/camvid --layout camvid`. Images are 360x480,
so crops are 352x480 (multiples of 32) and evaluation runs on the whole 360x480 image (padded to 384x480).
Label value 11 (Void) is ignored; the class order is SegNet's (config key camvid_classes, docs/usage.md).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import inherit, use_dataset  # noqa: E402

_base = inherit("train")
C = _base.C
use_dataset(C, "camvid", "data/camvid")
C.image_mean = [0.485, 0.456, 0.406]
C.image_std = [0.229, 0.224, 0.225]
C.num_train_imgs = 367
C.num_eval_imgs = 101
C.eval_height = 360
C.eval_width = 480
C.down_sampling = 1
CAMVID = dict(image_height=352, image_width=480)


def finalize(C, explicit):
    for key, value in CAMVID.items():
        if key not in explicit:
            C[key] = value
    _base.finalize(C, set(explicit) | {"dataset", "dataset_path"} | set(CAMVID))
