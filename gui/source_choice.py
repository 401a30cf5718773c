""""Remove (or keep only) a sound like this one": the preview panel's bar for the query-based
separator. The user selects a stretch of the match's mix, its accompaniment, or a dropped file,
and asks for the accompaniment without that sound or with only it; the window re-renders the
cross-mix (:meth:`gui.engine.Session.preview` with a choice) and shows the accompaniment before
and after. No DSP here: a dropped file is decoded in a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.separation.source_choice import MIN_QUERY_SECONDS, SourceChoice
from gui.waveform import Envelope, WaveformView

ORIGINS: tuple[tuple[str, str], ...] = (
    ("accompaniment", "the match's accompaniment"),
    ("mix", "the match's mix"),
    ("file", "a dropped file"),
)


def _file_envelope(path: str, *, progress: Any = None, cancel: Any = None) -> Envelope:
    from core.audio.decode import load_audio
    from gui.waveform import envelope

    return envelope(load_audio(path))


class SourceChoiceBar(QWidget):
    """Select a stretch of a waveform as "the sound to remove" or "to keep".

    ``waves`` are the preview panel's mix and accompaniment views; regions are drawn on them.
    Emits ``choice_made(SourceChoice)``, ``choice_cleared()`` and ``cancel_requested()``.
    """

    choice_made = Signal(object)
    choice_cleared = Signal()
    cancel_requested = Signal()

    def __init__(self, waves: dict[str, WaveformView], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.runner: Any = None  # gui.workers.TaskRunner, set by the window (decodes dropped files)
        self.waves = dict(waves)
        self.file_wave = WaveformView("Dropped file (select the sound in it)", color="#e0a040")
        self.before_wave = WaveformView("Match accompaniment before the change", color="#8a8a8a")
        self.waves["file"] = self.file_wave
        self.file_path = ""
        self.regions: dict[str, Any] = {}
        self.origin = QComboBox()
        for key, text in ORIGINS:
            self.origin.addItem(text, key)
        self.origin.currentIndexChanged.connect(self._origin_changed)
        self.select_button = QPushButton("Select a sound")
        self.select_button.setCheckable(True)
        self.select_button.setToolTip("Show a region on the waveform; drag its edges over an example of "
                                      "the sound (at least half a second)")
        self.select_button.toggled.connect(self._select_toggled)
        self.remove_button = QPushButton("Remove this sound")
        self.keep_button = QPushButton("Keep only this sound")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("The accompaniment as it was")
        self.cancel_button = QPushButton("Cancel")
        self.remove_button.clicked.connect(lambda: self._choose("remove"))
        self.keep_button.clicked.connect(lambda: self._choose("keep"))
        self.undo_button.clicked.connect(self.choice_cleared)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        self.status = QLabel("Drop a file here to take the sound from it.")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Sound from"))
        row.addWidget(self.origin)
        for w in (self.select_button, self.remove_button, self.keep_button, self.undo_button,
                  self.cancel_button):
            row.addWidget(w)
        row.addWidget(self.progress, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addWidget(self.file_wave)
        lay.addWidget(self.before_wave)
        self.file_wave.hide()
        self.before_wave.hide()
        self.choice: SourceChoice | None = None
        self._busy = False
        self.set_ready(False)

    # --- state ------------------------------------------------------------------------------

    def set_ready(self, ready: bool) -> None:
        """A preview is shown (``True``) or being rendered / absent (``False``)."""
        self._ready = ready
        self._update_buttons()

    def set_busy(self, busy: bool) -> None:
        """A choice is being applied: progress and Cancel."""
        self._busy = busy
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)
        self._update_buttons()

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.progress.setFormat(message or "%p %")

    def set_choice(self, choice: SourceChoice | None, before: Envelope | None) -> None:
        """What the shown preview has applied, and the accompaniment before it."""
        self.choice = choice
        for key, region in self.regions.items():  # another match: the regions fit its length
            env = self.waves[key].env
            if env is not None:
                region.setBounds((0.0, env.duration))
        if choice is not None and before is not None:
            self.before_wave.set_envelope(before, playhead=False)
            self.before_wave.show()
            self.status.setText(f"The cross-mix uses the {choice.describe()}.")
        else:
            self.before_wave.hide()
            self.status.setText("Select a stretch where a sound plays, then remove it or keep only it. "
                                "Drop a file here to take the sound from it.")
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = self._ready and not self._busy
        region = self._region_seconds() is not None
        for w in (self.origin, self.select_button):
            w.setEnabled(idle)
        for w in (self.remove_button, self.keep_button):
            w.setEnabled(idle and region)
        self.undo_button.setEnabled(idle and self.choice is not None)
        self.cancel_button.setEnabled(self._busy)
        self.cancel_button.setVisible(self._busy)
        self.progress.setVisible(self._busy)

    # --- regions ----------------------------------------------------------------------------

    def current_origin(self) -> str:
        return str(self.origin.currentData())

    def set_origin(self, key: str) -> None:
        self.origin.setCurrentIndex(self.origin.findData(key))

    def select(self, start: float, end: float) -> None:
        """Show the region on the current origin's waveform at ``start``-``end`` seconds."""
        self.select_button.setChecked(True)
        region = self._region(self.current_origin())
        if region is not None:
            region.setRegion((start, end))
        self._update_buttons()

    def _region(self, key: str) -> Any:
        wave = self.waves.get(key)
        if wave is None or wave.env is None:
            return None
        region = self.regions.get(key)
        if region is None or region.scene() is None:  # a wave cleared of its items
            dur = wave.env.duration
            mid = dur / 2.0
            region = pg.LinearRegionItem(values=(max(0.0, mid - 1.0), min(dur, mid + 1.0)),
                                         brush=pg.mkBrush(255, 200, 60, 60))
            region.setBounds((0.0, dur))
            region.sigRegionChangeFinished.connect(lambda *_: self._update_buttons())
            wave.addItem(region)
            self.regions[key] = region
        return region

    def _select_toggled(self, on: bool) -> None:
        for key, region in self.regions.items():
            region.setVisible(on and key == self.current_origin())
        if on:
            region = self._region(self.current_origin())
            if region is None:
                self.status.setText("Drop a file here first." if self.current_origin() == "file"
                                    else "Wait for the preview to be drawn.")
            else:
                region.setVisible(True)
        self._update_buttons()

    def _origin_changed(self, _i: int) -> None:
        self._select_toggled(self.select_button.isChecked())

    def _region_seconds(self) -> tuple[float, float] | None:
        if not self.select_button.isChecked():
            return None
        region = self.regions.get(self.current_origin())
        if region is None or not region.isVisible():
            return None
        a, b = region.getRegion()
        return float(a), float(b)

    def _choose(self, mode: str) -> None:
        span = self._region_seconds()
        if span is None:
            return
        a, b = span
        if b - a < MIN_QUERY_SECONDS:
            self.status.setText(f"Select at least {MIN_QUERY_SECONDS:g} s of the sound (this is {b - a:.2f} s).")
            return
        self.choice_made.emit(SourceChoice(mode=mode, origin=self.current_origin(), start=a, end=b,
                                           path=self.file_path if self.current_origin() == "file" else ""))

    # --- a dropped file ---------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.load_file(paths[0])

    def load_file(self, path: str) -> None:
        """Decode ``path`` in a worker and show it, ready for a selection."""
        from gui.workers import Task

        if self.runner is None:
            return
        self.status.setText(f"Reading {Path(path).name}…")
        task = Task(_file_envelope, path, name=f"reading {Path(path).name}")
        task.signals.finished.connect(lambda env, p=path: self._file_loaded(p, env))
        task.signals.failed.connect(lambda msg, _e: self.status.setText(msg))
        self.runner.start(task)

    def _file_loaded(self, path: str, env: Envelope) -> None:
        self.file_path = path
        old = self.regions.pop("file", None)
        if old is not None:
            self.file_wave.removeItem(old)
        self.file_wave.set_title(f"{Path(path).name}: select the sound in it")
        self.file_wave.set_envelope(env, playhead=False)
        self.file_wave.show()
        self.set_origin("file")
        self.select_button.setChecked(True)
        self._select_toggled(True)
        self.status.setText(f"{Path(path).name}: drag the region over the sound, then remove or keep it.")
