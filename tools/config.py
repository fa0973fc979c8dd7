"""Configs as layers of easydict modules plus ``key=value`` command-line overrides.

A stage module under ``configs/`` (search.py, train.py, latency.py) defines an ``EasyDict`` named ``C`` holding
every key with its default (the original FasterSeg's config_search.py / config_train.py / latency config.py keys
and values) and ``finalize(C, explicit)`` that fills the keys whose defaults depend on others (the original
computed them with ``if C.pretrain`` / ``if C.mode`` blocks at import time). A dataset fragment
(configs/datasets/) and a preset (configs/<name>.py with ``STAGE``) are layers over it, and ``key=value`` the
last one (:func:`load_config`); ``explicit`` is the set of keys some layer set, so a layer always wins over a
derived default. docs/configs.md describes the order for users.
"""
import ast
import copy
import difflib
import importlib.util
import math
import operator
import os
import re

from easydict import EasyDict

from tools.utils.errors import UserError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class ConfigError(UserError, ValueError):
    """A config file or an override that cannot be used; the message says which and what to do."""


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _evaluate(node):
    """A Python literal, plus + - * / // on numbers (``[1/3, 2/3, 1.0]``); anything else is a ValueError."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.List):
        return [_evaluate(item) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(item) for item in node.elts)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_evaluate(k): _evaluate(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _evaluate(node.operand)
        if _is_number(operand):
            return operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if _is_number(left) and _is_number(right):
            try:
                return _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ValueError("division by zero") from None
    raise ValueError(f"not a literal: {ast.dump(node)[:60]}")


def parse_value(text):
    """Parse an override value as a Python literal (arithmetic on numbers allowed, so ``[1/3, 2/3, 1.0]`` is a
    list of floats); anything else stays the plain string (paths, names) and is checked against the key's kind."""
    try:
        return _evaluate(ast.parse(text, mode="eval").body)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return text


def parse_overrides(args):
    """Turn ``["a=1", "b.c='x'"]`` into ``{"a": 1, "b.c": "x"}``; a token without ``=`` is an error."""
    return {key: parse_value(raw) for key, raw in _split_overrides(args).items()}


def _split_overrides(args):
    """``["a=1"]`` -> ``{"a": "1"}`` (the raw text of each value)."""
    overrides = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"override '{arg}' is not of the form key=value (for example batch_size=4).")
        key, value = arg.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


# ---- the kind of value each key takes ---------------------------------------------------------------------
# A key takes the kind of its default (bool, int, number, str, a list of numbers / strings / pairs); these keys
# say it themselves because their default is None until ``finalize`` fills it, or because several kinds are
# allowed. None is accepted where the preset's default is None (``finalize`` then fills the key) or "none" says so.
KEY_KINDS = {
    "pretrain": ("bool", "str"), "resume": ("bool", "str"), "fast": ("str", "bool"), "load_epoch": ("str", "int"),
    "lr": ("number",), "batch_size": ("int",), "nepochs": ("int",), "niters_per_epoch": ("int",),
    "image_height": ("int",), "image_width": ("int",), "eval_base_size": ("int", "none"),
    "eval_crop_size": ("int", "none"), "latency_weight": ("numbers",), "arch_idx": ("ints",),
    "branch": ("int", "ints"), "stem_head_width": ("pairs",), "save": ("str",), "down_sampling": ("int", "ints"),
    "grad_clip": ("number",), "arch_weight_decay": ("number",), "flops_input": ("ints",),
    "lut_fch_cells": ("ints",), "lut_fch_heads": ("ints",), "class_weight": ("str", "numbers"),
}
KIND_WORDS = {"bool": "True or False", "int": "an integer", "number": "a number", "str": "a string",
              "none": "None", "numbers": "a list of numbers", "ints": "a list of integers",
              "strs": "a list of strings", "pairs": "a list of (height, width) pairs", "list": "a list"}
KIND_EXAMPLES = {"bool": "False", "int": "4", "number": "0.01", "str": "'text'", "none": "None",
                 "numbers": "[0.5, 1.0]", "ints": "[0, 1]", "strs": "['max', 'arch_ratio']",
                 "pairs": "[(1, 1), (0.5, 0.5)]", "list": "[1, 2]"}
