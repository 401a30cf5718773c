"""Retrain tab: run ``crossmix train`` as a subprocess, plot its JSON-lines progress live, then
show its evaluation beside the current model's and offer to switch to it.

The run happens in a :class:`QProcess` (a crash cannot take the window down; Stop sends
SIGTERM, on which the trainer saves a resumable state). Before it starts, the data source is
written as one ``manifest.csv`` (absolute paths) in the run folder, so the library's artist
tags, a folder of tagged songs and a manifest all train the same way, and the current model
can be evaluated on exactly the new model's test singers.

The form is a :class:`training.trainer.TrainConfig`: :meth:`TrainingPanel.config` builds one
(checked with ``TrainConfig.check``), :func:`train_arguments` turns it into the command line,
and the run folder keeps it as ``run.json`` so a stopped run can be resumed with exactly the
settings it started with, and every run can be listed, resumed or chosen later.
"""

from __future__ import annotations

import csv
import dataclasses
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
    QAbstractItemView,
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
    QScrollArea,
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
          ("CROSS-SP", "cross-sp", (0.25, 0.25, 0.25, 0.25)),
          ("InfoNCE (CVSM's contrastive NT-Xent)", "infonce", (0.25, 0.25, 0.25, 0.25)))
LAMBDA_NAMES = ("λ1 vocal→mix", "λ2 mix→vocal", "λ3 mix→mix", "λ4 vocal→vocal")
PAIRS = (("Singer labels (artist tags)", "label"),
         ("Label-agnostic: works on a library without artist tags", "agnostic"))
SAMPLING = (("Real: each song's own mix (the paper)", "real"),
            ("Artificial: a vocal over another song's accompaniment", "artificial"),
            ("Both (half each)", "both"))
ARCHS = (("CNN (the paper's encoders)", "cnn"),
         ("GE2E heads (trained on resemblyzer's frozen speaker encoder)", "ge2e"))
MANIFEST_HEADER = ["path", "singer", "song", "vocals"]
#: The run's settings, written by the app beside the trainer's files.
RUN_FILE = "run.json"

#: ``TrainConfig`` field -> ``crossmix train`` flag (fields without one must keep their default).
CONFIG_FLAGS: dict[str, str] = {
    "data": "--data", "out": "--out", "loss": "--loss", "lambdas": "--lambdas",
    "margin": "--margin", "width": "--width", "max_epochs": "--epochs",
    "batches_per_epoch": "--batches-per-epoch", "batch_size": "--batch-size",
    "negatives": "--negatives", "patience": "--patience", "lr": "--lr", "seed": "--seed",
    "segments_per_song": "--segments-per-song", "val_fraction": "--val-fraction",
    "test_fraction": "--test-fraction", "val_batches": "--val-batches", "vocals": "--vocals",
    "separator": "--separator", "cache": "--cache", "device": "--device",
    "amp": "--no-amp", "evaluate": "--no-eval", "log_every": "--log-every",
    "sampling": "--sampling", "pairs": "--pairs", "temperature": "--temperature",
    "arch": "--arch", "head_hidden": "--head-hidden", "teacher": "--teacher",
}
#: How the trainer's advice names a flag -> what the Retrain form calls it.
FORM_NAMES: tuple[tuple[str, str], ...] = (
    ("--val-fraction / --test-fraction",
     "“Held-out singers” (0 holds none out: no validation or test singers)"),
    ("--val-fraction", "“Held-out singers”"),
    ("--test-fraction", "“Held-out singers”"),
    ("--pairs agnostic", "Pairs “Label-agnostic” (with the InfoNCE loss)"),
    ("--loss infonce", "Loss “InfoNCE”"),
    ("--device cpu or auto", "Device “cpu” or “auto”"),
    ("--device cpu", "Device “cpu”"),
    ("--teacher", "“Teacher weight”"),
    ("--data", "the Data choice"),
    ("--resume", "Resume"),
    ("with crossmix evaluate", "with 'crossmix evaluate' on the command line"),
)


def form_advice(message: str) -> str:
    """The trainer's message with its command-line flags named as the form names them."""
    for flag, name in FORM_NAMES:
        message = message.replace(flag, name)
    return message


