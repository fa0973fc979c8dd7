"""Segmentation metrics from one confusion matrix: per-class IoU, mIoU, pixel accuracy, the IoU table.

The single place where the project builds confusion matrices (the evaluator, the tester's checks and the
training loop's running mIoU use it). Replaces the original ``tools/seg_opr/metric.py`` (``hist_info``,
``compute_score``), ``train/seg_metrics.py`` (``Seg_Metrics``, histogram based) and the table of
``tools/utils/visualize.py::print_iou``.

Conventions, as the original and the official Cityscapes evaluator: rows are ground truth, columns are
predictions; pixels whose label is not a class (the ignore value 255) are left out; a class absent from both
label and prediction has IoU NaN and is left out of the mean.
"""
import numpy as np
import torch
import torch.distributed as dist


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """``C x C`` int64 counts from one bincount; numpy in -> numpy out, torch in -> torch out (same device).

    Label values outside ``0..C-1`` (the ignore value) are left out; a prediction outside ``0..C-1`` on a
    counted pixel is an error, since it would silently land in another cell.
    """
    if isinstance(pred, torch.Tensor) or isinstance(label, torch.Tensor):
        return _confusion_matrix_torch(torch.as_tensor(pred), torch.as_tensor(label), num_classes)
    pred, label = np.asarray(pred), np.asarray(label)
    _check_shapes(pred, label)
    valid = (label >= 0) & (label < num_classes)
    gt, pr = label[valid].astype(np.int64), pred[valid].astype(np.int64)
    if pr.size and (pr.min() < 0 or pr.max() >= num_classes):
        raise ValueError(f"predictions must lie in 0..{num_classes - 1}, got {pr.min()}..{pr.max()}.")
    return np.bincount(num_classes * gt + pr, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _confusion_matrix_torch(pred, label, num_classes):
    _check_shapes(pred, label)
    label = label.to(pred.device)
    valid = (label >= 0) & (label < num_classes)
    gt, pr = label[valid].long(), pred[valid].long()
    if pr.numel() and (int(pr.min()) < 0 or int(pr.max()) >= num_classes):
        raise ValueError(f"predictions must lie in 0..{num_classes - 1}, got {int(pr.min())}..{int(pr.max())}.")
    return torch.bincount(num_classes * gt + pr, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _check_shapes(pred, label):
    if tuple(pred.shape) != tuple(label.shape):
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}.")


def hist_info(n_cl, pred, gt):
    """The original's ``(hist, labeled, correct)`` for one image."""
    hist = confusion_matrix(pred, gt, n_cl)
    return hist, int(hist.sum()), int(np.trace(np.asarray(hist)))


def _as_numpy(hist):
    return hist.detach().cpu().numpy() if isinstance(hist, torch.Tensor) else np.asarray(hist)


def iou_per_class(hist):
    """TP / (TP + FP + FN) per class; NaN where the class is in neither label nor prediction."""
    hist = _as_numpy(hist).astype(np.float64)
    inter = np.diag(hist)
    union = hist.sum(0) + hist.sum(1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def mean_iou(hist):
    """Mean over the classes present in label or prediction (NaN if none), like the official evaluator."""
    iou = iou_per_class(hist)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(hist):
    hist = _as_numpy(hist)
    total = hist.sum()
    return float(np.trace(hist) / total) if total else float("nan")


def compute_score(hist, correct=None, labeled=None):
    """The original's ``(iu, mean_IU, mean_IU_no_back, mean_pixel_acc)``."""
    iu = iou_per_class(hist)
    hist = _as_numpy(hist)
    correct = np.trace(hist) if correct is None else correct
    labeled = hist.sum() if labeled is None else labeled
    with np.errstate(invalid="ignore", divide="ignore"):
        no_back = float(np.nanmean(iu[1:])) if np.isfinite(iu[1:]).any() else float("nan")
        acc = float(correct / labeled) if labeled else float("nan")
    return iu, mean_iou(hist), no_back, acc


def format_iou_table(iu, mean_pixel_acc, class_names=None):
    """The per-class table of the original ``print_iou`` (with the no-background mean over ``iu[:-1]``)."""
    lines = []
    for i, value in enumerate(iu):
        name = f"Class {i + 1}:" if class_names is None else f"{i + 1} {class_names[i]}"
        lines.append("%-8s\t%.3f%%" % (name, value * 100))
    finite = np.isfinite(iu)
    mean = np.nanmean(iu) if finite.any() else float("nan")
    no_back = np.nanmean(iu[:-1]) if finite[:-1].any() else float("nan")
    lines.append("----------------------------     %-8s\t%.3f%%\t%-8s\t%.3f%%\t%-8s\t%.3f%%" % (
        "mean_IU", mean * 100, "mean_IU_no_back", no_back * 100, "mean_pixel_ACC", mean_pixel_acc * 100))
    return "\n".join(lines)


def all_reduce_hist(hist, device=None):
    """Sum a confusion matrix over all processes when torch.distributed is initialised (identity otherwise)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return hist
    is_numpy = not isinstance(hist, torch.Tensor)
    tensor = torch.as_tensor(np.asarray(hist) if is_numpy else hist, dtype=torch.float64)
    if device is not None:
        tensor = tensor.to(device)
    dist.all_reduce(tensor)
    if is_numpy:
        return np.rint(tensor.cpu().numpy()).astype(np.int64)
    return tensor.to(hist.dtype)


class RunningIoU:
    """The training loop's running mIoU (the original ``Seg_Metrics``): a confusion matrix summed over an epoch,
    mean IoU over the classes with a non-empty union. ``update`` takes class maps (e.g. ``logits.argmax(1)``)."""

    def __init__(self, num_classes, ignore_label=255, device="cpu"):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.hist = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)

    def update(self, pred, target):
        self.hist += confusion_matrix(pred.to(self.hist.device), target.to(self.hist.device),
                                      self.num_classes).double()

    def all_reduce(self):
        self.hist = all_reduce_hist(self.hist)

    def reset(self):
        self.hist.zero_()

    def miou(self):
        value = mean_iou(self.hist)
        return 0.0 if np.isnan(value) else value

    get_scores = miou