BOOL_WORDS = {"true": True, "false": False}


def _kind_of_default(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        if value and all(_is_number(v) for v in value):
            return "numbers"
        if value and all(isinstance(v, str) for v in value):
            return "strs"
        if value and all(isinstance(v, (list, tuple)) for v in value):
            return "pairs"
        return "list"
    return None


def _as_kind(value, kind, raw):
    """``value`` converted to ``kind``, or ``_MISMATCH``."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in BOOL_WORDS:
            return BOOL_WORDS[value.lower()]
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "number":
        if _is_number(value):
            return value
    elif kind == "str":
        if isinstance(value, str):
            return value
        if raw is not None and not isinstance(value, (list, tuple, dict)):
            return raw                          # save=2020 or dataset_path=data/2020: the text as written
    elif kind == "none":
        if value is None:
            return None
    elif isinstance(value, (list, tuple)):
        items = list(value)
        if kind == "list" or (kind == "numbers" and all(_is_number(v) for v in items)) or \
                (kind == "ints" and all(isinstance(v, int) and not isinstance(v, bool) for v in items)) or \
                (kind == "strs" and all(isinstance(v, str) for v in items)) or \
                (kind == "pairs" and all(isinstance(v, (list, tuple)) and len(v) == 2
                                         and all(_is_number(x) for x in v) for v in items)):
            return value
    return _MISMATCH


_MISMATCH = object()


def _has_non_finite(value):
    """Whether a number, or any number inside a list/tuple, is inf or nan (``lr=1e400`` parses as inf)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(item) for item in value)
    return False


def check_value(key, value, default, raw=None, kinds=None):
    """The override ``value`` of ``key`` converted to the kind of the key's default, or a ConfigError naming the
    key, the value and an example. ``raw``: the text as typed (kept for string keys)."""
    leaf = key.split(".")[-1]
    if kinds is None:
        kinds = KEY_KINDS.get(leaf)
        if kinds is None:
            kind = _kind_of_default(default)
            if kind is None:                    # a default of None (or an object) that no kind describes
                return value
            kinds = (kind,)
        if default is None:
            kinds = tuple(kinds) + ("none",)
    for kind in sorted(kinds, key=lambda k: k == "str"):      # a string (the text as typed) only as the last resort
        converted = _as_kind(value, kind, raw)
        if converted is not _MISMATCH:
            if kind != "str" and _has_non_finite(converted):
                raise ConfigError(f"{key}={raw if raw is not None else repr(value)} is not a finite number "
                                  f"(inf or nan, e.g. 1e400 overflows); give a finite value.")
            return converted
    shown = raw if raw is not None else repr(value)
    wanted = " or ".join(KIND_WORDS[k] for k in kinds)
    example = repr(default) if default is not None and _kind_of_default(default) in kinds else \
        KIND_EXAMPLES[kinds[0]]
    raise ConfigError(f"{key}={shown} is not {wanted}; write it like {leaf}={example}"
                      + (" (lower-case true/false also work)." if "bool" in kinds else "."))


# ---- ranges that can only be wrong ------------------------------------------------------------------------
def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


def _at_least_one(v):
    return v >= 1


def _fraction(v):
    return 0 < v < 1


def _up_to_one(v):
    return 0 < v <= 1


def _unit(v):
    return 0 <= v <= 1


def _seed(v):
    return 0 <= v < 2 ** 32


def _all(test):
    def check(values):
        return isinstance(values, (list, tuple)) and len(values) > 0 and all(test(v) for v in values)
    return check


