"""The latency lookup table: JSON with metadata, import of the original .npy, measure-on-miss, atomic saves.

Replaces the original's module-global ``latency_lookup_table`` dicts (search|train/operations.py,
seg_oprs.py), which were loaded from ``latency_lookup_table.npy`` in the working directory at import time,
filled on a miss by timing the operator, and re-pickled with ``np.save`` after every miss. Here a table is an
object passed explicitly; it records where it was measured (device, backend, precision, torch version,
resolution, date), refuses to be mixed with measurements of another device or used at another resolution,
and is stored as JSON (``{"format": ..., "meta": {...}, "entries": {key: ms}}``) written to a temp file and
renamed.

Keys are the original's (see :mod:`tools.latency.keys`), so the published 1080Ti table imports unchanged.

Fidelity on a CPU. A table made by this project also records (meta):

* ``glue: true`` -- it holds the upsamplings and concatenations between the modules (``interp_*``, ``cat_*``), and
  derived-network estimates read them (:func:`tools.latency.expected.derived_latency`);
* ``timing`` -- how its entries were timed: budget, statistic, clock, threads, and ``rounds``: every entry is
  timed in that many passes over the table, each in a shuffled order, and keeps the median of its passes
  (``passes: "median"``, :func:`fill_table`), so a slow or fast phase of the machine (tens of seconds on a shared
  2-core VM) neither moves a run of neighbouring entries together nor puts the table at the machine's best
  phase. Tables made before ``passes`` was recorded have none: their entries kept their fastest pass;
* ``calibration`` -- ``scale``: the mean ratio of a few random networks of the search space measured whole to the
  sum of their entries timed alone right after them, on the same machine (:mod:`tools.latency.calibrate`). An
  operator timed alone in a loop keeps its weights, input and its threads' share of the data in their caches;
  inside a network it does not, so on a 2-thread CPU the plain sum is 10-40 % off (under on one machine, over on
  another). Every lookup returns ``entry x scale``: the search's latency loss and the derived estimate keep their
  meaning (milliseconds of the operator inside a network); ``entries`` stay the raw timings.

Tables without these keys (the published 1080Ti table, the original .npy, tables of earlier versions) load and
are read exactly as before (scale 1, no glue); a measured table of an earlier version gets a one-line note.
"""
import datetime
import json
import math
import os
import random
import statistics
from contextlib import contextmanager

import torch

from tools.utils.errors import UserError
from tools.utils.fileio import write_text

TABLE_FORMAT = "fasterseg-latency-table/1"
PUBLISHED_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published",
                               "latency_lookup_table_1080ti.json")
PUBLISHED_RESOLUTION = (1024, 2048)
ORIGINAL_TABLE_META = {
    "device": "NVIDIA GeForce GTX 1080 Ti",
    "backend": "original FasterSeg (TensorRT 5 or PyTorch)",
    "precision": "fp32",
    "torch": "unknown (original FasterSeg)",
    "resolution": [1024, 2048],
    "date": "2020 (published with FasterSeg)",
}


NEW_TABLE_META = {"glue": True}   # what a table made by this version holds (see the module docstring)


class TableError(UserError, ValueError):
    """A table file that cannot be used (corrupt, wrong kind, another device or resolution)."""


class TableMissError(UserError, KeyError):
    """A key that is not in the table while measuring misses is forbidden."""

    def __str__(self):
        return self.args[0]


def _how_to_make(resolution, device, backend, precision, path):
    height, width = resolution if resolution else ("H", "W")
    out = path if path and str(path).endswith(".json") else "latency_lookup_table.json"
    return (f"make the right one with: python latency/latency_lookup_table.py image_height={height} "
            f"image_width={width} device={device or 'cpu'} latency_backend={backend or 'pytorch'} "
            f"precision={precision or 'fp32'} lut_path={out}")


