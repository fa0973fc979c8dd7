"""Datasets that read "image label" file lists: the base class, Cityscapes, CamVid and a custom dataset.

Replaces the original ``tools/datasets/BaseDataset.py`` (+ ``cityscapes/``, ``camvid/``) with the same
behaviour: file lists of ``image_path label_path`` lines relative to ``img_root``/``gt_root``, ``down_sampling``
(an int divides the size, a pair is an explicit (height, width); images linear, labels nearest),
``index_select`` (applied first) and ``portion`` (``p > 0``: the first ``floor(p*N)`` lines, ``p < 0``: the lines
from ``floor((1+p)*N)`` on; the search uses 0.5 and -0.5 for two disjoint halves), and ``file_length`` that
repeats the list to a fixed number of items per epoch. Items are dicts ``data, label, fn, n`` as in the
original (``data`` RGB; tensors for the train split when a preprocess is given), plus ``img_fn`` (the image's
file name, used to name submission files).

Differences (docs/differences.md): bad data raises one clear sentence instead of asserts or ``NoneType``
errors; lists are not shuffled when read (the loader shuffles) and the repeated list for ``file_length`` is
drawn once with a seeded generator instead of on every ``__getitem__``.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.utils.data as data
from PIL import Image

from tools.data.errors import DataError, DataFileNotFoundError
from tools.data.labels import IGNORE_INDEX, camvid_labels, cityscapes_labels, load_labels_file
from tools.utils.image_files import decode_file, file_problem

cv2.setNumThreads(0)

SPLITS = ("train", "val", "test")


def read_file_list(path, require_label=True):
    """Parse a list file into ``[(image, label_or_None, line_number), ...]``; every line must be well formed."""
    if not os.path.isfile(path):
        raise DataFileNotFoundError(f"file list '{path}' does not exist; create it with "
                                    f"dataset/create_mapping_lists.py or fix the config's *_source key.")
    entries = []
    with open(path) as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            raise DataError(f"{path} line {number} is empty; every line must read 'image_path label_path'.")
        if len(parts) > 2 or (require_label and len(parts) != 2):
            raise DataError(f"{path} line {number} is malformed ('{line.strip()}'); expected exactly "
                            f"'image_path label_path' separated by a space.")
        entries.append((parts[0], parts[1] if len(parts) == 2 else None, number))
    if not entries:
        raise DataError(f"file list {path} is empty; it needs one 'image_path label_path' line per image.")
    return entries


def select_entries(entries, index_select=None, portion=None, source=""):
    """Apply ``index_select`` then ``portion`` exactly as the original ``_get_file_names``."""
    if index_select is not None:
        index_select = np.asarray(index_select, dtype=np.int64)
        if index_select.size and (index_select.min() < 0 or index_select.max() >= len(entries)):
            raise DataError(f"index_select for {source} holds indices outside 0..{len(entries) - 1}; build it "
                            f"from the list's own length.")
        entries = [entries[i] for i in index_select]
    if portion is not None:
        num = len(entries)
        if portion > 0:
            entries = entries[:int(np.floor(portion * num))]
        elif portion < 0:
            entries = entries[int(np.floor((1 + portion) * num)):]
        if not entries:
            raise DataError(f"portion {portion} of {source} ({num} images) leaves no images; add images to the "
                            f"list or change the portion.")
    return entries


def resize_for_down_sampling(img, down_sampling, nearest, path="image"):
    """The original ``_open_image`` resize: int -> size // d, (h, w) -> that size."""
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    if isinstance(down_sampling, (int, np.integer)):
        if down_sampling == 1:
            return img
        h, w = img.shape[:2]
        if h // down_sampling < 1 or w // down_sampling < 1:
            raise DataError(f"{path} is {h}x{w}: too small for down_sampling={down_sampling} (it would have no "
                            f"pixels left); remove it from the list or lower down_sampling.")
        return cv2.resize(img, (w // down_sampling, h // down_sampling), interpolation=interpolation)
    if not (isinstance(down_sampling, (tuple, list)) and len(down_sampling) == 2):
        raise DataError(f"down_sampling must be an int or a (height, width) pair, got {down_sampling!r}.")
    return cv2.resize(img, (int(down_sampling[1]), int(down_sampling[0])), interpolation=interpolation)


def training_image_size(config):
    """((height, width), where it came from) of the images a network of ``config`` is trained and evaluated on:
    the first val image after ``down_sampling``, else the config's eval_height x eval_width.

    The config's eval size is not always that size (the demo presets keep Cityscapes' 1024x2048 while their
    256x512 scenes are read at 128x256); it is the fallback where the val list cannot be read here.
    """
    try:
        first = read_file_list(config.eval_source)[0][0]
        image = resize_for_down_sampling(read_image(os.path.join(config.img_root_folder, first)),
                                         config.down_sampling, nearest=False)
        return image.shape[:2], f"the val images' size ({config.eval_source}, down_sampling {config.down_sampling})"
    except (DataError, DataFileNotFoundError, IndexError):
        return ((int(config.eval_height), int(config.eval_width)),
                "the config's eval_height x eval_width (no readable val list here)")


def read_image(path):
    """RGB uint8 HxWx3 (cv2 reads BGR; the original flipped channels in ``__getitem__``)."""
    img, problem = decode_file(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"image {path} cannot be read ({problem}); replace it or remove it from the list.")
    return np.ascontiguousarray(img[:, :, ::-1])


def read_label(path):
    """A single-channel uint8 label image; colour or 16-bit label files are refused rather than converted."""
    lbl, problem = decode_file(path, cv2.IMREAD_UNCHANGED)
    if lbl is None:
        raise DataError(f"label {path} cannot be read ({problem}); regenerate it with "
                        f"dataset/createTrainIdLabelImgs.py.")
    if lbl.ndim != 2 and _image_mode(path) == "P":
        lbl = _palette_indices(path)            # cv2 expands a palette PNG to colours: read its indices instead
    if lbl.ndim != 2:
        raise DataError(_channels_error(path, lbl.shape[2]))
    if lbl.dtype != np.uint8:
        if lbl.max() > 255:
            raise DataError(f"label {path} holds values above 255; labels must be 8-bit train ids.")
        lbl = lbl.astype(np.uint8)
    return lbl


def _channels_error(path, channels):
    return (f"label {path} has {channels} channels; labels must be single-channel train-id images such as "
            f"*_labelTrainIds.png (or palette PNGs, whose indices are read).")


def _image_mode(path):
    try:
        with Image.open(path) as img:
            return img.mode
    except Exception:  # noqa: BLE001 - an unreadable file has no mode; the caller reports it
        return None


def _palette_indices(path):
    """The index plane of a palette ('P') PNG: the values, not the colours the palette gives them."""
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.uint8)


# PIL modes with more than one channel (a label must have one: train ids, or palette indices)
MULTI_CHANNEL_MODES = {"LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4}


def _advice(what):
    return "regenerate it with dataset/createTrainIdLabelImgs.py" if what == "label" else \
        "replace it or remove it from the list"


def header_size(path, what):
    """(height, width, mode) from the file's header (no pixels decoded); a file that is no image, or a JPEG /
    PNG cut short (tools/utils/image_files.py), is refused."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            mode = img.mode
    except Exception as error:  # noqa: BLE001 - PIL raises several types for a corrupt or foreign file
        raise DataError(f"{what} {path} cannot be read (corrupt or not an image: {error}); {_advice(what)}.") \
            from None
    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{what} {path} cannot be read ({problem}); {_advice(what)}.")
    return height, width, mode


def size_mismatch_error(img_path, img_hw, gt_path, gt_hw):
    return DataError(f"image {img_path} is {img_hw[0]}x{img_hw[1]} but its label {gt_path} is {gt_hw[0]}x{gt_hw[1]}; "
                     f"they must have the same size.")


def check_images(dataset, min_scale=1.0, max_scale=1.0, crop=None):
    """Read the header of every image and label of ``dataset`` before any work: each must be a readable image,
    labels single-channel, image and label of one size, and every image must keep at least one pixel after
    ``down_sampling`` and the smallest scale. ``crop`` (height, width): the training crop must fit in the largest
    image at the largest scale (a larger one is always mostly padding). Raises DataError naming the file."""
    down = dataset._down_sampling
    largest = [0, 0]
    for img_name, gt_name in dataset._file_names:
        img_path = os.path.join(dataset._img_path, img_name)
        height, width, _ = header_size(img_path, "image")
        if gt_name is not None:
            gt_path = os.path.join(dataset._gt_path, gt_name)
            gt_height, gt_width, mode = header_size(gt_path, "label")
            if mode in MULTI_CHANNEL_MODES:
                raise DataError(_channels_error(gt_path, MULTI_CHANNEL_MODES[mode]))
            if (gt_height, gt_width) != (height, width):
                raise size_mismatch_error(img_path, (height, width), gt_path, (gt_height, gt_width))
        if isinstance(down, (int, np.integer)):
            down_h, down_w = height // down, width // down
        else:
            down_h, down_w = int(down[0]), int(down[1])
        if int(down_h * min_scale) < 1 or int(down_w * min_scale) < 1:
            raise DataError(f"image {img_path} is {height}x{width}: too small for down_sampling={down} and scale "
                            f"{min_scale} (it would become {int(down_h * min_scale)}x{int(down_w * min_scale)} "
                            f"pixels); remove it from {dataset._source} or lower down_sampling.")
        largest = [max(largest[0], int(down_h * max_scale)), max(largest[1], int(down_w * max_scale))]
    if crop is not None and (crop[0] > largest[0] or crop[1] > largest[1]):
        fits = f"{max(32, largest[0] // 32 * 32)}x{max(32, largest[1] // 32 * 32)}"
        raise DataError(f"training crop {crop[0]}x{crop[1]} (image_height/image_width) is larger than every image of "
                        f"{dataset._source} after down_sampling={down} and the largest scale {max_scale} (at most "
                        f"{largest[0]}x{largest[1]}), so every crop would be mostly padding; use a crop of at most "
                        f"{fits}.")


def check_label_values(lbl, num_classes, path, ignore_index=IGNORE_INDEX):
    """Every value must be a class (0..C-1) or the ignore value; name the file and the offending values."""
    if num_classes is None or lbl.size == 0 or int(lbl.max()) < num_classes:
        return
    bad = np.unique(lbl[(lbl >= num_classes) & (lbl != ignore_index)])
    if bad.size:
        raise DataError(f"label {path} holds values {bad[:10].tolist()} outside 0..{num_classes - 1} and the "
                        f"ignore value {ignore_index}; regenerate it or fix num_classes / the labels file.")


def scan_labels(dataset, threads=4):
    """Decode every label of ``dataset`` once, before any work: a value outside the classes (or a damaged file)
    is found now, named, instead of after an epoch. Returns the pixels of each class (int64, ``num_classes``),
    the statistics of class weighting (tools/losses.py ``class_weights``); None for a list without labels."""
    paths = sorted({os.path.join(dataset._gt_path, gt) for _img, gt in dataset._file_names if gt is not None})
    if not paths or dataset.label_set is None:
        return None
    num_classes = dataset.label_set.num_classes

    def count(path):
        gt = dataset.load_label(path)
        return np.bincount(gt[gt < num_classes].ravel(), minlength=num_classes)[:num_classes]

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        return np.sum(list(pool.map(count, paths)), axis=0).astype(np.int64)


class BaseDataset(data.Dataset):
    """A list-file dataset; subclasses only fix the class definitions (``label_set``)."""

    label_set = None

    def __init__(self, img_root, gt_root, source, split_name="train", preprocess=None, file_length=None,
                 down_sampling=1, portion=None, index_select=None, label_set=None, seed=0):
        super().__init__()
        if split_name not in SPLITS:
            raise ValueError(f"split '{split_name}' is not one of {SPLITS}.")
        if label_set is not None:
            self.label_set = label_set
        self._split_name = split_name
        self._img_path = img_root
        self._gt_path = gt_root
        self._source = source
        self._down_sampling = down_sampling
        self.preprocess = preprocess
        entries = read_file_list(source, require_label=split_name != "test")
        entries = select_entries(entries, index_select, portion, source)
        self._check_files_exist(entries)
        self._file_names = [[img, gt] for img, gt, _ in entries]
        self._file_length = file_length
        self._extended = self._construct_new_file_names(file_length, seed) if file_length is not None else None

    def _check_files_exist(self, entries):
        for img, gt, number in entries:
            for root, name in ((self._img_path, img), (self._gt_path, gt)):
                if name is not None and not os.path.isfile(os.path.join(root, name)):
                    raise DataFileNotFoundError(f"{self._source} line {number} names {os.path.join(root, name)}, "
                                                f"which does not exist; fix the list or the dataset root.")

    def _construct_new_file_names(self, length, seed):
        """The list repeated ``length // N`` times plus a seeded random subset of ``length % N`` entries."""
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"file_length must be a non-negative int, got {length!r}.")
        num = len(self._file_names)
        generator = torch.Generator().manual_seed(seed)
        tail = torch.randperm(num, generator=generator).tolist()[:length % num]
        return self._file_names * (length // num) + [self._file_names[i] for i in tail]

    def __len__(self):
        return self._file_length if self._file_length is not None else len(self._file_names)

    def get_length(self):
        return len(self)

    @property
    def num_classes(self):
        return None if self.label_set is None else self.label_set.num_classes

    def get_class_names(self):
        return list(self.label_set.names)

    def get_class_colors(self):
        return [list(c) for c in self.label_set.colors]

    def file_pair(self, index):
        """Absolute (image, label) paths of item ``index``."""
        names = self._extended[index] if self._extended is not None else self._file_names[index]
        gt = None if names[1] is None else os.path.join(self._gt_path, names[1])
        return os.path.join(self._img_path, names[0]), gt

    def __getitem__(self, index):
        img_path, gt_path = self.file_pair(index)
        img, gt = self._fetch_data(img_path, gt_path)
        name_source = gt_path if gt_path is not None else img_path
        item_name = os.path.basename(name_source).split(".")[0]
        extra = None
        if self.preprocess is not None:
            img, gt, extra = self.preprocess(img, gt)
        if self._split_name == "train":
            img = torch.from_numpy(np.ascontiguousarray(img)).float()
            gt = torch.from_numpy(np.ascontiguousarray(gt)).long()
        item = dict(data=img, label=gt, fn=str(item_name), n=len(self._file_names),
                    img_fn=os.path.splitext(os.path.basename(img_path))[0])
        if extra:
            item.update(extra)
        return item

    def load_label(self, gt_path):
        """The train ids of one label file (raw values mapped for custom data), every value checked."""
        gt = read_label(gt_path)
        if self.label_set is not None:
            if self.label_set.raw_label_map:
                gt = self.label_set.raw_label_lut()[gt]
            check_label_values(gt, self.label_set.num_classes, gt_path, self.label_set.ignore_index)
        return gt

    def _fetch_data(self, img_path, gt_path):
        img = read_image(img_path)
        if gt_path is None:
            return resize_for_down_sampling(img, self._down_sampling, nearest=False, path=img_path), None
        gt = self.load_label(gt_path)
        if img.shape[:2] != gt.shape:
            raise size_mismatch_error(img_path, img.shape[:2], gt_path, gt.shape)
        img = resize_for_down_sampling(img, self._down_sampling, nearest=False, path=img_path)
        gt = resize_for_down_sampling(gt, self._down_sampling, nearest=True, path=gt_path)
        return img, gt


class Cityscapes(BaseDataset):
    """19 classes; ``label_set.trainid_to_labelid`` gives the submission ids (train/test.py's dict)."""
    label_set = cityscapes_labels()


class CamVid(BaseDataset):
    """11 classes; annotation value 11 (Void) becomes the ignore value 255."""
    label_set = camvid_labels()


class CustomDataset(BaseDataset):
    """Classes from a labels file (config key ``labels_file``), see ``tools.data.labels``."""

    def __init__(self, *args, labels_file=None, label_set=None, **kwargs):
        if label_set is None:
            label_set = load_labels_file(labels_file)
        super().__init__(*args, label_set=label_set, **kwargs)


DATASETS = {"cityscapes": Cityscapes, "camvid": CamVid, "custom": CustomDataset}


def get_dataset_class(name):
    if name not in DATASETS:
        raise ValueError(f"dataset '{name}' is unknown; set the config key dataset to one of {sorted(DATASETS)}.")
    return DATASETS[name]


def label_set_from_config(config):
    """The classes named by ``config.dataset`` (and ``config.labels_file`` for custom data)."""
    name = config.get("dataset", "cityscapes")
    if name == "custom":
        return load_labels_file(config.get("labels_file"))
    if name == "camvid":
        return camvid_labels(config.get("camvid_classes", "segnet"))
    return get_dataset_class(name).label_set


def source_for_split(config, split, test=False):
    """The list file of a split: train (train_eval_source when ``test``), val -> eval, test -> test."""
    if split == "train":
        return config.train_eval_source if test else config.train_source
    if split == "val":
        return config.eval_source
    if split == "test":
        return config.get("test_source") or config.eval_source
    raise ValueError(f"split '{split}' is not one of {SPLITS}.")


def dataset_from_config(config, split, preprocess=None, file_length=None, portion=None, index_select=None,
                        test=False):
    """Build the configured dataset for a split and check ``num_classes`` against its labels."""
    label_set = label_set_from_config(config)
    if config.num_classes != label_set.num_classes:
        raise DataError(f"config num_classes={config.num_classes} but dataset '{config.get('dataset', 'cityscapes')}'"
                        f" ({label_set.source}) defines {label_set.num_classes} classes; set num_classes="
                        f"{label_set.num_classes}.")
    dataset_class = get_dataset_class(config.get("dataset", "cityscapes"))
    dataset = dataset_class(config.img_root_folder, config.gt_root_folder, source_for_split(config, split, test),
                            split, preprocess=preprocess, file_length=file_length,
                            down_sampling=config.down_sampling, portion=portion, index_select=index_select,
                            label_set=label_set, seed=config.get("seed", 0))
    scales = config.get("train_scale_array" if split == "train" else "eval_scale_array") or [1]
    crop = (preprocess.image_height, preprocess.image_width) if hasattr(preprocess, "image_height") else None
    check_images(dataset, min(scales), max(scales), crop)
    dataset.class_pixels = scan_labels(dataset)
    return dataset
