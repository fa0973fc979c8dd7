"""The one way the project writes a file: a temporary file beside it, then ``os.replace``.

An interrupted run therefore never leaves a half-written PNG, JSON, list, checkpoint or ONNX file behind, and a
failed step does not destroy the previous version of a file (the original wrote in place with ``cv2.imwrite`` /
``open('w')`` / ``torch.save``). :func:`atomic_write` is the one writer (every other helper here and every
``save`` elsewhere goes through it): the written file gets the mode an ordinary ``open()`` would give it
(``0o666 & ~umask``, 0644 under the usual umask), a full disk or a folder that cannot be written is one sentence
naming the path (:class:`WriteError`), and the temporary names are recognisable so that
:func:`remove_temp_files` can clean up after a process that was killed while writing. :func:`atomic_path` serves
writers that insist on a file name instead of a handle (``torch.onnx.export``), :func:`atomic_folder` writers
of a whole folder (a deployment folder holds the files of one export only).

A log file is appended to, not replaced: :class:`LogFileHandler` is the one log-file handler, and it remembers a
line it could not write (logging's own handler prints the error and goes on, so a command on a full disk ended
with exit code 0 and an empty log); :func:`check_log_files` at the end of a command turns that into a
:class:`WriteError`.
"""
import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np

from tools.utils.errors import UserError

TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".tmp"
# errno values that mean "this disk / folder cannot take the file" (not a bug in the caller)
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class WriteError(UserError, OSError):
    """A file that cannot be written (full disk, read-only or foreign folder); names the path and the reason."""

    def __init__(self, path, os_error, consequence="the previous version of the file, if any, is unchanged"):
        reason = os_error.strerror or str(os_error)
        self.path, self.reason = path, reason
        self.message = (f"cannot write {path}: {reason}; free space on that disk or choose a folder you can write "
                        f"to ({consequence}).")
        super().__init__(os_error.errno, self.message, path)

    def __str__(self):
        return self.message


class FolderChangedError(UserError, OSError):
    """A folder that changed while :func:`atomic_folder` replaced it, or whose old version could not be removed;
    ``OSError(errno, sentence, path)``, shown as the sentence alone."""

    def __str__(self):
        return self.strerror


def _umask():
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as handle:        # Linux: read without changing the process umask
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode():
    """The permission bits ``open()`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def folder_mode():
    """The permission bits ``os.makedirs`` gives a new folder: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


def _disk_error(error):
    """The OSError behind ``error`` (torch.save wraps it in a RuntimeError) when it is a disk/permission one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_ERRORS:
            return error
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def _disk_errors_named(path):
    """Inside, a disk or permission OSError becomes a :class:`WriteError` naming ``path``."""
    try:
        yield
    except OSError as error:
        if isinstance(error, UserError) or _disk_error(error) is None:
            raise
        raise WriteError(path, error) from error


def _temp_beside(path):
    """A new empty temporary file in ``path``'s folder (made if missing); a disk error is a :class:`WriteError`."""
    directory = os.path.dirname(os.path.abspath(path))
    with _disk_errors_named(path):
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", suffix=TEMP_SUFFIX,
                                   dir=directory)
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


@contextlib.contextmanager
def atomic_folder(path, owned_files):
    """Yield a new empty folder beside ``path`` to fill; when the block succeeds the folder takes ``path``'s place,
    so ``path`` holds exactly what the block wrote (no file of an earlier version stays behind), and when it fails
    the new folder is removed and ``path`` is untouched.

    An existing ``path`` is only replaced through ``owned_files(path)``: the caller's set of the names in it that
    it wrote itself, raising when the folder holds anything else (no command deletes a file it did not write).
    Exactly those files are deleted afterwards; a file put there meanwhile stops the swap (:func:`_swap_folder`).
    """
    target = os.path.realpath(path)                     # a link: the folder it points to is replaced
    parent, name = os.path.split(target)
    with _disk_errors_named(path):
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=TEMP_PREFIX + name + ".", suffix=TEMP_SUFFIX, dir=parent)
        os.chmod(staging, folder_mode())
    try:
        yield staging
        _swap_folder(staging, target, path, owned_files)
    except WriteError as error:                         # named as the file in ``path`` it was written for
        shutil.rmtree(staging, ignore_errors=True)
        inside = os.path.relpath(error.path, staging)
        if inside.startswith(os.pardir):
            raise
        raise WriteError(os.path.join(path, inside), OSError(error.errno, error.reason),
                         "the previous version of the folder, if any, is unchanged") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)      # ours only: gone already when the swap succeeded
        raise


def _swap_folder(staging, target, path, owned_files):
    """Put the filled folder ``staging`` at ``target`` (``path`` resolved): an existing one is moved aside, checked
    again (a name ``owned_files`` did not list puts it back: :class:`FolderChangedError`), replaced by
    ``staging``, then emptied of the listed files and removed."""
    with _disk_errors_named(path):
        if not os.path.lexists(target):
            os.rename(staging, target)
            return
        owned = set(owned_files(path))
        aside = tempfile.mkdtemp(prefix=TEMP_PREFIX + os.path.basename(target) + ".old.", suffix=TEMP_SUFFIX,
                                 dir=os.path.dirname(target))
        old = os.path.join(aside, "old")
        os.rename(target, old)
        try:
            added = sorted(set(os.listdir(old)) - owned)
            if added:
                raise FolderChangedError(errno.ENOTEMPTY, f"{path} changed while its new version was being written "
                                         f"(it now also holds {', '.join(added)}); nothing in it was deleted: run "
                                         f"the command again.", path)
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            os.rmdir(aside)
            raise
    _remove_owned(old, owned, path)
    os.rmdir(aside)


def _remove_owned(folder, names, shown):
    """Delete the files ``names`` of the previous version of ``shown`` (moved aside to ``folder``) and the folder."""
    try:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
        os.rmdir(folder)
    except OSError as error:
        raise FolderChangedError(error.errno, f"the new {shown} is complete, but its previous version could not "
                                 f"be removed from {os.path.dirname(folder)} ({error.strerror or error}); delete "
                                 f"that folder.", folder) from error


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


class LogFileHandler(logging.FileHandler):
    """The project's log file (``log.txt``), appended to as logging's FileHandler does, but a line it cannot write
    (full disk, permissions) is remembered for :func:`check_log_files` instead of only printed: logging's handler
    prints a traceback per line and goes on, so the command ended with exit code 0 and an empty log."""

    def __init__(self, path):
        with _disk_errors_named(path):
            super().__init__(path, encoding="utf-8")
        self.error = None

    def handleError(self, record):
        """A write error: remembered, and said once on stderr; any other error (a bad format string) as usual."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        if self.error is None:
            self.error = error
            print(f"cannot write the log file {self.baseFilename}: {error.strerror or error}; the command will "
                  f"end with an error.", file=sys.stderr)

    def check(self):
        """Raise the first remembered write error as a :class:`WriteError` (once), naming the log file."""
        error, self.error = self.error, None
        if error is not None:
            raise WriteError(self.baseFilename, error, "the log lines from then on are missing")


def check_log_files(logger):
    """Raise :class:`WriteError` when a log file of ``logger`` failed to take a line: a command calls this at its
    end, so a log that could not be written makes it exit non-zero."""
    for handler in logger.handlers:
        if isinstance(handler, LogFileHandler):
            handler.check()