class LatencyTable:
    """Key -> latency (ms) with metadata; ``get(spec)`` looks up or (when allowed) times a miss.

    ``measure``: False forbids misses (TableMissError), True times them with ``measurer(module, input_size)``
    inside a forked RNG (building and timing draw random numbers; without the fork a search's width sampling
    would depend on which entries happened to be missing).
    ``path``: JSON file that measured misses are saved to (atomically, after each miss while ``autosave``).
    ``reads``: while :meth:`recording` is active, every lookup is appended as ``(key, ms)``.
    """

    def __init__(self, entries=None, meta=None, path=None, measure=False, measurer=None):
        self.entries = dict(entries or {})
        self.meta = dict(meta or {})
        self.path = path
        self.measure = measure
        self.measurer = measurer
        self.misses = []
        self.autosave = True
        self._reads = None

    def __len__(self):
        return len(self.entries)

    @property
    def scale(self):
        """The calibration factor every lookup is multiplied by (1 without a calibration)."""
        return float((self.meta.get("calibration") or {}).get("scale", 1.0))

    def __contains__(self, key):
        return key in self.entries

    @contextmanager
    def recording(self):
        """Collect every lookup made inside the block as an ordered list of (key, ms)."""
        previous, self._reads = self._reads, []
        try:
            yield self._reads
        finally:
            self._reads = previous

    def lookup(self, key, spec=None):
        """The latency of ``key``; on a miss, time ``spec.build()`` if measuring is allowed."""
        if key not in self.entries:
            self._measure_miss(key, spec)
        value = self.entries[key] * self.scale
        if self._reads is not None:
            self._reads.append((key, value))
        return value

    def get(self, spec):
        return self.lookup(spec.key, spec)

    def _measure_miss(self, key, spec):
        if not self.measure:
            raise TableMissError(f"'{key}' is not in the latency table {self.describe()}; generate it with "
                                 f"latency/latency_lookup_table.py or allow measuring misses (measure=True).")
        if spec is None:
            from tools.latency.keys import parse_key
            spec = parse_key(key)
        if self.measurer is None:
            from tools.latency.backends import make_measurer
            self.measurer = make_measurer("pytorch", "cpu")
        self._fill_meta_from_measurer()
        self.check(device=getattr(self.measurer, "device", None), backend=getattr(self.measurer, "backend", None),
                   precision=getattr(self.measurer, "precision", None))
        value = self.time_entry(spec)
        self.misses.append(key)
        self.entries[key] = value
        if self.path and self.autosave:
            self.save()
        return value

    def time_entry(self, spec):
        """One timing of ``spec`` with the measurer, in a forked RNG (raw ms, not scaled)."""
        with _isolated_rng():
            return float(self.measurer(spec.build(), spec.input_size))

    def _fill_meta_from_measurer(self):
        for name in ("device", "backend", "precision"):
            if name not in self.meta and hasattr(self.measurer, name):
                self.meta[name] = getattr(self.measurer, name)
        if "timing" not in self.meta and hasattr(self.measurer, "timing"):
            self.meta["timing"] = dict(self.measurer.timing, threads=torch.get_num_threads(), rounds=1)
        self.meta.setdefault("torch", torch.__version__)
        self.meta.setdefault("date", datetime.datetime.now().isoformat(timespec="seconds"))

    def describe(self):
        where = self.path or self.meta.get("source") or "(in memory)"
        device = self.meta.get("device", "unknown device")
        resolution = self.meta.get("resolution")
        res = f"{resolution[0]}x{resolution[1]}" if resolution else "unknown resolution"
        calibrated = f", calibrated x{self.scale:.3f}" if "calibration" in self.meta else ""
        return f"{where} [{device}, {res}, {len(self.entries)} entries{calibrated}]"

    def check(self, resolution=None, device=None, backend=None, precision=None):
        """Refuse a table made at another resolution or on another device/backend/precision (one sentence).

        ``device`` is a device name as recorded in the meta (``backends.device_name``).
        """
        wanted = {"resolution": list(resolution) if resolution else None, "device": device, "backend": backend,
                  "precision": precision}
        for name, value in wanted.items():
            have = self.meta.get(name)
            if value is None or have is None or have == value:
                continue
            where = self.path or self.meta.get("source") or "(in memory)"
            raise TableError(f"latency table {where} was made for {name} {have!r}, but "
                             f"{value!r} is asked for; "
                             + _how_to_make(resolution or self.meta.get("resolution"),
                                            "cpu" if str(device or "CPU").startswith("CPU") else "cuda",
                                            backend, precision, self.path) + ".")
        return self

    def to_json(self):
        return {"format": TABLE_FORMAT, "meta": self.meta, "entries": dict(sorted(self.entries.items()))}

    def save(self, path=None):
        """Write the table as JSON (indent 1, no final newline) through the one atomic writer."""
        path = path or self.path
        if not path:
            raise TableError("this latency table has no file; pass save(path=...) with a .json path.")
        write_text(path, json.dumps(self.to_json(), indent=1))
        return path


