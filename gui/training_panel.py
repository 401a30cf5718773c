"""Retrain tab: train encoders in a ``crossmix train`` subprocess, plot its progress live, then
show its evaluation beside the current model's and offer to switch to it.

The tab composes three parts:

- :class:`gui.training_form.TrainingForm`, the widgets that edit a
  :class:`training.trainer.TrainConfig` (and the data source);
- :class:`gui.training_run.TrainingRun`, the run controller: it writes the run folder and its
  config file, runs ``crossmix train --config FILE``, reads its typed events
  (:mod:`training.events`), stops and resumes it;
- this panel: the buttons, the live view (status, progress bar, loss plot, evaluation table)
  and the Runs list of every run folder, to resume one or use its model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import TrainingError
from gui.engine import Session
from gui.library_panel import fmt_eta
from gui.settings import Settings
from gui.training_form import TrainingForm, form_advice
from gui.training_run import RunEnd, RunInfo, TrainingRun, list_runs, read_run
from gui.workers import Task, TaskRunner
from training.events import (
    BatchEvent,
    EpochEvent,
    PrepareEvent,
    ResumeEvent,
    SplitEvent,
    StartEvent,
    TrainEvent,
    WarningEvent,
)
from training.trainer import TrainConfig


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


def settings_summary(c: TrainConfig | None) -> str:
    """A run's settings in a few words (the Runs list)."""
    if c is None:
        return "?"
    bits = [c.loss]
    if c.loss == "infonce":
        bits.append(c.pairs)
    if c.sampling != "real":
        bits.append(f"{c.sampling} mixes")
    if c.arch != "cnn":
        bits.append(c.arch)
    if c.teacher:
        bits.append(f"teacher {c.teacher:g}")
    return ", ".join(bits)


