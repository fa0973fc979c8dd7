"""latency/export_onnx.py: a training run folder -> a deployment folder (model.onnx, model_int8.onnx, meta.json,
a stand-alone predict.py) whose predictions equal the project's predictor; random weights only when asked."""
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from tests.demo_helpers import make_small_demo
from tools.config import load_config
from tools.data.datasets import label_set_from_config, read_file_list, read_image
from tools.engine.predictor import config_for_weights, load_predictor
from tools.engine.run import write_config
from tools.models.build import derived_from_config
from tools.engine.weights import load_weights, save_weights
from tools.latency.backends import tensorrt_available
from tools.latency.deploy import (DeployError, default_export_size, export_deployment, find_weights, read_meta,
                                  tensorrt_engine)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_TORCH = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A student run folder as train.py leaves it (config.json, weights1.pt) on a 64x128 demo dataset."""
    root = tmp_path_factory.mktemp("deploy")
    make_small_demo(str(root / "data"), counts={"train": 2, "val": 2, "test": 0})
    config = load_config("train_tiny", [f"dataset_path='{root / 'data'}'", "mode='student'", "arch_idx=[1]",
                                        "device='cpu'", "eval_height=64", "eval_width=128", "down_sampling=1"])
    folder = root / "run"
    torch.manual_seed(0)
    save_weights(derived_from_config(config, 1, "cpu"), str(folder), 1)
    write_config(str(folder), config)
    return root, str(folder)


@pytest.fixture(scope="module")
def deployment(run_folder):
    root, folder = run_folder
    out = str(root / "deploy")
    lines = []
    meta = export_deployment(folder, out, size=(64, 128), int8=True, calib_images=2, dynamic=True, dynamic_hw=True,
                             log=lines.append)
    return out, meta, lines


def test_export_refuses_random_weights_unless_asked_by_name(tmp_path):
    with pytest.raises(DeployError, match=r"^no trained weights given: .* pass --random-weights\.$"):
        export_deployment(None, str(tmp_path / "deploy"))
    sys.path.insert(0, os.path.join(REPO, "latency"))
    try:
        import export_onnx
    finally:
        sys.path.pop(0)
    with pytest.raises(DeployError, match="--random-weights"):
        export_onnx.main(["--out", str(tmp_path / "deploy")])
    assert not os.path.exists(tmp_path / "deploy")
    assert find_weights(None, random_weights=True) == (None, 1)


def test_default_export_size_is_the_size_val_is_evaluated_at(run_folder, tmp_path):
    # the demo presets keep Cityscapes' eval size 1024x2048 while the scenes are read at half size: a network
    # exported at 1024x2048 and fed a padded 32x64 image scored 0.210 instead of 0.2585 (global pooling saw padding)
    root, _ = run_folder
    config = load_config("train_tiny", [f"dataset_path='{root / 'data'}'", "down_sampling=2"])
    assert (config.eval_height, config.eval_width) == (1024, 2048)
    lines = []
    assert default_export_size(config, lines.append) == (32, 64)             # the 64x128 val images / 2
    assert "val images' size" in lines[0] and "32x64" in lines[0]
    # no val list where the export runs: the config's eval size, rounded up to multiples of 32
    config = load_config("train_tiny", [f"dataset_path='{tmp_path}'", "eval_height=360", "eval_width=480"])
    lines = []
    assert default_export_size(config, lines.append) == (384, 480)
    assert "eval_height x eval_width" in lines[0]


def test_deployment_folder_holds_models_meta_and_predict(deployment, run_folder):
    out, meta, lines = deployment
    assert sorted(os.listdir(out)) == ["image_files.py", "legend.png", "meta.json", "model.onnx", "model_int8.onnx",
                                       "predict.py"]
    assert read_meta(out) == json.loads(json.dumps(meta))                 # meta.json round-trips
    config = config_for_weights(run_folder[1])
    labels = label_set_from_config(config)
    assert meta["classes"]["names"] == labels.names and meta["classes"]["colors"] == labels.colors
    assert meta["input"]["height"] == 64 and meta["input"]["channel_order"] == "RGB"
    assert meta["arch"]["network"] == "student" and meta["source"]["weights"].endswith("weights1.pt")
    assert meta["models"]["int8"]["calibration_list"] == config.train_source
    for kind in ("fp32", "int8"):
        assert 0.0 <= meta["models"][kind]["val_mIoU"] <= 1.0
    assert any("val mIoU" in line and "model_int8.onnx" in line for line in lines)
    assert meta["input"]["dynamic_batch"] and meta["input"]["dynamic_hw"]
    network = derived_from_config(config, 1, "cpu")
    load_weights(network, os.path.join(run_folder[1], "weights1.pt"))
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = network.eval()(x).numpy()
    for name in ("model.onnx", "model_int8.onnx"):                     # another batch size and image size
        session = onnxruntime.InferenceSession(os.path.join(out, name), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (2, 19, 96, 160)
    assert np.abs(got - expected).max() < 0.5 * np.abs(expected).max()
    session = onnxruntime.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max() < 1e-3 * np.abs(expected).max()


def test_tensorrt_engine_or_one_line_saying_why_not(deployment, tmp_path):
    out, _, _ = deployment
    if tensorrt_available()[0]:
        pytest.skip("TensorRT is installed here (the engine is built on the GPU box)")
    said = []
    assert tensorrt_engine(os.path.join(out, "model.onnx"), str(tmp_path), "fp16", (64, 128), said.append) is None
    assert len(said) == 1 and said[0].startswith("no TensorRT engine written: ") and not os.listdir(tmp_path)


def test_deployment_predict_runs_without_torch_and_equals_the_project_predictor(deployment, run_folder, tmp_path):
    """Both predictors on a val image and on a 4x upscaled copy of it (a 'phone photo'): the copy is shrunk to
    the training images' size, so its mask is the native mask scaled by 4, in the deployment folder as in
    the project."""
    import cv2
    out, meta, _ = deployment
    root, folder = run_folder
    assert meta["input"]["training_size"] == [64, 128]
    entries = read_file_list(os.path.join(root, "data", "cityscapes_val_fine.txt"))
    image_path = os.path.join(root, "data", entries[0][0])
    image = read_image(image_path)
    big_path = str(tmp_path / "inputs" / "big.png")
    os.makedirs(os.path.dirname(big_path))
    Image.fromarray(cv2.resize(image, (512, 256), interpolation=cv2.INTER_NEAREST)).save(big_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run([sys.executable, "-c", NO_TORCH, os.path.join(out, "predict.py"), "--input",
                                image_path, "--input", big_path, "--output", str(tmp_path)], cwd=str(tmp_path),
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "2 frame(s) in" in completed.stdout and "FPS" in completed.stdout
    stem = os.path.splitext(os.path.basename(image_path))[0]
    onnx_classes = np.array(Image.open(tmp_path / f"{stem}_labels.png"))
    predictor, _ = load_predictor(config_for_weights(folder), folder)
    assert predictor.training_size == (64, 128)
    torch_classes = predictor.predict(image)[0]
    assert onnx_classes.shape == torch_classes.shape == (64, 128)
    assert (onnx_classes == torch_classes).mean() >= 0.999
    assert os.path.isfile(tmp_path / f"{stem}_overlay.png") and os.path.isfile(tmp_path / "legend.png")
    onnx_big = np.array(Image.open(tmp_path / "big_labels.png"))
    torch_big = predictor.predict(read_image(big_path))[0]
    assert onnx_big.shape == torch_big.shape == (256, 512)
    assert np.array_equal(torch_big, cv2.resize(torch_classes, (512, 256), interpolation=cv2.INTER_NEAREST))
    assert np.array_equal(onnx_big, cv2.resize(onnx_classes, (512, 256), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("shape", [(64, 128), (32, 64), (256, 512), (3000, 4000), (4000, 3000), (65, 129)])
@pytest.mark.parametrize("dynamic_hw", [True, False])
def test_deployment_folder_and_project_shrink_by_one_rule(shape, dynamic_hw):
    """The deployment folder's predict.py (no project code) shrinks by tools.data.transforms.training_scale; a
    fixed-size model also fits its input; an old meta.json without training_size only fits."""
    from tools.data.transforms import training_scale
    from tools.latency import deploy_predict
    segmenter = object.__new__(deploy_predict.Segmenter)
    segmenter.training_size, segmenter.dynamic_hw, segmenter.size = [64, 128], dynamic_hw, (64, 128)
    expected = training_scale(shape, (64, 128))
    if not dynamic_hw:
        expected = min(expected, 64 / shape[0], 128 / shape[1])
    assert segmenter.scale(*shape) == pytest.approx(expected, rel=1e-12)
    segmenter.training_size = None
    assert segmenter.scale(*shape) == (1.0 if dynamic_hw else min(1.0, 64 / shape[0], 128 / shape[1]))


def _export(folder, out, **options):
    """The cheapest real export of the run folder (tracer, no evaluation) into ``out``."""
    return export_deployment(folder, str(out), size=(64, 128), exporter="torchscript", evaluate=False,
                             log=lambda line: None, **options)


def test_a_second_export_leaves_none_of_the_first_exports_files(run_folder, tmp_path):
    """The issue's case: an int8 export, then an fp32-only one into the same folder left model_int8.onnx behind."""
    _, folder = run_folder
    out = tmp_path / "deploy"
    meta = _export(folder, out, int8=True, calib_images=2)
    assert meta["files"] == ["image_files.py", "legend.png", "meta.json", "model.onnx", "model_int8.onnx", "predict.py"]
    assert sorted(os.listdir(out)) == meta["files"] and read_meta(str(out)) == json.loads(json.dumps(meta))
    meta = _export(folder, out)
    assert sorted(os.listdir(out)) == meta["files"] == ["image_files.py", "legend.png", "meta.json", "model.onnx",
                                                        "predict.py"]
    assert list(read_meta(str(out))["models"]) == ["fp32"] and os.listdir(tmp_path) == ["deploy"]