def _isolated_rng():
    """fork_rng over the CPU generator and, when CUDA is in use, the current CUDA device's generator."""
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return torch.random.fork_rng(devices=cuda)


def _validate_entries(entries, source):
    if not isinstance(entries, dict):
        raise TableError(f"latency table {source} holds a {type(entries).__name__}, not a key -> ms mapping.")
    clean = {}
    for key, value in entries.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not isinstance(key, str) or not math.isfinite(value) or value < 0:
            raise TableError(f"latency table {source} has an invalid entry {key!r}: {entries[key]!r} "
                             "(keys are strings, values finite non-negative ms); regenerate the table.")
        clean[key] = value
    return clean


def import_npy(path):
    """The original ``latency_lookup_table.npy`` (a pickled dict) as a table with the published table's meta.

    Read with the restricted unpickler of ``tools.utils.legacy_files``: a file that would run code when
    unpickled is refused (TableError) before anything from it runs.
    """
    from tools.utils.legacy_files import UnsafeFileError, load_npy
    if not os.path.isfile(path):
        raise FileNotFoundError(f"latency table {path} does not exist.")
    try:
        data = load_npy(path, what="latency lookup table")
        data = data.item() if getattr(data, "shape", None) == () else data
    except UnsafeFileError as error:
        raise TableError(str(error)) from None
    except Exception as error:  # numpy raises several types for a damaged file
        raise TableError(f"latency table {path} is not a readable .npy lookup table ({error}); "
                         "use the original's latency_lookup_table.npy or a project JSON table.") from error
    meta = dict(ORIGINAL_TABLE_META, source=os.path.basename(path))
    return LatencyTable(_validate_entries(data, path), meta)


