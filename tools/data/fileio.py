"""Atomic writes for everything the data tools produce: write a temporary file, then ``os.replace``.

An interrupted run therefore never leaves a half-written PNG, JSON or list behind, and a failed step does not
destroy the previous version of a file (the original wrote in place with ``cv2.imwrite`` / ``open('w')``).
"""
import json
import os
import tempfile

import cv2
import numpy as np


def _atomic_write_bytes(path, payload):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    _atomic_write_bytes(path, encoded.tobytes())


def write_text(path, text):
    _atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")
