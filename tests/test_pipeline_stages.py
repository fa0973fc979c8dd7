"""The main job's stage table (tools/pipeline.py STAGE_TABLE): every row complete and reading only earlier stages,
Pipeline.run() driven by it end to end (order, reuse, --redo, the summary) with cheap fakes in place of the stages'
work, a stage added to the table alone, and the declared inputs reaching the stage scripts' arguments."""
import ast
import dataclasses
import itertools
import json
import os
import re

import pytest

import tools.pipeline as pipeline_module
from tests.helpers import REPO_ROOT
from tools.config import load_config
from tools.engine.run import is_done, mark_done
from tools.pipeline import (STAGE_TABLE, STAGES, Pipeline, PipelineError, Stage, check_stage_table,
                            finished_output, format_summary)

REPORT = {role: {"params": 1000 + i, "flops_g": 0.5, "lut_latency_ms": 1.5, "latency_ms": 2.0, "fps": 500.0,
                 "input_size": [1, 3, 128, 256]} for i, role in enumerate(("teacher", "student"))}
MODELS = {"fp32": {"file": "model.onnx", "val_mIoU": 0.27}, "int8": {"file": "model_int8.onnx", "val_mIoU": 0.26}}


def test_every_stage_has_every_field_and_reads_only_earlier_stages():
    names = [stage.name for stage in STAGE_TABLE]
    assert tuple(names) == STAGES and len(set(names)) == len(names)
    for number, stage in enumerate(STAGE_TABLE):
        for field in dataclasses.fields(Stage):
            assert getattr(stage, field.name) is not None, (stage.name, field.name)
        assert stage.name.isidentifier()
        assert all(callable(function) for function in (stage.run, stage.reuse, stage.summarize, stage.report))
        assert isinstance(stage.inputs, tuple) and set(stage.inputs) <= set(names[:number]), stage.name
        assert isinstance(stage.search_only, bool)
    # what a stage a user adds gets wrong is refused when the table is read, in one sentence
    teacher = next(stage for stage in STAGE_TABLE if stage.name == "teacher")
    with pytest.raises(ValueError, match="'teacher' reads student, which is not a stage before it"):
        check_stage_table(tuple(dataclasses.replace(s, inputs=("student",)) if s is teacher else s
                                for s in STAGE_TABLE))
    with pytest.raises(ValueError, match="'teacher' appears twice"):
        check_stage_table(STAGE_TABLE + (teacher,))
    with pytest.raises(ValueError, match="inputs must be a tuple of stage names"):
        dataclasses.replace(teacher, inputs="search")
    # the --redo choices are the table's
    with pytest.raises(SystemExit):
        pipeline_module.main(["--redo", "nonsense"])


def test_the_architecture_page_lists_the_stage_table():
    """docs/architecture.md's stage table names every stage, in order, with the inputs it declares."""
    with open(os.path.join(REPO_ROOT, "docs", "architecture.md")) as handle:
        text = handle.read()
    section = text[text.index("## The main job's stages"):]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]*) \|", section, flags=re.M)
    assert [name for name, _ in rows] == list(STAGES)
    for (name, inputs), stage in zip(rows, STAGE_TABLE):
        assert tuple(re.findall(r"`(\w+)`", inputs)) == stage.inputs, name


# -- the stages' work replaced by cheap fakes: each records what it was given and leaves an output of its kind --
def _folder(pipeline, name, **extra):
    os.makedirs(pipeline.root, exist_ok=True)
    folder = os.path.join(pipeline.root, f"{name}-{next(_FOLDERS):03d}")
    os.makedirs(folder)
    mark_done(folder)
    return dict({"folder": folder}, **extra)


