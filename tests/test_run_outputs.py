"""The files of a training run folder people look at: metrics.jsonl (readable while the run goes), config.json,
the best weights beside the last, the per-class IoU table, the confusion picture and val overlays in TensorBoard."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.demo_helpers import make_small_demo
from tools.config import load_config
from tools.data.visualize import legend
from tools.engine import run as run_module
from tools.train import loop as train_loop
from tools.engine.run_outputs import append_metrics, read_metrics, write_validation_files


class RecordingWriter:
    """A SummaryWriter stand-in that keeps the tags of the images it is given."""

    def __init__(self):
        self.images = []

    def add_image(self, tag, image, step):
        self.images.append((tag, tuple(image.shape), step))

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    make_small_demo(str(root / "data"), counts={"train": 2, "val": 2, "test": 0})
    config = load_config("train_tiny", [f"dataset_path='{root / 'data'}'", f"output_root='{root / 'runs'}'",
                                        "plots=False", "down_sampling=1", "image_height=64", "image_width=128",
                                        "flops_input=[64, 128]", "nepochs=2", "niters_per_epoch=1", "val_interval=1",
                                        "mode='student'", "arch_idx=[1]"])
    seen, writer = [], RecordingWriter()
    original_loader = train_loop.epoch_loader

    def spying_loader(dataset, config, info, batch, epoch):
        run_dir = max((str(p) for p in (root / "runs").iterdir()), key=os.path.getmtime)
        seen.append([record["epoch"] for record in read_metrics(run_dir)])
        return original_loader(dataset, config, info, batch, epoch)

    patch = pytest.MonkeyPatch()
    patch.setattr(train_loop, "epoch_loader", spying_loader)
    patch.setattr(run_module, "summary_writer", lambda run_dir, rank=0: writer)
    try:
        summary = train_loop.run(config)
    finally:
        patch.undo()
    return summary, seen, writer


def test_run_folder_has_metrics_config_and_best_and_last_weights(two_epoch_run):
    summary, seen, _ = two_epoch_run
    folder = summary["run_dir"]
    assert seen == [[], [1]]                                  # epoch 1's record was there while epoch 2 trained
    records = read_metrics(folder)
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert record["lr"] > 0 and record["loss"] > 0 and set(record["val_mIoU"]) == {"student"}
        assert set(record["val_class_IoU"]["student"]) >= {"road", "sky", "car"}
    assert records[-1]["val_mIoU"]["student"] == pytest.approx(summary["val_mIoU"]["student"])
    config = json.load(open(os.path.join(folder, "config.json")))
    assert config["num_classes"] == 19 and config["nepochs"] == 2 and config["arch_idx"] == [1]
    last = torch.load(os.path.join(folder, "weights1.pt"), weights_only=True)
    best = torch.load(os.path.join(folder, "weights1_best.pt"), weights_only=True)
    assert last.keys() == best.keys()
    values = [r["val_mIoU"]["student"] for r in records]
    best_is_last = values[1] > values[0]
    assert all(torch.equal(last[k], best[k]) for k in last) == best_is_last
    assert f"best val mIoU so far ({max(values):.3f})" in open(os.path.join(folder, "log.txt")).read()


def test_validation_writes_the_iou_table_the_confusion_picture_and_overlays(two_epoch_run):
    summary, _, writer = two_epoch_run
    folder = summary["run_dir"]
    lines = open(os.path.join(folder, "val_student_iou.csv")).read().splitlines()
    assert lines[:2] == ["# epoch 2", "class,IoU"] and len(lines) == 2 + 19 + 1 and lines[-1].startswith("mean,")
    assert not os.path.exists(os.path.join(folder, "val_student_confusion.png"))         # plots=False
    tags = [(tag, shape, step) for tag, shape, step in writer.images if tag.startswith("val_student/")]
    assert len(tags) == 2 * 2 and all(shape[0] == 3 and shape[1] == 64 for _, shape, _ in tags)


def test_confusion_picture_with_plots(tmp_path):
    hist = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 0]])
    scores = {"hist": hist, "iou": np.array([0.8, 5 / 12, np.nan]), "mIoU": 0.6083}
    written = write_validation_files(str(tmp_path), "student", ["road", "sky", "car"], scores, 3)
    assert [os.path.basename(p) for p in written] == ["val_student_iou.csv", "val_student_confusion.png"]
    assert open(written[0]).read() == "# epoch 3\nclass,IoU\nroad,0.800000\nsky,0.416667\ncar,\nmean,0.608300\n"
    assert min(Image.open(written[1]).size) > 150


def test_metrics_of_a_rerun_epoch_replace_the_old_record(tmp_path):
    append_metrics(str(tmp_path), {"epoch": 1, "loss": 2.0})
    append_metrics(str(tmp_path), {"epoch": 2, "loss": float("nan"), "iou": np.float32(0.5)})
    append_metrics(str(tmp_path), {"epoch": 2, "loss": 1.0})
    assert read_metrics(str(tmp_path)) == [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]
    append_metrics(str(tmp_path), {"epoch": 1, "loss": 3.0, "iou": float("nan")})
    assert read_metrics(str(tmp_path)) == [{"epoch": 1, "loss": 3.0, "iou": None}]


def test_legend_lists_every_class_in_its_colour():
    image = legend(["road", "sky", "car"], [[128, 64, 128], [70, 130, 180], [0, 0, 142]])
    assert image.shape[0] == 3 * 24 + 8 and image.dtype == np.uint8
    for row, colour in enumerate([[128, 64, 128], [70, 130, 180], [0, 0, 142]]):
        assert image[4 + row * 24 + 12, 20].tolist() == colour
