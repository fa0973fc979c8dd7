"""The run lifecycle every stage shares (:class:`Run`), and the run-folder rules it rests on: the original's
``create_exp_dir`` + logging set-up, grown into detectron2's trainer-with-hooks shape with torchvision references'
checkpoint dict. The search (tools/search/loop.py) and the training (tools/train/loop.py) are two small subclasses.

The original named folders ``search-<save>-%Y%m%d-%H%M%S`` / ``train-<save>-...`` / ``eval-...`` and logged
to stdout and ``log.txt``. Here :func:`new_run_dir` keeps those names (creating the folder exclusively, so two
runs started in the same second get two folders), and a run folder carries its state in marker files:

* ``LOCK`` while a process works in it (:class:`RunLock`): a second process that would resume or write the same
  folder stops with one sentence naming the holder; a lock left by a killed process is taken over;
* ``DONE`` once finished (never written to again), ``FAILED`` (time and error line) when a run stopped on an
  error, so a folder without ``DONE`` is never mistaken for a finished run;
* ``config.json``: the resolved settings of every stage; resuming compares them (:func:`resume_changes`):
  keys in :data:`RESUME_MUTABLE` may change and are logged, any other difference is refused with the list;
* ``checkpoint.pt`` while unfinished: ``{epoch, model, optimizers, schedulers, rng, history, extra}`` for every
  stage, written once per epoch after its training, and ``checkpoint_evaluated.pt`` (the same without model and
  optimizers) after its evaluation; :meth:`Run.finish` writes ``DONE`` and removes both.

One resume rule for every stage (:func:`find_resume_dir`, docs/configs.md "Resume"): ``resume=True`` continues
the newest unfinished ``<prefix>-<save>-*`` folder holding a checkpoint and refuses when there is none;
``resume=<folder>`` continues that folder. Temporary files left by a write that was killed are removed when a
folder is opened.
"""
import errno
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager

from tools.utils.errors import UserError
from tools.engine import distributed as dist_utils
from tools.engine.recipe import check_schedule
from tools.engine.run_outputs import append_metrics
from tools.utils.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from tools.utils.fileio import (DISK_ERRORS, LogFileHandler, WriteError, check_log_files, remove_temp_files,
                                 write_json, write_text)
from tools.utils.seed import seed_everything

try:
    import fcntl
except ImportError:  # Windows: the lock is an exclusively created file (no detection of a killed holder)
    fcntl = None

DONE_NAME = "DONE"
FAILED_NAME = "FAILED"
LOCK_NAME = "LOCK"
CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoint.pt"
EVALUATED_NAME = "checkpoint_evaluated.pt"
CHECKPOINT_KEYS = ("epoch", "model", "optimizers", "schedulers", "rng", "history", "extra")
# Keys a resumed run may change (applied and logged); a change of any other key is refused.
RESUME_MUTABLE = ("resume", "nepochs", "num_workers", "device", "output_root", "config_path", "val_interval",
                  "test_interval", "test_start_epoch", "plots", "arch_plots")


class RunFolderError(UserError, ValueError):
    """A run folder that cannot be resumed or written (finished, missing, in use, other settings)."""


class RunLockedError(RunFolderError):
    """Another live process holds the run folder's LOCK."""


def run_name(prefix, save):
    """``{prefix}-{save}-YYYYMMDD-HHMMSS`` as the original's experiment folders."""
    return f"{prefix}-{save}-{time.strftime('%Y%m%d-%H%M%S')}"


def unused_name(root, name):
    """``name``, or ``name-2``, ``name-3``... when a run started in the same second already took it."""
    candidate, number = name, 1
    while os.path.exists(os.path.join(root, candidate)):
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def new_run_dir(root, prefix, save):
    """Create and return a new ``root/{prefix}-{save}-YYYYMMDD-HHMMSS`` folder (``-2``, ``-3``... when taken)."""
    while True:
        path = os.path.join(root, unused_name(root, run_name(prefix, save)))
        try:
            os.makedirs(path)
            return path
        except FileExistsError:     # another run took the name between the check and the creation
            continue
        except OSError as error:
            if error.errno not in DISK_ERRORS:
                raise
            raise WriteError(path, error) from error


