"""tools/data/transforms.py: the original TrainPre pipeline and padding helpers."""
import random

import numpy as np
import pytest

from demo_helpers import rgb_coded
from tools.data import transforms as transforms_module
from tools.data.errors import DataError
from tools.data.transforms import (TrainTransform, ceil_to_multiple, generate_random_crop_pos, normalize,
                                   pad_image_to_shape, random_crop_pad_to_shape, random_mirror, random_scale)

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_pad_image_to_shape_splits_the_padding_like_the_original():
    img = np.ones((5, 6), np.uint8)
    out, margin = pad_image_to_shape(img, (8, 9), value=255)
    assert out.shape == (8, 9) and margin.tolist() == [1, 2, 1, 2]
    assert (out[1:6, 1:7] == 1).all() and out.sum() == 30 + 255 * (72 - 30)
    same, margin = pad_image_to_shape(img, 4, value=0)          # never crops
    assert same.shape == (5, 6) and margin.tolist() == [0, 0, 0, 0]


def test_random_crop_stays_inside_the_image():
    """The original drew randint(0, h - crop + 1), one past the last valid start (differences D-data-2)."""
    rng = random.Random(0)
    positions = {generate_random_crop_pos((10, 12), (8, 8), rng) for _ in range(500)}
    assert max(p[0] for p in positions) == 2 and max(p[1] for p in positions) == 4
    assert min(p[0] for p in positions) == 0 and min(p[1] for p in positions) == 0
    assert generate_random_crop_pos((4, 4), (8, 8), rng) == (0, 0)


def test_random_crop_pad_fills_image_and_label_differently():
    img = np.full((4, 6, 3), 7, np.float32)
    crop, margin = random_crop_pad_to_shape(img, (0, 0), (8, 8), 0)
    assert crop.shape == (8, 8, 3) and margin.tolist() == [2, 2, 1, 1] and crop[0, 0, 0] == 0
    with pytest.raises(ValueError):
        random_crop_pad_to_shape(img, (5, 0), (8, 8), 0)


def test_normalize_is_imagenet_on_0_1():
    img = np.array([[[255, 0, 128]]], np.uint8)
    out = normalize(img, MEAN, STD)
    expected = (np.array([1.0, 0.0, 128 / 255]) - MEAN) / STD
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)


def test_mirror_and_scale_keep_image_and_label_aligned():
    label = np.random.default_rng(0).integers(0, 19, (20, 30)).astype(np.uint8)
    img = rgb_coded(label)
    rng = random.Random(3)
    for _ in range(10):
        m_img, m_lbl = random_mirror(img, label, rng)
        np.testing.assert_array_equal(m_img[:, :, 0], m_lbl)
        s_img, s_lbl, scale = random_scale(img, label, [0.75, 1.25], rng)
        assert 0.75 <= scale <= 1.25 and s_img.shape[:2] == s_lbl.shape == (int(20 * scale), int(30 * scale))


def test_train_transform_output_and_label_down_sampling():
    label = np.random.default_rng(1).integers(0, 19, (64, 128)).astype(np.uint8)
    t = TrainTransform(32, 64, MEAN, STD, train_scale_array=[0.5, 1.5], gt_down_sampling=8, seed=0)
    img, gt, extra = t(rgb_coded(label), label)
    assert extra is None
    assert img.shape == (3, 32, 64) and img.dtype == np.float32
    assert gt.shape == (4, 8) and gt.dtype == np.uint8
    assert set(np.unique(gt)) <= set(range(19)) | {255}


def test_train_transform_crop_is_aligned_and_pads_with_0_and_255():
    """Without scaling and down-sampling the label crop must equal the image crop's encoded label."""
    label = np.random.default_rng(2).integers(0, 19, (24, 40)).astype(np.uint8)
    t = TrainTransform(32, 64, [0, 0, 0], [1 / 255] * 3, train_scale_array=None, gt_down_sampling=1, seed=1)
    for _ in range(5):
        img, gt, _ = t(rgb_coded(label), label)
        red = img[0]
        valid = gt != 255
        assert valid.sum() == 24 * 40
        np.testing.assert_array_equal(np.rint(red[valid]), gt[valid])
        assert (img[:, ~valid] == 0).all()


def test_train_transform_is_reproducible_from_its_seed():
    label = np.random.default_rng(3).integers(0, 19, (64, 128)).astype(np.uint8)
    img = rgb_coded(label)
    a = [TrainTransform(32, 64, MEAN, STD, [0.75, 1, 1.25], seed=5)(img, label) for _ in range(2)]
    np.testing.assert_array_equal(a[0][0], a[1][0])
    t = TrainTransform(32, 64, MEAN, STD, [0.75, 1, 1.25], seed=5)
    first, second = t(img, label), t(img, label)
    assert not np.array_equal(first[0], second[0])
    t.reseed(5)
    np.testing.assert_array_equal(t(img, label)[0], a[0][0])


