"""train/predict.py and tools/engine/predictor.py: images, folders and videos in, colour masks and overlays out."""
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from tests.train_helpers import street_scene
from tools.config import ConfigError, load_config
from tools.data.datasets import read_image
from tools.utils.fileio import write_json, write_png
from tools.data.labels import cityscapes_labels
from tools.data.visualize import colorize
from tools.engine import predictor as predictor_module
from tools.engine.predictor import (PredictInputError, collect_inputs, config_for_weights, load_predictor,
                                    predict_inputs)
from tools.engine.run import config_snapshot
from tools.models.build import derived_from_config
from tools.engine.weights import save_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PALETTE = {tuple(c) for c in cityscapes_labels().colors}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A student weights file (untrained, Kaiming init), two images in a folder, one odd-sized image, a video."""
    root = tmp_path_factory.mktemp("predict")
    config = load_config("train", ["device='cpu'", "eval_flip=False"])
    torch.manual_seed(0)
    save_weights(derived_from_config(config, 1, "cpu"), str(root / "run"), 1)
    rng = np.random.default_rng(0)
    for index in range(2):
        write_png(str(root / "folder" / f"street{index}.png"), street_scene(rng, 64, 128)[0])
    write_png(str(root / "odd.jpg"), street_scene(rng, 50, 70)[0])
    writer = cv2.VideoWriter(str(root / "drive.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (128, 64))
    for _ in range(3):
        writer.write(street_scene(rng, 64, 128)[0][:, :, ::-1].copy())
    writer.release()
    return root, config


def test_images_folders_and_videos_give_masks_and_overlays(files, tmp_path):
    root, config = files
    predictor, weights = load_predictor(config, str(root / "run"))
    assert weights.endswith("weights1.pt")
    written = predict_inputs(predictor, [str(root / "folder"), str(root / "odd.jpg"), str(root / "drive.mp4")],
                             str(tmp_path), save_ids=True, progress=False)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(["legend.png", "street0_mask.png", "street0_overlay.png", "street0_trainIds.png",
                            "street1_mask.png",
                            "street1_overlay.png", "street1_trainIds.png", "odd_mask.png", "odd_overlay.png",
                            "odd_trainIds.png", "drive_mask.mp4", "drive_overlay.mp4"])
    mask = read_image(str(tmp_path / "odd_mask.png"))
    assert mask.shape == (50, 70, 3)                               # any size: padded to 32 and cropped back
    assert {tuple(c) for c in mask.reshape(-1, 3)} <= PALETTE
    ids = cv2.imread(str(tmp_path / "street0_trainIds.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(read_image(str(tmp_path / "street0_mask.png")), colorize(ids, cityscapes_labels().colors))
    video = cv2.VideoCapture(str(tmp_path / "drive_overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 128
    video.release()


def test_prediction_is_the_evaluators(files):
    root, config = files
    predictor, _ = load_predictor(config, str(root / "run" / "weights1.pt"))
    image = read_image(str(root / "folder" / "street0.png"))
    pred, mask, blended = predictor.predict(image)
    assert np.array_equal(pred, predictor.evaluator.predict(image).astype(np.uint8))
    assert pred.shape == image.shape[:2] and mask.shape == blended.shape == image.shape


def test_command_line(files, tmp_path):
    root, _ = files
    command = [sys.executable, os.path.join(REPO, "train", "predict.py"), "--weights", str(root / "run"),
               "--input", str(root / "odd.jpg"), "--output", str(tmp_path), "--quiet", "device='cpu'",
               "eval_flip=False"]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "3 files from" in completed.stdout and os.path.isfile(tmp_path / "odd_overlay.png")
    assert re.search(r"1 frame\(s\) in [0-9.]+ s: [0-9.]+ FPS", completed.stdout)
    assert os.path.isfile(tmp_path / "legend.png")


def test_a_camera_index_is_read_like_a_video_until_max_frames(files, tmp_path, monkeypatch):
    root, config = files
    opened = []

    def fake_capture(source):
        opened.append(source)
        return real_capture(str(root / "drive.mp4"))

    real_capture = cv2.VideoCapture
    monkeypatch.setattr(predictor_module.cv2, "VideoCapture", fake_capture)
    assert collect_inputs(["0"]) == [("camera", 0)]
    predictor, _ = load_predictor(config, str(root / "run"))
    written = predict_inputs(predictor, ["0"], str(tmp_path), progress=False, max_frames=2)
    assert opened == [0] and sorted(os.path.basename(p) for p in written) == [
        "camera0_mask.mp4", "camera0_overlay.mp4", "legend.png"]
    assert predictor.frames == 2 and predictor.fps > 0


def test_one_forward_pass_by_default_and_the_run_folders_own_config(files, tmp_path):
    root, config = files
    sliding = load_config("train", ["device='cpu'", "eval_flip=True", "eval_scale_array=[0.75, 1.0]"])
    predictor, _ = load_predictor(sliding, str(root / "run"))
    assert predictor.evaluator.multi_scales == [1] and not predictor.evaluator.is_flip
    predictor, _ = load_predictor(sliding, str(root / "run"), tta=True)
    assert predictor.evaluator.multi_scales == [0.75, 1.0] and predictor.evaluator.is_flip
    run = tmp_path / "run"
    shutil.copytree(str(root / "run"), str(run))
    saved = config_snapshot(config)
    saved.update(num_classes=3, dataset="custom", labels_file=str(tmp_path / "labels.csv"))
    (tmp_path / "labels.csv").write_text("name,id,trainId,color_r,color_g,color_b\na,0,0,1,2,3\nb,1,1,4,5,6\n"
                                         "c,2,2,7,8,9\n")
    write_json(str(run / "config.json"), saved)
    own = config_for_weights(str(run / "weights1.pt"), None, ["device='cpu'"])
    assert own.num_classes == 3 and own.labels_file == str(tmp_path / "labels.csv")
    assert config_for_weights(str(run), "train", []).num_classes == 19       # --config wins
    with pytest.raises(ConfigError, match="does not set a key of"):
        config_for_weights(str(run), None, ["no_such_key=1"])


@pytest.mark.parametrize("inputs, words", [
    (["/nonexistent.png"], "input /nonexistent.png does not exist"),
    ([os.path.abspath(__file__)], "is neither an image"),
    ([], "no input given"),
])
def test_bad_inputs_are_one_sentence(inputs, words):
    with pytest.raises(PredictInputError, match=words):
        collect_inputs(inputs)


def test_empty_folder_and_missing_weights(tmp_path, files):
    _, config = files
    with pytest.raises(PredictInputError, match="holds no images"):
        collect_inputs([str(tmp_path)])
    with pytest.raises(PredictInputError, match="holds neither weights1.pt nor weights0.pt"):
        load_predictor(config, str(tmp_path))
    with pytest.raises(PredictInputError, match=r"cannot tell teacher from student .*; pass --arch-idx 0 or 1"):
        (tmp_path / "model.pt").write_bytes(b"")
        load_predictor(config, str(tmp_path / "model.pt"))


def test_a_larger_image_is_predicted_at_the_training_scale_unless_native(files):
    """A 4x upscaled copy of an image (a 'phone photo') is shrunk to the training images' pixel count: its mask
    is the native image's mask scaled by 4. ``native`` predicts it at full resolution; an image smaller than
    the training images is never enlarged."""
    root, config = files
    small_config = config_for_weights(str(root / "run"), "train", ["device='cpu'", "eval_flip=False",
                                                                    "eval_height=64", "eval_width=128"])
    predictor, _ = load_predictor(small_config, str(root / "run"))
    assert predictor.training_size == (64, 128)          # no readable val list: the config's eval size
    image = read_image(str(root / "folder" / "street0.png"))
    big = cv2.resize(image, (512, 256), interpolation=cv2.INTER_NEAREST)
    native_pred = predictor.predict(image)[0]
    big_pred, big_mask, big_overlay = predictor.predict(big)
    assert big_pred.shape == (256, 512) and big_mask.shape == big_overlay.shape == (256, 512, 3)
    assert np.array_equal(big_pred, cv2.resize(native_pred, (512, 256), interpolation=cv2.INTER_NEAREST))
    full, _ = load_predictor(small_config, str(root / "run"), native=True)
    assert full.training_size is None
    assert np.array_equal(full.predict(big)[0], full.evaluator.predict(big).astype(np.uint8))
    odd = read_image(str(root / "odd.jpg"))                 # 50x70: below the training size, kept as it is
    assert np.array_equal(predictor.predict(odd)[0], predictor.evaluator.predict(odd).astype(np.uint8))


def test_two_inputs_that_would_write_one_output_are_refused(tmp_path):
    """a/x.png and b/x.jpg would write the same x_mask.png: refused before anything is predicted, by the project
    and by the deployment folder's predict.py; an image and a video of one stem write different files."""
    from tools.latency import deploy_predict
    for folder, ext in (("a", ".png"), ("b", ".jpg")):
        write_png(str(tmp_path / folder / ("x" + ext)), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "x.mp4").write_bytes(b"")
    first, second = str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.jpg")
    with pytest.raises(PredictInputError, match=r"inputs .*a/x.png and .*b/x.jpg would both write x_\* files"):
        collect_inputs([str(tmp_path / "a"), second])
    with pytest.raises(SystemExit, match=r"inputs .*a/x.png and .*b/x.jpg would both write x_\* files"):
        deploy_predict.collect([first, second])
    assert len(collect_inputs([first, str(tmp_path / "x.mp4")])) == 2
    assert len(deploy_predict.collect([first, str(tmp_path / "x.mp4")])) == 2
