"""People's own data: an images + masks folder (JPEG images, palette PNG masks) and a LabelMe folder, each from
files to lists to a tiny training run through the dataset/ scripts; bad masks are one sentence."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from tools.config import load_config
from tools.data.errors import DataError, DataFileNotFoundError
from tools.utils.fileio import write_json
from tools.data.labels import load_labels_file
from tools.data.prepare import create_label_images, create_mapping_lists
from tools.train.loop import run

from tests.test_prepare import LABELS_CSV, run_script

TINY = ["plots=False", "down_sampling=1", "image_height=64", "image_width=128", "flops_input=[64, 128]", "nepochs=1",
        "niters_per_epoch=2", "mode='teacher'"]


def label_ids(seed):
    """A 64x128 mask of labels-file ids: unlabeled (0) top rows, ground (1), route (5) below, an obstacle (7)."""
    mask = np.ones((64, 128), np.uint8)
    mask[:4] = 0
    mask[32:] = 5
    mask[36 + seed:50, 20:40 + 4 * seed] = 7
    return mask


def photo(mask, seed):
    colours = {0: (0, 0, 0), 1: (90, 90, 90), 5: (128, 64, 128), 7: (220, 20, 60)}
    image = np.zeros(mask.shape + (3,), np.uint8)
    for value, colour in colours.items():
        image[mask == value] = colour
    return np.clip(image + np.random.default_rng(seed).normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def palette_mask(path, mask):
    image = Image.fromarray(mask)
    image.putpalette([0, 0, 0, 10, 10, 10] + [0, 0, 0] * 3 + [128, 64, 128, 0, 0, 0, 220, 20, 60] + [0] * 744)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)
    assert Image.open(path).mode == "P" and cv2.imread(path, cv2.IMREAD_UNCHANGED).ndim == 3   # cv2 sees colours


def write_jpeg(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, rgb[:, :, ::-1])


def masks_folder(root, splits=(("train", 2), ("val", 1))):
    for split, count in splits:
        for i in range(count):
            mask = label_ids(i)
            write_jpeg(os.path.join(root, "images", split, f"IMG-{split}{i}.jpg"), photo(mask, i))
            palette_mask(os.path.join(root, "masks", split, f"IMG-{split}{i}.png"), mask)
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write(LABELS_CSV)


def tiny_run(root, output):
    config = load_config("train_tiny", ["dataset='custom'", f"dataset_path='{root}'",
                                        f"labels_file='{os.path.join(root, 'labels.csv')}'",
                                        f"output_root='{output}'"] + TINY)
    assert config.num_classes == 3                             # from the labels file, no override
    return run(config)


@pytest.mark.slow
def test_images_and_masks_folder_with_jpeg_and_palette_masks_trains(tmp_path):
    root = str(tmp_path / "own")
    masks_folder(root)
    labels = os.path.join(root, "labels.csv")
    run_script("createTrainIdLabelImgs", ["--root", root, "--layout", "masks", "--labels-file", labels])
    train_ids = np.array(Image.open(os.path.join(root, "label_images", "train", "IMG-train0_labelTrainIds.png")))
    assert train_ids.ndim == 2 and train_ids[0, 0] == 255 and train_ids[10, 0] == 0 and train_ids[60, 0] == 1
    assert train_ids[40, 25] == 2                            # palette index 7 (obstacle) -> train id 2
    run_script("create_mapping_lists", ["--root", root, "--layout", "masks"])
    lines = open(os.path.join(root, "train_mapping_list.txt")).read().splitlines()
    assert lines == [f"images/train/IMG-train{i}.jpg label_images/train/IMG-train{i}_labelTrainIds.png"
                     for i in range(2)]
    summary = tiny_run(root, str(tmp_path / "runs"))
    assert 0.0 <= summary["val_mIoU"]["teacher"] <= 1.0
    assert "obstacle" in open(os.path.join(summary["run_dir"], "log.txt")).read()
    run_script("clean_up_datasets", ["--root", root, "--layout", "masks"])
    assert not os.listdir(os.path.join(root, "label_images", "train"))
    assert len(os.listdir(os.path.join(root, "masks", "train"))) == 2


def labelme_json(path, image_name, shapes):
    write_json(path, {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_name, "imageData": None,
                      "imageHeight": 64, "imageWidth": 128})


def shape(label, points, kind="polygon"):
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}


@pytest.mark.slow
def test_labelme_folder_split_by_the_project_trains(tmp_path):
    root = str(tmp_path / "labelme")
    for i in range(4):
        mask = label_ids(i)
        write_jpeg(os.path.join(root, f"frame_{i}.JPG"), photo(mask, i))
        labelme_json(os.path.join(root, f"frame_{i}.json"), f"frame_{i}.JPG",
                     [shape("ground", [[0, 4], [127, 4], [127, 31], [0, 31]]),
                      shape("route", [[0, 32], [127, 63]], "rectangle"),
                      shape("obstacle", [[30, 45], [30, 52]], "circle")])
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write(LABELS_CSV)
    run_script("createTrainIdLabelImgs", ["--root", root, "--layout", "labelme", "--labels-file",
                                          os.path.join(root, "labels.csv")])
    train_ids = np.array(Image.open(os.path.join(root, "label_images", "frame_0_labelTrainIds.png")))
    ids = np.array(Image.open(os.path.join(root, "label_images", "frame_0_labelIds.png")))
    assert train_ids[0, 0] == 255 and train_ids[10, 60] == 0 and train_ids[60, 100] == 1 and train_ids[45, 30] == 2
    assert train_ids[45, 39] == 1 and train_ids[45, 36] == 2               # circle of radius 7 around (30, 45)
    assert ids[10, 60] == 1 and ids[60, 100] == 5 and ids[45, 30] == 7
    run_script("create_mapping_lists", ["--root", root, "--layout", "labelme", "--ratios", "0.5", "0.5", "0",
                                        "--seed", "3"])
    train = open(os.path.join(root, "train_mapping_list.txt")).read().splitlines()
    val = open(os.path.join(root, "val_mapping_list.txt")).read().splitlines()
    assert len(train) == 2 and len(val) == 2 and not os.path.exists(os.path.join(root, "test_mapping_list.txt"))
    assert sorted(train + val) == [f"frame_{i}.JPG label_images/frame_{i}_labelTrainIds.png" for i in range(4)]
    again = create_mapping_lists(root, "labelme", ratios=(0.5, 0.5, 0), seed=3)
    assert open(again["train"]).read().splitlines() == train             # seeded: the same split again
    summary = tiny_run(root, str(tmp_path / "runs"))
    assert 0.0 <= summary["val_mIoU"]["teacher"] <= 1.0


def test_a_mask_value_outside_the_labels_file_is_one_sentence_and_nothing_is_written(tmp_path):
    root = str(tmp_path / "own")
    masks_folder(root)
    bad = label_ids(0)
    bad[0, 0] = 9
    palette_mask(os.path.join(root, "masks", "val", "IMG-val0.png"), bad)
    labels = load_labels_file(os.path.join(root, "labels.csv"))
    with pytest.raises(DataError) as error:
        create_label_images(root, "masks", labels)
    message = str(error.value)
    assert message.count(". ") == 0 and message.endswith(".")
    assert os.path.join(root, "masks", "val", "IMG-val0.png") in message and "value 9" in message
    assert os.path.join(root, "labels.csv") in message
    assert not os.path.exists(os.path.join(root, "label_images"))


def test_a_missing_mask_is_one_sentence(tmp_path):
    root = str(tmp_path / "own")
    masks_folder(root)
    os.remove(os.path.join(root, "masks", "train", "IMG-train1.png"))
    for call in (lambda: create_label_images(root, "masks", load_labels_file(os.path.join(root, "labels.csv"))),
                 lambda: create_mapping_lists(root, "masks")):
        with pytest.raises(DataFileNotFoundError) as error:
            call()
        message = str(error.value)
        assert message.startswith(f"mask {os.path.join(root, 'masks', 'train', 'IMG-train1.png')} for image ")
        assert message.count(". ") == 0 and message.endswith(".")


def test_masks_layout_needs_a_labels_file_and_refuses_spaces(tmp_path):
    root = str(tmp_path / "own")
    masks_folder(root, (("train", 1),))
    with pytest.raises(DataError, match="needs a labels file"):
        create_label_images(root, "masks")
    os.rename(os.path.join(root, "images", "train", "IMG-train0.jpg"), os.path.join(root, "images", "train", "a b.jpg"))
    os.rename(os.path.join(root, "masks", "train", "IMG-train0.png"), os.path.join(root, "masks", "train", "a b.png"))
    with pytest.raises(DataError, match="has a space in its path"):
        create_mapping_lists(root, "masks")


def test_labelme_shapes_without_area_and_unknown_labels_are_refused(tmp_path):
    write_jpeg(str(tmp_path / "a.jpg"), np.zeros((64, 128, 3), np.uint8))
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS_CSV)
    for shapes, match in (([shape("route", [[0, 0], [5, 5]], "line")], "is a line, which covers no area"),
                          ([shape("river", [[0, 0], [5, 0], [5, 5]])], "unknown label 'river'")):
        labelme_json(str(tmp_path / "a.json"), "a.jpg", shapes)
        with pytest.raises(DataError, match=match):
            create_label_images(str(tmp_path), "labelme", load_labels_file(str(labels)))
    labelme_json(str(tmp_path / "a.json"), "missing.jpg", [])
    os.remove(str(tmp_path / "a.jpg"))
    with pytest.raises(DataFileNotFoundError, match="imagePath 'missing.jpg'"):
        create_label_images(str(tmp_path), "labelme", load_labels_file(str(labels)))
