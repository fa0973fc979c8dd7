"""Reading the original FasterSeg's pickled files without running code from them.

The original wrote its arch files with ``torch.save`` of CUDA ``nn.Parameter``s and numpy scalars, and its
latency lookup table with ``np.save`` of a dict (an object array, i.e. a pickle). Unpickling such files in full
runs whatever callable the file names, so a crafted file executes code before any check. Here both are read by
restricted unpicklers that build only what those files hold:

* arch files: ``torch.load(weights_only=True)`` (tensors, Parameters, dicts, strings, numbers) plus numpy
  scalar and dtype reconstruction (:data:`TORCH_LEGACY_GLOBALS`);
* ``.npy`` tables: a ``pickle.Unpickler`` that resolves only numpy's array/scalar/dtype reconstruction and
  ``_codecs.encode`` (:data:`NPY_GLOBALS`); dicts, lists, strings and numbers need no global at all.

A file that names anything else is refused with :class:`UnsafeFileError`, which names the file and the global
it asked for; nothing from the file has run by then.
"""
import io
import pickle
import re

import numpy as np
import torch

from tools.utils.errors import UserError


class UnsafeFileError(UserError, ValueError):
    """A pickled file that needs a callable the project does not allow (it would run code when loaded)."""

    def __init__(self, path, global_name, what):
        self.path = path
        self.global_name = global_name
        super().__init__(f"{what} {path} asks to run '{global_name}' when loaded, which no {what} needs; it was "
                         f"refused without running anything: use a file written by FasterSeg or by this project.")


def _numpy_attr(dotted):
    """``numpy._core.multiarray.scalar`` under numpy 2, ``numpy.core.multiarray.scalar`` under numpy 1."""
    module_name, name = dotted.rsplit(".", 1)
    for candidate in (module_name.replace("numpy.core", "numpy._core"), module_name):
        try:
            module = __import__(candidate, fromlist=[name])
            return getattr(module, name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(dotted)


_SCALAR = _numpy_attr("numpy.core.multiarray.scalar")
_RECONSTRUCT = _numpy_attr("numpy.core.multiarray._reconstruct")
_DTYPE_CLASSES = [type(np.dtype(code)) for code in ("float64", "float32", "float16", "int64", "int32", "int16",
                                                     "int8", "uint8", "bool")]

# numpy 1 pickles name numpy.core.*, numpy 2 pickles numpy._core.*: allow both spellings of the same objects.
TORCH_LEGACY_GLOBALS = ([(_SCALAR, "numpy.core.multiarray.scalar"), (_SCALAR, "numpy._core.multiarray.scalar"),
                         np.dtype] + _DTYPE_CLASSES)

NPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("_codecs").encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        found = NPY_GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


class _Refused(pickle.UnpicklingError):
    pass


_TORCH_REFUSED = re.compile(r"(?:Unsupported global: GLOBAL|Trying to load unsupported GLOBAL) ([\w.]+)")


def refused_global(error):
    """The global a ``weights_only`` load refused (from torch's message), or None for other failures."""
    match = _TORCH_REFUSED.search(str(error))
    return match.group(1) if match else None


def load_legacy_torch(path, what="arch file"):
    """``torch.load(weights_only=True)`` on CPU that also accepts numpy scalars and dtypes (the original's
    arch files). A file needing any other global raises :class:`UnsafeFileError`; other failures propagate."""
    try:
        with torch.serialization.safe_globals(TORCH_LEGACY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        name = refused_global(error)
        if name is None:
            raise
        raise UnsafeFileError(path, name, what) from None


def load_npy(path, what="lookup table"):
    """``np.load`` of an ``.npy`` file; object arrays (pickles) go through the restricted unpickler."""
    from numpy.lib import format as npy_format
    with open(path, "rb") as handle:
        version = npy_format.read_magic(handle)
        readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
        reader = readers.get(version) or (lambda h: npy_format._read_array_header(h, version))
        _shape, _fortran, dtype = reader(handle)
        if not dtype.hasobject:
            handle.seek(0)
            return np.load(handle)
        payload = handle.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except _Refused as error:
        raise UnsafeFileError(path, str(error), what) from None
