"""The Retrain tab's run controller: ``crossmix train`` in a subprocess, read as typed events.

A run happens in a :class:`QProcess` (a crash cannot take the window down; Stop sends SIGTERM,
on which the trainer saves a resumable state). Before it starts, the data source becomes one
manifest in the run folder (:mod:`training.sources`), and the run's
:class:`training.trainer.TrainConfig` is written as ``train-config.json`` beside it; the
process is ``python -m cli train --config train-config.json --json-progress``. Its stdout
lines are parsed into :mod:`training.events` and handed on by
:attr:`TrainingRun.event_received`.

Every run folder also keeps ``run.json`` (the app's record: the config and how the run
ended), so the Runs list can show, resume or choose any run later (:func:`list_runs`).
After a finished run, :meth:`TrainingRun.evaluate` runs ``crossmix evaluate`` on the run's
test singers for another checkpoint (the model in use), to compare the two.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, Signal

from core.errors import TrainingError
from core.paths import models_dir
from gui.workers import WORKER_NICE, Task, TaskRunner
from training.events import (
    DoneEvent,
    ErrorEvent,
    MalformedEventError,
    TrainEvent,
    UnknownEventError,
    parse_event,
)
from training.sources import SongLibrary, comparison_data, data_from_library, data_from_source
from training.trainer import TrainConfig

log = logging.getLogger(__name__)

#: The run's settings, written by the app beside the trainer's files.
RUN_FILE = "run.json"
#: The run's :class:`TrainConfig` as ``crossmix train --config`` reads it.
CONFIG_FILE = "train-config.json"


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One run folder under the models folder, as the Runs list shows it."""

    path: Path
    config: TrainConfig | None
    status: str  # "finished" | "stopped" | "failed" | "running" | "unknown"
    best_checkpoint: Path | None
    best_val_loss: float | None
    epochs: int | None

    @property
    def resumable(self) -> bool:
        return (self.status in ("stopped", "failed", "unknown") and self.config is not None
                and (self.path / "state.pt").is_file())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_config(path: Path, info: dict[str, Any]) -> TrainConfig | None:
    """The run's config: ``run.json``'s, else (a command-line run) its checkpoint's."""
    doc = info.get("config")
    if not doc:
        best = _read_json(path / "best.json")
        try:
            doc = best["config"]["training"]["config"]
        except (TypeError, KeyError):
            return None
    try:
        return TrainConfig.from_dict(doc, strict=False)
    except TrainingError:
        return None


def read_run(path: Path) -> RunInfo | None:
    """What a run folder holds (``run.json`` from the app, else the checkpoint's JSON)."""
    if not path.is_dir():
        return None
    info = _read_json(path / RUN_FILE)
    info = info if isinstance(info, dict) else {}
    best = path / "best.safetensors"
    if not info and not best.is_file() and not (path / "state.pt").is_file():
        return None
    status = str(info.get("status") or "")
    if not status:
        status = "finished" if (path / "evaluation.json").is_file() else "unknown"
    if status == "running":  # the app is not running it (any more): it ended unexpectedly
        status = "stopped"
    val = info.get("best_val_loss")
    return RunInfo(path=path, config=_run_config(path, info), status=status,
                   best_checkpoint=best if best.is_file() else None,
                   best_val_loss=float(val) if isinstance(val, (int, float)) else None,
                   epochs=int(info["epochs"]) if isinstance(info.get("epochs"), int) else None)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run folder under ``root`` (default: the models folder), newest first."""
    root = models_dir() if root is None else root
    if not root.is_dir():
        return []
    runs = [r for p in root.iterdir() if (r := read_run(p)) is not None]
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)


def new_run_dir(root: Path | None = None) -> Path:
    """A fresh ``run-<time>`` folder name under ``root`` (default: the models folder)."""
    root = models_dir() if root is None else root
    stamp = time.strftime("run-%Y%m%d-%H%M%S")
    path, n = root / stamp, 1
    while path.exists():
        path, n = root / f"{stamp}-{n}", n + 1
    return path


def train_command(config_file: Path, *, threads: int | None = None, resume: bool = False) -> list[str]:
    """The arguments of ``python`` that run ``crossmix train --config config_file``."""
    args = ["-m", "cli", "train", "--config", str(config_file)]
    if threads:
        args += ["--threads", str(threads)]
    if resume:
        args.append("--resume")
    return args + ["--json-progress"]


def _nice(proc: QProcess) -> None:
    """Lower the subprocess's priority so the window stays responsive while it trains."""
    try:
        pid = int(proc.processId())
        if pid > 0:
            os.setpriority(os.PRIO_PROCESS, pid, WORKER_NICE)
    except (AttributeError, OSError):
        pass


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """How a run ended: its ``done`` event (``None``: it failed, ``message`` says why)."""

    done: DoneEvent | None
    message: str = ""
    elapsed_s: float = 0.0

    @property
    def stopped(self) -> bool:
        return self.done is not None and self.done.stopped == "interrupted"


