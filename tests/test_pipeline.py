"""The main job's orchestration: stage arguments agree, finished stages are reused, --redo invalidates."""
import json
import os

import pytest

from tools.config import load_config
from tools.engine.run import CHECKPOINT_NAME, mark_done, open_stage_dir
from tools.pipeline import STAGES, Pipeline, PipelineError, chance_miou, format_summary


def test_training_and_latency_build_the_searched_space(tmp_path):
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"))
    pipeline.state["search"] = {"folder": str(tmp_path / "search")}
    search = load_config("search_tiny")
    train = load_config("train_tiny", pipeline.train_args("teacher"))
    assert (train.layers, train.Fch, train.width_mult_list) == (search.layers, search.Fch, search.width_mult_list)
    assert train.load_path == str(tmp_path / "search") and train.mode == "teacher"
    # the demo's short-run schedule (poly; the teacher 2,000 steps, the student 1,000, so that the teacher the
    # student learns from is ahead of it) unless the user overrides it on the command line
    assert (train.nepochs * train.niters_per_epoch, train.lr_schedule, train.lr) == (2000, "poly", 0.05)
    student = load_config("train_tiny", pipeline.train_args("student"))
    assert (student.nepochs * student.niters_per_epoch, student.lr_schedule, student.lr) == (1000, "poly", 0.05)
    assert (train.val_interval, student.val_interval) == (train.nepochs, student.nepochs)   # validate at the end
    user = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"), overrides=["nepochs=2"])
    user.state["search"] = {"folder": str(tmp_path / "search")}
    assert load_config("train_tiny", user.train_args("teacher")).nepochs == 2
    assert load_config("train_tiny", user.train_args("student")).nepochs == 2


def test_user_overrides_go_only_to_presets_that_know_them(tmp_path):
    pipeline = Pipeline(str(tmp_path), overrides=["nepochs=1", "arch_learning_rate=0.1", "aux_weight=0.5"])
    assert pipeline.overrides_for("search_tiny") == ["nepochs=1", "arch_learning_rate=0.1"]
    assert pipeline.overrides_for("train_tiny") == ["nepochs=1", "aux_weight=0.5"]


def test_supernet_overrides_reach_the_table_the_training_and_the_latency_report(tmp_path):
    """`python run_demo.py Fch=6` sizes every stage alike: before, the table, the latency report and the
    networks' Fch came from the preset alone (Fch 3) while the search and training got the override."""
    pipeline = Pipeline(str(tmp_path), overrides=["Fch=6", "latency_height=64", "latency_width=128"])
    pipeline.state["search"] = {"folder": str(tmp_path / "search")}
    config = pipeline.search_config()
    assert (config.Fch, config.latency_height, config.latency_width) == (6, 64, 128)
    assert "Fch=6" in pipeline.supernet_args()
    assert load_config("train_tiny", pipeline.train_args("teacher")).Fch == 6
    assert pipeline.lut_file().endswith("_64x128.json")
    assert Pipeline(str(tmp_path)).search_config().Fch == 3


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
        redone.output("search")
    with pytest.raises(PipelineError, match="stages: data"):
        Pipeline(str(root), redo="nonsense")


def test_chance_level_and_summary_table(tmp_path):
    from tools.data.demo import generate_demo_dataset
    from tools.data.prepare import create_label_images, create_mapping_lists
    root = str(tmp_path / "demo")
    generate_demo_dataset(root, seed=0, counts={"train": 1, "val": 2, "test": 0}, size=(64, 128))
    create_label_images(root, "cityscapes", progress=False)
    create_mapping_lists(root, "cityscapes")
    chance = chance_miou(load_config("train_tiny", [f"dataset_path='{root}'"]))
    assert 0.0 < chance < 0.05
    summary = {"rows": [{"network": n, "val_mIoU": 0.2, "params": 10, "flops_g": 0.1, "lut_latency_ms": 1.0,
                         "latency_ms": 2.0, "fps": 500.0, "input_size": [1, 3, 64, 128]}
                        for n in ("teacher", "student")],
               "chance_mIoU": chance, "folders": {s: f"runs/{s}" for s in STAGES}, "predictions": "runs/test",
               "tensorboard": "tensorboard --logdir runs", "seconds": {s: 1.0 for s in STAGES}}
    text = format_summary(summary)
    assert "student" in text and f"{chance:.4f}" in text and "runs/test" in text


