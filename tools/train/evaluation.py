"""Data for a training run: the train set and its per-epoch loader, validation and test-set predictions.

Replaces the data half of the original train/train.py: ``get_train_loader`` (train list, or train+val when
``is_test``; ``batch_size * niters_per_epoch`` items an epoch), ``SegEvaluator`` on val (``infer``) and
``SegTester`` on the test list (``test``). Each epoch's loader is seeded from (seed, epoch, rank), so a resumed
run draws exactly the batches the uninterrupted run would have drawn, and under torchrun every process reads
a disjoint share of each epoch (DistributedSampler) with ``batch_size / world_size`` images per step.
"""
import os

import numpy as np

from tools.data.datasets import dataset_from_config
from tools.data.loader import make_train_loader
from tools.utils.fileio import write_png
from tools.data.visualize import legend, show_img
from tools.data.transforms import TrainTransform
from tools.engine import distributed as dist_utils
from tools.engine.evaluator import Evaluator
from tools.engine.run_outputs import class_iou, write_validation_files
from tools.engine.tester import Tester

VAL_OVERLAYS = 3                        # val images shown with their predictions in TensorBoard per validation


def epoch_seed(seed, epoch, rank):
    """A seed for one epoch of one process, independent of everything drawn before."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])


def train_dataset(config, test=False):
    """The training list (train+val when ``test``) through the original's training transform."""
    preprocess = TrainTransform.from_config(config)
    return dataset_from_config(config, "train", preprocess=preprocess,
                               file_length=config.batch_size * config.niters_per_epoch, test=test)


def epoch_loader(dataset, config, info, batch_per_process, epoch):
    """The loader of one epoch for this process: shuffling, augmentation and worker seeds all from the epoch."""
    seed = epoch_seed(config.seed, epoch, info.rank)
    if hasattr(dataset.preprocess, "reseed"):
        dataset.preprocess.reseed(seed)
    sampler = dist_utils.make_sampler(dataset, info, shuffle=True, seed=config.seed)
    if sampler is not None:
        sampler.set_epoch(epoch)
    return make_train_loader(dataset, batch_per_process, num_workers=config.num_workers, seed=seed,
                             sampler=sampler)


def evaluation_sets(config):
    """(val set, test set) the run will evaluate on (None where unused); building them checks every file of the
    lists and its size, so a bad list stops the run before its first step."""
    needs_val = config.is_eval or not config.is_test
    val_set = dataset_from_config(config, "val") if needs_val else None
    test_set = dataset_from_config(config, "test") if config.is_test else None
    return val_set, test_set


class Evaluation:
    """Validation mIoU (per-class table in log.txt, TensorBoard scalar) and test-list submission folders."""

    def __init__(self, config, info, run_dir, logger, writer, sets=None):
        self.config = config
        self.info = info
        self.run_dir = run_dir
        self.logger = logger
        self.writer = writer
        self.val_set, self.test_set = sets if sets is not None else evaluation_sets(config)
        self.class_iou = {}             # network name -> {class: IoU} of its newest validation

    def validate(self, model, name, step):
        """mIoU of ``model`` on the val list (whole image / sliding / multi-scale / flip per the eval_* keys)."""
        evaluator = Evaluator.from_config(self.config, self.val_set, model, device=self.info.device, quiet=True,
                                          progress=self.info.is_main, keep=VAL_OVERLAYS)
        scores = evaluator.evaluate()
        self.logger.info("%s's valid_mIoU %.3f\n%s", name, scores["mIoU"], scores["result_line"])
        self.writer.add_scalar(f"mIoU/val_{name}", scores["mIoU"], step)
        names = self.val_set.get_class_names()
        self.class_iou[name] = class_iou(names, scores["iou"])
        if self.info.is_main:
            write_validation_files(self.run_dir, name, names, scores, step + 1, picture=self.config.get("plots", True))
            colors = self.val_set.get_class_colors()
            for item_name, image, label, pred in evaluator.kept:     # the first val images, as predicted above
                panel = show_img(colors, self.config.get("background", -1), image, label, pred)
                self.writer.add_image(f"val_{name}/{item_name}", panel.transpose(2, 0, 1), step)
        return float(scores["mIoU"])

    def write_test(self, model, folder_name):
        """One label-id PNG per test image in ``run_dir/folder_name`` (colour overlays beside it in *_color)."""
        folder = os.path.join(self.run_dir, folder_name)
        tester = Tester.from_config(self.config, self.test_set, model, device=self.info.device, save_path=folder,
                                    color_path=folder + "_color", progress=self.info.is_main)
        tester.run_online()
        if self.info.is_main:
            write_png(os.path.join(folder + "_color", "legend.png"),
                      legend(self.test_set.get_class_names(), self.test_set.get_class_colors(),
                             self.config.get("background", -1)))
        dist_utils.barrier()
        self.logger.info("test predictions written to %s", folder)
        return folder
