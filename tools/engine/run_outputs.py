"""The files of a run folder people look at while and after it runs (beyond the original's log.txt and weights).

* ``metrics.jsonl``: one JSON object per epoch (training: epoch, lr, loss, train/val mIoU per network and the
  val per-class IoU; search: epoch, lr, loss, the heads' val mIoU, FPS, latency weights). It is rewritten
  atomically after every epoch, so it can be read at any moment while the run goes; a resumed run replaces the
  records of the epochs it runs again.
* ``val_<network>_iou.csv`` and (with ``plots``) ``val_<network>_confusion.png``: the per-class IoU table and the
  row-normalised confusion matrix of the newest validation; the first val images with their predictions go to
  TensorBoard (tools/train/evaluation.py).
* ``weights{idx}_best.pt`` beside the original's ``weights{idx}.pt``: the weights of the epoch with the best val
  mIoU so far (the original kept only the last).
"""
import json
import math
import os

from tools.utils.fileio import copy_file, write_text

METRICS_NAME = "metrics.jsonl"


def plain(value):
    """JSON-able copy: numpy scalars as Python numbers, NaN/inf as None, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):                # numpy arrays and scalars, torch tensors
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(run_dir):
    """The records of ``run_dir/metrics.jsonl`` ([] when there is none)."""
    path = os.path.join(run_dir, METRICS_NAME)
    if not os.path.isfile(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def append_metrics(run_dir, record):
    """Add one epoch's record; records of that epoch or later (left by an interrupted attempt) are replaced."""
    kept = [r for r in read_metrics(run_dir) if r.get("epoch") is None or r["epoch"] < record["epoch"]]
    text = "".join(json.dumps(plain(r), sort_keys=True) + "\n" for r in kept + [record])
    return write_text(os.path.join(run_dir, METRICS_NAME), text)


def class_iou(names, iou):
    """``{class name: IoU}`` (None for a class in neither label nor prediction)."""
    return {name: plain(float(value)) for name, value in zip(names, iou)}


def write_validation_files(run_dir, name, names, scores, epoch, picture=True):
    """``val_<name>_iou.csv`` (class, IoU, the mean) and, with ``picture``, ``val_<name>_confusion.png``; returns
    the paths written."""
    rows = ["class,IoU"] + [f"{cls},{'' if value is None else f'{value:.6f}'}"
                            for cls, value in class_iou(names, scores["iou"]).items()]
    rows.append(f"mean,{scores['mIoU']:.6f}")
    table = os.path.join(run_dir, f"val_{name}_iou.csv")
    write_text(table, f"# epoch {epoch}\n" + "\n".join(rows) + "\n")
    if not picture:
        return [table]
    from tools.plots import plot_confusion, save_figure
    return [table, save_figure(plot_confusion(scores["hist"], names, f"{name}, epoch {epoch}"),
                               os.path.join(run_dir, f"val_{name}_confusion.png"))]


def best_value(history, key, network):
    """The best ``history[i][key][network]`` so far (None when none was recorded)."""
    values = [r[key][network] for r in history if isinstance(r.get(key), dict) and r[key].get(network) is not None]
    values = [v for v in values if not math.isnan(v)]
    return max(values) if values else None


def keep_best(source, target, value, previous_best):
    """Copy ``source`` (the newest weights) to ``target`` when ``value`` beats ``previous_best``; True if so."""
    if value is None or math.isnan(value) or (previous_best is not None and value <= previous_best):
        return False
    copy_file(source, target)
    return True