def test_lookup_table_is_made_for_the_gpu_the_search_runs_on(tmp_path, fake_cuda, monkeypatch):
    """On a GPU box (CUDA faked) the demo measures its table on the device the search uses,
    so the search accepts it (it refused the CPU table with a TableError)."""
    import tools.pipeline as pipeline_module
    from tools.engine.distributed import resolve_device
    from tools.search.loop import open_latency_table

    def fake_fill(table, specs, **kwargs):   # one entry instead of timing the whole grid
        table.entries[specs[0][1].key] = 1.0
        table.save()
        return [specs[0][1].key]

    def fake_calibrate(table, size, **kwargs):   # no networks timed on the fake GPU
        table.meta["calibration"] = {"scale": 1.0, "networks": []}
        return table.meta["calibration"]

    def run_script(relative_path, argv):
        module = pipeline_module.load_script(relative_path)
        monkeypatch.setattr(module, "fill_table", fake_fill)
        monkeypatch.setattr(module, "calibrate_table", fake_calibrate)
        return module.main(argv)

    monkeypatch.setattr(pipeline_module, "run_script", run_script)
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"))   # device 'auto', as run_demo.py
    entry = pipeline.run_stage("lut")
    search = load_config("search_tiny", pipeline.search_args())
    device = resolve_device(search.device)
    assert device.type == "cuda" and search.lut_path == entry["file"] and "_cuda_" in entry["file"]
    table = open_latency_table(search, device, str(tmp_path))
    assert table.meta["device"] == fake_cuda.name and len(table) == 1


def camvid_copy(tmp_path):
    import shutil
    source = tmp_path / "camvid_source"
    shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "camvid"), str(source))
    return source


def test_camvid_main_job_wires_the_cpu_presets_and_links_the_data(tmp_path, monkeypatch):
    """python run_demo.py --data camvid: CamVid is linked (its source may be read-only), listed, and every stage
    gets the CamVid CPU presets, the searched space's size and the 15-epoch training budget."""
    import tools.pipeline as pipeline_module
    source = camvid_copy(tmp_path)
    pipeline = Pipeline(str(tmp_path / "runs"), str(source), data="camvid", device="cpu")
    calls = []
    original = pipeline_module.run_script

    def record(relative_path, argv):
        calls.append((relative_path, list(argv)))
        if relative_path.startswith("dataset/"):
            return original(relative_path, argv)
        return {"run_dir": "evaluated"} if relative_path == "train/train.py" else None
    monkeypatch.setattr(pipeline_module, "run_script", record)
    entry = pipeline.run_stage("data")
    data = tmp_path / "runs" / "data"
    assert entry == {"folder": str(data)} and os.path.islink(str(data / "train"))
    assert open(str(data / "camvid_val.txt")).read() == "val/0016E5_07959.jpg valannot/0016E5_07959.png\n"
    assert pipeline.is_reusable("data") is False and pipeline.stages == STAGES
    pipeline.state["data"] = entry
    assert pipeline.is_reusable("data")
    pipeline.state["search"] = {"folder": str(tmp_path / "runs" / "search")}
    teacher = load_config("camvid_train_cpu", pipeline.train_args("teacher"))
    assert (teacher.dataset, teacher.num_classes, teacher.layers, teacher.Fch, teacher.nepochs) == \
        ("camvid", 11, 8, 6, 15)
    assert teacher.eval_source == str(data / "camvid_val.txt") and teacher.load_path.endswith("search")
    search = load_config("camvid_search_cpu", pipeline.search_args() + ["pretrain=True"])
    assert search.lut_path.endswith("lut_pytorch_cpu_384x480.json") and search.dataset_path == str(data)
    assert 0.0 < chance_miou(teacher) < 0.2
    # the lookup table and the latency report are made for CamVid's 11 classes (the heads' table entries)
    pipeline.run_stage("lut")
    lut_call = calls[-1]
    assert lut_call[0] == "latency/latency_lookup_table.py" and "num_classes=11" in lut_call[1]
    pipeline.state["lut"] = {"file": search.lut_path}
    os.makedirs(pipeline.output("search"), exist_ok=True)
    report = tmp_path / "runs" / "latency_report.json"
    report.write_text("{}")
    pipeline.run_stage("latency")
    assert calls[-1][0] == "latency/run_latency.py" and "num_classes=11" in calls[-1][1]
    # no test split in SegNet's CamVid: the evaluation predicts (and colours) the val images instead of failing
    pipeline.state["student"] = {"folder": str(tmp_path / "runs" / "student")}
    pipeline.run_stage("evaluate")
    evaluate = load_config("camvid_train_cpu", calls[-1][1][2:])
    assert evaluate.is_test and evaluate.test_source == str(data / "camvid_val.txt")
    (data / "camvid_test.txt").write_text("val/0016E5_07959.jpg\n")
    pipeline.run_stage("evaluate")
    assert load_config("camvid_train_cpu", calls[-1][1][2:]).test_source == str(data / "camvid_test.txt")