def mark_done(run_dir):
    """Write the marker that tells later invocations this run finished and must not be overwritten."""
    write_text(os.path.join(run_dir, DONE_NAME), time.strftime("%Y-%m-%d %H:%M:%S\n"))
    _remove(os.path.join(run_dir, FAILED_NAME))


def is_done(run_dir):
    return os.path.isfile(os.path.join(run_dir, DONE_NAME))


def mark_failed(run_dir, error):
    """``FAILED``: the time and the error's first line, so the folder is not taken for a finished run."""
    line = (str(error).strip().splitlines() or [""])[0]
    text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {type(error).__name__}: {line}\n"
    try:
        write_text(os.path.join(run_dir, FAILED_NAME), text)
    except OSError:                 # a full disk must not hide the original error
        pass


def failure_reason(run_dir):
    """The line of ``FAILED`` (None when the run did not fail)."""
    try:
        with open(os.path.join(run_dir, FAILED_NAME)) as handle:
            return handle.readline().strip() or "unknown error"
    except OSError:
        return None


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class RunLock:
    """``run_dir/LOCK``, held (``flock``) while this process works in the folder; released on exit or kill."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.previous = None        # the holder recorded by a process that was killed (lock taken over)
        self._fd = None

    def acquire(self):
        while True:
            flags = os.O_RDWR | os.O_CREAT | (0 if fcntl is not None else os.O_EXCL)
            try:
                fd = os.open(self.path, flags, 0o666)
            except FileExistsError:
                raise self._locked(_read_holder_file(self.path)) from None
            except OSError as error:
                if error.errno not in DISK_ERRORS:
                    raise
                raise WriteError(self.path, error) from error
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder_fd(fd)
                os.close(fd)
                raise self._locked(holder) from None
            except OSError as error:            # a file system without locks: the LOCK file only informs
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                break
            if _same_file(fd, self.path):     # not a file a releasing process removed meanwhile
                break
            os.close(fd)
        self.previous = _read_holder_fd(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd
        return self

    def _locked(self, holder):
        holder = holder or {}
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('started', '?')})"
        gone = f"; if that process is gone, delete {self.path}" if fcntl is None else ""
        return RunLockedError(f"run folder {self.run_dir} is in use by {who}; wait for it to finish or stop it "
                              f"before resuming or writing to this folder{gone}.")

    def release(self):
        if self._fd is None:
            return
        _remove(self.path)          # removed while still locked, so nobody locks a file that is going away
        os.close(self._fd)
        self._fd = None

    @property
    def held(self):
        return self._fd is not None


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _parse_holder(text):
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _read_holder_fd(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    return _parse_holder(os.read(fd, 4096).decode("utf-8", "replace"))


def _read_holder_file(path):
    try:
        with open(path) as handle:
            return _parse_holder(handle.read(4096))
    except OSError:
        return None


def open_run_dir(run_dir):
    """Lock ``run_dir`` for this process and remove temporary files left by a killed write. Returns
    ``(lock, notes)``: lines for log.txt (a lock taken over, a previous failure, files removed)."""
    lock = RunLock(run_dir).acquire()
    notes = []
    if lock.previous:
        notes.append(f"took over the lock of process {lock.previous.get('pid')} on {lock.previous.get('host')}, "
                     f"which ended without releasing it (killed)")
    reason = failure_reason(run_dir)
    if reason is not None:
        notes.append(f"the previous attempt failed: {reason}")
    removed = remove_temp_files(run_dir)
    if removed:
        notes.append(f"removed {len(removed)} temporary file(s) left by an interrupted write: "
                     + ", ".join(os.path.basename(path) for path in removed))
    return lock, notes


@contextmanager
def guarded_run(run_dir, lock):
    """Inside: a failure writes ``FAILED`` (with the error line) before it propagates; the lock is released
    when the block ends either way."""
    try:
        yield
    except BaseException as error:
        if run_dir is not None and not is_done(run_dir):
            mark_failed(run_dir, error)
        raise
    finally:
        if lock is not None:
            lock.release()


# ---- resume -------------------------------------------------------------------------------------------------
def find_resume_dir(config, prefix, checkpoint_name):
    """The folder ``resume`` asks for: ``resume=<folder>`` that folder, ``resume=True`` the newest unfinished
    ``<prefix>-<save>-*`` folder under ``output_root`` that holds ``checkpoint_name``. Refuses (one sentence) a
    finished folder, a folder without a checkpoint, and ``resume=True`` with nothing to resume."""
    if isinstance(config.resume, str):
        folder = config.resume
        if is_done(folder):
            raise RunFolderError(f"run {folder} already finished (it has a DONE marker) and is never written to "
                                 f"again; start a new run with resume=False.")
        if not os.path.isfile(os.path.join(folder, checkpoint_name)):
            raise RunFolderError(f"resume={folder!r} holds no {checkpoint_name}; give the folder of an interrupted "
                                 f"run (or resume=True for the newest one).")
        return folder
    root, name = config.output_root, f"{prefix}-{config.save}-"
    for folder in reversed(run_folders(root, name)):
        if not is_done(folder) and os.path.isfile(os.path.join(folder, checkpoint_name)):
            return folder
    raise RunFolderError(f"resume=True but {root} holds no unfinished run named {name}* with a {checkpoint_name}; "
                         f"start a new run with resume=False.")


def open_stage_dir(config, prefix, checkpoint_name, resume):
    """The locked run folder of a stage: a new ``<prefix>-<save>-...`` folder, or (``resume``) the folder
    :func:`find_resume_dir` picks, whose ``config.json`` is compared with this invocation (changes of
    :data:`RESUME_MUTABLE` keys are applied and noted, others refused). ``config.json`` is (re)written.
    Returns ``(folder, lock, notes)``; ``notes`` are lines for log.txt."""
    folder = find_resume_dir(config, prefix, checkpoint_name) if resume else \
        new_run_dir(config.output_root, prefix, config.save)
    lock, notes = open_run_dir(folder)
    try:
        if resume:
            saved = saved_config(folder)
            if saved is None:
                notes.append(f"{folder} has no {CONFIG_NAME} (an older run): its settings were not compared")
            for key, old, new in resume_changes(saved or {}, config, folder):
                notes.append(f"resume: {key} changed from {old!r} to {new!r} (applied)")
        _remove(os.path.join(folder, FAILED_NAME))      # accepted: the run is live again
        write_config(folder, config)
    except BaseException:
        lock.release()
        raise
    return folder, lock, notes


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def config_snapshot(config):
    """JSON-able copy of the config (tuples as lists), as written to ``config.json``."""
    return {key: _plain(value) for key, value in config.items()
            if isinstance(value, (bool, int, float, str, list, tuple, type(None)))}


def write_config(run_dir, config):
    write_json(os.path.join(run_dir, CONFIG_NAME), config_snapshot(config))


def saved_config(run_dir):
    """The ``config.json`` of a run folder, or None when it has none."""
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as error:
        raise RunFolderError(f"{path} is not valid JSON ({error}); the run cannot be compared with this "
                             f"invocation: start a new run with resume=False.") from error


def resume_changes(saved, config, run_dir, mutable=RESUME_MUTABLE):
    """Compare a resumed run's saved settings with this invocation's: refuse (with the list) any change of a key
    outside ``mutable``; return ``[(key, old, new)]`` for the changed ``mutable`` keys (applied by the caller)."""
    current = config_snapshot(config)
    changed = [(key, saved[key], current[key]) for key in sorted(set(saved) & set(current))
               if _plain(saved[key]) != current[key]]
    fixed = [(key, old, new) for key, old, new in changed if key not in mutable]
    if fixed:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in fixed)
        free = ", ".join(key for key in mutable if key != "resume")
        raise RunFolderError(f"run {run_dir} cannot be resumed with other settings ({listed}); resume with the "
                             f"values in its {CONFIG_NAME} (only {free} may change) or start a new run with "
                             f"resume=False.")
    return changed


def unfinished_note(folder):
    """Why ``folder`` (a run folder used as input) is not finished, or None when it is finished or not a run."""
    if not folder or not os.path.isdir(folder) or is_done(folder):
        return None
    markers = ("log.txt", FAILED_NAME, LOCK_NAME, "checkpoint.pt")
    if not any(os.path.exists(os.path.join(folder, name)) for name in markers):
        return None                 # a plain folder of files (e.g. copied arch files), not a run folder
    reason = failure_reason(folder)
    if reason is not None:
        return f"it failed: {reason}"
    return "no DONE marker: it is still running or was interrupted"


def warn_if_unfinished(logger, key, folder):
    """Log a warning when ``key=folder`` names a run that has not finished; returns the note (or None)."""
    note = unfinished_note(folder)
    if note is not None:
        logger.warning("WARNING: %s=%s is a run that has not finished (%s); its files are those of its last "
                       "completed epoch, not its final ones.", key, folder, note)
    return note


def run_folders(root, prefix):
    """The folders under ``root`` whose names start with ``prefix``, oldest first (names end in the start time)."""
    if not os.path.isdir(root):
        return []
    return [os.path.join(root, name) for name in sorted(os.listdir(root))
            if name.startswith(prefix) and os.path.isdir(os.path.join(root, name))]


def latest_run(root, prefix):
    """The newest folder under ``root`` whose name starts with ``prefix`` (the pipeline's stage output), or None."""
    folders = run_folders(root, prefix)
    return folders[-1] if folders else None


def get_logger(run_dir, name="fasterseg", rank=0):
    """A logger printing to stdout and appending to ``run_dir/log.txt`` (rank 0 only writes); a line log.txt
    could not take makes :func:`tools.utils.fileio.check_log_files` raise at the end of the command."""
    logger = logging.getLogger(f"{name}.{os.path.abspath(run_dir)}")
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    if not logger.handlers:
        formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%m/%d %I:%M:%S %p")
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(formatter)
        logger.addHandler(stream)
        if rank == 0:
            file_handler = LogFileHandler(os.path.join(run_dir, "log.txt"))   # a failed line: check_log_files
            file_handler.setFormatter(formatter)
            logger.addHandler(file_handler)
    return logger


def summary_writer(run_dir, rank=0):
    """A tensorboardX SummaryWriter on rank 0, a no-op stand-in elsewhere."""
    if rank != 0:
        return _NullWriter()
    from tensorboardX import SummaryWriter
    return SummaryWriter(log_dir=os.path.join(run_dir, "tb"))


class _NullWriter:
    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


# ---- the lifecycle ------------------------------------------------------------------------------------------
class Run:
    """One invocation of a stage in its run folder, shared by the search and the training.

    The stage's constructor checks its inputs (so bad input makes no folder) and calls :meth:`open_folder`;
    :meth:`launch` then runs inside the folder's failure guard (``FAILED``, lock released): the logger and
    TensorBoard writer, the stage's ``setup()``, and :meth:`execute`: resume (:meth:`restore`) or ``begin()``,
    the epochs (``train_one_epoch``; the per-epoch schedulers stepped; ``checkpoint.pt``; :meth:`end_epoch`) and
    :meth:`finish`.

    The run is the one owner of the learning-rate schedules (tools/engine/recipe.py ``LR_SCHEDULES``): it checks
    ``lr_schedule`` before anything is built and steps every registered scheduler by the unit it declares: an
    'epoch' one after each epoch's training, an 'iteration' one in :meth:`end_iteration`, which the stage's inner
    loop calls after every optimizer step.

    A stage sets ``prefix`` and registers what its checkpoint holds: ``self.model``, ``self.optimizers`` and
    ``self.schedulers`` (name -> a scheduler of ``build_lr_scheduler``: ``state_dict``, ``unit``, ``seek``) and
    ``self.history``; its hooks are ``setup``, ``begin``, ``train_one_epoch(epoch)`` (calling
    :meth:`end_iteration` after every optimizer step), ``evaluate(epoch)`` (True when it changed what the
    checkpoint holds), ``epoch_record(epoch)`` (the metrics.jsonl line), ``result()``, ``extra_state()`` /
    ``load_extra(extra)`` and ``upgrade_checkpoint(state)`` (its checkpoints of older layouts, or None to refuse
    them).
    """

    prefix = "run"

    def __init__(self, config):
        check_schedule(config)
        self.config = config
        self.rank = dist_utils.get_rank()
        self.is_main = self.rank == 0
        self.resume = bool(config.resume)
        self.run_dir, self.lock, self.notes = None, None, []
        self.model, self.optimizers, self.schedulers, self.history = None, {}, {}, None
        self.start_epoch, self.pending_eval = 0, False

    def seed(self):
        """Every random generator from ``config.seed`` (the original's start of ``main()``)."""
        seed_everything(self.config.seed)

    # ---- folder and logging -------------------------------------------------------------------------------
    def open_folder(self):
        """The locked run folder (:func:`open_stage_dir`: new, or the one ``resume`` names, ``config.json``),
        chosen on the main process and shared with every process; a refusal stops every process."""
        folder, error = None, None
        if self.is_main:
            try:
                folder, self.lock, self.notes = open_stage_dir(self.config, self.prefix, CHECKPOINT_NAME,
                                                               self.resume)
            except RunFolderError as exc:
                error = exc
        folder, error = dist_utils.broadcast_object((folder, error))
        if error is not None:
            raise error
        self.run_dir = folder

    def launch(self):
        """Set up and execute inside the folder's failure guard; returns :meth:`execute`'s result."""
        with guarded_run(self.run_dir if self.is_main else None, self.lock):
            self.logger = get_logger(self.run_dir, rank=self.rank)
            self.writer = summary_writer(self.run_dir, rank=self.rank)
            for note in self.notes:
                self.logger.info("%s", note)
            self.setup()
            return self.execute()

    # ---- epochs -------------------------------------------------------------------------------------------
    def execute(self):
        """Resume or begin, the remaining epochs, :meth:`finish`; returns ``result()``."""
        if self.resume:
            self.restore()
        else:
            self.begin()
        if self.pending_eval:       # the run stopped in the evaluation of its last epoch: finish that first
            self.end_epoch(self.start_epoch - 1)
        for epoch in self.epochs():
            self.train_one_epoch(epoch)
            self.step_schedules("epoch")
            self.save_checkpoint(epoch + 1)         # before the evaluation: a failing one never costs the epoch
            self.end_epoch(epoch)
        result = self.result()
        self.finish()
        return result

    def epochs(self):
        return range(self.start_epoch, self.config.nepochs)

    def end_iteration(self):
        """Called by the stage's inner loop after every optimizer step: the per-iteration schedules move on."""
        self.step_schedules("iteration")

    def step_schedules(self, unit):
        """Step the registered schedulers whose declared unit is ``unit`` ('epoch' or 'iteration')."""
        for scheduler in self.schedulers.values():
            if scheduler.unit == unit:
                scheduler.step()

    def end_epoch(self, epoch):
        """The evaluation due after ``epoch``, its metrics.jsonl record, then what it changed (a small file)."""
        evaluated = self.evaluate(epoch)
        if self.is_main:
            append_metrics(self.run_dir, self.epoch_record(epoch))
        if evaluated:
            self.save_checkpoint(epoch + 1, evaluated=True)

    def finish(self):
        """``DONE`` (the folder is never written to again) and no checkpoint left: a finished run is not resumed.
        A log.txt that missed a line stops the run before ``DONE`` (it stays resumable), and a last line it
        missed after ``DONE`` still makes the command fail (:func:`check_log_files`)."""
        if self.is_main:
            self.writer.close()
            check_log_files(self.logger)
            mark_done(self.run_dir)
            for name in (CHECKPOINT_NAME, EVALUATED_NAME):
                _remove(os.path.join(self.run_dir, name))
            self.logger.info("finished: %s", self.run_dir)
            check_log_files(self.logger)
        dist_utils.barrier()

    # ---- checkpoint ---------------------------------------------------------------------------------------
    def checkpoint_state(self, epoch, evaluated=False):
        """``{epoch, model, optimizers, schedulers, rng, history, extra}``; ``evaluated``: written after the
        epoch's evaluation, which changes neither the weights nor the optimizers, so those two are left out."""
        state = {"epoch": int(epoch)}
        if not evaluated:
            state["model"] = {key: value.detach().cpu() for key, value in self.model.state_dict().items()}
            state["optimizers"] = {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()}
        state.update(schedulers={name: scheduler.state_dict() for name, scheduler in self.schedulers.items()},
                     rng=rng_state(), history=self.history,
                     extra=dict(self.extra_state(), pending_eval=not evaluated))
        return state

    def save_checkpoint(self, epoch, evaluated=False):
        """``checkpoint.pt`` (everything, once per epoch) or ``checkpoint_evaluated.pt``, atomically, on the main
        process; ``extra['pending_eval']`` tells a resumed run whether the epoch's evaluation still has to run."""
        if self.is_main:
            name = EVALUATED_NAME if evaluated else CHECKPOINT_NAME
            save_checkpoint(self.checkpoint_state(epoch, evaluated), os.path.join(self.run_dir, name))
        dist_utils.barrier()

    def read_checkpoint(self):
        """``checkpoint.pt`` in the current layout (an older layout upgraded by the stage, or refused in one
        sentence), with ``checkpoint_evaluated.pt`` of the same epoch laid over it."""
        path = os.path.join(self.run_dir, CHECKPOINT_NAME)
        state = load_checkpoint(path, map_location="cpu")
        if isinstance(state, dict) and not all(key in state for key in CHECKPOINT_KEYS):
            state = self.upgrade_checkpoint(state)
        if not isinstance(state, dict):
            raise CheckpointError(f"checkpoint {path} is not a {self.prefix} checkpoint this version can resume; "
                                  f"start a new run with resume=False.")
        evaluated_path = os.path.join(self.run_dir, EVALUATED_NAME)
        if os.path.isfile(evaluated_path):
            evaluated = load_checkpoint(evaluated_path, map_location="cpu")
            if evaluated.get("epoch") == state["epoch"]:
                state.update(evaluated)
        return state

    def restore(self):
        """Everything :meth:`checkpoint_state` saved, back in place; the stage's extra first (it may refuse)."""
        state = self.read_checkpoint()
        self.load_extra(state["extra"])
        self.model.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            if name in state["schedulers"]:
                scheduler.load_state_dict(state["schedulers"][name])
            else:                   # a checkpoint of an older layout: the schedule follows the epoch count
                scheduler.seek(state["epoch"], self.config.niters_per_epoch)
        set_rng_state(state["rng"])
        self.history = state["history"]
        self.start_epoch = int(state["epoch"])
        self.pending_eval = bool(state["extra"].get("pending_eval", False))
        self.logger.info("resumed %s after epoch %d%s", self.run_dir, self.start_epoch,
                         " (its evaluation first)" if self.pending_eval else "")

    # ---- hooks a stage may keep as they are ---------------------------------------------------------------
    def begin(self):
        """A run that does not resume starts here (log lines, first TensorBoard scalars)."""

    def extra_state(self):
        return {}

    def load_extra(self, extra):
        """Restore what :meth:`extra_state` saved."""

    def upgrade_checkpoint(self, state):
        """``state`` of an older checkpoint layout in the current one, or None when it is not this stage's."""
        return None
