"""The one way the project writes a file: a temporary file beside it, then ``os.replace``.

An interrupted run therefore never leaves a half-written PNG, JSON, list, checkpoint or ONNX file behind, and a
failed step does not destroy the previous version of a file (the original wrote in place with ``cv2.imwrite`` /
``open('w')`` / ``torch.save``). :func:`atomic_write` is the one writer (every other helper here and every
``save`` elsewhere goes through it): the written file gets the mode an ordinary ``open()`` would give it
(``0o666 & ~umask``, 0644 under the usual umask), a full disk or a folder that cannot be written is one sentence
naming the path (:class:`WriteError`), and the temporary names are recognisable so that
:func:`remove_temp_files` can clean up after a process that was killed while writing. :func:`atomic_path` serves
writers that insist on a file name instead of a handle (``torch.onnx.export``).
"""
import contextlib
import errno
import json
import os
import shutil
import tempfile

import cv2
import numpy as np

TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".tmp"
# errno values that mean "this disk / folder cannot take the file" (not a bug in the caller)
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class WriteError(OSError):
    """A file that cannot be written (full disk, read-only or foreign folder); names the path and the reason."""

    def __init__(self, path, os_error):
        reason = os_error.strerror or str(os_error)
        self.path = path
        self.message = (f"cannot write {path}: {reason}; free space on that disk or choose a folder you can write "
                        f"to (the previous version of the file, if any, is unchanged).")
        super().__init__(os_error.errno, self.message, path)

    def __str__(self):
        return self.message


def file_mode():
    """The permission bits ``open()`` gives a new file: ``0o666 & ~umask``."""
    try:
        with open("/proc/self/status") as handle:        # Linux: read without changing the process umask
            for line in handle:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _disk_error(error):
    """The OSError behind ``error`` (torch.save wraps it in a RuntimeError) when it is a disk/permission one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return error
        error = error.__cause__ or error.__context__
    return None


def _temp_beside(path):
    """A new empty temporary file in ``path``'s folder (made if missing); a disk error is a :class:`WriteError`."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", suffix=TEMP_SUFFIX,
                                   dir=directory)
    except OSError as error:
        if _disk_error(error) is None:
            raise
        raise WriteError(path, error) from error
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary file name beside ``path``; when the block succeeds it becomes ``path`` (with the mode of
    :func:`file_mode`), when it fails it is removed and ``path`` is untouched (disk errors: :class:`WriteError`)."""
    tmp = _temp_beside(path)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        cause = None if isinstance(error, WriteError) else _disk_error(error)
        if cause is not None:
            raise WriteError(path, cause) from error
        raise


def atomic_write(path, write_fn, mode="wb"):
    """Call ``write_fn(file)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The file is flushed to disk before the rename, so ``path`` is always either the old or the new file.
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def is_temp_file(name):
    """True for the temporary names :func:`atomic_write` uses."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def remove_temp_files(folder):
    """Delete temporary files left in ``folder`` (and below) by a writer that was killed; returns their paths."""
    removed = []
    for parent, _dirs, names in os.walk(folder):
        for name in names:
            if is_temp_file(name):
                path = os.path.join(parent, name)
                try:
                    os.remove(path)
                except FileNotFoundError:
                    continue
                removed.append(path)
    return sorted(removed)


def copy_file(src, dst):
    """Copy ``src`` to ``dst`` atomically (``dst`` gets the umask's mode, not ``src``'s)."""
    with open(src, "rb") as source:
        atomic_write(dst, lambda handle: shutil.copyfileobj(source, handle))
    return dst


def write_png(path, array, rgb=True):
    """Write a uint8 image (HxW, or HxWx3 RGB when ``rgb``) as PNG."""
    array = np.ascontiguousarray(array)
    if array.size == 0 or array.ndim not in (2, 3):
        raise ValueError(f"cannot write {path}: the image is empty or not HxW / HxWx3 (shape {array.shape}).")
    if array.ndim == 3 and rgb:
        array = np.ascontiguousarray(array[:, :, ::-1])
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path} as PNG.")
    atomic_write(path, lambda handle: handle.write(encoded.tobytes()))


def write_text(path, text):
    """Write ``text`` as UTF-8."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json(path, obj, indent=2):
    """Write ``obj`` as JSON with a final newline (``indent=2`` unless a format asks for another)."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path):
    """The JSON value stored at ``path`` (UTF-8)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
