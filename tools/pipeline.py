"""The main job: the whole FasterSeg work flow on the embedded demo data, one stage after the other.

demo data → labels (cityscapesscripts) → file lists → CPU latency lookup table → pretrain the supernet →
search → train the teacher → train the student → evaluate both on val and write test predictions → measure
latency → a summary table.

Each stage calls the same script entry point a user would run (``main(argv)`` of ``dataset/…``,
``latency/…``, ``search/…``, ``train/…``), with the demo presets (``configs/search_tiny.py``,
``configs/train_tiny.py``) and ``output_root`` set to the pipeline's folder. What a stage produced is
recorded in ``<root>/pipeline.json`` (written atomically after every stage); a later invocation reuses every
stage whose output still exists and is finished (``DONE``), so nothing is redone or overwritten unless
``--redo STAGE`` asks for that stage and the ones after it.
"""
import importlib.util
import json
import os
import sys
import time

import numpy as np

from tools.config import load_config
from tools.engine.checkpoint import atomic_write
from tools.engine.run import is_done, latest_run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("data", "lut", "pretrain", "search", "teacher", "student", "evaluate", "latency")
STATE_NAME = "pipeline.json"


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

    def __init__(self, root="runs/demo", data_root="data/demo", device="auto", redo=None, overrides=()):
        self.root = root
        self.data_root = data_root
        self.device = device
        self.overrides = list(overrides)
        self.state_path = os.path.join(root, STATE_NAME)
        self.state = self._load_state()
        if redo is not None:
            if redo not in STAGES:
                raise PipelineError(f"--redo {redo!r} is not a stage; stages: {', '.join(STAGES)}.")
            for stage in STAGES[STAGES.index(redo):]:
                self.state.pop(stage, None)

    def _load_state(self):
        if not os.path.isfile(self.state_path):
            return {}
        with open(self.state_path) as handle:
            return json.load(handle)

    def _save_state(self):
        text = json.dumps(self.state, indent=1, sort_keys=True, default=_jsonable)
        atomic_write(self.state_path, lambda handle: handle.write(text), mode="w")

    # -- stage arguments ------------------------------------------------------------------------------------
    def data_args(self):
        return [f"dataset_path='{self.data_root}'", f"output_root='{self.root}'", f"device='{self.device}'"]

    def lut_file(self):
        config = load_config("search_tiny", self.data_args())
        return os.path.join(self.root, f"lut_{config.latency_backend}_cpu_{config.latency_height}x"
                                       f"{config.latency_width}.json")

    def search_args(self):
        return self.data_args() + [f"lut_path='{self.lut_file()}'"] + self.overrides_for("search_tiny")

    def train_args(self, mode):
        return self.data_args() + self.supernet_args() + [f"mode='{mode}'",
                                                          f"load_path='{self.folder('search')}'"] + \
            self.overrides_for("train_tiny")

    def supernet_args(self):
        """The searched space's size, so training and latency build what the search searched."""
        search = load_config("search_tiny", self.data_args())
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
        run_script("dataset/make_demo_dataset.py", ["--root", self.data_root, "--prepare"])
        return {"folder": self.data_root}

    def stage_lut(self):
        config = load_config("search_tiny", self.data_args())
        path = self.lut_file()
        run_script("latency/latency_lookup_table.py", [
            f"image_height={config.latency_height}", f"image_width={config.latency_width}", "device='cpu'",
            f"latency_backend='{config.latency_backend}'", f"lut_path='{path}'", f"layers={config.layers}",
            f"Fch={config.Fch}", f"width_mult_list={list(config.width_mult_list)}",
            f"lut_fch_cells=[{config.Fch}]", f"lut_fch_heads=[{config.Fch}]",
            f"lut_budget_s={config.lut_budget_s}", f"lut_calib_s={config.lut_calib_s}"])
        return {"file": path}

    def stage_pretrain(self):
        args = self.search_args() + ["pretrain=True"]
        run_script("search/train_search.py", ["--config", "search_tiny"] + args)
        return {"folder": self._finished("search", load_config("search_tiny", args).save, "pretrain")}

    def stage_search(self):
        args = self.search_args() + [f"pretrain='{self.folder('pretrain')}'"]
        run_script("search/train_search.py", ["--config", "search_tiny"] + args)
        return {"folder": self._finished("search", load_config("search_tiny", args).save, "search")}

    def stage_teacher(self):
        args = self.train_args("teacher")
        summary = run_script("train/train.py", ["--config", "train_tiny"] + args)
        return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU")}

    def stage_student(self):
        args = self.train_args("student") + [f"teacher_path='{self.folder('teacher')}'"]
        summary = run_script("train/train.py", ["--config", "train_tiny"] + args)
        return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU")}

    def stage_evaluate(self):
        args = self.train_args("student") + ["is_eval=True", "is_test=True",
                                             f"eval_path='{self.folder('student')}'"]
        summary = run_script("train/train.py", ["--config", "train_tiny"] + args)
        return {"folder": summary["run_dir"], "val_mIoU": summary.get("val_mIoU"),
                "test_dir": summary.get("test_dir")}

    def stage_latency(self):
        search = load_config("search_tiny", self.data_args())
        report_path = os.path.join(self.root, "latency_report.json")
        run_script("latency/run_latency.py", [
            f"load_path='{self.folder('search')}'"] + self.supernet_args() + [f"image_height={search.latency_height}",
            f"image_width={search.latency_width}", f"lut_path='{self.state['lut']['file']}'",
            "device='cpu'", f"latency_backend='{search.latency_backend}'", f"output_root='{self.root}'",
            f"json='{report_path}'"])
        with open(report_path) as handle:
            return {"file": report_path, "report": json.load(handle)}

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
        folder = entry.get("folder")
        if folder and stage != "data" and not (os.path.isdir(folder) and is_done(folder)):
            return False
        if stage == "data":
            return os.path.isfile(os.path.join(self.data_root, "cityscapes_val_fine.txt"))
        return True

    def run(self):
        start = time.time()
        for number, stage in enumerate(STAGES, 1):
            if self.is_reusable(stage):
                print(f"[{number}/{len(STAGES)}] {stage}: reusing {self._where(stage)}", flush=True)
                continue
            print(f"\n[{number}/{len(STAGES)}] {stage} ...", flush=True)
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
        chance = chance_miou(self.data_root)
        rows = []
        for role in ("teacher", "student"):
            entry = report.get(role, {})
            rows.append({"network": role, "val_mIoU": val.get(role), "params": entry.get("params"),
                         "flops_g": entry.get("flops_g"), "lut_latency_ms": entry.get("lut_latency_ms"),
                         "latency_ms": entry.get("latency_ms"), "fps": entry.get("fps"),
                         "input_size": entry.get("input_size")})
        return {"rows": rows, "chance_mIoU": chance, "folders": {s: self._where(s) for s in STAGES},
                "tensorboard": f"tensorboard --logdir {self.root}",
                "predictions": self.state["evaluate"].get("test_dir"),
                "seconds": {s: self.state[s].get("seconds") for s in STAGES}}


