"""Dataset preparation: polygons -> label images, file lists, splitting and cleaning custom data.

Replaces the scripts around the original project (cityscapesscripts' ``createTrainIdLabelImgs.py`` as the
original README asks users to run, and the Gaussianer fork's ``dataset/createTrainIdLabelImgs.py``,
``create_mapping_lists.py``, ``pull_data_exchange.py`` split and ``clean_up_datasets.py``), without network
access and with clear errors. Three layouts are known:

- ``cityscapes``: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and ``gtFine/{split}/{city}/*_gtFine_polygons.json``;
  lists ``cityscapes_{train_fine,val_fine,test,train_val_fine}.txt``.
- ``custom`` (Gaussianer fork): ``original_images/{split}/*_raw.png`` and ``annotations/{split}/*_polygons.json``;
  lists ``{train,val,test,train_val}_mapping_list.txt``.
- ``camvid`` (SegNet layout): ``{split}/*.png`` and ``{split}annot/*.png``; lists ``camvid_{split}.txt``.

All polygon files are checked before any label image is written, and every file is written atomically, so a
bad annotation never leaves a half-converted dataset or destroys earlier outputs.
"""
import glob
import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from tools.data.errors import DataError, DataFileNotFoundError
from tools.data.fileio import write_text
from tools.data.labels import cityscapes_labels

SPLITS = ("train", "val", "test")
LIST_NAMES = {
    "cityscapes": {"train": "cityscapes_train_fine.txt", "val": "cityscapes_val_fine.txt",
                   "test": "cityscapes_test.txt", "train_val": "cityscapes_train_val_fine.txt"},
    "custom": {"train": "train_mapping_list.txt", "val": "val_mapping_list.txt", "test": "test_mapping_list.txt",
               "train_val": "train_val_mapping_list.txt"},
    "camvid": {"train": "camvid_train.txt", "val": "camvid_val.txt", "test": "camvid_test.txt",
               "train_val": "camvid_train_val.txt"},
}
GENERATED_SUFFIXES = ("_labelTrainIds.png", "_labelIds.png", "_instanceIds.png", "_color.png")
ENCODING_SUFFIX = {"trainIds": "_labelTrainIds.png", "ids": "_labelIds.png", "instanceIds": "_instanceIds.png"}


def _check_layout(layout):
    if layout not in LIST_NAMES:
        raise ValueError(f"layout '{layout}' is unknown; use one of {sorted(LIST_NAMES)}.")


def find_polygon_files(root, layout="cityscapes"):
    """All ``*_polygons.json`` of a dataset root, sorted (gtFine then gtCoarse for Cityscapes)."""
    _check_layout(layout)
    if not os.path.isdir(root):
        raise DataFileNotFoundError(f"dataset root '{root}' does not exist; pass the folder that holds "
                                    f"{'gtFine/' if layout == 'cityscapes' else 'annotations/'}.")
    if layout == "cityscapes":
        patterns = [os.path.join(root, gt, "*", "*", "*_gt*_polygons.json") for gt in ("gtFine", "gtCoarse")]
    elif layout == "custom":
        patterns = [os.path.join(root, "annotations", "*", "*_polygons.json")]
    else:
        raise ValueError("CamVid ships label images, not polygons; there is nothing to convert.")
    files = []
    for pattern in patterns:
        files += sorted(glob.glob(pattern))
    if not files:
        raise DataFileNotFoundError(f"no *_polygons.json found under {root} ({', '.join(patterns)}); check the "
                                    f"dataset root and layout.")
    return files


def load_polygons(path, label_set):
    """Parse one Cityscapes polygon JSON and check every label name; one sentence per problem."""
    try:
        with open(path) as f:
            annotation = json.load(f)
        width, height = int(annotation["imgWidth"]), int(annotation["imgHeight"])
        objects = annotation["objects"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"polygon file {path} is not a valid Cityscapes annotation ({type(exc).__name__}: {exc}); "
                        f"it needs imgWidth, imgHeight and objects.")
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict) or "label" not in obj or "polygon" not in obj:
            raise DataError(f"polygon file {path} object {index} lacks 'label' or 'polygon'.")
        if obj.get("deleted"):
            continue
        if not label_set.knows(obj["label"]):
            raise DataError(f"polygon file {path} object {index} has the unknown label '{obj['label']}'; add it to "
                            f"the labels file ({label_set.source}) or fix the annotation.")
    return width, height, objects