RANGES = {
    "lr": (_positive, "a positive number (the original: 0.01)"),
    "arch_learning_rate": (_positive, "a positive number (the original: 3e-4)"),
    "momentum": (_unit, "between 0 and 1 (the original: 0.9)"),
    "weight_decay": (_non_negative, "0 or more (the original: 5e-4)"),
    "arch_weight_decay": (_non_negative, "0 or more"),
    "lr_decay": (_positive, "a positive factor per epoch (the original: 0.992 / 0.978)"),
    "warmup_iters": (_non_negative, "0 or more iterations (0: no warm-up)"),
    "batch_size": (_at_least_one, "at least 1"),
    "nepochs": (_at_least_one, "at least 1"),
    "niters_per_epoch": (_at_least_one, "at least 1"),
    "num_workers": (_non_negative, "0 or more"),
    "seed": (_seed, "between 0 and 2**32 - 1"),
    "train_portion": (_fraction, "between 0 and 1 (the original: 0.5)"),
    "grad_clip": (_positive, "a positive number (the original: 5)"),
    "gt_down_sampling": (_at_least_one, "at least 1"),
    "eval_stride_rate": (_up_to_one, "in (0, 1] (the original: 2/3 or 5/6)"),
    "eval_scale_array": (_all(_positive), "a non-empty list of positive scales"),
    "train_scale_array": (_all(_positive), "a non-empty list of positive scales"),
    "train_color_jitter": (lambda value: 0 <= value < 1, "in [0, 1) (0: off, the original)"),
    "width_mult_list": (_all(_positive), "a non-empty list of positive widths"),
    "latency_weight": (_all(_non_negative), "a list of weights of 0 or more"),
    "bn_eps": (_positive, "a positive number"),
    "bn_momentum": (_unit, "between 0 and 1"),
    "aux_weight": (_non_negative, "0 or more"),
    "distill_temperature": (_positive, "a positive number"),
    "val_interval": (_at_least_one, "at least 1"),
    "test_interval": (_at_least_one, "at least 1"),
    "num_classes": (_at_least_one, "at least 1"),
    "layers": (_at_least_one, "at least 1"),
    "Fch": (_at_least_one, "at least 1"),
    "budget_s": (_positive, "a positive number of seconds"),
    "calib_s": (_positive, "a positive number of seconds"),
    "lut_budget_s": (_positive, "a positive number of seconds"),
    "lut_calib_s": (_positive, "a positive number of seconds"),
    "fast": (lambda value: value in ("auto", True, False), "'auto', True or False"),
    "class_weight": (lambda value: value in ("", "enet") or (not isinstance(value, str) and _all(_positive)(value)),
                     "'' (off, the original), 'enet', or a list of positive weights, one per class"),
}
# (height key, width key, what): sizes fed to the network, which down-samples by 32
SIZE_KEYS = (("image_height", "image_width", "training crop size"),
             ("latency_height", "latency_width", "latency resolution"))


def check_ranges(config):
    """Refuse values that can only be wrong (negative lr, a crop that is not a multiple of 32, ...)."""
    for key, (test, wanted) in RANGES.items():
        value = config.get(key)
        if value is None:
            continue
        try:
            ok = bool(test(value))
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"{key}={value!r} must be {wanted}.")
    weights, classes = config.get("class_weight"), config.get("num_classes")
    if isinstance(weights, (list, tuple)) and classes is not None and len(weights) != classes:
        raise ConfigError(f"class_weight holds {len(weights)} weights but num_classes={classes}; give one weight per "
                          f"class, or class_weight='enet'.")
    down = config.get("down_sampling")
    if down is not None and not (down >= 1 if _is_number(down) else _all(_at_least_one)(down)):
        raise ConfigError(f"down_sampling={down!r} must be an integer of at least 1 (or a (height, width) pair).")
    from tools.data.transforms import check_crop_size
    sizes = [(config.get(h), config.get(w), what, f"{h}/{w}") for h, w, what in SIZE_KEYS]
    sizes.append((config.get("eval_crop_size"), config.get("eval_crop_size"), "evaluation crop size",
                  "eval_crop_size"))
    for height, width, what, keys in sizes:
        if height is not None and width is not None:
            try:
                check_crop_size(height, width, what, keys)
            except ValueError as error:     # the data layer's DataError: the same sentence, as a config error
                raise ConfigError(str(error)) from None


def _names(folder):
    return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))


def resolve_config_path(path):
    """Accept a file path or a bare preset name such as ``search`` (read from configs/)."""
    if os.path.isfile(path):
        return path
    candidate = os.path.join(CONFIG_DIR, path if path.endswith(".py") else path + ".py")
    if os.path.isfile(candidate):
        return candidate
    raise ConfigError(f"config '{path}' is neither a file nor a preset in configs/ "
                      f"(presets: {', '.join(_names(CONFIG_DIR))}).")


