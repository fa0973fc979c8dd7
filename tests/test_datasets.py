"""tools/data/datasets.py: list-file datasets, portion/index_select/file_length, bad input."""
import os

import cv2
import numpy as np
import pytest
import torch

from demo_helpers import make_small_demo, small_config
from tools.data.datasets import (BaseDataset, CamVid, Cityscapes, CustomDataset, dataset_from_config,
                                 read_file_list, select_entries)
from tools.data.errors import DataError, DataFileNotFoundError
from tools.utils.fileio import write_png
from tools.data.labels import cityscapes_labels


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return make_small_demo(str(root))


def write_pair(root, name, size=(64, 128), label_value=1, image_size=None):
    img = np.full(tuple(image_size or size) + (3,), 100, np.uint8)
    img[..., 0] = 10                                               # R=10 lets the test see the BGR->RGB flip
    write_png(os.path.join(root, name + ".png"), img)
    write_png(os.path.join(root, name + "_gt.png"), np.full(size, label_value, np.uint8))
    return f"{name}.png {name}_gt.png"


def write_list(root, lines, name="list.txt"):
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_val_item_is_rgb_numpy_with_label_and_names(demo):
    ds = Cityscapes(demo.img_root_folder, demo.gt_root_folder, demo.eval_source, "val")
    assert len(ds) == ds.get_length() == 4
    item = ds[0]
    assert item["data"].shape == (64, 128, 3) and item["data"].dtype == np.uint8
    assert item["label"].shape == (64, 128) and item["label"].dtype == np.uint8
    assert item["fn"] == "frankfurt_000000_000019_gtFine_labelTrainIds"
    assert item["img_fn"] == "frankfurt_000000_000019_leftImg8bit" and item["n"] == 4
    bgr = cv2.imread(ds.file_pair(0)[0])
    np.testing.assert_array_equal(item["data"], bgr[:, :, ::-1])
    assert ds.get_class_names()[0] == "road" and len(ds.get_class_colors()) == 19


def test_down_sampling_int_and_pair(demo):
    ds2 = Cityscapes(demo.img_root_folder, demo.gt_root_folder, demo.eval_source, "val", down_sampling=2)
    full = Cityscapes(demo.img_root_folder, demo.gt_root_folder, demo.eval_source, "val")
    item, ref = ds2[1], full[1]
    assert item["data"].shape == (32, 64, 3) and item["label"].shape == (32, 64)
    np.testing.assert_array_equal(item["label"], cv2.resize(ref["label"], (64, 32), interpolation=cv2.INTER_NEAREST))
    pair = Cityscapes(demo.img_root_folder, demo.gt_root_folder, demo.eval_source, "val", down_sampling=(16, 48))
    assert pair[0]["data"].shape == (16, 48, 3) and pair[0]["label"].shape == (16, 48)


def test_train_item_with_preprocess_is_tensors(demo):
    def preprocess(img, gt):
        return img.transpose(2, 0, 1).astype(np.float32), gt, {"aux_label": gt}
    ds = Cityscapes(demo.img_root_folder, demo.gt_root_folder, demo.train_source, "train", preprocess=preprocess)
    item = ds[0]
    assert item["data"].dtype == torch.float32 and item["data"].shape == (3, 64, 128)
    assert item["label"].dtype == torch.int64 and "aux_label" in item


def test_portion_halves_are_disjoint_and_cover_the_list(demo):
    entries = read_file_list(demo.train_source)
    first = select_entries(entries, portion=0.5)
    second = select_entries(entries, portion=-0.5)
    assert [e[0] for e in first + second] == [e[0] for e in entries]
    perm = [3, 1, 0, 2]
    shuffled = select_entries(entries, index_select=perm, portion=0.5)
    assert [e[0] for e in shuffled] == [entries[3][0], entries[1][0]]
    with pytest.raises(DataError, match="leaves no images"):
        select_entries(entries[:1], portion=0.5, source="list.txt")
    with pytest.raises(DataError, match="index_select"):
        select_entries(entries, index_select=[0, 9])