def test_a_folder_holding_other_files_is_refused_and_kept(run_folder, tmp_path, monkeypatch):
    _, folder = run_folder
    out = tmp_path / "deploy"
    _export(folder, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DeployError, match=rf"^deployment folder {out} also holds files no export wrote \(notes.txt"
                                          rf"\); move them elsewhere or choose another --out"):
        _export(folder, out, int8=True, calib_images=2)
    assert sorted(os.listdir(out)) == ["image_files.py", "legend.png", "meta.json", "model.onnx", "notes.txt",
                                       "predict.py"]
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.jpg").write_text("mine")
    with pytest.raises(DeployError, match=rf"^{other} is not empty and is not a deployment folder"):
        _export(folder, other)
    assert os.listdir(other) == ["a.jpg"]
    (out / "notes.txt").unlink()
    old = read_meta(str(out))                             # a meta.json written before its 'files' list existed
    del old["files"]
    (out / "meta.json").write_text(json.dumps(old))
    import tools.latency.deploy as deploy

    def failing_legend(*args, **kwargs):
        raise RuntimeError("legend failed")

    monkeypatch.setattr(deploy, "legend", failing_legend)
    with pytest.raises(RuntimeError, match="legend failed"):              # a failed export: the old folder stays
        _export(folder, out, argmax=True)
    assert sorted(os.listdir(out)) == ["image_files.py", "legend.png", "meta.json", "model.onnx", "predict.py"]
    assert read_meta(str(out)) == old and sorted(os.listdir(tmp_path)) == ["deploy", "photos"]   # no temp folder
    monkeypatch.undo()
    assert _export(folder, out, argmax=True)["output"]["kind"] == "class_ids_uint8"
    assert sorted(os.listdir(out)) == ["image_files.py", "legend.png", "meta.json", "model.onnx", "predict.py"]