def train_arguments(cfg: Any, *, threads: int | None = None, resume: bool = False) -> list[str]:
    """``crossmix train`` arguments (after ``-m cli``) that run ``cfg``, a ``TrainConfig``."""
    from training.trainer import TrainConfig

    defaults = TrainConfig(data="", out="")
    args = ["train"]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        flag = CONFIG_FLAGS.get(f.name)
        if flag is None:
            if value != getattr(defaults, f.name):
                raise TrainingError(f"The app cannot set {f.name} (no 'crossmix train' flag).")
            continue
        if isinstance(value, bool):  # --no-amp, --no-eval
            if not value:
                args.append(flag)
        elif value is None:
            continue
        elif f.name == "lambdas":
            args += [flag, ",".join(f"{v:g}" for v in value)]
        elif isinstance(value, float):
            args += [flag, repr(value)]
        else:
            args += [flag, str(value)]
    if threads:
        args += ["--threads", str(threads)]
    if resume:
        args.append("--resume")
    return args + ["--json-progress"]


def config_from_dict(d: dict[str, Any]) -> Any:
    """A ``TrainConfig`` from its ``to_dict()`` (unknown keys ignored, lambdas a tuple)."""
    from training.trainer import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in d.items() if k in names}
    if kw.get("lambdas") is not None:
        kw["lambdas"] = tuple(float(x) for x in kw["lambdas"])
    return TrainConfig(**kw)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One run folder under the models folder, as the Runs list shows it."""

    path: Path
    config: dict[str, Any]
    status: str  # "finished" | "stopped" | "failed" | "running" | "unknown"
    best_checkpoint: Path | None
    best_val_loss: float | None
    epochs: int | None

    @property
    def resumable(self) -> bool:
        return (self.status in ("stopped", "failed", "unknown") and bool(self.config)
                and (self.path / "state.pt").is_file())


def read_run(path: Path) -> RunInfo | None:
    """What a run folder holds (``run.json`` from the app, else the checkpoint's JSON)."""
    if not path.is_dir():
        return None
    info: dict[str, Any] = {}
    try:
        info = json.loads((path / RUN_FILE).read_text())
    except (OSError, ValueError):
        pass
    best = path / "best.safetensors"
    config = info.get("config") or {}
    if not config and (path / "best.json").is_file():  # a run started from the command line
        try:
            config = json.loads((path / "best.json").read_text()).get(
                "config", {}).get("training", {}).get("config", {}) or {}
        except (OSError, ValueError, AttributeError):
            config = {}
    if not info and not best.is_file() and not (path / "state.pt").is_file():
        return None
    status = str(info.get("status") or "")
    if not status:
        status = "finished" if (path / "evaluation.json").is_file() else "unknown"
    if status == "running":  # the app is not running it (any more): it ended unexpectedly
        status = "stopped"
    val = info.get("best_val_loss")
    return RunInfo(path=path, config=config, status=status,
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


# --- data sources (run in a worker) ------------------------------------------------------------


def write_manifest(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_HEADER)
        w.writerows(rows)
    return path


def rows_from_library(lib: Any, *, labels: bool = True) -> list[list[str]]:
    """One row per library song with an artist tag: ``[path, artist, title, ""]``.

    ``labels=False`` (label-agnostic training): every song, an untagged one labelled by
    itself as the trainer does (``"song:<path>"``)."""
    from training.dataset import UNLABELLED

    rows = []
    for song in lib.songs():
        if not song.path:
            continue
        path = str(Path(song.path).resolve())
        singer = song.artist or ("" if labels else f"{UNLABELLED}{path}")
        if singer:
            rows.append([path, singer, song.title or Path(song.path).stem, ""])
    if not rows:
        if not labels:
            raise TrainingError(f"{lib.root}: the library has no songs to train with; add a "
                                "folder on the Library tab first.")
        raise TrainingError(
            f"{lib.root}: no library song has an artist tag, so there are no singer labels to "
            "train with. Tag the files with their artist, train from a folder with a "
            "manifest.csv, or choose the InfoNCE loss with label-agnostic pairs (no tags needed).")
    return rows


def rows_from_source(source: str | Path, *, labels: bool = True) -> list[list[str]]:
    """Rows from a folder (its manifest.csv or the files' artist tags) or a manifest file
    (``labels=False``: untagged songs too, as in :func:`rows_from_library`)."""
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
    ds = load_dataset(p, labels=labels)
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
    from core.embedding.encoders import default_encoders_path

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


def _parse_lambdas(text: str) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        return None
    return vals if len(vals) == 4 else None


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# --- the panel ------------------------------------------------------------------------------


class TrainingPanel(QWidget):
    run_finished = Signal(object)  # the "done" event dict, or None on failure/stop
    comparison_finished = Signal()
    model_chosen = Signal(str)  # path of the checkpoint to use
    runs_updated = Signal()

    def __init__(self, session: Session, settings: Settings, runner: TaskRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.runner = runner
        self.process: QProcess | None = None
        self.eval_process: QProcess | None = None
        self.out_dir: Path | None = None
        self.run_config: Any = None  # the TrainConfig of the run shown
        self.events: list[dict[str, Any]] = []
        self.done_event: dict[str, Any] | None = None
        self.new_report: dict[str, Any] | None = None
        self.current_report: dict[str, Any] | None = None
        self.runs: list[RunInfo] = []
        self._buffer = b""
        self._stderr_tail: list[str] = []
        self._stopping = False
        self._restoring = False
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
        for label, name, _lam in LOSSES:
            self.loss.addItem(label, name)
        self.lambdas = []
        lam_row = QHBoxLayout()
        for name in LAMBDA_NAMES:
            sp = QDoubleSpinBox()
            sp.setRange(0.0, 10.0)
            sp.setSingleStep(0.05)
            sp.setToolTip(name)
            self.lambdas.append(sp)
            lam_row.addWidget(sp)
        self.margin = self._dspin(0.4, 0.0, 2.0, 0.05)
        self.margin.setToolTip("Triplet losses: hinge margin on cosine distance")
        self.temperature = self._dspin(0.1, 0.01, 2.0, 0.01)
        self.temperature.setToolTip("InfoNCE: NT-Xent temperature")
        self.pairs = self._combo(PAIRS)
        self.pairs.setToolTip("InfoNCE only. Label-agnostic pairs come from the same song, so "
                              "the library needs no artist tags.")
        self.sampling = self._combo(SAMPLING)
        self.sampling.setToolTip("The mixes the mix encoder sees during training")
        self.arch = self._combo(ARCHS)
        self.head_hidden = self._spin(512, 16, 4096)
        self.head_hidden.setToolTip("GE2E heads: hidden units of each head")
        self.teacher = self._dspin(0.0, 0.0, 10.0, 0.1)
        self.teacher.setToolTip("Weight of a distillation loss towards resemblyzer's embedding "
                                "of the vocal (0: off)")
        self.batches = self._spin(100, 1, 100000)
        self.epochs = self._spin(30, 1, 100000)
        self.patience = self._spin(5, 1, 1000)
        self.device = QComboBox()
        for d in ("auto", "cpu", "cuda"):
            self.device.addItem(d, d)
        if not _cuda_available():
            item = self.device.model().item(2)  # type: ignore[attr-defined]
            item.setEnabled(False)
            item.setToolTip("No CUDA GPU was found on this machine.")
            self.device.setItemText(2, "cuda (no GPU found)")
        self.width_mult = self._dspin(0.25, 0.05, 4.0, 0.125)
        self.batch_size = self._spin(16, 2, 512)
        self.vocals = QComboBox()
        self.vocals.addItem("Separated with Spleeter", "separated")
        self.vocals.addItem("Ground-truth stems from the manifest", "stems")
        self.held_out = self._dspin(0.1, 0.0, 0.45, 0.05)
        self.held_out.setToolTip("Share of singers held out for validation, and as many for "
                                 "testing; 0 holds none out (no comparison at the end)")
        self.form_note = QLabel("")
        self.form_note.setWordWrap(True)
        hp = QGroupBox("Training")
        form = QFormLayout(hp)
        form.addRow("Loss", self.loss)
        form.addRow("Lambdas", lam_row)
        form.addRow("Margin", self.margin)
        form.addRow("Temperature", self.temperature)
        form.addRow("Pairs", self.pairs)
        form.addRow("Mixes", self.sampling)
        form.addRow("Architecture", self.arch)
        form.addRow("Head hidden units", self.head_hidden)
        form.addRow("Teacher weight", self.teacher)
        form.addRow("Batches per epoch", self.batches)
        form.addRow("Max epochs", self.epochs)
        form.addRow("Patience (epochs)", self.patience)
        form.addRow("Device", self.device)
        form.addRow("Width (× paper's filters)", self.width_mult)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Vocals", self.vocals)
        form.addRow("Held-out singers (validation, test)", self.held_out)
        form.addRow(self.form_note)
        self._load_form()
        self.loss.currentIndexChanged.connect(self._loss_changed)
        self.arch.currentIndexChanged.connect(lambda _i: self._update_enabled())
        self._update_enabled()
        for w in (self.loss, self.pairs, self.sampling, self.arch, self.device, self.vocals):
            w.currentIndexChanged.connect(lambda _i: self._save_form())
        spins: tuple[QSpinBox | QDoubleSpinBox, ...] = (
            *self.lambdas, self.margin, self.temperature, self.head_hidden, self.teacher,
            self.batches, self.epochs, self.patience, self.width_mult, self.batch_size,
            self.held_out)
        for spin in spins:
            spin.valueChanged.connect(lambda _v: self._save_form())
        self.folder.textChanged.connect(lambda _t: self._save_form())
        self.src_library.toggled.connect(lambda _on: self._save_form())

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the stopped run where it stopped, with its "
                                      "own settings")
        self.resume_button.clicked.connect(lambda: self.resume())
        self.resume_button.setEnabled(False)
        self.use_button = QPushButton("Use this model")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use_model)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)

        # earlier runs
        self.runs_table = QTableWidget(0, 4)
        self.runs_table.setHorizontalHeaderLabels(["Run", "Settings", "State", "Best val."])
        self.runs_table.verticalHeader().hide()
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.runs_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.runs_table.horizontalHeader().setStretchLastSection(True)
        self.runs_table.setMinimumHeight(120)
        self.runs_table.itemSelectionChanged.connect(self._run_selected)
        self.run_resume_button = QPushButton("Resume run")
        self.run_resume_button.clicked.connect(self._resume_selected)
        self.run_use_button = QPushButton("Use its model")
        self.run_use_button.clicked.connect(self._use_selected)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_runs)
        rb = QHBoxLayout()
        rb.addWidget(self.run_resume_button)
        rb.addWidget(self.run_use_button)
        rb.addStretch(1)
        rb.addWidget(refresh)
        runs_box = QGroupBox("Runs")
        rl = QVBoxLayout(runs_box)
        rl.addWidget(self.runs_table)
        rl.addLayout(rb)

        form_widget = QWidget()
        left = QVBoxLayout(form_widget)
        left.addWidget(src)
        left.addWidget(hp)
        left.addLayout(buttons)
        left.addWidget(runs_box)
        left.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_widget)
        scroll.setMaximumWidth(600)

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
        # Symbols too: a lone first point (a line needs two) is visible at once.
        self.batch_curve = self.plot.plot([], [], pen=pg.mkPen("#5b9bd5", width=1),
                                          symbol="o", symbolSize=3, symbolPen=None,
                                          symbolBrush="#5b9bd5", name="train (batches)")
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
        lay.addWidget(scroll)
        lay.addLayout(right, 1)
        self.refresh_runs()

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

    @staticmethod
    def _combo(items: tuple[tuple[str, str], ...]) -> QComboBox:
        c = QComboBox()
        for label, value in items:
            c.addItem(label, value)
        return c

    @staticmethod
    def _select(combo: QComboBox, value: Any) -> None:
        i = combo.findData(value)
        if i >= 0:
            combo.setCurrentIndex(i)

    def _preset(self) -> tuple[float, ...]:
        """The chosen loss's own weights."""
        name = self.loss.currentData()
        return next(lam for _l, n, lam in LOSSES if n == name)

    def _loss_changed(self, *_: object) -> None:
        for sp, v in zip(self.lambdas, self._preset(), strict=True):
            sp.setValue(v)
        self._update_enabled()

    def _update_enabled(self) -> None:
        """Only valid combinations can be chosen: label-agnostic pairs need InfoNCE."""
        contrastive = self.loss.currentData() == "infonce"
        agnostic = self.pairs.model().item(1)  # type: ignore[attr-defined]
        agnostic.setEnabled(contrastive)
        if not contrastive and self.pairs.currentData() == "agnostic":
            self._select(self.pairs, "label")
        self.pairs.setEnabled(contrastive)
        self.temperature.setEnabled(contrastive)
        self.margin.setEnabled(not contrastive)
        ge2e = self.arch.currentData() == "ge2e"
        self.head_hidden.setEnabled(ge2e)
        self.width_mult.setEnabled(not ge2e)
        self.form_note.setText(
            "" if contrastive else "Label-agnostic pairs (no artist tags needed) come with the "
            "InfoNCE loss.")

    def _load_form(self) -> None:
        """The form as last used (settings ``train/*``)."""
        g = self.settings.get
        self._restoring = True
        try:
            (self.src_folder if g("train/source") == "folder" else self.src_library).setChecked(
                True)
            self.folder.blockSignals(True)
            self.folder.setText(g("train/folder"))
            self.folder.blockSignals(False)
            self._select(self.loss, g("train/loss"))
            self._loss_changed()
            lam = _parse_lambdas(g("train/lambdas"))
            if lam is not None:
                for sp, v in zip(self.lambdas, lam, strict=True):
                    sp.setValue(v)
            self.margin.setValue(g("train/margin"))
            self.temperature.setValue(g("train/temperature"))
            self._select(self.pairs, g("train/pairs"))
            self._select(self.sampling, g("train/sampling"))
            self._select(self.arch, g("train/arch"))
            self._update_enabled()  # an invalid pair stored by hand is not kept
            self.head_hidden.setValue(g("train/head_hidden"))
            self.teacher.setValue(g("train/teacher"))
            self.batches.setValue(g("train/batches_per_epoch"))
            self.epochs.setValue(g("train/epochs"))
            self.patience.setValue(g("train/patience"))
            device = g("train/device")
            if device == "cuda" and not _cuda_available():
                device = "auto"
            self._select(self.device, device)
            self.width_mult.setValue(g("train/width"))
            self.batch_size.setValue(g("train/batch_size"))
            self._select(self.vocals, g("train/vocals"))
            self.held_out.setValue(g("train/held_out"))
        finally:
            self._restoring = False

    def _save_form(self) -> None:
        if self._restoring:
            return
        name, preset = self.loss.currentData(), self._preset()
        lam = tuple(sp.value() for sp in self.lambdas)
        values = {
            "train/source": "folder" if self.src_folder.isChecked() else "library",
            "train/folder": self.folder.text().strip(),
            "train/loss": name,
            "train/lambdas": "" if lam == tuple(preset) else ",".join(f"{v:g}" for v in lam),
            "train/margin": self.margin.value(),
            "train/temperature": self.temperature.value(),
            "train/pairs": self.pairs.currentData(),
            "train/sampling": self.sampling.currentData(),
            "train/arch": self.arch.currentData(),
            "train/head_hidden": self.head_hidden.value(),
            "train/teacher": self.teacher.value(),
            "train/batches_per_epoch": self.batches.value(),
            "train/epochs": self.epochs.value(),
            "train/patience": self.patience.value(),
            "train/device": self.device.currentData(),
            "train/width": self.width_mult.value(),
            "train/batch_size": self.batch_size.value(),
            "train/vocals": self.vocals.currentData(),
            "train/held_out": self.held_out.value(),
        }
        for key, value in values.items():
            self.settings.set(key, value)

    def config(self, *, data: Path | str = "", out: Path | str = "") -> Any:
        """The form as a checked ``TrainConfig``.

        Raises
        ------
        TrainingError
            The settings do not go together (the message names the form's fields).
        """
        from training.trainer import TrainConfig

        name, preset = self.loss.currentData(), self._preset()
        lam = tuple(float(sp.value()) for sp in self.lambdas)
        if not any(lam):
            raise TrainingError("The loss weights (lambdas) are all 0: give at least one a "
                                "weight.")
        held = round(float(self.held_out.value()), 6)
        cfg = TrainConfig(
            data=str(data), out=str(out), loss=name,
            lambdas=None if lam == tuple(preset) else lam,  # type: ignore[arg-type]
            margin=float(self.margin.value()), width=float(self.width_mult.value()),
            max_epochs=self.epochs.value(), batches_per_epoch=self.batches.value(),
            batch_size=self.batch_size.value(), patience=self.patience.value(),
            val_fraction=held, test_fraction=held, vocals=str(self.vocals.currentData()),
            device=str(self.device.currentData()), sampling=str(self.sampling.currentData()),
            pairs=str(self.pairs.currentData()), temperature=float(self.temperature.value()),
            arch=str(self.arch.currentData()), head_hidden=self.head_hidden.value(),
            teacher=float(self.teacher.value()),
            # about 20 loss points an epoch on the plot, the first after a few batches
            log_every=max(1, min(10, self.batches.value() // 20)))
        try:
            cfg.check()
        except TrainingError as exc:
            raise TrainingError(form_advice(str(exc))) from None
        return cfg

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
        try:
            cfg = self.config()
        except TrainingError as exc:
            self._fail(str(exc))
            return None
        self._save_form()
        self.out_dir = models_dir() / time.strftime("run-%Y%m%d-%H%M%S")
        n = 1
        while self.out_dir.exists():
            self.out_dir = models_dir() / f"{time.strftime('run-%Y%m%d-%H%M%S')}-{n}"
            n += 1
        self.run_config = cfg
        self._reset_view()
        self._set_running(True)
        self.status.setText("Collecting the training songs…")
        labels = bool(cfg.uses_labels)
        if self.src_library.isChecked():
            task = Task(self._library_rows_then_prepare, self.out_dir, labels,
                        name="reading the library")
        else:
            folder = self.folder.text().strip()
            if not folder:
                self._fail("Choose a folder of songs labelled by singer (or use the library).")
                return None
            task = Task(self._folder_rows_then_prepare, folder, self.out_dir, labels,
                        name="reading the training data")
        task.signals.finished.connect(self._launch)
        task.signals.failed.connect(lambda msg, _e: self._fail(msg))
        return self.runner.start(task)

    def _library_rows_then_prepare(self, out: Path, labels: bool, *, progress: Any,
                                   cancel: Any) -> Path:
        lib = self.session._require_library()
        return prepare_run(out=out, source_rows=rows_from_library(lib, labels=labels))

    def _folder_rows_then_prepare(self, folder: str, out: Path, labels: bool, *, progress: Any,
                                  cancel: Any) -> Path:
        return prepare_run(out=out, source_rows=rows_from_source(folder, labels=labels))

    def _launch(self, data: Path) -> None:
        assert self.out_dir is not None
        self.run_config = dataclasses.replace(self.run_config, data=str(Path(data).resolve()),
                                              out=str(self.out_dir))
        self._run_process(resume=False)

    def resume(self, run_dir: Path | None = None) -> bool:
        """Continue a stopped run (default: the one shown) with the settings it started with."""
        if self.running:
            return False
        run_dir = run_dir or self.out_dir
        info = read_run(run_dir) if run_dir is not None else None
        if info is None or not info.resumable:
            self.status.setText(f"{run_dir}: this run cannot be resumed (it finished, or its "
                                "saved state is missing).")
            return False
        try:
            cfg = config_from_dict(info.config)
        except (TypeError, ValueError) as exc:
            self.status.setText(f"{run_dir}: its settings could not be read ({exc}).")
            return False
        self.out_dir = info.path
        self.run_config = dataclasses.replace(cfg, out=str(info.path))
        self._reset_view()
        self._set_running(True)
        self._run_process(resume=True)
        return True

    def _run_process(self, *, resume: bool) -> None:
        assert self.out_dir is not None
        cfg = self.run_config
        self._write_run_file(status="running")
        self.process = self._new_process(self._train_stdout, self._train_finished)
        self.status.setText(f"{'Resuming' if resume else 'Training'} in {self.out_dir}…")
        self._t_start = time.monotonic()
        threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core to the window
        self.process.start(sys.executable,
                           ["-m", "cli", *train_arguments(cfg, threads=threads, resume=resume)])
        _nice(self.process)
        self.refresh_runs()

    def _write_run_file(self, **fields: Any) -> None:
        if self.out_dir is None or self.run_config is None:
            return
        path = self.out_dir / RUN_FILE
        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            old = {}
        old.update(fields, config=self.run_config.to_dict())
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{RUN_FILE}.tmp")
            tmp.write_text(json.dumps(old, indent=1))
            tmp.replace(path)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.stop_button.setEnabled(on)
        if on:
            self.resume_button.setEnabled(False)
            self.use_button.setEnabled(False)
        self._stopping = False
        self._run_selected()

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
            self._show_eta(e.get("eta_s"))
        elif kind == "start":
            self.status.setText(f"Training {e.get('loss', '').upper()} on {e.get('device')}: "
                                f"{e.get('parameters', 0):,} parameters, "
                                f"{e.get('train_singers', '?')} training singers.")
        elif kind == "batch":
            batches = max(1, int(e.get("batches") or 1))
            x = float(e["epoch"]) + float(e["batch"]) / batches
            self._append(self.batch_curve, x, e.get("loss"))
            self.bar.setValue(int(1000 * float(e["batch"]) / batches))
            if not self._stopping:
                self.bar.setFormat(f"Epoch {int(e['epoch']) + 1}: batch {e['batch']}/{batches}, "
                                   f"loss {float(e['loss']):.3f}")
            self._show_eta(e.get("eta_s"))
        elif kind == "epoch":
            self._append(self.train_curve, float(e["epoch"]) + 1, e.get("train_loss"))
            self._append(self.val_curve, float(e["epoch"]) + 1, e.get("val_loss"))
            self.status.setText(
                f"Epoch {int(e['epoch']) + 1}: train {float(e['train_loss']):.3f}, validation "
                f"{float(e['val_loss']):.3f} (best {float(e['best_val_loss']):.3f} at epoch "
                f"{int(e['best_epoch']) + 1}; {e.get('epochs_since_best', 0)} without "
                f"improvement, patience {self._patience()}).")
            self._show_eta(e.get("eta_s"))
        elif kind == "done":
            self.done_event = e
        elif kind == "resume":
            self.status.setText(f"Resumed at epoch {int(e.get('epoch', 0)) + 1}, batch "
                                f"{e.get('batch', 0)}.")
        elif kind == "error":
            self._stderr_tail.append(str(e.get("message", "")))
        elif kind == "warning":
            self.table_note.setText(str(e.get("message", "")))

    def _show_eta(self, eta_s: Any) -> None:
        # After Stop the trainer may still report a batch or two: the run is ending, no ETA.
        self.eta.setText("" if self._stopping else fmt_eta(eta_s))

    def _patience(self) -> int:
        return int(self.run_config.patience) if self.run_config is not None else \
            self.patience.value()

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
        self._stopping = False
        self.eta.setText("")
        done = self.done_event
        elapsed = time.monotonic() - self._t_start
        best = self._best_checkpoint()
        if done is None or code not in (0, 130):
            errors = [ev for ev in self.events if ev.get("event") == "error"]
            msg = errors[-1]["message"] if errors else ("\n".join(self._stderr_tail[-3:])
                                                         or f"exit status {code}")
            self._write_run_file(status="failed", message=str(msg))
            self._fail(f"Training failed: {form_advice(str(msg))}")
            self._after_run()
            return
        self._write_run_file(status="stopped" if done.get("stopped") == "interrupted"
                             else "finished", best_val_loss=done.get("best_val_loss"),
                             epochs=done.get("epochs"))
        if done.get("stopped") == "interrupted":
            self.start_button.setEnabled(True)
            self.bar.setFormat("Stopped")
            kept = (f" The best model so far ({best.name}) can be used now." if best is not None
                    else "")
            self.status.setText(f"Stopped after {elapsed:.0f} s. The run is saved in "
                                f"{self.out_dir}; Resume continues it where it stopped.{kept}")
            self.run_finished.emit(None)
            self._after_run()
            return
        self.bar.setValue(1000)
        self.bar.setFormat("Done")
        self.status.setText(
            f"Done in {elapsed:.0f} s ({done.get('stopped', '').replace('_', ' ')}): best "
            f"validation loss {float(done.get('best_val_loss', float('nan'))):.3f} at epoch "
            f"{int(done.get('best_epoch', 0)) + 1}. Checkpoint: {done.get('best_checkpoint')}")
        ev = done.get("evaluation")
        if ev and Path(ev).is_file():
            self.new_report = json.loads(Path(ev).read_text())
        self.show_table()
        self._after_run()
        self.run_finished.emit(done)
        self._evaluate_current()

    def _best_checkpoint(self) -> Path | None:
        """The run's best checkpoint so far (on disk, whatever the run's end)."""
        if self.done_event and self.done_event.get("best_checkpoint"):
            p = Path(str(self.done_event["best_checkpoint"]))
            if p.is_file():
                return p
        if self.out_dir is not None and (self.out_dir / "best.safetensors").is_file():
            return self.out_dir / "best.safetensors"
        return None

    def _after_run(self) -> None:
        """Buttons from what the run folder now holds; the Runs list refreshed."""
        self.use_button.setEnabled(self._best_checkpoint() is not None)
        info = read_run(self.out_dir) if self.out_dir is not None else None
        self.resume_button.setEnabled(info is not None and info.resumable)
        self.refresh_runs()

    def _evaluate_current(self) -> None:
        current = current_checkpoint(self.settings)
        if current is None or self.new_report is None or self.out_dir is None:
            if current is None:
                self.table_note.setText("No current model to compare with (no trained encoders "
                                        "are installed).")
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
        args = ["-m", "cli", "evaluate", "--data", str(data), "--encoders", str(current),
                "--split", "all", "--vocals", str(self.run_config.vocals),
                "--device", str(self.run_config.device), "--json", str(self.eval_json)]
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
        best = self._best_checkpoint()
        if best is not None:
            self.model_chosen.emit(str(best))
            self.use_button.setEnabled(False)

    # --- runs -------------------------------------------------------------------------------

    def refresh_runs(self) -> None:
        """List the run folders under the models folder (newest first)."""
        selected = self.selected_run()
        self.runs = list_runs()
        self.runs_table.setRowCount(len(self.runs))
        for i, r in enumerate(self.runs):
            c = r.config
            bits = [str(c.get("loss", "?"))]
            if c.get("loss") == "infonce":
                bits.append(str(c.get("pairs", "label")))
            if c.get("sampling", "real") != "real":
                bits.append(f"{c['sampling']} mixes")
            if c.get("arch", "cnn") != "cnn":
                bits.append(str(c["arch"]))
            if c.get("teacher"):
                bits.append(f"teacher {float(c['teacher']):g}")
            name = QTableWidgetItem(r.path.name)
            name.setToolTip(str(r.path))
            state = r.status + (", resumable" if r.resumable else "")
            val = "–" if r.best_val_loss is None else f"{r.best_val_loss:.3f}"
            for j, text in enumerate((r.path.name, ", ".join(bits), state, val)):
                item = name if j == 0 else QTableWidgetItem(text)
                self.runs_table.setItem(i, j, item)
            if selected is not None and r.path == selected.path:
                self.runs_table.selectRow(i)
        self._run_selected()
        self.runs_updated.emit()

    def selected_run(self) -> RunInfo | None:
        rows = {i.row() for i in self.runs_table.selectedIndexes()}
        if len(rows) != 1:
            return None
        i = rows.pop()
        return self.runs[i] if 0 <= i < len(self.runs) else None

    def _run_selected(self) -> None:
        r = self.selected_run()
        busy = self.running
        current = r is not None and self.process is not None and r.path == self.out_dir
        self.run_resume_button.setEnabled(r is not None and r.resumable and not busy)
        self.run_use_button.setEnabled(r is not None and r.best_checkpoint is not None
                                       and not current)

    def _resume_selected(self) -> None:
        r = self.selected_run()
        if r is not None:
            self.resume(r.path)

    def _use_selected(self) -> None:
        r = self.selected_run()
        if r is not None and r.best_checkpoint is not None:
            self.model_chosen.emit(str(r.best_checkpoint))

    def _fail(self, msg: str) -> None:
        self.status.setText(form_advice(msg))
        self.bar.setFormat("Failed")
        self.eta.setText("")
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
        self.resume_button.setEnabled(False)

    # --- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM: the trainer saves a resumable state and reports ``stopped: interrupted``."""
        if self.process is not None:
            self._stopping = True
            self.process.terminate()
            self.stop_button.setEnabled(False)
            self.eta.setText("")
            self.bar.setFormat("Stopping…")
            self.status.setText("Stopping (saving the run so it can be resumed)…")

    def shutdown(self) -> None:
        """Called when the window closes: stop the subprocesses, saving the run."""
        for proc in (self.process, self.eval_process):
            if proc is not None and proc.state() != QProcess.ProcessState.NotRunning:
                proc.terminate()
                if not proc.waitForFinished(15000):
                    proc.kill()
                    proc.waitForFinished(3000)