class TrainingRun(QObject):
    """Starts, stops and resumes one ``crossmix train`` process at a time, and evaluates
    another checkpoint on a finished run's test singers."""

    launched = Signal(bool)  # the process started (True: resumed)
    failed = Signal(str)  # the run could not start (its songs, the process): why
    event_received = Signal(object)  # each TrainEvent of the process
    ended = Signal(object)  # RunEnd: the process ended
    evaluated = Signal(object)  # the report (dict) of evaluate()
    evaluation_failed = Signal(str)

    def __init__(self, runner: TaskRunner, library: Callable[[], SongLibrary],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.library = library
        self.process: QProcess | None = None
        self.eval_process: QProcess | None = None
        self.out_dir: Path | None = None
        self.config: TrainConfig | None = None  # the config of the run shown
        self.events: list[TrainEvent] = []
        self.done: DoneEvent | None = None
        self.stopping = False
        self.eval_json: Path | None = None
        self._buffer = b""
        self._stderr_tail: list[str] = []
        self._t_start = 0.0

    @property
    def running(self) -> bool:
        return self.process is not None or self.eval_process is not None

    # --- starting ---------------------------------------------------------------------------

    def start(self, cfg: TrainConfig, folder: str | None) -> Task | None:
        """Collect the songs (``folder``, or the library when ``None``) into a new run folder,
        then train on them with ``cfg``. Failures end with :attr:`ended` (``done=None``)."""
        if self.running:
            return None
        self.out_dir = new_run_dir()
        self.config = cfg
        self._reset()
        out, labels = self.out_dir, cfg.uses_labels
        if folder is None:
            task = Task(self._library_data, out, labels, name="reading the library")
        else:
            task = Task(self._folder_data, folder, out, labels, name="reading the training data")
        task.signals.finished.connect(self._launch)
        task.signals.failed.connect(lambda msg, _e: self.failed.emit(msg))
        return self.runner.start(task)

    def _library_data(self, out: Path, labels: bool, *, progress: Any, cancel: Any) -> Path:
        return data_from_library(self.library(), out, labels=labels)

    def _folder_data(self, folder: str, out: Path, labels: bool, *, progress: Any,
                     cancel: Any) -> Path:
        return data_from_source(folder, out, labels=labels)

    def _launch(self, data: Path) -> None:
        assert self.out_dir is not None and self.config is not None
        self.config = dataclasses.replace(self.config, data=str(Path(data).resolve()),
                                          out=str(self.out_dir))
        self._run_process(resume=False)

    def resume(self, run_dir: Path | None = None) -> str | None:
        """Continue a stopped run (default: the one shown) with the settings it started with;
        ``None``, or why it cannot be resumed."""
        if self.running:
            return "A run is in progress."
        run_dir = run_dir or self.out_dir
        info = read_run(run_dir) if run_dir is not None else None
        if info is None or not info.resumable or info.config is None:
            return (f"{run_dir}: this run cannot be resumed (it finished, or its saved state "
                    "or settings are missing).")
        self.out_dir = info.path
        self.config = dataclasses.replace(info.config, out=str(info.path))
        self._reset()
        self._run_process(resume=True)
        return None

    def _reset(self) -> None:
        self.events = []
        self.done = None
        self.stopping = False

    def _run_process(self, *, resume: bool) -> None:
        assert self.out_dir is not None and self.config is not None
        self.write_run_file(status="running")
        config_file = self.config.save(self.out_dir / CONFIG_FILE)
        self.process = self._new_process(self._train_stdout, self._train_finished)
        self._t_start = time.monotonic()
        threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core to the window
        self.process.start(sys.executable, train_command(config_file, threads=threads, resume=resume))
        _nice(self.process)
        self.launched.emit(resume)

    def write_run_file(self, **fields: Any) -> None:
        """Update ``run.json`` of the run shown with ``fields`` (and its config)."""
        if self.out_dir is None or self.config is None:
            return
        path = self.out_dir / RUN_FILE
        old = _read_json(path) if path.is_file() else {}
        old = old if isinstance(old, dict) else {}
        old.update(fields, config=self.config.to_dict())
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{RUN_FILE}.tmp")
            tmp.write_text(json.dumps(old, indent=1))
            tmp.replace(path)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    def _new_process(self, on_stdout: Callable[[], None],
                     on_finished: Callable[[int, QProcess.ExitStatus], None]) -> QProcess:
        proc = QProcess(self)
        self._buffer = b""
        self._stderr_tail = []
        proc.readyReadStandardOutput.connect(on_stdout)
        proc.readyReadStandardError.connect(lambda p=proc: self._read_stderr(p))
        proc.finished.connect(on_finished)
        proc.errorOccurred.connect(lambda err, p=proc: self._process_error(p, err))
        return proc

    def _read_stderr(self, proc: QProcess) -> None:
        text = bytes(proc.readAllStandardError().data()).decode("utf-8", "replace")
        self._stderr_tail = (self._stderr_tail + text.splitlines())[-20:]

    def _process_error(self, proc: QProcess, err: QProcess.ProcessError) -> None:
        if err != QProcess.ProcessError.FailedToStart:
            return
        msg = f"Could not start the training process ({proc.errorString()})."
        if proc is self.process:
            self.process = None
            self.failed.emit(msg)
        elif proc is self.eval_process:
            self.eval_process = None
            self.evaluation_failed.emit(msg)

    # --- progress ---------------------------------------------------------------------------

    def _train_stdout(self) -> None:
        assert self.process is not None
        self._buffer += bytes(self.process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self.read_line(line.strip())

    def read_line(self, line: bytes | str) -> TrainEvent | None:
        """One stdout line: a typed event, handed on; anything else is logged and skipped."""
        try:
            e = parse_event(line)
        except UnknownEventError as exc:  # a newer trainer: what this version can show goes on
            log.info("train: skipped an event of unknown kind %r", exc.kind)
            return None
        except MalformedEventError:
            log.info("train: %s", line.decode("utf-8", "replace") if isinstance(line, bytes) else line)
            return None
        self.events.append(e)
        if isinstance(e, DoneEvent):
            self.done = e
        self.event_received.emit(e)
        return e

    # --- the end ----------------------------------------------------------------------------

    def _train_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        if self.process is not None:
            self._train_stdout()
        self.process = None
        self.stopping = False
        end = RunEnd(self.done, elapsed_s=time.monotonic() - self._t_start)
        if self.done is None or code not in (0, 130):
            errors = [e.message for e in self.events if isinstance(e, ErrorEvent)]
            msg = errors[-1] if errors else ("\n".join(self._stderr_tail[-3:]) or f"exit status {code}")
            self.write_run_file(status="failed", message=msg)
            end = RunEnd(None, msg, end.elapsed_s)
        else:
            self.write_run_file(status="stopped" if end.stopped else "finished",
                                best_val_loss=self.done.best_val_loss, epochs=self.done.epochs)
        self.ended.emit(end)

    def best_checkpoint(self) -> Path | None:
        """The run's best checkpoint so far (on disk, whatever the run's end)."""
        if self.done is not None and self.done.best_checkpoint:
            p = Path(self.done.best_checkpoint)
            if p.is_file():
                return p
        if self.out_dir is not None and (self.out_dir / "best.safetensors").is_file():
            return self.out_dir / "best.safetensors"
        return None

    # --- comparing with another model -------------------------------------------------------

    def evaluate(self, checkpoint: Path) -> None:
        """Evaluate ``checkpoint`` on the run's test singers (:attr:`evaluated` at the end)."""
        assert self.out_dir is not None
        task = Task(self._comparison_data, self.out_dir, name="preparing the comparison")
        task.signals.finished.connect(lambda data, c=checkpoint: self._launch_eval(data, c))
        task.signals.failed.connect(lambda msg, _e: self.evaluation_failed.emit(msg))
        self.runner.start(task)

    def _comparison_data(self, out: Path, *, progress: Any, cancel: Any) -> Path:
        return comparison_data(out)

    def _launch_eval(self, data: Path, checkpoint: Path) -> None:
        assert self.out_dir is not None and self.config is not None
        self.eval_json = self.out_dir / "current-model-evaluation.json"
        self.eval_process = self._new_process(lambda: None, self._eval_finished)
        args = ["-m", "cli", "evaluate", "--data", str(data), "--encoders", str(checkpoint),
                "--split", "all", "--vocals", str(self.config.vocals),
                "--device", str(self.config.device), "--json", str(self.eval_json)]
        self.eval_process.start(sys.executable, args)
        _nice(self.eval_process)

    def _eval_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self.eval_process = None
        if code == 0 and self.eval_json is not None and self.eval_json.is_file():
            self.evaluated.emit(json.loads(self.eval_json.read_text()))
        else:
            self.evaluation_failed.emit("\n".join(self._stderr_tail[-3:]) or f"exit status {code}")

    # --- stopping ---------------------------------------------------------------------------

    def stop(self) -> bool:
        """SIGTERM: the trainer saves a resumable state and reports ``stopped: interrupted``."""
        if self.process is None:
            return False
        self.stopping = True
        self.process.terminate()
        return True

    def shutdown(self) -> None:
        """Called when the window closes: stop the subprocesses, saving the run."""
        for proc in (self.process, self.eval_process):
            if proc is not None and proc.state() != QProcess.ProcessState.NotRunning:
                proc.terminate()
                if not proc.waitForFinished(15000):
                    proc.kill()
                    proc.waitForFinished(3000)