def test_file_length_repeats_the_list_reproducibly(demo):
    make = lambda seed: Cityscapes(demo.img_root_folder, demo.gt_root_folder, demo.train_source, "train",  # noqa
                                   file_length=10, seed=seed)
    ds = make(0)
    assert len(ds) == 10
    names = [ds.file_pair(i)[0] for i in range(10)]
    base = [ds.file_pair(i)[0] for i in range(4)]
    assert names[:8] == base * 2 and len(set(names[8:])) == 2 and set(names[8:]) <= set(base)
    assert [make(0).file_pair(i)[0] for i in range(10)] == names


def test_dataset_from_config_picks_the_split_list_and_checks_num_classes(demo):
    assert len(dataset_from_config(demo, "val")) == 4
    assert len(dataset_from_config(demo, "train", test=True)) == 8          # train + val list
    assert len(dataset_from_config(demo, "test")) == 2
    with pytest.raises(DataError, match="num_classes=19"):
        dataset_from_config(small_config(demo.dataset_path, num_classes=11), "val")
    with pytest.raises(ValueError, match="dataset"):
        dataset_from_config(small_config(demo.dataset_path, dataset="voc"), "val")


def test_test_list_may_hold_images_only(tmp_path):
    line = write_pair(str(tmp_path), "a")
    path = write_list(str(tmp_path), [line.split()[0]])
    ds = Cityscapes(str(tmp_path), str(tmp_path), path, "test")
    item = ds[0]
    assert item["label"] is None and item["fn"] == "a" and item["data"].shape == (64, 128, 3)
    with pytest.raises(DataError, match="malformed"):
        Cityscapes(str(tmp_path), str(tmp_path), path, "val")


def test_camvid_void_becomes_ignore(tmp_path):
    line = write_pair(str(tmp_path), "c", label_value=11)
    ds = CamVid(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [line]), "val")
    assert (ds[0]["label"] == 255).all()


def test_custom_dataset_reads_its_classes_from_the_labels_file(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("name,trainId,color_r,color_g,color_b\nbg,0,0,0,0\nthing,1,255,0,0\n")
    line = write_pair(str(tmp_path), "d", label_value=1)
    ds = CustomDataset(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [line]), "val",
                       labels_file=str(labels))
    assert ds.num_classes == 2 and ds.get_class_names() == ["bg", "thing"]
    bad = write_pair(str(tmp_path), "e", label_value=2)
    ds_bad = CustomDataset(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [bad], "bad.txt"), "val",
                           labels_file=str(labels))
    with pytest.raises(DataError, match=r"e_gt.png holds values \[2\] outside 0..1"):
        ds_bad[0]


# ---------------------------------------------------------------- bad input: one clear sentence each
def test_missing_list_file(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="create_mapping_lists"):
        read_file_list(str(tmp_path / "nope.txt"))


def test_missing_image_names_the_list_line(tmp_path):
    lines = [write_pair(str(tmp_path), "a"), "missing.png a_gt.png"]
    path = write_list(str(tmp_path), lines)
    with pytest.raises(DataFileNotFoundError, match=r"list.txt line 2 names .*missing.png"):
        Cityscapes(str(tmp_path), str(tmp_path), path, "val")


def test_missing_label_names_the_list_line(tmp_path):
    path = write_list(str(tmp_path), ["a.png nolabel.png"])
    write_pair(str(tmp_path), "a")
    with pytest.raises(DataFileNotFoundError, match=r"line 1 names .*nolabel.png"):
        Cityscapes(str(tmp_path), str(tmp_path), path, "train")


@pytest.mark.parametrize("lines, match", [
    (["", "x"], "line 1 is empty"),
    (["a.png a_gt.png", "   ", "a.png a_gt.png"], "line 2 is empty"),
    (["a.png"], "line 1 is malformed"),
    (["a.png a_gt.png extra"], "line 1 is malformed"),
])
def test_empty_or_malformed_list_lines(tmp_path, lines, match):
    write_pair(str(tmp_path), "a")
    with pytest.raises(DataError, match=match):
        Cityscapes(str(tmp_path), str(tmp_path), write_list(str(tmp_path), lines), "val")


def test_empty_list(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_file_list(str(path))


def test_corrupt_image(tmp_path):
    line = write_pair(str(tmp_path), "a")
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = Cityscapes(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [line]), "val")
    with pytest.raises(DataError, match=r"image .*a.png cannot be read"):
        ds[0]


