"""Configs as easydict modules plus ``key=value`` command-line overrides.

A config module under ``configs/`` defines an ``EasyDict`` named ``C`` holding every key with its default
(the original FasterSeg's config_search.py / config_train.py keys and values) and may define
``finalize(C, explicit)`` that fills the keys whose defaults depend on others (the original computed them with
``if C.pretrain`` / ``if C.mode`` blocks at import time). ``explicit`` is the set of keys the user overrode, so
an override always wins over a derived default.
"""
import ast
import copy
import difflib
import importlib.util
import os

from easydict import EasyDict

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class ConfigError(ValueError):
    """A config file or an override that cannot be used; the message says which and what to do."""


def parse_value(text):
    """Parse an override value as a Python literal; fall back to the plain string (paths, names)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(args):
    """Turn ``["a=1", "b.c='x'"]`` into ``{"a": 1, "b.c": "x"}``; a token without ``=`` is an error."""
    overrides = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"override '{arg}' is not of the form key=value (for example batch_size=4).")
        key, value = arg.split("=", 1)
        overrides[key.strip()] = parse_value(value.strip())
    return overrides


def resolve_config_path(path):
    """Accept a file path or a bare preset name such as ``search`` (read from configs/)."""
    if os.path.isfile(path):
        return path
    candidate = os.path.join(CONFIG_DIR, path if path.endswith(".py") else path + ".py")
    if os.path.isfile(candidate):
        return candidate
    presets = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))
    raise ConfigError(f"config '{path}' is neither a file nor a preset in configs/ (presets: {', '.join(presets)}).")


def _load_module(path):
    spec = importlib.util.spec_from_file_location(f"fasterseg_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "C"):
        raise ConfigError(f"config file {path} defines no EasyDict named C.")
    return module


def _set_key(config, dotted_key, value, path):
    node = config
    parts = dotted_key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = list(node.keys()) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, known, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key '{dotted_key}' for {os.path.basename(path)}.{hint}")
        if depth == len(parts) - 1:
            node[part] = value
        else:
            node = node[part]


def load_config(path, overrides=None):
    """Load a config module, apply overrides (dict or list of ``key=value``), then its ``finalize``."""
    path = resolve_config_path(path)
    module = _load_module(path)
    config = EasyDict(copy.deepcopy(dict(module.C)))
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    for key, value in overrides.items():
        _set_key(config, key, value, path)
    finalize = getattr(module, "finalize", None)
    if finalize is not None:
        finalize(config, set(overrides))
    config.config_path = os.path.abspath(path)
    return config


def add_config_arguments(parser, default_config):
    """Add ``--config`` and the trailing ``key=value`` overrides to an argparse parser."""
    parser.add_argument("--config", default=default_config,
                        help="config module (file path or preset name in configs/); default: %(default)s")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override config keys; values are Python literals (e.g. batch_size=4 pretrain=False)")
    return parser


def config_from_args(args):
    """Build the config from parsed ``--config`` and overrides."""
    return load_config(args.config, args.overrides)
