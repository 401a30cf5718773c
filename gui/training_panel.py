"""Retrain tab: run ``crossmix train`` as a subprocess, plot its JSON-lines progress live, then
show its evaluation beside the current model's and offer to switch to it.

The run happens in a :class:`QProcess` (a crash cannot take the window down; Stop sends
SIGTERM, on which the trainer saves a resumable state). Before it starts, the data source is
written as one ``manifest.csv`` (absolute paths) in the run folder, so the library's artist
tags, a folder of tagged songs and a manifest all train the same way, and the current model
can be evaluated on exactly the new model's test singers.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import TrainingError
from core.paths import models_dir
from gui.engine import Session
from gui.library_panel import fmt_eta
from gui.settings import Settings
from gui.workers import WORKER_NICE, Task, TaskRunner

log = logging.getLogger(__name__)

LOSSES = (("MIXED", "mixed", (0.0, 0.0, 1.0, 0.0)),
          ("CROSS", "cross", (1.0, 0.0, 0.0, 0.0)),
          ("CROSS-SP", "cross-sp", (0.25, 0.25, 0.25, 0.25)))
LAMBDA_NAMES = ("λ1 vocal→mix", "λ2 mix→vocal", "λ3 mix→mix", "λ4 vocal→vocal")
MANIFEST_HEADER = ["path", "singer", "song", "vocals"]


# --- data sources (run in a worker) ------------------------------------------------------------


def write_manifest(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_HEADER)
        w.writerows(rows)
    return path


def rows_from_library(lib: Any) -> list[list[str]]:
    """One row per library song with an artist tag: ``[path, artist, title, ""]``."""
    rows = []
    for song in lib.songs():
        if song.artist and song.path:
            rows.append([str(Path(song.path).resolve()), song.artist,
                         song.title or Path(song.path).stem, ""])
    if not rows:
        raise TrainingError(
            f"{lib.root}: no library song has an artist tag, so there are no singer labels to "
            "train with. Tag the files with their artist, or train from a folder with a "
            "manifest.csv.")
    return rows


def rows_from_source(source: str | Path) -> list[list[str]]:
    """Rows from a folder (its manifest.csv or the files' artist tags) or a manifest file."""
    from training.dataset import MANIFEST, load_dataset

    p = Path(source).expanduser()
    if p.is_file():  # a manifest under another name: read it as if it were the folder's
        tmp_root = p.parent
        if p.name != MANIFEST:
            import tempfile

            d = Path(tempfile.mkdtemp(prefix="crossmix-manifest-"))
            with open(p, newline="", encoding="utf-8") as src:
                lines = list(csv.reader(src))
            header = [h.strip().lower() for h in lines[0]] if lines else []
            has_header = "path" in header and "singer" in header
            cols = header if has_header else ["path", "singer", "song", "vocals"][: len(lines[0])]
            out = []
            for row in lines[1:] if has_header else lines:
                r = dict(zip(cols, row, strict=False))
                for k in ("path", "vocals"):
                    if r.get(k):
                        r[k] = str((tmp_root / r[k].strip()).resolve())
                out.append([r.get(c, "") for c in MANIFEST_HEADER])
            write_manifest(d / MANIFEST, out)
            p = d
        else:
            p = tmp_root
    ds = load_dataset(p)
    return [[str(s.path), s.singer, s.song, str(s.vocals) if s.vocals else ""] for s in ds.songs]


def prepare_run(*, out: Path, source_rows: list[list[str]],
                progress: Any = None, cancel: Any = None) -> Path:
    """Write ``out/data/manifest.csv``; returns the data folder for ``crossmix train``."""
    return write_manifest(out / "data" / "manifest.csv", source_rows).parent


def prepare_comparison(*, out: Path, progress: Any = None, cancel: Any = None) -> Path:
    """``out/compare/manifest.csv``: the run's test singers only (from ``out/split.json``)."""
    split = json.loads((out / "split.json").read_text())
    test = set(split.get("test") or [])
    with open(out / "data" / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in list(csv.reader(fh))[1:] if len(r) > 1 and r[1] in test]
    if not rows:
        raise TrainingError(f"{out}: the run recorded no test singers to compare on.")
    return write_manifest(out / "compare" / "manifest.csv", rows).parent


def current_checkpoint(settings: Settings) -> Path | None:
    """The encoder checkpoint the app uses now (the setting, else the shipped one if present)."""
    chosen = settings.get("model/encoder_checkpoint")
    if chosen:
        return Path(chosen)
    from core.encoders import default_encoders_path

    p = default_encoders_path()
    return p if p.is_file() else None


def evaluation_rows(report: dict[str, Any]) -> list[tuple[str, float]]:
    """``(metric, value)`` pairs of an evaluation report, in a stable order."""
    rows = []
    for name, r in report.get("singer_id", {}).items():
        rows.append((f"Singer ID top-1  {name}", float(r["top1"])))
    base = report.get("baseline_mfcc") or {}
    if "singer_id" in base:
        rows.append(("Singer ID top-1  MFCC-mean baseline", float(base["singer_id"]["top1"])))
    if "chance_top1" in report:
        rows.append(("Singer ID top-1  chance", float(report["chance_top1"])))
    for name, r in report.get("query_by_singer", {}).items():
        rows.append((f"Query-by-singer mAP  {name}", float(r["mAP"])))
        rows.append((f"Query-by-singer R@10  {name}", float(r["R@10"])))
    if "query_by_singer" in base:
        rows.append(("Query-by-singer mAP  MFCC-mean baseline",
                     float(base["query_by_singer"]["mAP"])))
    return rows


def _nice(proc: QProcess) -> None:
    """Lower the subprocess's priority so the window stays responsive while it trains."""
    try:
        pid = int(proc.processId())
        if pid > 0:
            os.setpriority(os.PRIO_PROCESS, pid, WORKER_NICE)
    except (AttributeError, OSError):
        pass


# --- the panel ------------------------------------------------------------------------------


class TrainingPanel(QWidget):
    run_finished = Signal(object)  # the "done" event dict, or None on failure/stop
    comparison_finished = Signal()
    model_chosen = Signal(str)  # path of the checkpoint to use

    def __init__(self, session: Session, settings: Settings, runner: TaskRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.runner = runner
        self.process: QProcess | None = None
        self.eval_process: QProcess | None = None
        self.out_dir: Path | None = None
        self.events: list[dict[str, Any]] = []
        self.done_event: dict[str, Any] | None = None
        self.new_report: dict[str, Any] | None = None
        self.current_report: dict[str, Any] | None = None
        self._buffer = b""
        self._stderr_tail: list[str] = []
        self._stopping = False
        self._t_start = 0.0
        self._points: dict[int, tuple[list[float], list[float]]] = {}

        # data source
        self.src_library = QRadioButton("The library's songs, labelled by their artist tags")
        self.src_folder = QRadioButton("A folder (manifest.csv or artist tags) or a manifest file")
        grp = QButtonGroup(self)
        grp.addButton(self.src_library)
        grp.addButton(self.src_folder)
        self.src_library.setChecked(True)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("folder of songs labelled by singer, or a .csv manifest")
        self.folder.textChanged.connect(lambda _t: self.src_folder.setChecked(True))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        src = QGroupBox("Data")
        sl = QGridLayout(src)
        sl.addWidget(self.src_library, 0, 0, 1, 3)
        sl.addWidget(self.src_folder, 1, 0, 1, 3)
        sl.addWidget(self.folder, 2, 0, 1, 2)
        sl.addWidget(browse, 2, 2)

        # hyper-parameters
        self.loss = QComboBox()
        for label, name, lam in LOSSES:
            self.loss.addItem(label, (name, lam))
        self.loss.setCurrentIndex(2)
        self.lambdas = []
        lam_row = QHBoxLayout()
        for name in LAMBDA_NAMES:
            sp = QDoubleSpinBox()
            sp.setRange(0.0, 10.0)
            sp.setSingleStep(0.05)
            sp.setToolTip(name)
            self.lambdas.append(sp)
            lam_row.addWidget(sp)
        self.loss.currentIndexChanged.connect(self._loss_changed)
        self._loss_changed()
        self.margin = self._dspin(0.4, 0.0, 2.0, 0.05)
        self.batches = self._spin(1200, 1, 100000)
        self.epochs = self._spin(1000, 1, 100000)
        self.patience = self._spin(20, 1, 1000)
        self.device = QComboBox()
        for d in ("auto", "cpu", "cuda"):
            self.device.addItem(d, d)
        self.device.setCurrentIndex(max(0, self.device.findData(settings.get("compute/device"))))
        self.width_mult = self._dspin(1.0, 0.05, 4.0, 0.125)
        self.batch_size = self._spin(25, 2, 512)
        self.vocals = QComboBox()
        self.vocals.addItem("Separated with Spleeter", "separated")
        self.vocals.addItem("Ground-truth stems from the manifest", "stems")
        self.held_out = self._dspin(0.1, 0.05, 0.45, 0.05)
        hp = QGroupBox("Training")
        form = QFormLayout(hp)
        form.addRow("Loss", self.loss)
        form.addRow("Lambdas", lam_row)
        form.addRow("Margin", self.margin)
        form.addRow("Batches per epoch", self.batches)
        form.addRow("Max epochs", self.epochs)
        form.addRow("Patience (epochs)", self.patience)
        form.addRow("Device", self.device)
        form.addRow("Width (× paper's filters)", self.width_mult)
        form.addRow("Batch size (triplets)", self.batch_size)
        form.addRow("Vocals", self.vocals)
        form.addRow("Held-out singers (validation, test)", self.held_out)

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.use_button = QPushButton("Use this model")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use_model)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)

        left = QVBoxLayout()
        left.addWidget(src)
        left.addWidget(hp)
        left.addLayout(buttons)
        left.addStretch(1)

        # live view
        self.status = QLabel("Set the data and press Start. Training runs in a separate process.")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.eta = QLabel("")
        self.plot = pg.PlotWidget()
        self.plot.setBackground(None)
        self.plot.setMinimumHeight(220)
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setLabel("bottom", "epoch")
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.batch_curve = self.plot.plot([], [], pen=pg.mkPen("#9ec5e8", width=1), name="train (batches)")
        self.train_curve = self.plot.plot([], [], pen=pg.mkPen("#1f6fb2", width=2), symbol="o",
                                          symbolSize=5, name="train (epoch)")
        self.val_curve = self.plot.plot([], [], pen=pg.mkPen("#d95f02", width=2), symbol="s",
                                        symbolSize=5, name="validation")
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Metric", "New model", "Current model"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table_note = QLabel("")
        self.table_note.setWordWrap(True)
        right = QVBoxLayout()
        right.addWidget(self.status)
        prow = QHBoxLayout()
        prow.addWidget(self.bar, 1)
        prow.addWidget(self.eta)
        right.addLayout(prow)
        right.addWidget(self.plot, 2)
        right.addWidget(QLabel("Evaluation on the held-out test singers"))
        right.addWidget(self.table, 2)
        right.addWidget(self.table_note)

        lay = QHBoxLayout(self)
        lw = QWidget()
        lw.setLayout(left)
        lw.setMaximumWidth(560)
        lay.addWidget(lw)
        lay.addLayout(right, 1)

    # --- widgets helpers --------------------------------------------------------------------

    @staticmethod
    def _spin(v: int, lo: int, hi: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(v)
        return s

    @staticmethod
    def _dspin(v: float, lo: float, hi: float, step: float) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setDecimals(3)
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setValue(v)
        return s

    def _loss_changed(self, *_: object) -> None:
        _name, lam = self.loss.currentData()
        for sp, v in zip(self.lambdas, lam, strict=True):
            sp.setValue(v)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder of songs labelled by singer",
                                             self.folder.text() or str(Path.home()))
        if d:
            self.folder.setText(d)

    @property
    def running(self) -> bool:
        return self.process is not None or self.eval_process is not None

    # --- starting ---------------------------------------------------------------------------

    def start(self) -> Task | None:
        if self.running:
            return None
        self.out_dir = models_dir() / time.strftime("run-%Y%m%d-%H%M%S")
        n = 1
        while self.out_dir.exists():
            self.out_dir = models_dir() / f"{time.strftime('run-%Y%m%d-%H%M%S')}-{n}"
            n += 1
        self._reset_view()
        self.start_button.setEnabled(False)
        self.status.setText("Collecting the training songs…")
        if self.src_library.isChecked():
            task = Task(self._library_rows_then_prepare, self.out_dir, name="reading the library")
        else:
            folder = self.folder.text().strip()
            if not folder:
                self._fail("Choose a folder of songs labelled by singer (or use the library).")
                return None
            task = Task(self._folder_rows_then_prepare, folder, self.out_dir,
                        name="reading the training data")
        task.signals.finished.connect(self._launch)
        task.signals.failed.connect(lambda msg, _e: self._fail(msg))
        return self.runner.start(task)

    def _library_rows_then_prepare(self, out: Path, *, progress: Any, cancel: Any) -> Path:
        lib = self.session._require_library()
        return prepare_run(out=out, source_rows=rows_from_library(lib))

    def _folder_rows_then_prepare(self, folder: str, out: Path, *, progress: Any,
                                  cancel: Any) -> Path:
        return prepare_run(out=out, source_rows=rows_from_source(folder))

    def train_arguments(self, data: Path) -> list[str]:
        assert self.out_dir is not None
        name, _ = self.loss.currentData()
        lam = ",".join(f"{sp.value():g}" for sp in self.lambdas)
        threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core to the window
        return ["-m", "core", "train", "--data", str(data), "--out", str(self.out_dir),
                "--loss", name, "--lambdas", lam, "--margin", f"{self.margin.value():g}",
                "--batches-per-epoch", str(self.batches.value()),
                "--epochs", str(self.epochs.value()), "--patience", str(self.patience.value()),
                "--device", str(self.device.currentData()),
                "--width", f"{self.width_mult.value():g}",
                "--batch-size", str(self.batch_size.value()),
                "--vocals", str(self.vocals.currentData()),
                "--val-fraction", f"{self.held_out.value():g}",
                "--test-fraction", f"{self.held_out.value():g}",
                "--threads", str(threads), "--json-progress"]

    def _launch(self, data: Path) -> None:
        self.process = self._new_process(self._train_stdout, self._train_finished)
        self.status.setText(f"Training in {self.out_dir}…")
        self.stop_button.setEnabled(True)
        self._t_start = time.monotonic()
        self.process.start(sys.executable, self.train_arguments(data))
        _nice(self.process)

    def _new_process(self, on_stdout: Any, on_finished: Any) -> QProcess:
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
        if err == QProcess.ProcessError.FailedToStart:
            self._fail(f"Could not start the training process ({proc.errorString()}).")

    # --- progress ---------------------------------------------------------------------------

    def _train_stdout(self) -> None:
        assert self.process is not None
        self._buffer += bytes(self.process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                log.info("train: %s", line.decode("utf-8", "replace"))
                continue
            if isinstance(event, dict):
                self.handle_event(event)

    def handle_event(self, e: dict[str, Any]) -> None:
        """Update the view from one JSON-lines event of ``crossmix train``."""
        self.events.append(e)
        kind = e.get("event")
        if kind == "split":
            self.status.setText(f"{e['singers']} singers, {e['songs']} songs: {e['train']} for "
                                f"training, {e['val']} for validation, {e['test']} for testing.")
        elif kind == "prepare":
            total = max(1, int(e.get("total") or 1))
            self.bar.setValue(int(1000 * float(e.get("done", 0)) / total))
            self.bar.setFormat(f"Preparing features {int(e.get('done', 0))}/{total} "
                               f"{e.get('unit', '')}")
            self.eta.setText(fmt_eta(e.get("eta_s")))
        elif kind == "start":
            self.status.setText(f"Training {e.get('loss', '').upper()} on {e.get('device')}: "
                                f"{e.get('parameters', 0):,} parameters, "
                                f"{e.get('train_singers', '?')} training singers.")
        elif kind == "batch":
            batches = max(1, int(e.get("batches") or 1))
            x = float(e["epoch"]) + float(e["batch"]) / batches
            self._append(self.batch_curve, x, e.get("loss"))
            self.bar.setValue(int(1000 * float(e["batch"]) / batches))
            self.bar.setFormat(f"Epoch {int(e['epoch']) + 1}: batch {e['batch']}/{batches}, "
                               f"loss {float(e['loss']):.3f}")
            self.eta.setText(fmt_eta(e.get("eta_s")))
        elif kind == "epoch":
            self._append(self.train_curve, float(e["epoch"]) + 1, e.get("train_loss"))
            self._append(self.val_curve, float(e["epoch"]) + 1, e.get("val_loss"))
            self.status.setText(
                f"Epoch {int(e['epoch']) + 1}: train {float(e['train_loss']):.3f}, validation "
                f"{float(e['val_loss']):.3f} (best {float(e['best_val_loss']):.3f} at epoch "
                f"{int(e['best_epoch']) + 1}; {e.get('epochs_since_best', 0)} without "
                f"improvement, patience {self.patience.value()}).")
            self.eta.setText(fmt_eta(e.get("eta_s")))
        elif kind == "done":
            self.done_event = e
        elif kind == "error":
            self._stderr_tail.append(str(e.get("message", "")))
        elif kind == "warning":
            self.table_note.setText(str(e.get("message", "")))

    def _append(self, curve: Any, x: float, y: Any) -> None:
        if y is None:
            return
        xs, ys = self._points.setdefault(id(curve), ([], []))
        xs.append(x)
        ys.append(float(y))
        curve.setData(xs, ys)

    # --- the end ----------------------------------------------------------------------------

    def _train_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        if self.process is not None:
            self._train_stdout()
        self.process = None
        self.stop_button.setEnabled(False)
        done = self.done_event
        elapsed = time.monotonic() - self._t_start
        if done is None or code not in (0, 130):
            errors = [ev for ev in self.events if ev.get("event") == "error"]
            msg = errors[-1]["message"] if errors else ("\n".join(self._stderr_tail[-3:])
                                                         or f"exit status {code}")
            self._fail(f"Training failed: {msg}")
            return
        if done.get("stopped") == "interrupted":
            self.start_button.setEnabled(True)
            self.status.setText(f"Stopped after {elapsed:.0f} s. The run is saved in "
                                f"{self.out_dir} and can be resumed with 'crossmix train "
                                f"--resume'.")
            self.run_finished.emit(None)
            return
        self.bar.setValue(1000)
        self.bar.setFormat("Done")
        self.eta.setText("")
        self.status.setText(
            f"Done in {elapsed:.0f} s ({done.get('stopped', '').replace('_', ' ')}): best "
            f"validation loss {float(done.get('best_val_loss', float('nan'))):.3f} at epoch "
            f"{int(done.get('best_epoch', 0)) + 1}. Checkpoint: {done.get('best_checkpoint')}")
        ev = done.get("evaluation")
        if ev and Path(ev).is_file():
            self.new_report = json.loads(Path(ev).read_text())
        self.use_button.setEnabled(bool(done.get("best_checkpoint")))
        self.show_table()
        self.run_finished.emit(done)
        self._evaluate_current()

    def _evaluate_current(self) -> None:
        current = current_checkpoint(self.settings)
        if current is None or self.new_report is None or self.out_dir is None:
            self.table_note.setText("No current model to compare with (no trained encoders are "
                                    "installed)." if current is None else "")
            self.start_button.setEnabled(True)
            self.comparison_finished.emit()
            return
        self.table_note.setText(f"Evaluating the current model ({current.name}) on the same "
                                "test singers…")
        task = Task(prepare_comparison, out=self.out_dir, name="preparing the comparison")
        task.signals.finished.connect(lambda data, c=current: self._launch_eval(data, c))
        task.signals.failed.connect(lambda msg, _e: self._comparison_failed(msg))
        self.runner.start(task)

    def _launch_eval(self, data: Path, current: Path) -> None:
        assert self.out_dir is not None
        self.eval_json = self.out_dir / "current-model-evaluation.json"
        self.eval_process = self._new_process(lambda: None, self._eval_finished)
        args = ["-m", "core", "evaluate", "--data", str(data), "--model", str(current),
                "--split", "all", "--vocals", str(self.vocals.currentData()),
                "--device", str(self.device.currentData()), "--json", str(self.eval_json)]
        self.eval_process.start(sys.executable, args)
        _nice(self.eval_process)

    def _eval_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self.eval_process = None
        if code == 0 and self.eval_json.is_file():
            self.current_report = json.loads(self.eval_json.read_text())
            self.table_note.setText("Both models evaluated on the new run's test singers.")
            self.show_table()
            self.start_button.setEnabled(True)
            self.comparison_finished.emit()
        else:
            self._comparison_failed("\n".join(self._stderr_tail[-3:]) or f"exit status {code}")

    def _comparison_failed(self, msg: str) -> None:
        self.table_note.setText(f"The current model could not be evaluated: {msg}")
        self.start_button.setEnabled(True)
        self.comparison_finished.emit()

    def show_table(self) -> None:
        new = dict(evaluation_rows(self.new_report or {}))
        cur = dict(evaluation_rows(self.current_report or {}))
        names = list(new) + [k for k in cur if k not in new]
        self.table.setRowCount(len(names))
        for i, name in enumerate(names):
            self.table.setItem(i, 0, QTableWidgetItem(name))
            for j, d in ((1, new), (2, cur)):
                item = QTableWidgetItem("–" if name not in d else f"{d[name]:.3f}")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(i, j, item)

    def _use_model(self) -> None:
        if self.done_event and self.done_event.get("best_checkpoint"):
            self.model_chosen.emit(str(self.done_event["best_checkpoint"]))
            self.use_button.setEnabled(False)

    def _fail(self, msg: str) -> None:
        self.status.setText(msg)
        self.bar.setFormat("Failed")
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.run_finished.emit(None)

    def _reset_view(self) -> None:
        self.events = []
        self.done_event = None
        self.new_report = None
        self.current_report = None
        self._points = {}
        self.batch_curve.setData([], [])
        self.train_curve.setData([], [])
        self.val_curve.setData([], [])
        self.table.setRowCount(0)
        self.table_note.setText("")
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.eta.setText("")
        self.use_button.setEnabled(False)

    # --- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM: the trainer saves a resumable state and reports ``stopped: interrupted``."""
        if self.process is not None:
            self.process.terminate()
            self.stop_button.setEnabled(False)
            self.status.setText("Stopping (saving the run so it can be resumed)…")

    def shutdown(self) -> None:
        """Called when the window closes: stop the subprocesses, saving the run."""
        for proc in (self.process, self.eval_process):
            if proc is not None and proc.state() != QProcess.ProcessState.NotRunning:
                proc.terminate()
                if not proc.waitForFinished(15000):
                    proc.kill()
                    proc.waitForFinished(3000)
