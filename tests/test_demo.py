"""tools/data/demo.py: the deterministic street-scene generator in the Cityscapes layout."""
import glob
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from PIL import Image, ImageDraw

from tools.data.demo import DEFAULT_COUNTS, DEFAULT_SIZE, Scene, flat, generate_demo_dataset, make_scene
from tools.data.labels import cityscapes_labels
from tools.data.prepare import create_label_images
from tools.engine.metrics import confusion_matrix, mean_iou

COUNTS = {"train": 6, "val": 2, "test": 1}


def digest(root):
    files = sorted(glob.glob(os.path.join(root, "**", "*.*"), recursive=True))
    return {os.path.relpath(f, root): hashlib.md5(open(f, "rb").read()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("demo"))
    generate_demo_dataset(root, seed=3, counts=COUNTS, size=(64, 128))
    return root


def test_defaults_are_small_and_multiples_of_32():
    assert DEFAULT_SIZE == (256, 512) and DEFAULT_COUNTS == {"train": 24, "val": 8, "test": 8}
    assert all(s % 64 == 0 for s in DEFAULT_SIZE)       # still a multiple of 32 after the search's down_sampling 2


def test_cityscapes_layout_and_names(demo):
    images = sorted(glob.glob(os.path.join(demo, "leftImg8bit", "*", "*", "*_leftImg8bit.png")))
    polygons = sorted(glob.glob(os.path.join(demo, "gtFine", "*", "*", "*_gtFine_polygons.json")))
    assert len(images) == len(polygons) == 9
    rel = [os.path.relpath(p, demo) for p in images]
    assert "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png" in rel
    assert "leftImg8bit/train/bochum/bochum_000001_000019_leftImg8bit.png" in rel
    assert "leftImg8bit/val/frankfurt/frankfurt_000001_000019_leftImg8bit.png" in rel
    assert "leftImg8bit/test/berlin/berlin_000000_000019_leftImg8bit.png" in rel
    for image, polygon in zip(sorted(rel), sorted(os.path.relpath(p, demo) for p in polygons)):
        assert image.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_polygons.json") == polygon
    assert cv2.imread(images[0]).shape == (64, 128, 3)


def test_polygons_use_cityscapes_label_names_only(demo):
    labels = cityscapes_labels()
    seen = set()
    for path in glob.glob(os.path.join(demo, "gtFine", "*", "*", "*.json")):
        annotation = json.load(open(path))
        assert (annotation["imgHeight"], annotation["imgWidth"]) == (64, 128)
        for obj in annotation["objects"]:
            assert labels.knows(obj["label"]) and len(obj["polygon"]) >= 3
            assert all(isinstance(v, int) for point in obj["polygon"] for v in point)
            seen.add(obj["label"])
    assert set(labels.names) <= seen                      # every class drawn somewhere (rare-class schedule)
    assert "ego vehicle" in seen                          # ignored region, as in Cityscapes


def test_generation_is_deterministic_and_independent_of_other_counts(demo, tmp_path):
    again = str(tmp_path / "again")
    generate_demo_dataset(again, seed=3, counts=COUNTS, size=(64, 128))
    assert digest(again) == digest(demo)
    fewer = str(tmp_path / "fewer")
    generate_demo_dataset(fewer, seed=3, counts={"train": 2}, size=(64, 128))
    first = digest(fewer)
    assert first and all(digest(demo)[k] == v for k, v in first.items())
    other = str(tmp_path / "other")
    generate_demo_dataset(other, seed=4, counts={"train": 1}, size=(64, 128))
    assert digest(other) != {k: digest(demo)[k] for k in digest(other)}


def test_image_regions_are_the_label_regions():
    """Repainting a scene's polygons with their train id as colour (through the same Region/mask code that
    paints the images) reproduces the label image PIL draws from the JSON polygons, pixel for pixel."""
    image, objects = make_scene(np.random.default_rng(0), 64, 128)
    assert image.dtype == np.uint8 and image.shape == (64, 128, 3)
    labels = cityscapes_labels()
    scene = Scene(np.random.default_rng(1), 64, 128)
    scene.image[:] = 255
    reference = Image.new("L", (128, 64), 255)
    draw = ImageDraw.Draw(reference)
    for obj in objects:
        value = labels.polygon_value(obj["label"], "trainIds")
        scene.objects.append((obj["label"], obj["polygon"], flat((value, value, value))))
        draw.polygon([tuple(p) for p in obj["polygon"]], fill=value)
    painted = scene.render()[:, :, 0]
    np.testing.assert_array_equal(painted, np.asarray(reference))
    assert (painted != 255).mean() > 0.9


def test_colour_alone_does_not_give_the_label(demo):
    """A colour lookup table (16^3 bins, majority label on train) scores a low mIoU on held-out images."""
    create_label_images(demo, progress=False)

    def pairs(split):
        for path in sorted(glob.glob(os.path.join(demo, "leftImg8bit", split, "*", "*.png"))):
            label = path.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
            yield cv2.imread(path)[:, :, ::-1], cv2.imread(label, cv2.IMREAD_GRAYSCALE)

    def code(img):
        return (img[..., 0] // 16).astype(np.int64) * 256 + (img[..., 1] // 16) * 16 + img[..., 2] // 16
    counts = np.zeros((4096, 19))
    for img, label in pairs("train"):
        keep = label < 19
        np.add.at(counts, (code(img)[keep], label[keep]), 1)
    lut = counts.argmax(1)
    hist = sum(confusion_matrix(lut[code(img)], label, 19) for img, label in pairs("val"))
    assert mean_iou(hist) < 0.3


def test_too_small_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        generate_demo_dataset(str(tmp_path), counts={"train": 1}, size=(16, 128))
