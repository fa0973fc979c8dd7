"""Searched-architecture files: the published legacy pickles and the project's own safe format.

The original ``search/train_search.py`` saves ``arch_{idx}.pt`` with ``torch.save`` of a dict holding
``alpha_{idx}_{0,1,2}``, ``beta_{idx}_{1,2}``, ``ratio_{idx}_{0,1,2}`` (CUDA ``nn.Parameter``s) and
``mIoU02``/``latency02``/``mIoU12``/``latency12`` (numpy scalars / floats); ``train/train.py`` reads it with a
plain ``torch.load``, which unpickles (and runs) anything. The project reads such files only inside
``load_legacy_arch`` (``tools.utils.legacy_files``: ``weights_only=True`` plus numpy scalars, so a crafted file
is refused before it runs) and converts them once. The project format keeps the same keys (so code that reads
``record["alpha_1_0"]`` works on both) but holds only plain CPU float32 tensors, Python floats/ints and strings,
loads with plain ``weights_only=True`` and is written atomically. Files the project's search writes also hold
``genotype``: what the derivation rules chose (tools/models/genotype.py), as plain lists; files without it (the
published ones, older searches) get it derived from their tensors by :func:`record_genotype`.
"""
import os

import numpy as np
import torch

from tools.utils.errors import UserError
from tools.models.derive import choose_lasts, effective_width_mult_list
from tools.models.genotype import Genotype, GenotypeError, derive_genotype
from tools.ops.primitives import PRIMITIVES
from tools.utils.checkpoint import save_checkpoint
from tools.utils.legacy_files import UnsafeFileError, load_legacy_torch

ARCH_FORMAT = "fasterseg-arch/1"
METRIC_KEYS = ("mIoU02", "latency02", "mIoU12", "latency12")
GENOTYPE_KEY = "genotype"
PUBLISHED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published")


class ArchFileError(UserError, ValueError):
    """An arch file that cannot be used; the message names the file and what to do."""


class LegacyArchFileError(ArchFileError):
    """A legacy (original FasterSeg) pickle given where the project format is expected."""


def tensor_keys(arch_idx):
    """The architecture tensors of arch ``arch_idx`` in the original's key names."""
    return ([f"alpha_{arch_idx}_{k}" for k in range(3)] + [f"beta_{arch_idx}_{k}" for k in (1, 2)]
            + [f"ratio_{arch_idx}_{k}" for k in range(3)])


def expected_shapes(arch_idx, layers, ratio_columns):
    """Shapes the supernet of ``layers`` layers gives its architecture parameters."""
    i, num_ops = arch_idx, len(PRIMITIVES)
    return {
        f"alpha_{i}_0": (layers, num_ops), f"alpha_{i}_1": (layers - 1, num_ops), f"alpha_{i}_2": (layers - 2, num_ops),
        f"beta_{i}_1": (layers - 2, 2), f"beta_{i}_2": (layers - 3, 2),
        f"ratio_{i}_0": (layers - 1, ratio_columns), f"ratio_{i}_1": (layers - 1, ratio_columns),
        f"ratio_{i}_2": (layers - 2, ratio_columns),
    }


def arch_file_name(arch_idx, load_epoch="last"):
    """train.py's naming: "last" -> arch_{idx}.pt, an epoch number -> arch_{idx}_{epoch}.pt."""
    if load_epoch == "last":
        return f"arch_{arch_idx}.pt"
    try:
        epoch = int(load_epoch)
    except (TypeError, ValueError):
        raise ArchFileError(f"load_epoch {load_epoch!r} is neither 'last' nor an epoch number.") from None
    return f"arch_{arch_idx}_{epoch}.pt"


def arch_path(load_path, arch_idx, load_epoch="last"):
    return os.path.join(load_path, arch_file_name(arch_idx, load_epoch))


def infer_arch_idx(record, source="arch record"):
    """The index in the ``alpha_{idx}_0`` key (teacher 0, student 1)."""
    found = sorted(int(k.split("_")[1]) for k in record if k.startswith("alpha_") and k.endswith("_0")
                   and k.split("_")[1].isdigit())
    if len(found) != 1:
        raise ArchFileError(f"{source} holds alpha_<idx>_0 for {found or 'no'} arch indices; it must hold "
                            f"exactly one (alpha_0_0 for the teacher or alpha_1_0 for the student).")
    return found[0]


