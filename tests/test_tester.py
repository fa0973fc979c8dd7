"""tools/engine/tester.py: Cityscapes submission files, and our mIoU == the official evaluator's."""
import glob
import importlib
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from demo_helpers import SmallNet, make_small_demo, small_config
from tools.data.datasets import dataset_from_config
from tools.data.labels import cityscapes_labels
from tools.engine.evaluator import Evaluator
from tools.engine.metrics import confusion_matrix, mean_iou
from tools.engine.tester import Tester, write_prediction


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_small_demo(str(tmp_path_factory.mktemp("demo")))


def official_miou(dataset_root, results, export_dir, monkeypatch):
    """Run cityscapesscripts' evalPixelLevelSemanticLabeling exactly as a user would (no arguments, env set)."""
    monkeypatch.setenv("CITYSCAPES_DATASET", str(dataset_root))
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(results))
    monkeypatch.setenv("CITYSCAPES_EXPORT_DIR", str(export_dir))
    monkeypatch.setattr(sys, "argv", ["evalPixelLevelSemanticLabeling"])
    module = importlib.reload(importlib.import_module("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling"))
    module.args.quiet = True
    module.args.colorized = False
    module.main()
    with open(os.path.join(export_dir, "resultPixelLevelSemanticLabeling.json")) as f:
        return json.load(f)["averageScoreClasses"]


def test_submission_files_are_label_ids_named_after_the_images(demo, tmp_path):
    dataset = dataset_from_config(demo, "test")
    net = SmallNet()
    tester = Tester.from_config(demo, dataset, net, save_path=str(tmp_path / "test"), color_path=str(tmp_path / "c"))
    written = tester.run_online()
    assert [os.path.basename(p) for p in written] == ["berlin_000000_000019_leftImg8bit.png",
                                                      "berlin_000001_000019_leftImg8bit.png"]
    ids = np.array(Image.open(written[0]))
    expected = Evaluator(None, 19, demo.image_mean, demo.image_std, net).predict(dataset[0]["data"])
    np.testing.assert_array_equal(ids, cityscapes_labels().trainid_to_labelid(expected))
    assert set(np.unique(ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    assert np.array(Image.open(tmp_path / "c" / os.path.basename(written[0]))).shape == (64, 128, 3)


def test_down_sampled_predictions_are_written_at_the_image_size(demo, tmp_path):
    config = small_config(demo.dataset_path, down_sampling=2)
    tester = Tester.from_config(config, dataset_from_config(config, "val"), SmallNet(), save_path=str(tmp_path))
    written = tester.run_online()
    assert len(written) == 4 and np.array(Image.open(written[0])).shape == (64, 128)
    small = Tester.from_config(config, dataset_from_config(config, "val"), SmallNet(), save_path=str(tmp_path / "s"),
                               full_resolution=False)
    assert np.array(Image.open(small.run_online()[0])).shape == (32, 64)


def test_model_miou_equals_the_official_evaluator(demo, tmp_path, monkeypatch):
    torch.manual_seed(3)
    net = SmallNet()
    config = small_config(demo.dataset_path, eval_flip=True)
    _, ours = Evaluator.from_config(config, dataset_from_config(config, "val"), net, quiet=True).run_online()
    results = tmp_path / "results"
    Tester.from_config(config, dataset_from_config(config, "val"), net, save_path=str(results)).run_online()
    official = official_miou(demo.dataset_path, results, tmp_path, monkeypatch)
    print(f"model: ours {ours:.9f} official {official:.9f}")
    assert 0 < ours < 1 and ours == pytest.approx(official, abs=1e-6)


def test_hand_made_predictions_with_absent_classes_equal_the_official_evaluator(demo, tmp_path, monkeypatch):
    """Predictions that merge, drop and invent classes, on labels where one class is absent altogether."""
    root = tmp_path / "data"
    shutil.copytree(demo.dataset_path, root)
    _relabel_class(root, train_id=16, into_train_id=15)              # 'train' becomes 'bus': absent from the gt
    config = small_config(str(root))
    dataset = dataset_from_config(config, "val")
    labels = cityscapes_labels()
    results = tmp_path / "results"
    hist = 0
    rng = np.random.default_rng(0)
    for i in range(len(dataset)):
        item = dataset[i]
        gt = item["label"].astype(np.int64)
        pred = np.where(gt == 255, 10, gt)                           # ignored pixels predicted as sky
        pred = np.where(pred == 13, 14, pred)                        # every car called a truck
        pred = np.where(pred == 5, 2, pred)                          # poles never predicted
        pred[:8, :16] = 17                                           # a block of invented motorcycles
        noise = rng.random(gt.shape) < 0.05
        pred[noise] = rng.integers(0, 16, noise.sum())               # never 16: absent from both
        write_prediction(pred, str(results / (item["img_fn"] + ".png")), labels)
        hist = hist + confusion_matrix(pred, gt, 19)
    ours = mean_iou(hist)
    present = (np.diag(hist) + hist.sum(0) + hist.sum(1)) > 0
    assert not present[16] and present.sum() < 19
    official = official_miou(root, results, tmp_path, monkeypatch)
    print(f"hand-made: ours {ours:.9f} official {official:.9f}")
    assert 0 < ours < 1 and ours == pytest.approx(official, abs=1e-6)


def _relabel_class(root, train_id, into_train_id):
    from cityscapesscripts.helpers.labels import trainId2label
    label_id, into_label_id = trainId2label[train_id].id, trainId2label[into_train_id].id
    for path in glob.glob(os.path.join(root, "gtFine", "val", "*", "*.png")):
        image = np.array(Image.open(path))
        if path.endswith("_labelTrainIds.png"):
            image[image == train_id] = into_train_id
        elif path.endswith("_labelIds.png"):
            image[image == label_id] = into_label_id
        else:
            mask = image // 1000 == label_id
            image[mask] = into_label_id * 1000 + image[mask] % 1000
            image[image == label_id] = into_label_id
        Image.fromarray(image).save(path)