def draw_label_image(width, height, objects, label_set, encoding):
    """The label image json2labelImg would draw, for any label set (PIL polygons, in file order)."""
    background = label_set.background_label_id if encoding == "ids" else label_set.background_train_id
    image = Image.new("L", (width, height), background)
    drawer = ImageDraw.Draw(image)
    for obj in objects:
        if obj.get("deleted"):
            continue
        value = label_set.polygon_value(obj["label"], encoding)
        if value is not None:
            drawer.polygon([tuple(p) for p in obj["polygon"]], fill=value)
    return image


def _cityscapes_image(path, encoding):
    """cityscapesscripts' own converters (json2labelImg / json2instanceImg) for the Cityscapes label set."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage
    annotation = Annotation()
    annotation.fromJsonFile(path)
    if encoding == "instanceIds":
        return createInstanceImage(annotation, "ids")
    return createLabelImage(annotation, encoding)


def _save_image_atomic(image, path):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def label_output_path(json_path, encoding):
    return json_path[:-len("_polygons.json")] + ENCODING_SUFFIX[encoding]


def create_label_images(root, layout="cityscapes", label_set=None, encodings=None, progress=True):
    """Write ``*_labelTrainIds.png`` (+ ``*_labelIds.png``, and ``*_instanceIds.png`` for Cityscapes classes).

    With the Cityscapes classes (default) the images come from cityscapesscripts' converters; with a custom
    label set the same PIL drawing is done with its names -> ids. Returns the list of written files.
    """
    files = find_polygon_files(root, layout)
    cityscapes = label_set is None
    label_set = cityscapes_labels() if cityscapes else label_set
    if encodings is None:
        encodings = ("trainIds", "ids", "instanceIds") if cityscapes else ("trainIds", "ids")
    if "instanceIds" in encodings and not cityscapes:
        raise ValueError("instanceIds images need the Cityscapes classes (cityscapesscripts' json2instanceImg).")
    parsed = [load_polygons(path, label_set) for path in files]
    written = []
    for path, (width, height, objects) in tqdm(list(zip(files, parsed)), desc="label images", disable=not progress):
        for encoding in encodings:
            if cityscapes:
                image = _cityscapes_image(path, encoding)
            else:
                image = draw_label_image(width, height, objects, label_set, encoding)
            out = label_output_path(path, encoding)
            _save_image_atomic(image, out)
            written.append(out)
    return written


def _pairs_cityscapes(root, split):
    images = sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
    pairs = []
    for image in images:
        rel = os.path.relpath(image, root)
        city = os.path.basename(os.path.dirname(image))
        stem = os.path.basename(image)[:-len("_leftImg8bit.png")]
        pairs.append((rel, os.path.join("gtFine", split, city, stem + "_gtFine_labelTrainIds.png")))
    return pairs


def _pairs_custom(root, split):
    images = sorted(glob.glob(os.path.join(root, "original_images", split, "*_raw.png")))
    return [(os.path.relpath(image, root),
             os.path.join("annotations", split, os.path.basename(image)[:-len("_raw.png")] + "_labelTrainIds.png"))
            for image in images]


def _pairs_camvid(root, split):
    images = sorted(glob.glob(os.path.join(root, split, "*.png")))
    return [(os.path.relpath(image, root), os.path.join(split + "annot", os.path.basename(image))) for image in images]


PAIR_FINDERS = {"cityscapes": _pairs_cityscapes, "custom": _pairs_custom, "camvid": _pairs_camvid}


def create_mapping_lists(root, layout="cityscapes", out_dir=None, names=None):
    """Write the original's "image label" lists (paths relative to ``root``) for train, val, test, train+val.

    A train or val image without its label is an error (run createTrainIdLabelImgs first); a test image
    without a label gets an image-only line. Splits without images get no list. Returns ``{split: path}``.
    """
    _check_layout(layout)
    if not os.path.isdir(root):
        raise DataFileNotFoundError(f"dataset root '{root}' does not exist.")
    names = dict(LIST_NAMES[layout], **(names or {}))
    out_dir = root if out_dir is None else out_dir
    lines = {}
    for split in SPLITS:
        pairs = PAIR_FINDERS[layout](root, split)
        split_lines = []
        for image, label in pairs:
            if os.path.isfile(os.path.join(root, label)):
                split_lines.append(f"{image} {label}")
            elif split == "test":
                split_lines.append(image)
            else:
                raise DataFileNotFoundError(f"label {os.path.join(root, label)} for image {image} does not exist; "
                                            f"run dataset/createTrainIdLabelImgs.py first.")
        if split_lines:
            lines[split] = split_lines
    if not lines:
        raise DataFileNotFoundError(f"no images found under {root} for the {layout} layout; check the root folder.")
    if "train" in lines and "val" in lines:
        lines["train_val"] = lines["train"] + lines["val"]
    written = {}
    for split, split_lines in lines.items():
        path = os.path.join(out_dir, names[split])
        write_text(path, "\n".join(split_lines) + "\n")
        written[split] = path
    return written


def split_dataset(source_dir, root, ratios=(0.6, 0.2, 0.2), seed=None, move=False,
                  image_suffix="_raw.png", annotation_suffix="_polygons.json"):
    """Split a flat folder of ``*_raw.png`` + ``*_polygons.json`` pairs into the custom layout by ratio.

    Deterministic: pairs are sorted by name and, when ``seed`` is given, shuffled with that seed; the first
    ``round(N*r_train)`` go to train, the next ``round(N*r_val)`` to val, the rest to test. Files are copied
    (``move=False``, the default, never loses the source). Returns ``{split: [stems]}``.
    """
    if not os.path.isdir(source_dir):
        raise DataFileNotFoundError(f"source folder '{source_dir}' does not exist.")
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"ratios {ratios} must be three non-negative numbers summing to 1 (train, val, test).")
    stems = _matched_stems(source_dir, image_suffix, annotation_suffix)
    if seed is not None:
        stems = [stems[i] for i in np.random.default_rng(seed).permutation(len(stems))]
    n_train = int(round(len(stems) * ratios[0]))
    n_val = min(int(round(len(stems) * ratios[1])), len(stems) - n_train)
    assignment = {"train": stems[:n_train], "val": stems[n_train:n_train + n_val], "test": stems[n_train + n_val:]}
    transfer = shutil.move if move else _copy_atomic
    for split, split_stems in assignment.items():
        for stem in split_stems:
            for folder, suffix in (("original_images", image_suffix), ("annotations", annotation_suffix)):
                dst_dir = os.path.join(root, folder, split)
                os.makedirs(dst_dir, exist_ok=True)
                transfer(os.path.join(source_dir, stem + suffix), os.path.join(dst_dir, stem + suffix))
    return assignment


def _matched_stems(source_dir, image_suffix, annotation_suffix):
    images = {f[:-len(image_suffix)] for f in os.listdir(source_dir) if f.endswith(image_suffix)}
    annotations = {f[:-len(annotation_suffix)] for f in os.listdir(source_dir) if f.endswith(annotation_suffix)}
    lonely = sorted(images ^ annotations)
    if lonely:
        stem = lonely[0]
        missing = annotation_suffix if stem in images else image_suffix
        raise DataFileNotFoundError(f"{os.path.join(source_dir, stem + missing)} is missing ({len(lonely)} unmatched "
                                    f"file(s)); every image needs its annotation and vice versa.")
    if not images:
        raise DataFileNotFoundError(f"no *{image_suffix} / *{annotation_suffix} pairs in {source_dir}.")
    return sorted(images)


def _copy_atomic(src, dst):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def clean_up_dataset(root, layout="cityscapes", remove_splits=False, dry_run=False):
    """Remove generated label images and file lists; with ``remove_splits`` (custom layout) also the split
    copies made by :func:`split_dataset`. Sources (images, polygons) are otherwise never touched."""
    _check_layout(layout)
    label_dir = {"cityscapes": "gtFine", "custom": "annotations", "camvid": None}[layout]
    targets = []
    if label_dir is not None:
        for suffix in GENERATED_SUFFIXES:
            targets += glob.glob(os.path.join(root, label_dir, "**", "*" + suffix), recursive=True)
    targets += [os.path.join(root, n) for n in LIST_NAMES[layout].values() if os.path.isfile(os.path.join(root, n))]
    if remove_splits:
        if layout != "custom":
            raise ValueError("remove_splits only applies to the custom layout made by split_dataset.")
        for folder in ("original_images", "annotations"):
            for split in SPLITS:
                targets += [p for p in glob.glob(os.path.join(root, folder, split, "*")) if os.path.isfile(p)]
    targets = sorted(set(targets))
    if not dry_run:
        for path in targets:
            os.remove(path)
    return targets


def options_from_config(config):
    """(root, layout, label_set) for the preparation scripts from config keys dataset_path, dataset, labels_file."""
    from tools.data.labels import load_labels_file
    layout = config.get("dataset", "cityscapes")
    _check_layout(layout)
    label_set = None
    if layout == "custom" and config.get("labels_file"):
        label_set = load_labels_file(config.labels_file)
    return config.dataset_path, layout, label_set