def test_camvid_published_variant_skips_the_search(tmp_path):
    source = camvid_copy(tmp_path)
    pipeline = Pipeline(str(tmp_path / "runs"), str(source), data="camvid", arch="published", device="cpu")
    assert pipeline.stages == ("data", "teacher", "student", "evaluate", "latency", "export")
    student = load_config("camvid_train_cpu", pipeline.train_args("student"))
    assert student.load_path == "" and (student.layers, student.Fch) == (16, 12)


def test_camvid_missing_data_is_one_sentence(tmp_path):
    from tools.data.errors import DataFileNotFoundError
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "nowhere"), data="camvid", device="cpu")
    with pytest.raises(DataFileNotFoundError, match="CamVid not found in .*nowhere.*trainannot/, val/, valannot/ "
                                                    "there"):
        pipeline.run_stage("data")
    with pytest.raises(PipelineError, match="--data 'kitti' is unknown"):
        Pipeline(str(tmp_path), data="kitti")


def test_a_saved_lookup_table_makes_the_search_reproducible(tmp_path):
    saved = tmp_path / "lut_saved.json"
    saved.write_text("{}")
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"), device="cpu", lut=str(saved))
    assert pipeline.run_stage("lut") == {"file": str(saved), "saved": True}
    assert load_config("search_tiny", pipeline.search_args()).lut_path == str(saved)
    missing = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"), device="cpu", lut=str(tmp_path / "no.json"))
    with pytest.raises(PipelineError, match="--lut .*no.json does not exist"):
        missing.run_stage("lut")
    summary = {"rows": [], "chance_mIoU": 0.01, "folders": {}, "predictions": "p", "tensorboard": "t",
               "seconds": {}, "lut": {"file": "runs/demo/lut.json", "saved": False}}
    assert "add --lut runs/demo/lut.json to repeat this search exactly" in format_summary(summary)


def unfinished_run(preset, args, prefix):
    """A run folder as a killed invocation leaves it: config.json of these settings, a checkpoint, no DONE."""
    folder, lock, _ = open_stage_dir(load_config(preset, args), prefix, CHECKPOINT_NAME, resume=False)
    lock.release()
    with open(os.path.join(folder, CHECKPOINT_NAME), "wb") as handle:
        handle.write(b"state")
    return folder


def test_an_unfinished_stage_continues_where_it_stopped(tmp_path):
    """A session killed during the teacher: the next invocation passes resume=<that folder> (its completed
    epochs are kept); a folder of other settings or a finished one is not taken, and a new run starts."""
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"), device="cpu")
    pipeline.state["search"] = {"folder": str(tmp_path / "runs" / "search")}
    args = pipeline.train_args("teacher")
    assert pipeline.resume_args("train", "train_tiny", args) == []          # nothing to continue
    other = unfinished_run("train_tiny", args + ["lr=0.5"], "train")        # another invocation's settings
    assert pipeline.resume_args("train", "train_tiny", args) == []
    killed = unfinished_run("train_tiny", args, "train")
    assert killed != other
    assert pipeline.resume_args("train", "train_tiny", args) == [f"resume='{killed}'"]
    resumed = load_config("train_tiny", args + pipeline.resume_args("train", "train_tiny", args))
    assert resumed.resume == killed
    # the student is another stage: the teacher's folder is not taken for it
    student = pipeline.train_args("student") + ["teacher_path='t'"]
    assert pipeline.resume_args("train", "train_tiny", student) == []
    mark_done(killed)
    assert pipeline.resume_args("train", "train_tiny", args) == []
    search = unfinished_run("search_tiny", pipeline.search_args() + ["pretrain=True"], "search")
    assert pipeline.resume_args("search", "search_tiny", pipeline.search_args() + ["pretrain=True"]) == \
        [f"resume='{search}'"]


