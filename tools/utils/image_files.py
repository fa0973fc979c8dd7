"""Image files read whole: a JPEG or PNG cut short is refused instead of decoded into grey.

libjpeg decodes a JPEG cut in half with only a warning on stderr (the missing half grey) and a PNG decoder may
return the rows it got, so a damaged file would train, evaluate or be predicted silently. This module finds such
files from their structure, without decoding: a JPEG must reach its end-of-image marker after its first scan, a
PNG its ``IEND`` chunk with every chunk whole. Other formats are left to the decoder (cv2 returns None for the
ones it cannot read).

It imports only the standard library, numpy and cv2: the deployment folder's predict.py uses a copy of this
file (tools/latency/deploy.py puts it beside predict.py), so the training code and a deployed model refuse the
same files.
"""
import os

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
JPEG_SOS = 0xDA
# JPEG markers without a length field: TEM, RST0-7 (SOI and EOI are handled apart)
JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))
TAIL_BYTES = 64


def _jpeg_problem(data):
    """Why the JPEG bytes ``data`` are incomplete, or None: walk the segments to the first scan, then an
    end-of-image marker must follow (entropy-coded data never holds 0xFFD9, and an EXIF thumbnail's own markers
    sit inside its APP1 segment, which the walk skips by its length)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return "its markers are damaged"
        marker = data[pos + 1]
        if marker == 0xFF:                  # fill byte before a marker
            pos += 1
        elif marker in JPEG_STANDALONE:
            pos += 2
        elif marker == JPEG_EOI[1]:
            return "it ends before its image data"
        else:
            end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == JPEG_SOS:
                return None if data.find(JPEG_EOI, end) >= 0 else "it is cut short (no end-of-image marker)"
            pos = end
    return "it is cut short before its image data"


def _png_problem(data):
    """Why the PNG bytes ``data`` are incomplete, or None: every chunk whole, up to ``IEND``."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return f"it is cut short (its {kind.decode('latin-1')} chunk is incomplete)"
        if kind == b"IEND":
            return None
        pos = end
    return "it is cut short (no IEND chunk)"


def bytes_problem(data):
    """Why the encoded image ``data`` is incomplete, or None (formats other than JPEG and PNG: None)."""
    if data.startswith(JPEG_SOI):
        return _jpeg_problem(data)
    if data.startswith(PNG_SIGNATURE):
        return _png_problem(data)
    return None


def file_problem(path):
    """Why the image file ``path`` is incomplete, or None; reads only its first and last bytes when it ends
    as a whole JPEG or PNG does (the usual case), the whole file otherwise."""
    with open(path, "rb") as handle:
        head = handle.read(len(PNG_SIGNATURE))
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read()
        if head.startswith(JPEG_SOI) and tail.rstrip(b"\x00\r\n ").endswith(JPEG_EOI) and size > 4:
            return None
        if head.startswith(PNG_SIGNATURE) and tail.endswith(PNG_IEND):
            return None
        if not (head.startswith(JPEG_SOI) or head.startswith(PNG_SIGNATURE)):
            return None
        handle.seek(0)
        return bytes_problem(handle.read())


def decode_file(path, flags=cv2.IMREAD_COLOR):
    """``(image, problem)``: the decoded image (as ``cv2.imread(path, flags)`` gives it) and None, or None and
    why it cannot be used (unreadable, not an image, cut short). The caller words the error."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        return None, f"it cannot be opened ({error.strerror or error})"
    problem = bytes_problem(data.tobytes())
    if problem is not None:
        return None, problem
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        return None, "it is corrupt or not an image"
    return image, None