def test_corrupt_or_colour_label(tmp_path):
    line = write_pair(str(tmp_path), "a")
    path = write_list(str(tmp_path), [line])
    write_png(str(tmp_path / "a_gt.png"), np.zeros((64, 128, 3), np.uint8))
    with pytest.raises(DataError, match="3 channels"):
        Cityscapes(str(tmp_path), str(tmp_path), path, "val")[0]
    (tmp_path / "a_gt.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"label .*a_gt.png cannot be read"):
        Cityscapes(str(tmp_path), str(tmp_path), path, "val")[0]


def test_label_values_outside_the_classes(tmp_path):
    line = write_pair(str(tmp_path), "a", label_value=19)
    ds = Cityscapes(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [line]), "val")
    with pytest.raises(DataError, match=r"a_gt.png holds values \[19\] outside 0..18 and the ignore value 255"):
        ds[0]
    ok = write_pair(str(tmp_path), "b", label_value=255)
    assert (Cityscapes(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [ok], "ok.txt"), "val")[0]["label"]
            == 255).all()


def test_image_and_label_of_different_size(tmp_path):
    line = write_pair(str(tmp_path), "a", size=(64, 128), image_size=(64, 96))
    ds = Cityscapes(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [line]), "val")
    with pytest.raises(DataError, match=r"is 64x96 but its label .*a_gt.png is 64x128"):
        ds[0]


def test_base_dataset_without_classes_skips_the_value_check(tmp_path):
    line = write_pair(str(tmp_path), "a", label_value=40)
    ds = BaseDataset(str(tmp_path), str(tmp_path), write_list(str(tmp_path), [line]), "val")
    assert ds.num_classes is None and (ds[0]["label"] == 40).all()
    assert Cityscapes.label_set.num_classes == cityscapes_labels().num_classes


def test_custom_dataset_from_config_with_one_labels_file_key(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("name,trainId,color_r,color_g,color_b\nbg,0,0,0,0\nthing,1,255,0,0\nmore,2,0,255,0\n")
    line = write_pair(str(tmp_path), "a", label_value=2)
    write_list(str(tmp_path), [line], "val.txt")
    config = small_config(str(tmp_path), dataset="custom", labels_file=str(labels), num_classes=3,
                          eval_source=str(tmp_path / "val.txt"))
    ds = dataset_from_config(config, "val")
    assert isinstance(ds, CustomDataset) and ds.get_class_names() == ["bg", "thing", "more"]
    with pytest.raises(DataError, match="set num_classes=3"):
        dataset_from_config(small_config(str(tmp_path), dataset="custom", labels_file=str(labels),
                                         eval_source=str(tmp_path / "val.txt")), "val")
    with pytest.raises(DataFileNotFoundError, match="labels_file"):
        dataset_from_config(small_config(str(tmp_path), dataset="custom", num_classes=3), "val")


# ---------------------------------------------------------------- checked before any work (dataset_from_config)
def _one_pair_config(tmp_path, **overrides):
    line = write_pair(str(tmp_path), "a", **overrides.pop("pair", {}))
    write_list(str(tmp_path), [line], "val.txt")
    return small_config(str(tmp_path), eval_source=str(tmp_path / "val.txt"), train_source=str(tmp_path / "val.txt"),
                        **overrides)


def test_a_corrupt_image_is_refused_when_the_set_is_built(tmp_path):
    config = _one_pair_config(tmp_path)
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"image .*a.png cannot be read \(corrupt or not an image"):
        dataset_from_config(config, "val")


def test_sizes_and_label_channels_are_checked_when_the_set_is_built(tmp_path):
    config = _one_pair_config(tmp_path, pair=dict(size=(64, 128), image_size=(64, 96)))
    with pytest.raises(DataError, match=r"is 64x96 but its label .*a_gt.png is 64x128"):
        dataset_from_config(config, "val")
    write_pair(str(tmp_path), "a")
    write_png(str(tmp_path / "a_gt.png"), np.zeros((64, 128, 3), np.uint8))
    with pytest.raises(DataError, match="a_gt.png has 3 channels"):
        dataset_from_config(config, "val")


