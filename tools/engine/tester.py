"""Write test-set predictions in the Cityscapes submission format (and optional colour overlays).

Replaces the original ``tools/engine/tester.py`` and ``train/test.py`` (``SegTester``): the same prediction as
the evaluator (it subclasses it), then train ids -> label ids through a lookup table (the original looped over
every pixel with a dict) and one ``<image name>.png`` per input image, e.g.
``frankfurt_000000_000019_leftImg8bit.png``, which cityscapesscripts' evalPixelLevelSemanticLabeling and the
benchmark server match by ``{city}_{seq}_{frame}*.png``. When the dataset is down-sampled the class map is
resized (nearest) back to the size of the image file, as submissions must match the ground truth.

Colour overlays go to a separate folder (``color_path``): the official evaluator searches the results folder
recursively and refuses two files for one image.
"""
import os

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from tools.utils.fileio import write_png
from tools.data.labels import cityscapes_labels
from tools.data.visualize import overlay
from tools.engine.evaluator import Evaluator, _rank_and_world


def prediction_to_label_ids(pred, label_set):
    """Train ids -> submission label ids (Cityscapes: 0->7 ... 18->33, anything else -> 0 'unlabeled')."""
    return label_set.trainid_to_labelid(pred).astype(np.uint8)


def write_prediction(pred, path, label_set=None, size=None):
    """Write one class map (train ids) as a label-id PNG, resized (nearest) to ``size=(H, W)`` if given."""
    label_set = cityscapes_labels() if label_set is None else label_set
    ids = prediction_to_label_ids(pred, label_set)
    if size is not None and tuple(ids.shape) != tuple(size):
        ids = cv2.resize(ids, (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    write_png(path, ids)
    return path


class Tester(Evaluator):
    """``run_online()`` writes one PNG per image of the dataset and returns the written paths."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, dataset, class_num, image_mean, image_std, network, multi_scales=(1,), is_flip=False,
                 device="cpu", out_idx=0, crop_size=None, stride_rate=2 / 3, save_path="test", label_set=None,
                 color_path=None, full_resolution=True, progress=False, **kwargs):
        super().__init__(dataset, class_num, image_mean, image_std, network, multi_scales, is_flip, device,
                         out_idx, crop_size, stride_rate, progress=progress, quiet=True, **kwargs)
        self.save_path = save_path
        self.label_set = label_set if label_set is not None else getattr(dataset, "label_set", None)
        if self.label_set is None:
            self.label_set = cityscapes_labels()
        self.color_path = color_path
        self.full_resolution = full_resolution
        os.makedirs(save_path, exist_ok=True)
        if color_path is not None:
            os.makedirs(color_path, exist_ok=True)

    @classmethod
    def from_config(cls, config, dataset, network, device="cpu", save_path="test", **kwargs):
        return super().from_config(config, dataset, network, device=device, save_path=save_path, **kwargs)

    def run_online(self):
        rank, world = _rank_and_world()
        was_training = self.network.training
        self.network.to(self.device)
        written = []
        try:
            for idx in tqdm(range(rank, len(self.dataset), world), disable=not self.progress, desc="test"):
                written.append(self.func_per_iteration(self.dataset[idx], self.device, iter=idx))
        finally:
            self.network.train(was_training)
        return written

    def func_per_iteration(self, data, device, iter=None):
        img = data["data"]
        pred = self.predict(img, device)
        name = data.get("img_fn") or data["fn"]
        size = self._file_size(iter) if self.full_resolution else None
        path = write_prediction(pred, os.path.join(self.save_path, name + ".png"), self.label_set, size)
        if self.color_path is not None:
            colors = self.label_set.colors
            write_png(os.path.join(self.color_path, name + ".png"), overlay(img, pred, colors, self.background))
        return path

    def _file_size(self, index):
        """(H, W) of the image file behind item ``index`` (read from its header), or None if unknown."""
        file_pair = getattr(self.dataset, "file_pair", None)
        if file_pair is None or index is None:
            return None
        with Image.open(file_pair(index)[0]) as image:
            return image.size[1], image.size[0]