def _file(path, text="{}"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    return path


_FOLDERS = itertools.count()
FAKE_OUTPUTS = {
    "data": lambda p: {"folder": os.path.dirname(_file(p.train_config().eval_source, "val/a.png val/a.png\n"))},
    "lut": lambda p: {"file": _file(p.lut_file())},
    "evaluate": lambda p: _folder(p, "evaluate", val_mIoU={"teacher": 0.3, "student": 0.28}, test_dir="tests-dir"),
    "latency": lambda p: {"file": _file(os.path.join(p.root, "latency_report.json"), json.dumps(REPORT)),
                          "report": REPORT},
    "export": lambda p: {"file": _file(os.path.join(p.root, "deploy", "meta.json")),
                         "models": {k: dict(m, file=os.path.join(p.root, "deploy", m["file"]))
                                    for k, m in MODELS.items()}},
}


def fake_stages(monkeypatch, table=None):
    """Patch the stage table: every row's ``run`` a fake that records (name, inputs); returns that record."""
    ran = []

    def fake(name):
        def run(pipeline, inputs):
            ran.append((name, dict(inputs)))
            make = FAKE_OUTPUTS.get(name, lambda p: _folder(p, name))
            return make(pipeline)
        return run
    table = tuple(dataclasses.replace(stage, run=fake(stage.name)) for stage in (table or STAGE_TABLE))
    monkeypatch.setattr(pipeline_module, "STAGE_TABLE", table)
    monkeypatch.setattr(pipeline_module, "chance_miou", lambda config, seed=0: 0.05)
    return ran


def outputs(root):
    with open(os.path.join(root, "pipeline.json")) as handle:
        state = json.load(handle)
    return {name: entry.get("folder") or entry.get("file") for name, entry in state.items() if isinstance(entry, dict)}


def test_run_follows_the_table_reuses_finished_stages_and_redo_reruns_the_rest(tmp_path, monkeypatch):
    ran = fake_stages(monkeypatch)
    root, data = str(tmp_path / "runs"), str(tmp_path / "data")
    summary = Pipeline(root, data, device="cpu").run()
    assert [name for name, _ in ran] == list(STAGES)
    made = outputs(root)
    for name, inputs in ran:   # each stage got the outputs of the stages it declares, by name
        declared = next(stage for stage in STAGE_TABLE if stage.name == name).inputs
        assert inputs == {stage: made[stage] for stage in declared}, name
    assert summary["folders"] == {name: made[name] for name in STAGES} and list(summary["seconds"]) == list(STAGES)
    assert [(row["network"], row["val_mIoU"], row["params"]) for row in summary["rows"]] == \
        [("teacher", 0.3, 1000), ("student", 0.28, 1001)]
    assert (summary["chance_mIoU"], summary["num_classes"], summary["predictions"]) == (0.05, 19, "tests-dir")
    assert summary["lut"] == {"file": made["lut"], "saved": False} and set(summary["deploy"]) == {"fp32", "int8"}
    text = format_summary(summary)
    for line in ("FasterSeg main job on demo: summary", "chance (uniform random prediction over 19 classes): "
                 "val mIoU 0.0500", "model.onnx val mIoU 0.2700", f"  teacher   {made['teacher']}",
                 "  predictions tests-dir", f"add --lut {made['lut']}", "seconds per stage"):
        assert line in text
    assert text.index("val mIoU 0.0500") < text.index("deployment") < text.index("where things are") < \
        text.index("predictions") < text.index("add --lut") < text.index("TensorBoard")

    ran.clear()                                     # everything finished: nothing runs again
    assert Pipeline(root, data, device="cpu").run() == summary and ran == []

    Pipeline(root, data, device="cpu", redo="teacher").run()   # that stage and the ones after it
    assert [name for name, _ in ran] == ["teacher", "student", "evaluate", "latency", "export"]
    again = outputs(root)
    assert again["teacher"] != made["teacher"] and dict(ran)["student"]["teacher"] == again["teacher"]
    assert all(again[name] == made[name] for name in ("data", "lut", "pretrain", "search"))

    ran.clear()                                     # an output that is gone: its stage runs again
    os.remove(again["export"])
    Pipeline(root, data, device="cpu").run()
    assert [name for name, _ in ran] == ["export"]

    ran.clear()                                     # the published architectures: no search stages, no lut
    published = Pipeline(str(tmp_path / "published"), data, device="cpu", arch="published")
    summary = published.run()
    assert [name for name, _ in ran] == ["data", "teacher", "student", "evaluate", "latency", "export"]
    assert dict(ran)["teacher"] == {} and set(dict(ran)["latency"]) == set()
    assert summary["lut"] is None and list(summary["folders"]) == list(published.stages)


def test_a_stage_added_to_the_table_alone_runs_in_order_with_its_declared_inputs(tmp_path, monkeypatch):
    """One row, nothing else: it runs after the student with the teacher's and the student's folders, is reused
    when finished, is a --redo choice, and adds its key and its note to the summary."""
    def summarize(pipeline, done):
        return {"pruned": done["prune"]["folder"] if "prune" in done else None}

    def report(summary):
        return {"notes": [f"pruned student: {summary['pruned']}"]}

    prune = Stage("prune", run=lambda pipeline, inputs: {}, inputs=("teacher", "student"), reuse=finished_output,
                  summarize=summarize, report=report)
    at = STAGES.index("student") + 1
    ran = fake_stages(monkeypatch, STAGE_TABLE[:at] + (prune,) + STAGE_TABLE[at:])
    root, data = str(tmp_path / "runs"), str(tmp_path / "data")
    summary = Pipeline(root, data, device="cpu").run()
    names = [name for name, _ in ran]
    assert names == list(STAGES[:at]) + ["prune"] + list(STAGES[at:])
    made = outputs(root)
    assert dict(ran)["prune"] == {"teacher": made["teacher"], "student": made["student"]}
    assert is_done(made["prune"]) and summary["folders"]["prune"] == made["prune"] == summary["pruned"]
    assert f"pruned student: {made['prune']}" in format_summary(summary)

    ran.clear()
    pipeline_module.main(["--root", root, "--data-root", data, "--device", "cpu", "--redo", "prune"])
    assert [name for name, _ in ran] == ["prune"] + list(STAGES[at:])
    with pytest.raises(PipelineError, match="stages: data, lut, .*student, prune, evaluate"):
        Pipeline(root, data, redo="nonsense")


# -- the real stages with their scripts faked: what each script is given -------------------------------------
def _value(argv, key):
    return next(ast.literal_eval(item.split("=", 1)[1]) for item in argv if item.startswith(key + "="))


def fake_scripts(monkeypatch, eval_list):
    """run_script replaced: records (script, argv) and leaves what the real script leaves for the next stage."""
    calls = []
    numbers = itertools.count()

    def run_script(path, argv):
        calls.append((path, list(argv)))
        if path.startswith("dataset/"):
            _file(eval_list, "val/a.png val/a.png\n")
        elif path == "latency/latency_lookup_table.py":
            _file(_value(argv, "lut_path"))
        elif path in ("search/train_search.py", "train/train.py"):
            config = load_config(argv[1], argv[2:])
            prefix = path.split("/")[0]
            folder = os.path.join(config.output_root, f"{prefix}-{config.save}-{next(numbers):03d}")
            os.makedirs(folder)
            mark_done(folder)
            if prefix == "train":
                return {"run_dir": folder, "val_mIoU": {"teacher": 0.3, "student": 0.28} if config.is_eval else 0.3}
        elif path == "latency/run_latency.py":
            _file(_value(argv, "json"), json.dumps(REPORT))
        elif path == "latency/export_onnx.py":
            _file(os.path.join(argv[argv.index("--out") + 1], "meta.json"))
            return {"models": MODELS}
        return None
    monkeypatch.setattr(pipeline_module, "run_script", run_script)
    monkeypatch.setattr(pipeline_module, "chance_miou", lambda config, seed=0: 0.05)
    return calls


def test_each_stage_script_gets_the_outputs_of_the_stages_it_reads(tmp_path, monkeypatch):
    pipeline = Pipeline(str(tmp_path / "runs"), str(tmp_path / "data"), device="cpu")
    calls = fake_scripts(monkeypatch, pipeline.train_config().eval_source)
    pipeline.run()
    made = outputs(pipeline.root)
    argv = dict(zip(STAGES, (argv for _, argv in calls)))
    assert [path for path, _ in calls] == ["dataset/make_demo_dataset.py", "latency/latency_lookup_table.py",
                                           "search/train_search.py", "search/train_search.py", "train/train.py",
                                           "train/train.py", "train/train.py", "latency/run_latency.py",
                                           "latency/export_onnx.py"]
    assert _value(argv["pretrain"], "lut_path") == _value(argv["search"], "lut_path") == made["lut"]
    assert _value(argv["search"], "pretrain") == made["pretrain"]
    for stage in ("teacher", "student", "evaluate"):
        assert _value(argv[stage], "load_path") == made["search"]
    assert _value(argv["student"], "teacher_path") == made["teacher"]
    assert _value(argv["evaluate"], "eval_path") == made["student"]
    assert (_value(argv["latency"], "load_path"), _value(argv["latency"], "lut_path")) == (made["search"], made["lut"])
    assert argv["export"][0] == made["student"]