def test_a_too_small_image_is_one_sentence_not_a_cv2_error(tmp_path):
    config = _one_pair_config(tmp_path, pair=dict(size=(1, 1)), down_sampling=2)
    with pytest.raises(DataError, match=r"image .*a.png is 1x1: too small for down_sampling=2 and scale 1 \(it would "
                                        r"become 0x0 pixels\)"):
        dataset_from_config(config, "val")
    ds = Cityscapes(str(tmp_path), str(tmp_path), str(tmp_path / "val.txt"), "val", down_sampling=2)
    with pytest.raises(DataError, match=r"a.png is 1x1: too small for down_sampling=2"):
        ds[0]                                                  # also when read without the start check


def test_a_training_crop_larger_than_every_image_is_refused(tmp_path):
    from tools.data.transforms import TrainTransform
    config = _one_pair_config(tmp_path, image_height=128, image_width=256)      # images 64x128, scale <= 1.25
    preprocess = TrainTransform.from_config(config)
    with pytest.raises(DataError, match=r"training crop 128x256 .* larger than every image .* \(at most 80x160\)"):
        dataset_from_config(config, "train", preprocess=preprocess)
    config.update(image_height=64, image_width=160)
    assert len(dataset_from_config(config, "train", preprocess=TrainTransform.from_config(config))) == 1


def test_a_palette_label_is_read_as_its_indices(tmp_path):
    from PIL import Image
    config = _one_pair_config(tmp_path)
    indices = np.zeros((64, 128), np.uint8)
    indices[:, 64:] = 13
    palette = Image.fromarray(indices)
    palette.putpalette([0, 0, 0] * 13 + [0, 0, 142] + [0, 0, 0] * 242)
    palette.save(tmp_path / "a_gt.png")
    assert Image.open(tmp_path / "a_gt.png").mode == "P"
    label = dataset_from_config(config, "val")[0]["label"]
    assert label.shape == (64, 128) and set(np.unique(label)) == {0, 13}


# ---------------------------------------------------------------- damaged files and label values
def _cut(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[:int(len(data) * keep)])


def _noisy_jpeg(path, size=(64, 128)):
    """A JPEG large enough that half of it still decodes (libjpeg then only warns)."""
    rng = np.random.default_rng(0)
    assert cv2.imwrite(path, rng.integers(0, 255, size + (3,), dtype=np.uint8))


def test_a_truncated_jpeg_is_refused_where_cv2_would_decode_it_grey(tmp_path):
    """cv2 decodes a JPEG cut in half (grey bottom, a warning on stderr): the set refuses it by name, both when it
    is built (before any work) and when an item is read."""
    config = _one_pair_config(tmp_path)
    jpeg = str(tmp_path / "a.jpg")
    _noisy_jpeg(jpeg)
    (tmp_path / "val.txt").write_text("a.jpg a_gt.png\n")
    dataset = dataset_from_config(config, "val")
    _cut(jpeg)
    assert cv2.imread(jpeg) is not None                         # the silent case this guards against
    with pytest.raises(DataError, match=r"image .*a.jpg cannot be read \(it is cut short"):
        dataset_from_config(config, "val")
    with pytest.raises(DataError, match=r"image .*a.jpg cannot be read \(it is cut short"):
        dataset[0]


def test_a_truncated_png_label_is_refused_when_the_set_is_built(tmp_path):
    config = _one_pair_config(tmp_path)
    _cut(str(tmp_path / "a_gt.png"), keep=0.8)
    with pytest.raises(DataError, match=r"label .*a_gt.png cannot be read \(it is cut short"):
        dataset_from_config(config, "val")


def test_a_label_value_outside_the_classes_is_found_when_the_set_is_built(tmp_path):
    """Every label of a list is decoded when its set is built (before the first training step), not when the
    loader reaches it; the same pass counts each class's pixels."""
    config = _one_pair_config(tmp_path)
    dataset = dataset_from_config(config, "val")
    expected = np.zeros(config.num_classes, np.int64)
    expected[1] = 64 * 128
    assert np.array_equal(dataset.class_pixels, expected)
    write_pair(str(tmp_path), "a", label_value=19)
    with pytest.raises(DataError, match=r"a_gt.png holds values \[19\] outside 0..18"):
        dataset_from_config(config, "val")