def _load_module(path):
    spec = importlib.util.spec_from_file_location(f"fasterseg_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "C"):
        raise ConfigError(f"config file {path} defines no EasyDict named C.")
    return module


# ---- dataset fragments: configs/datasets/<name>.py ----------------------------------------------------------
# A fragment's ``C`` holds the data keys of one dataset for every stage. Its ``dataset`` value is the layout the
# code reads (class set, list-file names): the fragment's own name for cityscapes / camvid / custom, 'cityscapes'
# for the demo data (Cityscapes classes and list names under data/demo).
DATASETS_DIR = os.path.join(CONFIG_DIR, "datasets")
# config key of each list file -> its split in tools.data.prepare.LIST_NAMES (the names the list writer uses)
LIST_KEYS = {"train_source": "train", "train_eval_source": "train_val", "eval_source": "val", "test_source": "test"}


def load_fragment(name):
    """The dataset fragment ``configs/datasets/<name>.py`` (a module whose ``C`` is a dict of data keys)."""
    names = _names(DATASETS_DIR)
    if name not in names:
        raise ConfigError(f"dataset must be one of {names}, got {name!r}.")
    return _load_module(os.path.join(DATASETS_DIR, name + ".py"))


def dataset_paths(dataset, dataset_path, hold_out=""):
    """The image/label roots and list files of a ``dataset`` layout under ``dataset_path``, named as
    dataset/create_mapping_lists.py writes them; ``hold_out`` (a drive): its ``--hold-out`` lists, i.e. the
    training lists without that drive and its frames as the validation list."""
    from tools.data.prepare import LIST_NAMES, held_out_list_names
    names = dict(LIST_NAMES[dataset])
    if hold_out:
        held = held_out_list_names(dataset, hold_out)
        names.update(train=held["train"], train_val=held["train_val"], val=held["held_out"])
    paths = {"img_root_folder": dataset_path, "gt_root_folder": dataset_path}
    paths.update({key: os.path.join(dataset_path, names[split]) for key, split in LIST_KEYS.items()})
    return paths


def follow_dataset(config, explicit):
    """Make ``dataset`` and ``dataset_path`` the only keys a user sets for another dataset.

    When either was set above the stage defaults, the roots and list files are re-rooted on ``dataset_path``
    and ``num_classes`` follows the layout (a custom layout: the rows of ``labels_file``); a key given by a
    layer (fragment, preset, command line) is left alone. ``hold_out`` (a drive) re-roots them the same way on
    the lists that hold that drive out (train without it, its frames as val).
    """
    layout = load_fragment(config.dataset).C
    if layout.get("dataset") != config.dataset:
        from tools.data.prepare import dataset_layouts
        raise ConfigError(f"dataset must be one of the layouts {', '.join(dataset_layouts())}, got "
                          f"{config.dataset!r}.")
    from tools.data.prepare import HOLD_OUT_PATTERN
    hold_out = config.get("hold_out") or ""
    if hold_out and not re.fullmatch(HOLD_OUT_PATTERN, str(hold_out)):
        raise ConfigError(f"hold_out must be a drive name (letters, digits, '-': the start of the image file names "
                          f"before the first '_', e.g. 0006R0), got {hold_out!r}.")
    if not {"dataset_path", "dataset", "hold_out"} & set(explicit):
        return
    for key, value in dataset_paths(config.dataset, config.dataset_path, hold_out).items():
        if key not in explicit and key in config:
            config[key] = value
    if "num_classes" not in explicit and "num_classes" not in layout:
        config.num_classes = _labels_file_classes(config.labels_file)


def _labels_file_classes(path):
    from tools.data.labels import load_labels_file
    return load_labels_file(path).num_classes


# ---- layers: stage defaults < dataset fragment < preset < key=value ----------------------------------------
def _walk(tree, dotted_key, path):
    """The dict holding ``dotted_key``'s last part, or a ConfigError naming the close matches."""
    node = tree
    parts = dotted_key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = list(node.keys()) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, known, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key '{dotted_key}' for {os.path.basename(path)}.{hint}")
        if depth < len(parts) - 1:
            node = node[part]
    return node, parts[-1]


def _apply(config, layer, path, defaults=None, raw=None):
    """Set the keys of one layer; ``defaults`` (the stage's values): check each value against its key's kind
    (the command line), else take it as written (a fragment or preset file)."""
    for key, value in layer.items():
        node, leaf = _walk(config, key, path)
        if defaults is not None:
            default_node, _ = _walk(defaults, key, path)
            value = check_value(key, value, default_node[leaf], (raw or {}).get(key))
        node[leaf] = copy.deepcopy(value)


def _command_line(overrides):
    """``(values, raw texts)`` of the overrides (a dict or a list of ``key=value``)."""
    if overrides is None:
        return {}, {}
    if isinstance(overrides, dict):
        return dict(overrides), {key: None for key in overrides}
    raw = _split_overrides(overrides)
    return {key: parse_value(text) for key, text in raw.items()}, raw


def _selected_dataset(config, preset, values):
    """The fragment to load: ``dataset`` on the command line, else in the preset (taken out of both layers, as
    the fragment sets the key); None for a stage without data keys (latency)."""
    if "dataset" not in config:
        return None
    from_preset = preset.pop("dataset", None)
    return values.pop("dataset", from_preset)


def _apply_fragment(config, name):
    """Set the keys of the dataset fragment ``name`` (none when None); return them."""
    if name is None:
        return set()
    fragment = load_fragment(name)
    _apply(config, fragment.C, fragment.__file__)
    return set(fragment.C)


def _apply_derived(config, preset, raw, path):
    """Set the keys the preset's ``derive(C)`` returns, except those on the command line; return them."""
    derive = getattr(preset, "derive", None)
    derived = {} if derive is None else {key: value for key, value in derive(config).items() if key not in raw}
    _apply(config, derived, path)
    return set(derived)


def load_config(path, overrides=None):
    """Load a config by layers, each beating the ones before it, then fill the derived keys.

    A stage module (configs/search.py, train.py, latency.py, or a file of the same kind) holds every key with
    its default and ``finalize(C, explicit)``; a preset names its stage (``STAGE``) and holds only its keys in
    ``C``, plus an optional ``derive(C)`` returning keys that depend on others (e.g. on ``pretrain``). The layers:
    stage defaults < the dataset fragment selected by ``dataset`` (command line, else preset) < the preset <
    its ``derive`` < ``key=value`` overrides. ``explicit`` holds every key set above the stage defaults, so the
    stage's ``finalize`` fills a derived key only where no layer gave it. Every override is checked against the
    kind of its key (:func:`check_value`), and the finished config against :data:`RANGES` (:func:`check_ranges`),
    so a bad value stops the script before any work.
    """
    path = resolve_config_path(path)
    module = _load_module(path)
    stage = _load_module(resolve_config_path(module.STAGE)) if hasattr(module, "STAGE") else module
    preset = dict(module.C) if stage is not module else {}
    values, raw = _command_line(overrides)
    config = EasyDict(copy.deepcopy(dict(stage.C)))
    defaults = copy.deepcopy(config)
    explicit = set(raw) | set(preset)
    explicit |= _apply_fragment(config, _selected_dataset(config, preset, values))
    _apply(config, preset, path)
    _apply(config, values, path, defaults, raw)
    if stage is not module:
        explicit |= _apply_derived(config, module, raw, path)
    if "dataset" in config:
        follow_dataset(config, explicit)
    finalize = getattr(stage, "finalize", None)
    if finalize is not None:
        finalize(config, explicit)
    check_ranges(config)
    config.config_path = os.path.abspath(path)
    return config


def add_config_arguments(parser, default_config):
    """Add ``--config`` and the trailing ``key=value`` overrides to an argparse parser."""
    parser.add_argument("--config", default=default_config,
                        help="config module (file path or preset name in configs/); default: %(default)s")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override config keys; values are Python literals of the key's kind (e.g. batch_size=4 "
                             "plots=False width_mult_list=[1/3, 2/3, 1.0]); strings may be written without quotes")
    return parser


def config_from_args(args):
    """Build the config from parsed ``--config`` and overrides."""
    return load_config(args.config, args.overrides)