def read_json(path):
    """A project JSON table; a corrupt or foreign file raises TableError naming it."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise TableError(f"latency table {path} is not valid JSON ({error.msg} at line {error.lineno}); delete "
                         "it and regenerate it with latency/latency_lookup_table.py.") from error
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        raise TableError(f"latency table {path} is not a '{TABLE_FORMAT}' file; regenerate it with "
                         "latency/latency_lookup_table.py (original .npy tables are imported by extension).")
    table = LatencyTable(_validate_entries(data.get("entries"), path), data.get("meta") or {}, path=path)
    _note_if_uncalibrated(table, path)
    return table


def _note_if_uncalibrated(table, path):
    """One line for a measured (non-published) table of an earlier version (no glue, no calibration); it is read
    as it is. A table of this version without a calibration (being made, or made with
    ``lut_calibration_networks=0``) gets none."""
    if "calibration" in table.meta or "glue" in table.meta or not table.entries:
        return
    if os.path.abspath(path) == os.path.abspath(PUBLISHED_TABLE) or "original FasterSeg" in str(
            table.meta.get("backend", "")):
        return
    from tools.latency.backends import say_once
    say_once(f"note: latency table {path} has no calibration against whole networks (made before tables recorded "
             "one): on a CPU its sums can be 10-40 % off the measured latency; it is read as it is. Remake it with "
             "latency/latency_lookup_table.py for calibrated estimates.")


def load_table(path=None, resolution=None, device=None, backend=None, precision=None, measure=False,
               measurer=None, create=True):
    """Open a table for lookups.

    ``path``: a project ``.json`` table, an original ``.npy`` (imported; measured misses are then kept in memory
    only), or empty/None for an in-memory table. A missing ``.json`` is created when ``create`` (and saved as
    misses are measured). ``resolution`` (H, W) must equal the table's; ``device``/``backend``/``precision`` are
    checked when given — pass them when measuring, so a table never mixes two machines' numbers.
    """
    if not path:
        table = LatencyTable(meta=dict(NEW_TABLE_META), measure=measure, measurer=measurer)
    elif str(path).endswith(".npy"):
        table = import_npy(path)
    elif os.path.isfile(path):
        table = read_json(path)
    elif create:
        table = LatencyTable(meta=dict(NEW_TABLE_META), path=path)
    else:
        raise FileNotFoundError(f"latency table {path} does not exist; "
                                + _how_to_make(resolution, "cpu", backend, precision, path) + ".")
    table.measure, table.measurer = measure, measurer
    if resolution is not None:
        table.meta.setdefault("resolution", [int(resolution[0]), int(resolution[1])])
    if device is not None:
        from tools.latency.backends import device_name
        device = device_name(device)
    table.check(resolution, device, backend, precision)
    if measurer is not None:
        table._fill_meta_from_measurer()
        table.check(resolution, getattr(measurer, "device", None), getattr(measurer, "backend", None),
                    getattr(measurer, "precision", None))
    return table


def fill_table(table, specs, progress=True, save_every=1, rounds=1, seed=0):
    """Time every spec whose key is missing (resumable: present keys are skipped); returns the new keys.

    Saves the table after every ``save_every`` new entries, so an interrupted run loses at most that many.
    ``rounds`` > 1: the new entries are timed again in ``rounds - 1`` further passes over all of them, each pass
    in its own shuffled order (``seed``), and keep the median of their passes (the mean of two). Why: the table
    is listed in grid order, where neighbours are similar operators; a slow or fast phase of the machine (tens of
    seconds on a shared 2-core VM) would otherwise move a run of them together, and a network reading several
    would be off as a whole. The median keeps an entry at the machine's typical speed, which is what a network
    measured over a while sees (the fastest pass, which earlier tables kept, put every entry at the machine's best
    phase). Recorded in ``meta["timing"]``: ``rounds``, ``passes`` = "median", ``order`` = "shuffled".
    """
    from tqdm import tqdm
    missing, seen = [], set(table.entries)
    for section, spec in specs:     # each key once: several networks read the same entry
        if spec.key not in seen:
            seen.add(spec.key)
            missing.append((section, spec))
    order = random.Random(seed)
    order.shuffle(missing)
    saved = (table.measure, table.autosave)
    table.measure, table.autosave = True, save_every == 1
    added = []
    try:
        bar = tqdm(missing, disable=not progress, unit="op", desc="latency table")
        for section, spec in bar:
            bar.set_postfix_str(f"{section} {spec.key}"[:70])
            table.get(spec)
            added.append(spec.key)
            if table.path and save_every > 1 and len(added) % save_every == 0:
                table.save()
        timed = [spec for _, spec in missing[:len(added)]]
        passes = {spec.key: [table.entries[spec.key]] for spec in timed}
        for number in range(2, rounds + 1):
            order.shuffle(timed)
            for spec in tqdm(timed, disable=not progress, unit="op", desc=f"latency table, pass {number}/{rounds}"):
                passes[spec.key].append(table.time_entry(spec))
        for key, values in passes.items():
            table.entries[key] = statistics.median(values)
        if added and isinstance(table.meta.get("timing"), dict):
            table.meta["timing"].update(rounds=max(int(rounds), 1), passes="median", order="shuffled")
    finally:
        table.measure, table.autosave = saved
        if table.path and added:
            table.save()
    return added


def table_for(resolution, lut_path="", measure=False, backend="auto", device="cpu", precision="fp32", **timing):
    """The table a search or report should use at ``resolution`` = (H, W).

    ``lut_path`` when given (misses timed on ``device``/``backend`` and saved to it when ``measure``); else the
    published 1080Ti table at 1024x2048 (misses refused: it must not be mixed with this machine's timings);
    else, when ``measure``, an in-memory table timed on demand (``timing`` e.g. budget_s=0.5); else None.
    """
    resolution = (int(resolution[0]), int(resolution[1]))
    if measure:
        from tools.latency.backends import make_measurer
        measurer = make_measurer(backend, device, precision, **timing)
        return load_table(lut_path or None, resolution=resolution, device=measurer.torch_device,
                          backend=measurer.backend, precision=precision, measure=True, measurer=measurer)
    if lut_path:
        return load_table(lut_path, resolution=resolution, create=False)
    if resolution == PUBLISHED_RESOLUTION:
        return load_table(PUBLISHED_TABLE, resolution=resolution, create=False)
    return None