@pytest.mark.parametrize("height, width", [(30, 64), (32, 100), (0, 64)])
def test_crop_size_not_a_multiple_of_32_is_refused(height, width):
    with pytest.raises(DataError, match="image_height/image_width"):
        TrainTransform(height, width, MEAN, STD)


def test_gt_down_sampling_must_divide_the_crop():
    with pytest.raises(DataError, match="gt_down_sampling"):
        TrainTransform(32, 64, MEAN, STD, gt_down_sampling=3)


def test_normalising_the_crop_equals_the_original_order():
    """Original: normalise the whole image, then crop and pad with 0; we crop first (cheaper), same values."""
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (40, 90, 3)).astype(np.uint8)
    label = rng.integers(0, 19, (40, 90)).astype(np.uint8)
    ours = TrainTransform(64, 64, MEAN, STD, [0.75, 1.25], seed=9)
    reference_rng = random.Random(9)
    for _ in range(5):
        got, got_gt, _ = ours(img, label)
        m_img, m_lbl = random_mirror(img, label, reference_rng)
        s_img, s_lbl, _ = random_scale(m_img, m_lbl, [0.75, 1.25], reference_rng)
        full = normalize(s_img, MEAN, STD)
        pos = generate_random_crop_pos(full.shape[:2], (64, 64), reference_rng)
        expected, _ = random_crop_pad_to_shape(full, pos, (64, 64), 0)
        expected_gt, _ = random_crop_pad_to_shape(s_lbl, pos, (64, 64), 255)
        np.testing.assert_array_equal(got, expected.transpose(2, 0, 1))
        np.testing.assert_array_equal(got_gt, expected_gt)


def test_training_scales_are_chosen_from_the_array_as_the_original():
    """img_utils.py:106 draws random.choice(scales): 1,000 draws give exactly {0.75, 1, 1.25}, each often."""
    img = np.zeros((40, 80, 3), np.uint8)
    label = np.zeros((40, 80), np.uint8)
    transform = TrainTransform(32, 64, MEAN, STD, train_scale_array=[0.75, 1, 1.25], seed=0)
    seen = []
    original = transforms_module.random_scale

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out[2])
        return out
    transforms_module.random_scale = spy
    try:
        for _ in range(1000):
            transform(img, label)
    finally:
        transforms_module.random_scale = original
    counts = {s: seen.count(s) for s in set(seen)}
    assert set(counts) == {0.75, 1, 1.25}
    assert min(counts.values()) > 250


def test_train_scale_range_draws_a_continuous_scale():
    rng = random.Random(0)
    img, label = np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30), np.uint8)
    scales = {random_scale(img, label, [0.75, 1, 1.25], rng, continuous=True)[2] for _ in range(200)}
    assert len(scales) > 150 and min(scales) >= 0.75 and max(scales) <= 1.25


def test_train_and_search_configs_take_scale_choice_and_no_eval_flip():
    from tools.config import load_config
    for name in ("train", "search", "camvid_train", "camvid_search"):
        config = load_config(name, [])
        assert config.eval_flip is False, name
        assert config.train_scale_range is False and list(config.train_scale_array) == [0.75, 1, 1.25], name


def test_ceil_to_multiple_is_the_size_a_whole_image_is_padded_to():
    assert ceil_to_multiple((360, 480)) == (384, 480)        # CamVid, as evaluated and exported
    assert ceil_to_multiple((32, 64)) == (32, 64)
    assert ceil_to_multiple((1, 33)) == (32, 64)
    assert ceil_to_multiple((10, 10), divisor=8) == (16, 16)


def test_color_jitter_is_off_by_default_and_keeps_the_crop_when_on():
    """train_color_jitter=0 (default) gives the original's crops and draws; > 0 changes the image's colours
    within the factors' range, never the label or the crop position."""
    from tools.data.transforms import color_jitter
    label = np.random.default_rng(4).integers(0, 19, (64, 128)).astype(np.uint8)
    img = rgb_coded(label)
    plain = TrainTransform(32, 64, MEAN, STD, [1], seed=7)(img, label)
    off = TrainTransform(32, 64, MEAN, STD, [1], seed=7, color_jitter=0.0)(img, label)
    on = TrainTransform(32, 64, MEAN, STD, [1], seed=7, color_jitter=0.4)(img, label)
    np.testing.assert_array_equal(plain[0], off[0])
    np.testing.assert_array_equal(plain[1], on[1])                   # same mirror and crop, same label
    assert not np.allclose(plain[0], on[0])
    grey = np.full((4, 4, 3), 100, np.uint8)                         # a grey image: only brightness acts
    for seed in range(20):
        out = color_jitter(grey, 0.4, random.Random(seed))
        assert out.dtype == np.float32 and 60 - 1e-3 <= out.min() and out.max() <= 140 + 1e-3
        assert np.allclose(out, out[0, 0, 0])
    assert color_jitter(np.full((2, 2, 3), 250, np.uint8), 0.9, random.Random(1)).max() <= 255
