"""tools/data/visualize.py: colour maps and overlays (the original visualize.py)."""
import numpy as np

from tools.data.visualize import colorize, overlay, show_img

COLORS = [[255, 0, 0], [0, 255, 0]]


def test_colorize_and_overlay():
    class_map = np.array([[0, 1, 255]])
    np.testing.assert_array_equal(colorize(class_map, COLORS), [[[255, 0, 0], [0, 255, 0], [0, 0, 0]]])
    image = np.full((1, 3, 3), 100, np.uint8)
    out = overlay(image, class_map, COLORS)
    np.testing.assert_array_equal(out[0, 0], [185, 45, 45])          # 0.55 * colour + 0.45 * image
    np.testing.assert_array_equal(out[0, 2], [100, 100, 100])        # ignore: untouched
    np.testing.assert_array_equal(overlay(image, class_map, COLORS, show_ignore=True)[0, 2], [45, 45, 45])
    np.testing.assert_array_equal(overlay(image, class_map, COLORS, background=0)[0, 0], [100, 100, 100])


def test_show_img_puts_panels_side_by_side():
    image = np.zeros((4, 5, 3), np.uint8)
    out = show_img(COLORS, -1, image, np.zeros((4, 5), np.uint8), np.ones((4, 5), np.uint8))
    assert out.shape == (4, 5 * 3 + 15 * 2, 3)