def chance_miou(data_root, seed=0):
    """Val mIoU of a prediction drawn uniformly at random over the classes (what "chance" means here)."""
    from tools.data.datasets import read_file_list, read_label
    from tools.engine.metrics import confusion_matrix, mean_iou
    num_classes = 19
    rng = np.random.default_rng(seed)
    hist = np.zeros((num_classes, num_classes), dtype=np.int64)
    for _, label_path, _ in read_file_list(os.path.join(data_root, "cityscapes_val_fine.txt")):
        label = read_label(os.path.join(data_root, label_path))
        prediction = rng.integers(0, num_classes, size=label.shape)
        hist += confusion_matrix(prediction, label, num_classes)
    return float(mean_iou(hist))


def format_summary(summary):
    """The table printed at the end of the main job."""
    def cell(value, spec):
        return "-" if value is None else format(value, spec)

    lines = ["", "FasterSeg demo: summary",
             f"{'network':<9} {'val mIoU':>9} {'params':>10} {'GFLOPs':>8} {'LUT ms':>8} {'measured ms':>12} "
             f"{'FPS':>8}  input"]
    for row in summary["rows"]:
        lines.append(f"{row['network']:<9} {cell(row['val_mIoU'], '.4f'):>9} {cell(row['params'], ',d'):>10} "
                     f"{cell(row['flops_g'], '.3f'):>8} {cell(row['lut_latency_ms'], '.3f'):>8} "
                     f"{cell(row['latency_ms'], '.3f'):>12} {cell(row['fps'], '.1f'):>8}  {row['input_size']}")
    lines.append(f"chance (uniform random prediction over 19 classes): val mIoU {summary['chance_mIoU']:.4f}")
    lines.append("where things are:")
    for stage, where in summary["folders"].items():
        lines.append(f"  {stage:<9} {where}")
    lines.append(f"  predictions {summary['predictions']}")
    lines.append(f"  TensorBoard: {summary['tensorboard']}")
    seconds = summary["seconds"]
    lines.append("seconds per stage (this or an earlier invocation): " +
                 ", ".join(f"{s} {seconds[s]}" for s in STAGES))
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
    parser.add_argument("--root", default="runs/demo", help="folder for every run of the pipeline")
    parser.add_argument("--data-root", default="data/demo", help="where the demo dataset is generated")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    parser.add_argument("--redo", choices=STAGES, help="run this stage and the ones after it again")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides passed to the search and train stages that know the key")
    args = parser.parse_args(argv)
    pipeline = Pipeline(args.root, args.data_root, args.device, args.redo, args.overrides)
    summary = pipeline.run()
    print(format_summary(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
