"""Custom-data preset for the search stage: configs/search.py reading your own classes from one labels file.

Prepare the data as docs/usage.md says (split_dataset.py → createTrainIdLabelImgs.py --layout custom
--labels-file … → create_mapping_lists.py --layout custom), then set `labels_file` (and `dataset_path`):
num_classes, the class names and colours and the list files all follow from them.

    python search/train_search.py --config custom_search labels_file='data/own/labels.csv' dataset_path='data/own'
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _common import inherit  # noqa: E402

_base = inherit("search")
C = _base.C
C.dataset = "custom"
C.dataset_path = "data/custom"
C.labels_file = "data/custom/labels.csv"


def finalize(C, explicit):
    _base.finalize(C, set(explicit) | {"dataset", "dataset_path"})