class TrainingPanel(QWidget):
    run_finished = Signal(object)  # the DoneEvent of a finished run, or None on failure/stop
    comparison_finished = Signal()
    model_chosen = Signal(str)  # path of the checkpoint to use
    runs_updated = Signal()

    def __init__(self, session: Session, settings: Settings, runner: TaskRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.runner = runner
        self.form = TrainingForm(settings)
        self.run = TrainingRun(runner, library=session._require_library, parent=self)
        self.new_report: dict[str, Any] | None = None
        self.current_report: dict[str, Any] | None = None
        self.runs: list[RunInfo] = []
        self._points: dict[int, tuple[list[float], list[float]]] = {}

        form_widget = QWidget()
        left = QVBoxLayout(form_widget)
        left.addWidget(self.form)
        left.addLayout(self._build_buttons())
        left.addWidget(self._build_runs())
        left.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form_widget)
        scroll.setMaximumWidth(600)
        lay = QHBoxLayout(self)
        lay.addWidget(scroll)
        lay.addLayout(self._build_view(), 1)

        self.run.launched.connect(self._launched)
        self.run.failed.connect(self._fail)
        self.run.event_received.connect(self.handle_event)
        self.run.ended.connect(self._run_ended)
        self.run.evaluated.connect(self._evaluated)
        self.run.evaluation_failed.connect(self._comparison_failed)
        self.refresh_runs()

    # --- building ---------------------------------------------------------------------------

    def _build_buttons(self) -> QHBoxLayout:
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
        return buttons

    def _build_runs(self) -> QGroupBox:
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
        return runs_box

    def _build_view(self) -> QVBoxLayout:
        self.status = QLabel("Set the data and press Start. Training runs in a separate process.")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.eta = QLabel("")
        self._build_plot()
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
        return right

    def _build_plot(self) -> None:
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

    # --- starting and stopping --------------------------------------------------------------

    def start(self) -> Task | None:
        """Train with the form's settings in a new run folder."""
        if self.run.running:
            return None
        try:
            cfg = self.form.config()
            folder = self.form.folder_source()
        except TrainingError as exc:
            self._fail(str(exc))
            return None
        self.form.save()
        self._reset_view()
        self._set_running(True)
        self.status.setText("Collecting the training songs…")
        return self.run.start(cfg, folder)

    def resume(self, run_dir: Path | None = None) -> bool:
        """Continue a stopped run (default: the one shown) with the settings it started with."""
        if self.running:
            return False
        why = self.run.resume(run_dir)
        if why is not None:
            self.status.setText(why)
            return False
        return True

    def _launched(self, resumed: bool) -> None:
        if resumed:
            self._reset_view()
            self._set_running(True)
        self.status.setText(f"{'Resuming' if resumed else 'Training'} in {self.run.out_dir}…")
        self.refresh_runs()

    def stop(self) -> None:
        """SIGTERM: the trainer saves a resumable state and reports ``stopped: interrupted``."""
        if self.run.stop():
            self.stop_button.setEnabled(False)
            self.eta.setText("")
            self.bar.setFormat("Stopping…")
            self.status.setText("Stopping (saving the run so it can be resumed)…")

    def shutdown(self) -> None:
        """Called when the window closes: stop the subprocesses, saving the run."""
        self.run.shutdown()

    @property
    def running(self) -> bool:
        return self.run.running

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.stop_button.setEnabled(on)
        if on:
            self.resume_button.setEnabled(False)
            self.use_button.setEnabled(False)
        self._run_selected()

    def _reset_view(self) -> None:
        self.new_report = None
        self.current_report = None
        self._points = {}
        for curve in (self.batch_curve, self.train_curve, self.val_curve):
            curve.setData([], [])
        self.table.setRowCount(0)
        self.table_note.setText("")
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.eta.setText("")
        self.use_button.setEnabled(False)
        self.resume_button.setEnabled(False)

    def _fail(self, msg: str) -> None:
        self.status.setText(form_advice(msg))
        self.bar.setFormat("Failed")
        self.eta.setText("")
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.run_finished.emit(None)

    # --- progress ---------------------------------------------------------------------------

    def handle_event(self, e: TrainEvent) -> None:
        """Update the view from one event of ``crossmix train``."""
        match e:
            case SplitEvent():
                self.status.setText(f"{e.singers} singers, {e.songs} songs: {e.train} for "
                                    f"training, {e.val} for validation, {e.test} for testing.")
            case PrepareEvent():
                total = max(1, int(e.total))
                self.bar.setValue(int(1000 * e.done / total))
                self.bar.setFormat(f"Preparing features {int(e.done)}/{total} {e.unit}")
                self._show_eta(e.eta_s)
            case StartEvent():
                self.status.setText(f"Training {e.loss.upper()} on {e.device}: "
                                    f"{e.parameters:,} parameters, {e.train_singers} training "
                                    "singers.")
            case BatchEvent():
                self._show_batch(e)
            case EpochEvent():
                self._show_epoch(e)
            case ResumeEvent():
                self.status.setText(f"Resumed at epoch {e.epoch + 1}, batch {e.batch}.")
            case WarningEvent():
                self.table_note.setText(e.message)

    def _show_batch(self, e: BatchEvent) -> None:
        batches = max(1, e.batches)
        self._append(self.batch_curve, e.epoch + e.batch / batches, e.loss)
        self.bar.setValue(int(1000 * e.batch / batches))
        if not self.run.stopping:
            self.bar.setFormat(f"Epoch {e.epoch + 1}: batch {e.batch}/{batches}, "
                               f"loss {e.loss:.3f}")
        self._show_eta(e.eta_s)

    def _show_epoch(self, e: EpochEvent) -> None:
        self._append(self.train_curve, e.epoch + 1.0, e.train_loss)
        self._append(self.val_curve, e.epoch + 1.0, e.val_loss)
        patience = self.run.config.patience if self.run.config else self.form.patience.value()
        self.status.setText(
            f"Epoch {e.epoch + 1}: train {e.train_loss:.3f}, validation {e.val_loss:.3f} (best "
            f"{e.best_val_loss:.3f} at epoch {e.best_epoch + 1}; {e.epochs_since_best} without "
            f"improvement, patience {patience}).")
        self._show_eta(e.eta_s)

    def _show_eta(self, eta_s: float | None) -> None:
        # After Stop the trainer may still report a batch or two: the run is ending, no ETA.
        self.eta.setText("" if self.run.stopping else fmt_eta(eta_s))

    def _append(self, curve: Any, x: float, y: float) -> None:
        xs, ys = self._points.setdefault(id(curve), ([], []))
        xs.append(x)
        ys.append(y)
        curve.setData(xs, ys)

    # --- the end ----------------------------------------------------------------------------

    def _run_ended(self, end: RunEnd) -> None:
        self.stop_button.setEnabled(False)
        self.eta.setText("")
        if end.done is None:
            self._fail(f"Training failed: {end.message}")
        elif end.stopped:
            self.start_button.setEnabled(True)
            self.bar.setFormat("Stopped")
            best = self.run.best_checkpoint()
            kept = (f" The best model so far ({best.name}) can be used now." if best is not None
                    else "")
            self.status.setText(f"Stopped after {end.elapsed_s:.0f} s. The run is saved in "
                                f"{self.run.out_dir}; Resume continues it where it stopped.{kept}")
            self.run_finished.emit(None)
        else:
            done = end.done
            self.bar.setValue(1000)
            self.bar.setFormat("Done")
            loss = float("nan") if done.best_val_loss is None else done.best_val_loss
            self.status.setText(
                f"Done in {end.elapsed_s:.0f} s ({done.stopped.replace('_', ' ')}): best "
                f"validation loss {loss:.3f} at epoch {(done.best_epoch or 0) + 1}. "
                f"Checkpoint: {done.best_checkpoint}")
            if done.evaluation and Path(done.evaluation).is_file():
                self.new_report = json.loads(Path(done.evaluation).read_text())
            self.show_table()
        self._after_run()
        if end.done is not None and not end.stopped:
            self.run_finished.emit(end.done)
            self._evaluate_current()

    def _after_run(self) -> None:
        """Buttons from what the run folder now holds; the Runs list refreshed."""
        self.use_button.setEnabled(self.run.best_checkpoint() is not None)
        info = read_run(self.run.out_dir) if self.run.out_dir is not None else None
        self.resume_button.setEnabled(info is not None and info.resumable)
        self.refresh_runs()

    def _evaluate_current(self) -> None:
        current = current_checkpoint(self.settings)
        if current is None or self.new_report is None or self.run.out_dir is None:
            if current is None:
                self.table_note.setText("No current model to compare with (no trained encoders "
                                        "are installed).")
            self.start_button.setEnabled(True)
            self.comparison_finished.emit()
            return
        self.table_note.setText(f"Evaluating the current model ({current.name}) on the same "
                                "test singers…")
        self.run.evaluate(current)

    def _evaluated(self, report: dict[str, Any]) -> None:
        self.current_report = report
        self.table_note.setText("Both models evaluated on the new run's test singers.")
        self.show_table()
        self.start_button.setEnabled(True)
        self.comparison_finished.emit()

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
        best = self.run.best_checkpoint()
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
            name = QTableWidgetItem(r.path.name)
            name.setToolTip(str(r.path))
            state = r.status + (", resumable" if r.resumable else "")
            val = "–" if r.best_val_loss is None else f"{r.best_val_loss:.3f}"
            self.runs_table.setItem(i, 0, name)
            for j, text in enumerate((settings_summary(r.config), state, val), start=1):
                self.runs_table.setItem(i, j, QTableWidgetItem(text))
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
        current = r is not None and self.run.process is not None and r.path == self.run.out_dir
        self.run_resume_button.setEnabled(r is not None and r.resumable and not self.running)
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
