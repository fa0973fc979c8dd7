"""The main job's orchestration: stage arguments agree, finished stages are reused, --redo invalidates."""
import json
import os

import pytest

from tools.config import load_config
from tools.engine.run import mark_done
from tools.pipeline import STAGES, Pipeline, PipelineError, chance_miou, format_summary


def test_training_and_latency_build_the_searched_space(tmp_path):
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"))
    pipeline.state["search"] = {"folder": str(tmp_path / "search")}
    search = load_config("search_tiny")
    train = load_config("train_tiny", pipeline.train_args("teacher"))
    assert (train.layers, train.Fch, train.width_mult_list) == (search.layers, search.Fch, search.width_mult_list)
    assert train.load_path == str(tmp_path / "search") and train.mode == "teacher"


def test_user_overrides_go_only_to_presets_that_know_them(tmp_path):
    pipeline = Pipeline(str(tmp_path), overrides=["nepochs=1", "arch_learning_rate=0.1", "aux_weight=0.5"])
    assert pipeline.overrides_for("search_tiny") == ["nepochs=1", "arch_learning_rate=0.1"]
    assert pipeline.overrides_for("train_tiny") == ["nepochs=1", "aux_weight=0.5"]


def test_finished_stages_are_reused_and_redo_invalidates_the_rest(tmp_path):
    root = tmp_path / "runs"
    done = root / "search-x"
    done.mkdir(parents=True)
    mark_done(str(done))
    unfinished = root / "train-y"
    unfinished.mkdir()
    state = {"pretrain": {"folder": str(done)}, "search": {"folder": str(done)},
             "teacher": {"folder": str(unfinished)}}
    (root / "pipeline.json").write_text(json.dumps(state))
    pipeline = Pipeline(str(root), str(tmp_path / "data"))
    assert pipeline.is_reusable("pretrain") and pipeline.is_reusable("search")
    assert not pipeline.is_reusable("teacher") and not pipeline.is_reusable("data")
    redone = Pipeline(str(root), str(tmp_path / "data"), redo="search")
    assert "pretrain" in redone.state and "search" not in redone.state
    with pytest.raises(PipelineError, match="stage 'search' has not run yet"):
        redone.folder("search")
    with pytest.raises(PipelineError, match="stages: data"):
        Pipeline(str(root), redo="nonsense")


def test_chance_level_and_summary_table(tmp_path):
    from tools.data.demo import generate_demo_dataset
    from tools.data.prepare import create_label_images, create_mapping_lists
    root = str(tmp_path / "demo")
    generate_demo_dataset(root, seed=0, counts={"train": 1, "val": 2, "test": 0}, size=(64, 128))
    create_label_images(root, "cityscapes", progress=False)
    create_mapping_lists(root, "cityscapes")
    chance = chance_miou(root)
    assert 0.0 < chance < 0.05
    summary = {"rows": [{"network": n, "val_mIoU": 0.2, "params": 10, "flops_g": 0.1, "lut_latency_ms": 1.0,
                         "latency_ms": 2.0, "fps": 500.0, "input_size": [1, 3, 64, 128]}
                        for n in ("teacher", "student")],
               "chance_mIoU": chance, "folders": {s: f"runs/{s}" for s in STAGES}, "predictions": "runs/test",
               "tensorboard": "tensorboard --logdir runs", "seconds": {s: 1.0 for s in STAGES}}
    text = format_summary(summary)
    assert "student" in text and f"{chance:.4f}" in text and "runs/test" in text
