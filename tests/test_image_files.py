"""tools/utils/image_files.py: JPEG and PNG files cut short are found from their structure; whole ones pass,
including what phones write (EXIF thumbnails, data after the end-of-image marker) and progressive JPEGs."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tools.utils.image_files import bytes_problem, decode_file, file_problem


def _image(seed=0, size=(48, 64)):
    return np.random.default_rng(seed).integers(0, 255, size + (3,), dtype=np.uint8)


def _jpeg_bytes(**save):
    buffer = io.BytesIO()
    Image.fromarray(_image()).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _png_bytes():
    ok, encoded = cv2.imencode(".png", _image())
    assert ok
    return encoded.tobytes()


def _exif_with_thumbnail():
    """A JPEG whose APP1 segment embeds a whole JPEG thumbnail (its own start, scan and end markers)."""
    exif = Image.Exif()
    exif[0x0112] = 1
    thumbnail = _jpeg_bytes()
    main = _jpeg_bytes(exif=exif.tobytes())
    # put the thumbnail bytes inside an APP1 segment right after SOI: the walk must skip it by its length
    app1 = b"\xff\xe1" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    return main[:2] + app1 + main[2:]


WHOLE = {
    "baseline jpeg": lambda: _jpeg_bytes(),
    "progressive jpeg": lambda: _jpeg_bytes(progressive=True),
    "jpeg with an embedded thumbnail": _exif_with_thumbnail,
    "jpeg with data after its end (motion photo)": lambda: _jpeg_bytes() + b"ftypmp42" + bytes(300),
    "png": _png_bytes,
}


@pytest.mark.parametrize("name", sorted(WHOLE))
def test_whole_files_pass_and_decode_as_cv2_imread_does(tmp_path, name):
    path = tmp_path / ("x.png" if "png" in name else "x.jpg")
    path.write_bytes(WHOLE[name]())
    assert file_problem(str(path)) is None
    image, problem = decode_file(str(path))
    assert problem is None and np.array_equal(image, cv2.imread(str(path)))


@pytest.mark.parametrize("name", sorted(WHOLE))
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_files_cut_short_are_refused(tmp_path, name, keep):
    data = WHOLE[name]()
    if "motion" in name:
        data = data[:data.rindex(b"\xff\xd9")]         # cut before the end marker, not only in the trailer
    cut = data[:int(len(data) * keep)]
    path = tmp_path / "x.bin"
    path.write_bytes(cut)
    assert "cut short" in bytes_problem(cut)
    assert "cut short" in file_problem(str(path))
    image, problem = decode_file(str(path))
    assert image is None and "cut short" in problem


def test_other_formats_and_garbage_are_left_to_the_decoder(tmp_path):
    bmp = tmp_path / "x.bmp"
    assert cv2.imwrite(str(bmp), _image())
    assert file_problem(str(bmp)) is None and decode_file(str(bmp))[1] is None
    junk = tmp_path / "x.jpg"
    junk.write_bytes(b"not an image at all")
    assert file_problem(str(junk)) is None
    assert decode_file(str(junk)) == (None, "it is corrupt or not an image")
    assert decode_file(str(tmp_path / "missing.jpg"))[1].startswith("it cannot be opened")