def _check_tensors(record, arch_idx, layers, width_mult_list, source):
    keys = tensor_keys(arch_idx)
    for key in keys:
        if key not in record:
            raise ArchFileError(f"{source} is missing '{key}' (an arch file of arch_idx {arch_idx} holds "
                                f"{', '.join(keys)} and {', '.join(METRIC_KEYS)}).")
        if not isinstance(record[key], torch.Tensor) or record[key].dim() != 2:
            raise ArchFileError(f"{source}: '{key}' must be a 2-d tensor, got {type(record[key]).__name__}.")
    columns = record[f"ratio_{arch_idx}_0"].shape[1]
    allowed = {1} if width_mult_list is None else {1, len(width_mult_list)}
    if width_mult_list is not None and columns not in allowed:
        raise ArchFileError(f"{source}: ratios have {columns} columns but width_mult_list has "
                            f"{len(width_mult_list)} entries; pass the width_mult_list used in the search.")
    for key, shape in expected_shapes(arch_idx, layers, columns).items():
        if tuple(record[key].shape) != shape:
            raise ArchFileError(f"{source}: '{key}' has shape {tuple(record[key].shape)} but layers={layers} "
                                f"needs {shape}; the file does not match this config.")


def validate_arch(record, arch_idx=None, layers=None, width_mult_list=None, source="arch record"):
    """Check keys, shapes and metrics; return ``(arch_idx, layers)``. One sentence per problem."""
    if not isinstance(record, dict):
        raise ArchFileError(f"{source} holds a {type(record).__name__}, not a dict of architecture parameters.")
    if arch_idx is None:
        arch_idx = infer_arch_idx(record, source)
    first = record.get(f"alpha_{arch_idx}_0")
    if layers is None:
        if not isinstance(first, torch.Tensor) or first.dim() != 2:
            raise ArchFileError(f"{source} is missing 'alpha_{arch_idx}_0' (or it is not a 2-d tensor).")
        layers = int(first.shape[0])
    _check_tensors(record, arch_idx, layers, width_mult_list, source)
    for key in METRIC_KEYS:
        if key not in record:
            raise ArchFileError(f"{source} is missing the metric '{key}' that picks the branches (lasts).")
        if not isinstance(record[key], (int, float)):
            raise ArchFileError(f"{source}: metric '{key}' must be a number, got {type(record[key]).__name__}.")
    if GENOTYPE_KEY in record:
        try:
            Genotype.from_plain(record[GENOTYPE_KEY])
        except GenotypeError as error:
            raise ArchFileError(f"{source}: {error}") from None
    return arch_idx, layers


def _plain(value):
    """Turn a loaded value into something ``weights_only=True`` accepts: CPU float32 tensors, floats."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu")
        return (value.float() if value.is_floating_point() else value).clone().contiguous()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_record(state, arch_idx=None, source="arch record"):
    """Project-format record from an original-style dict (validated, plain values, format marker)."""
    plain = {key: _plain(value) for key, value in state.items() if key not in ("format", "arch_idx")}
    arch_idx, _ = validate_arch(plain, arch_idx, source=source)
    ordered = tensor_keys(arch_idx) + list(METRIC_KEYS) + [GENOTYPE_KEY] * (GENOTYPE_KEY in plain)
    extras = {key: value for key, value in plain.items() if key not in ordered}
    return {"format": ARCH_FORMAT, "arch_idx": arch_idx, **{key: plain[key] for key in ordered}, **extras}


def load_legacy_arch(path, arch_idx=None):
    """Read an original FasterSeg arch pickle (CUDA tensors, numpy scalars) on CPU and convert it.

    Read with the restricted unpickler of ``tools.utils.legacy_files``: a file that needs anything but
    tensors, Parameters, numpy scalars, dicts, strings and numbers is refused (UnsafeFileError) before it runs.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"arch file {path} does not exist.")
    try:
        state = load_legacy_torch(path, what="arch file")
    except UnsafeFileError as error:
        raise ArchFileError(str(error)) from None
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise ArchFileError(f"arch file {path} cannot be read ({type(error).__name__}: {error}); it is truncated "
                            f"or not a PyTorch file: copy it again or rerun the search that wrote it.") from error
    return to_record(state, arch_idx, source=f"arch file {path}")


