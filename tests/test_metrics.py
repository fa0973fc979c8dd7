"""tools/engine/metrics.py: one confusion matrix, IoU, mIoU, accuracy, table, running mIoU."""
import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from tools.engine.metrics import (RunningIoU, all_reduce_hist, compute_score, confusion_matrix, format_iou_table,
                                  hist_info, iou_per_class, mean_iou, pixel_accuracy)


def brute_force(pred, label, n):
    hist = np.zeros((n, n), np.int64)
    for p, g in zip(pred.ravel(), label.ravel()):
        if 0 <= g < n:
            hist[g, p] += 1
    return hist


def random_case(seed, n=5, shape=(3, 17, 23), ignore_fraction=0.1):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n, shape)
    label[rng.random(shape) < ignore_fraction] = 255
    pred = np.where(rng.random(shape) < 0.6, np.where(label == 255, 0, label), rng.integers(0, n, shape))
    return pred, label


def test_confusion_matrix_equals_brute_force_numpy_and_torch():
    pred, label = random_case(0)
    expected = brute_force(pred, label, 5)
    np.testing.assert_array_equal(confusion_matrix(pred, label, 5), expected)
    torch_hist = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 5)
    assert isinstance(torch_hist, torch.Tensor)
    np.testing.assert_array_equal(torch_hist.numpy(), expected)


def test_matches_torchmetrics_jaccard_on_random_data():
    for seed in range(5):
        pred, label = random_case(seed, n=6)
        hist = confusion_matrix(pred, label, 6)
        reference = MulticlassJaccardIndex(num_classes=6, average=None, ignore_index=255)(
            torch.from_numpy(pred), torch.from_numpy(label))
        np.testing.assert_allclose(iou_per_class(hist), reference.numpy(), rtol=1e-6)
        macro = MulticlassJaccardIndex(num_classes=6, average="macro", ignore_index=255)(
            torch.from_numpy(pred), torch.from_numpy(label))
        assert mean_iou(hist) == pytest.approx(float(macro), rel=1e-6)


def test_absent_classes_are_left_out_of_the_mean():
    label = np.array([[0, 0, 1, 1, 255]])
    pred = np.array([[0, 1, 1, 1, 3]])                     # class 2 nowhere, class 3 only on an ignored pixel
    hist = confusion_matrix(pred, label, 4)
    iou = iou_per_class(hist)
    np.testing.assert_allclose(iou[:2], [1 / 2, 2 / 3])
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert mean_iou(hist) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert pixel_accuracy(hist) == pytest.approx(3 / 4)
    predicted_only = confusion_matrix(np.array([[3, 0]]), np.array([[0, 0]]), 4)
    assert iou_per_class(predicted_only)[3] == 0.0 and mean_iou(predicted_only) == pytest.approx(0.25)
    assert np.isnan(mean_iou(np.zeros((3, 3))))


def test_original_api_hist_info_and_compute_score():
    pred, label = random_case(1)
    hist, labeled, correct = hist_info(5, pred, label)
    assert labeled == (label != 255).sum() and correct == ((pred == label) & (label != 255)).sum()
    iu, miou, miou_no_back, acc = compute_score(hist, correct, labeled)
    assert miou == pytest.approx(np.nanmean(iu)) and miou_no_back == pytest.approx(np.nanmean(iu[1:]))
    assert acc == pytest.approx(correct / labeled)


def test_bad_predictions_and_shapes_are_errors():
    with pytest.raises(ValueError, match="predictions must lie in 0..3"):
        confusion_matrix(np.array([4]), np.array([1]), 4)
    with pytest.raises(ValueError, match="differs from label shape"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 4)
    assert confusion_matrix(np.array([9]), np.array([255]), 4).sum() == 0      # ignored pixel: not checked


def test_iou_table_has_one_row_per_class_and_the_means():
    table = format_iou_table(np.array([0.5, np.nan, 0.25]), 0.75, ["road", "sidewalk", "building"])
    lines = table.splitlines()
    assert lines[0] == "1 road  \t50.000%" and lines[2] == "3 building\t25.000%" and "nan" in lines[1]
    assert "mean_IU \t37.500%" in lines[3] and "mean_IU_no_back\t50.000%" in lines[3] and "75.000%" in lines[3]


def test_running_iou_is_the_original_seg_metrics():
    metric = RunningIoU(5)
    total = np.zeros((5, 5), np.int64)
    for seed in range(3):
        pred, label = random_case(seed)
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
        total += brute_force(pred, label, 5)
    inter = np.diag(total)
    union = total.sum(0) + total.sum(1) - inter
    assert metric.miou() == pytest.approx((inter[union > 0] / union[union > 0]).mean())
    metric.all_reduce()                                         # no process group: unchanged
    assert metric.get_scores() == pytest.approx((inter[union > 0] / union[union > 0]).mean())
    metric.reset()
    assert metric.miou() == 0.0


def test_all_reduce_is_identity_without_a_process_group():
    hist = np.arange(9).reshape(3, 3)
    assert all_reduce_hist(hist) is hist
