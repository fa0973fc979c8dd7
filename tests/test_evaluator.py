"""tools/engine/evaluator.py: whole / sliding / multi-scale / flip prediction, mIoU, distributed matrix."""
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from demo_helpers import SmallNet, make_small_demo
from tools.data.datasets import dataset_from_config
from tools.data.errors import DataError
from tools.data.transforms import normalize
from tools.engine.evaluator import Evaluator
from tools.engine.metrics import confusion_matrix, mean_iou

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_small_demo(str(tmp_path_factory.mktemp("demo")))


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (64, 128, 3)).astype(np.uint8)


def logits(net, img):
    x = torch.from_numpy(normalize(img, MEAN, STD).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        out = net.eval()(x)
    return out


def make(net, **kwargs):
    return Evaluator(None, 19, MEAN, STD, net, class_names=[str(i) for i in range(19)], quiet=True, **kwargs)


def test_whole_image_prediction_is_the_argmax(image):
    net = SmallNet()
    expected = logits(net, image)[0].argmax(0).numpy()
    np.testing.assert_array_equal(make(net).predict(image), expected)


def test_out_idx_picks_one_output_also_for_the_flip(image):
    net = SmallNet(outputs=3)
    outs = logits(net, image)
    for idx in range(3):
        np.testing.assert_array_equal(make(net, out_idx=idx).predict(image), outs[idx][0].argmax(0).numpy())
        flipped = logits(net, image[:, ::-1].copy())[idx][0].flip(-1)
        expected = (outs[idx][0] + flipped).argmax(0).numpy()
        np.testing.assert_array_equal(make(net, out_idx=idx, is_flip=True).predict(image), expected)


def test_flip_adds_the_flipped_pass_before_exp(image):
    net = SmallNet()
    evaluator = make(net, is_flip=True)
    data, _ = evaluator.process_image(image)
    score = evaluator.val_func_process(data)
    expected = torch.exp((logits(net, image)[0] + logits(net, image[:, ::-1].copy())[0].flip(-1)).double())
    torch.testing.assert_close(score, expected, rtol=1e-6, atol=0)
    assert score.dtype == torch.float64


def test_sliding_window_of_a_pointwise_net_equals_the_whole_image(image):
    """Overlapping window scores are summed; for a per-pixel net that scales all classes alike."""
    net = SmallNet(pointwise=True)
    whole = make(net).predict(image)
    sliding = make(net, multi_scales=[1, 1], crop_size=32, stride_rate=2 / 3)
    np.testing.assert_array_equal(sliding.predict(image), whole)
    square = make(net, multi_scales=[1, 1], crop_size=(32, 64), stride_rate=0.5)
    np.testing.assert_array_equal(square.predict(image), whole)


def test_multi_scale_sums_exp_scores_resized_to_the_image(image):
    import cv2
    net = SmallNet()
    total = 0
    for scale in (0.5, 1.0):
        scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        score = torch.exp(logits(net, scaled)[0].double())
        total = total + F.interpolate(score[None], size=(64, 128), mode="bilinear", align_corners=False)[0]
    got = make(net, multi_scales=[0.5, 1.0]).predict(image)
    np.testing.assert_array_equal(got, total.argmax(0).numpy())
    single = make(net, multi_scales=[0.5]).predict(image)       # honoured (the original ignored it)
    assert single.shape == (64, 128) and not np.array_equal(single, make(net).predict(image))


def test_image_not_a_multiple_of_32_is_padded_and_cropped_back():
    net = SmallNet(multiple=32)
    odd = np.random.default_rng(1).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    assert make(net).predict(odd).shape == (50, 70)
    assert make(net, multi_scales=[0.75, 1.0]).predict(odd).shape == (50, 70)


def test_smaller_outputs_are_resized_to_the_input(image):
    class Strided(SmallNet):
        def forward(self, x):
            return super().forward(x)[:, :, ::4, ::4]
    assert make(Strided()).predict(image).shape == (64, 128)


def test_crop_size_not_a_multiple_of_32_is_refused():
    with pytest.raises(DataError, match="eval_crop_size"):
        make(SmallNet(), crop_size=100)


def test_run_online_on_the_demo_val_split(demo, tmp_path, capsys):
    dataset = dataset_from_config(demo, "val")
    net = SmallNet().train()
    evaluator = Evaluator.from_config(demo, dataset, net, save_path=str(tmp_path / "pred"), show_image=True)
    line, miou = evaluator.run_online()
    assert net.training                                           # mode restored
    hist = sum(confusion_matrix(make(net).predict(dataset[i]["data"]), dataset[i]["label"], 19)
               for i in range(len(dataset)))
    assert miou == pytest.approx(mean_iou(hist), abs=1e-12)
    np.testing.assert_array_equal(evaluator.last_scores["hist"], hist)
    out = capsys.readouterr().out
    assert "1 road" in out and "19 bicycle" in out and "mean_IU" in line
    assert len(os.listdir(tmp_path / "pred")) == 8                # 4 predictions + 4 visualisations
    results = [evaluator.func_per_iteration(dataset[i], "cpu") for i in range(len(dataset))]
    assert evaluator.compute_metric(results)[1] == pytest.approx(miou)


def _distributed_worker(rank, world, init_file, root, queue):
    import torch.distributed as dist
    from demo_helpers import small_config
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    config = small_config(root)
    evaluator = Evaluator.from_config(config, dataset_from_config(config, "val"), SmallNet(), quiet=True)
    scores = evaluator.evaluate()
    queue.put((rank, scores["hist"], scores["mIoU"]))
    dist.barrier()
    dist.destroy_process_group()


def test_confusion_matrix_is_summed_over_processes(demo, tmp_path):
    """Two gloo processes evaluate two images each; both report the single-process matrix and mIoU."""
    torch.manual_seed(0)
    single = Evaluator.from_config(demo, dataset_from_config(demo, "val"), SmallNet(), quiet=True).evaluate()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    mp.start_processes(_distributed_worker, args=(2, str(tmp_path / "init"), demo.dataset_path, queue), nprocs=2,
                       join=True, start_method="fork")
    for _ in range(2):
        rank, hist, miou = queue.get(timeout=60)
        np.testing.assert_array_equal(hist, single["hist"])
        assert miou == pytest.approx(single["mIoU"], abs=1e-12)


def test_items_without_labels_are_refused(demo):
    evaluator = make(SmallNet())
    with pytest.raises(ValueError, match="has no label"):
        evaluator.func_per_iteration({"data": np.zeros((64, 128, 3), np.uint8), "label": None, "fn": "x"}, "cpu")