def _unreadable_arch_error(path, error):
    """Why a project-format load failed: a legacy pickle (convert it), a refused global, or a broken file."""
    try:
        load_legacy_arch(path)
    except ArchFileError as legacy_error:
        return legacy_error
    return LegacyArchFileError(
        f"arch file {path} is an original FasterSeg arch pickle, not the project format; convert it once with: "
        f"python tools/convert_arch.py {path} OUTPUT.pt")


def load_arch(path, arch_idx=None, layers=None, width_mult_list=None):
    """Read a project-format arch file (``weights_only=True``) and validate it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"arch file {path} does not exist.")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every failure is classified by _unreadable_arch_error
        raise _unreadable_arch_error(path, error) from None
    source = f"arch file {path}"
    if not isinstance(record, dict) or record.get("format") != ARCH_FORMAT:
        validate_arch(record, source=source)    # not an original-style arch dict either: says what is wrong
        raise LegacyArchFileError(f"{source} has no '{ARCH_FORMAT}' format marker but holds an original-style "
                                  f"arch dict; convert it once with: python tools/convert_arch.py {path} OUTPUT.pt")
    validate_arch(record, arch_idx, layers, width_mult_list, source=source)
    return record


def save_arch(record, path):
    """Write a record in the project format: temp file in the same folder, then ``os.replace``."""
    record = to_record(record, record.get("arch_idx"), source=f"record for {path}")
    save_checkpoint(record, path)
    return path




def convert_arch(src, dst, arch_idx=None):
    """Legacy pickle -> project format file; returns the record."""
    record = load_legacy_arch(src, arch_idx)
    save_arch(record, dst)
    return record


def load_arch_dir(load_path, arch_idx, load_epoch="last", layers=None, width_mult_list=None):
    """train.py's lookup: ``load_path/arch_{idx}.pt`` (or ``arch_{idx}_{epoch}.pt``) in the project format."""
    return load_arch(arch_path(load_path, arch_idx, load_epoch), arch_idx, layers, width_mult_list)


def arch_parameters(record, arch_idx):
    """(alphas, betas, ratios) lists as train.py hands them to the network: betas = [None, beta_1, beta_2]."""
    alphas = [record[f"alpha_{arch_idx}_{k}"] for k in range(3)]
    betas = [None, record[f"beta_{arch_idx}_1"], record[f"beta_{arch_idx}_2"]]
    ratios = [record[f"ratio_{arch_idx}_{k}"] for k in range(3)]
    return alphas, betas, ratios


def record_genotype(record, arch_idx, layers=None, width_mult_list=None, ignore_skip=None, derivation="sequential",
                    lasts=None):
    """The Genotype train.py builds from a record: the stored one, else derived from the tensors.

    ``ignore_skip`` defaults to ``arch_idx == 0`` (the teacher), ``lasts`` to train.py's choice from the record's
    mIoU/latency (objective_acc_lat). ``width_mult_list``: the search's widths (None: the ratios must have one
    column). The stored genotype was derived with these defaults when the search wrote the file; other settings
    (``derivation="fresh"``, another ``ignore_skip`` or width list) derive again from the tensors.
    """
    arch_idx, layers = validate_arch(record, arch_idx, layers, width_mult_list)
    ignore_skip = arch_idx == 0 if ignore_skip is None else ignore_skip
    if lasts is None:
        lasts = choose_lasts(record["mIoU02"], record["latency02"], record["mIoU12"], record["latency12"])
    alphas, betas, ratios = arch_parameters(record, arch_idx)
    widths = [1.] if width_mult_list is None else list(width_mult_list)
    if GENOTYPE_KEY in record and derivation == "sequential" and ignore_skip == (arch_idx == 0):
        stored = Genotype.from_plain(record[GENOTYPE_KEY])
        if stored.layers == layers and list(stored.width_mult_list) == effective_width_mult_list(ratios, widths,
                                                                                                 ignore_skip):
            return stored.with_lasts(lasts)
    return derive_genotype(alphas, betas, ratios, widths, layers, ignore_skip, derivation, lasts)


def published_arch_path(arch_idx):
    """The published FasterSeg architecture (teacher 0, student 1) shipped in the project format."""
    return os.path.join(PUBLISHED_DIR, f"arch_{arch_idx}.pt")