def record_scripts(monkeypatch, result=None):
    import tools.pipeline as pipeline_module
    calls = []

    def record(relative_path, argv):
        calls.append((relative_path, list(argv)))
        return result(relative_path, argv) if result else None
    monkeypatch.setattr(pipeline_module, "run_script", record)
    return calls


def test_redo_lut_measures_the_table_anew_and_never_touches_a_saved_one(tmp_path, monkeypatch):
    """The table script only adds missing entries, so --redo lut removes the earlier table first (an earlier
    session's table on another machine would otherwise be kept); without --redo a partial table is completed."""
    root = tmp_path / "runs"
    root.mkdir()
    seen = []
    calls = record_scripts(monkeypatch, lambda path, argv: seen.append(os.path.exists(table)))
    table = Pipeline(str(root), str(tmp_path / "data"), device="cpu").lut_file()
    with open(table, "w") as handle:
        handle.write("{}")
    Pipeline(str(root), str(tmp_path / "data"), device="cpu").run_stage("lut")      # resumes the partial table
    redo = Pipeline(str(root), str(tmp_path / "data"), device="cpu", redo="lut")
    redo.run_stage("lut")
    assert seen == [True, False] and len(calls) == 2
    assert not Pipeline(str(root), str(tmp_path / "data"), device="cpu", redo="search").measure_lut_anew
    saved = tmp_path / "lut_saved.json"
    saved.write_text("{}")
    Pipeline(str(root), str(tmp_path / "data"), device="cpu", redo="data", lut=str(saved)).run_stage("lut")
    assert saved.read_text() == "{}" and len(calls) == 2


def test_export_stage_writes_the_students_deployment_folder(tmp_path, monkeypatch):
    """Stage 'export': latency/export_onnx.py on the student (fp32 + int8 calibrated on train images, both
    evaluated on val); reused while its meta.json exists; its figures go into the summary."""
    root = tmp_path / "runs"
    meta = {"models": {"fp32": {"file": "model.onnx", "val_mIoU": 0.31},
                       "int8": {"file": "model_int8.onnx", "val_mIoU": 0.30}}}
    calls = record_scripts(monkeypatch, lambda path, argv: meta)
    pipeline = Pipeline(str(root), str(tmp_path / "data"), data="camvid", device="cpu")
    pipeline.state["student"] = {"folder": str(root / "train-student")}
    entry = pipeline.run_stage("export")
    deploy = str(root / "deploy")
    assert calls == [("latency/export_onnx.py", [str(root / "train-student"), "--out", deploy, "--size", "384",
                                                 "480", "--int8", "--calib-images", "32"])]
    demo = Pipeline(str(tmp_path / "demo"), str(tmp_path / "data"), device="cpu")
    demo.state["student"] = {"folder": "s"}
    demo.run_stage("export")
    assert calls[-1][1][3:6] == ["--size", "128", "256"]     # what the demo reads val at, not Cityscapes' 1024
    assert entry == {"file": os.path.join(deploy, "meta.json"),
                     "models": {"fp32": {"file": os.path.join(deploy, "model.onnx"), "val_mIoU": 0.31},
                                "int8": {"file": os.path.join(deploy, "model_int8.onnx"), "val_mIoU": 0.30}}}
    pipeline.state["export"] = entry
    assert not pipeline.is_reusable("export")
    os.makedirs(deploy)
    with open(entry["file"], "w") as handle:
        handle.write("{}")
    assert pipeline.is_reusable("export") and STAGES[-1] == "export"
    summary = {"rows": [], "chance_mIoU": 0.01, "folders": {}, "predictions": "p", "tensorboard": "t",
               "seconds": {}, "deploy": entry["models"]}
    text = format_summary(summary)
    assert "model.onnx val mIoU 0.3100, model_int8.onnx val mIoU 0.3000" in text
    assert f"python {deploy}/predict.py --input photo.jpg" in text