def test_deployment_predict_refuses_a_truncated_photo_in_one_line(run_folder, tmp_path):
    """The deployment folder refuses the damaged files training refuses (its copy of tools/utils/image_files.py),
    and ends a user error with the project's one line and exit code 1, without torch."""
    import cv2
    _, folder = run_folder
    out = tmp_path / "deploy"
    _export(folder, out)
    photo = tmp_path / "photo.jpg"
    assert cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8))
    photo.write_bytes(photo.read_bytes()[:photo.stat().st_size // 2])
    assert cv2.imread(str(photo)) is not None                        # libjpeg alone decodes it, grey
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTERSEG_TRACEBACK")}
    for args, sentence in (
            (["--input", str(photo)], f"error: image {photo} cannot be read (it is cut short"),
            (["--input", str(tmp_path / "missing.jpg")], f"error: input {tmp_path / 'missing.jpg'} does not exist."),
            (["--input", str(photo), "--model", "nope.onnx"], f"error: model {out / 'nope.onnx'} does not exist")):
        completed = subprocess.run([sys.executable, "-c", NO_TORCH, str(out / "predict.py"), *args, "--output",
                                    str(tmp_path / "pred")], cwd=str(tmp_path), env=env, capture_output=True,
                                   text=True, timeout=120)
        assert completed.returncode == 1 and completed.stderr.startswith(sentence), completed.stderr
        assert "Traceback" not in completed.stderr
    assert not os.path.exists(tmp_path / "pred" / "photo_labels.png")
