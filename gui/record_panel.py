"""The Search tab's recording box: Record / Stop, the input level, the metronome and count-in,
and the last takes (play, rename, delete, search with it).

A finished take is trimmed in a worker and handed to the Search page with :attr:`take_ready`
(``path, tempo_bpm``): the page queries it as a vocal-only file whose tempo is the
metronome's when one was heard (``SearchPage.query_take``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.audio.recording import RecordingError
from core.audio.takes import Take, TakeStore
from gui.audio_views import playable
from gui.playback import Player, output_device_status
from gui.query_panel import fmt_duration
from gui.recorder import Recorder, RecordingStats, input_device_status
from gui.settings import Settings
from gui.workers import Task, TaskRunner

log = logging.getLogger(__name__)

TAKE_ROLE = Qt.ItemDataRole.UserRole + 1
#: Takes listed (the newest).
TAKES_SHOWN = 12
METER_FLOOR_DB = -60.0


def _load_take(path: Path, *, progress: Any = None, cancel: Any = None) -> tuple[Any, int]:
    from core.audio.decode import load_audio

    audio = load_audio(path)
    return playable(audio), audio.sr


class RecordPanel(QGroupBox):
    take_ready = Signal(str, object)  # path, tempo_bpm (None: no metronome heard)
    take_renamed = Signal(str, str)  # old path, new path
    take_deleted = Signal(str)  # path
    message = Signal(str, str)  # text, kind ("info" | "warning" | "error")
    recording_changed = Signal(bool)
    take_finished = Signal(object)  # Take | None: trimmed and listed (tests wait for it)

    def __init__(self, settings: Settings, runner: TaskRunner, *,
                 store: TakeStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Record your voice", parent)
        self.settings = settings
        self.runner = runner
        self.store = store if store is not None else TakeStore()
        self.recorder = Recorder(self, input_device=settings.get("audio/input_device") or None,
                                 output_device=settings.get("audio/output_device") or None)
        self.recorder.level_changed.connect(self._level)
        self.recorder.elapsed_changed.connect(self._elapsed)
        self.recorder.counting_in.connect(self._counting_in)
        self.recorder.stopped.connect(self._stopped)
        self.player = Player(self, device=settings.get("audio/output_device") or None)
        self.player.state_changed.connect(self._player_state)
        self._take: Take | None = None  # the take being recorded
        self._tempo: float | None = None
        self._finishing: Task | None = None
        self._closing = False

        row1 = self._build_record_row()
        row2 = self._build_metronome_row(settings)
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        self.reason.setObjectName("record_reason")
        row3 = self._build_takes_row()

        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.reason)
        lay.addWidget(self.takes_list, 1)
        lay.addLayout(row3)
        self.update_devices()
        self.refresh_takes()
        self._recover()

    def _build_record_row(self) -> QHBoxLayout:
        """Record, the input level meter and the take's time."""
        self.record_button = QPushButton("● Record")
        self.record_button.setCheckable(True)
        self.record_button.clicked.connect(self.toggle_recording)
        self.meter = QProgressBar()
        self.meter.setRange(0, int(-METER_FLOOR_DB * 10))
        self.meter.setTextVisible(False)
        self.meter.setToolTip("Input level (peak, -60 to 0 dBFS)")
        self.meter.setFixedHeight(12)
        self.time_label = QLabel("0:00")
        row1 = QHBoxLayout()
        row1.addWidget(self.record_button)
        row1.addWidget(self.meter, 1)
        row1.addWidget(self.time_label)
        return row1

    def _build_metronome_row(self, settings: Settings) -> QHBoxLayout:
        """The metronome, its tempo and the count-in, kept in the settings."""
        self.metronome_check = QCheckBox("Metronome")
        self.metronome_check.setToolTip("Clicks in your headphones while you sing (not recorded); "
                                        "the take's tempo is then known exactly")
        self.metronome_check.setChecked(bool(settings.get("record/metronome")))
        self.bpm_spin = QSpinBox()
        self.bpm_spin.setRange(40, 240)
        self.bpm_spin.setSuffix(" BPM")
        self.bpm_spin.setValue(int(settings.get("record/bpm")))
        self.count_in_spin = QSpinBox()
        self.count_in_spin.setRange(0, 4)
        self.count_in_spin.setSuffix(" bar count-in")
        self.count_in_spin.setToolTip("Bars of clicks before the take starts (0: none)")
        self.count_in_spin.setValue(int(settings.get("record/count_in_bars")))
        self.metronome_check.toggled.connect(lambda on: settings.set("record/metronome", on))
        self.bpm_spin.valueChanged.connect(lambda v: settings.set("record/bpm", v))
        self.count_in_spin.valueChanged.connect(lambda v: settings.set("record/count_in_bars", v))
        row2 = QHBoxLayout()
        row2.addWidget(self.metronome_check)
        row2.addWidget(self.bpm_spin)
        row2.addWidget(self.count_in_spin)
        row2.addStretch(1)
        return row2

    def _build_takes_row(self) -> QHBoxLayout:
        """The list of takes, and the buttons that act on the selected one."""
        self.takes_list = QListWidget()
        self.takes_list.setToolTip("Your last takes, newest first (double-click: search with it)")
        self.takes_list.itemSelectionChanged.connect(self._update_buttons)
        self.takes_list.itemDoubleClicked.connect(lambda _i: self.search_selected())
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.toggle_play_selected)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.clicked.connect(self._rename_clicked)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._delete_clicked)
        self.search_button = QPushButton("Search with it")
        self.search_button.clicked.connect(self.search_selected)
        row3 = QHBoxLayout()
        for b in (self.play_button, self.rename_button, self.delete_button, self.search_button):
            row3.addWidget(b)
        return row3

    # --- devices ----------------------------------------------------------------------------

    def update_devices(self) -> None:
        """Apply the input/output devices of the settings: Record is disabled, with the reason
        shown, when there is no input; the metronome when there is no output."""
        self.recorder.input_device = self.settings.get("audio/input_device") or None
        self.recorder.output_device = self.settings.get("audio/output_device") or None
        if not self.recorder.recording:
            self.player.set_device(self.recorder.output_device)
        ok_in, why_in = input_device_status(self.recorder.input_device)
        ok_out, why_out = output_device_status(self.recorder.output_device)
        self.input_ok = ok_in
        self.record_button.setEnabled(ok_in or self.recorder.recording)
        self.record_button.setToolTip(f"Record from {why_in}" if ok_in else why_in)
        clicks_why = "" if ok_out else f"No metronome: {why_out}"
        for w in (self.metronome_check, self.bpm_spin, self.count_in_spin):
            w.setEnabled(ok_out)
            w.setToolTip(clicks_why or w.toolTip())
        text = why_in if not ok_in else clicks_why
        self.reason.setText(text)
        self.reason.setVisible(bool(text))
        self._update_buttons()

    # --- recording --------------------------------------------------------------------------

    def toggle_recording(self) -> None:
        if self.recorder.recording:
            self.stop_recording()
        else:
            self.start_recording()

    def clicks_wanted(self) -> bool:
        return self.metronome_check.isEnabled() and (
            self.metronome_check.isChecked() or self.count_in_spin.value() > 0)

    def start_recording(self) -> bool:
        """Start a take; ``False`` (and a message) when it cannot start."""
        if self.recorder.recording or self._closing:
            return False
        self.player.stop()
        clicks = self.clicks_wanted()
        bpm = float(self.bpm_spin.value()) if clicks else None
        try:
            take = self.store.new_take(tempo_bpm=bpm)
        except RecordingError as exc:
            return self._refuse(str(exc))
        try:
            self.recorder.start(take.path, bpm=bpm,
                                metronome=clicks and self.metronome_check.isChecked(),
                                count_in_bars=self.count_in_spin.value() if clicks else 0)
        except RecordingError as exc:
            try:
                self.store.delete(take)
            except RecordingError:
                pass
            return self._refuse(str(exc))
        self._take = take
        self._tempo = bpm
        self.record_button.setText("■ Stop")
        self.record_button.setChecked(True)
        self.record_button.setEnabled(True)
        for w in (self.metronome_check, self.bpm_spin, self.count_in_spin):
            w.setEnabled(False)
        self.recording_changed.emit(True)
        return True

    def _refuse(self, text: str) -> bool:
        self.record_button.setChecked(False)
        self.message.emit(text, "error")
        self.update_devices()
        return False

    @property
    def recording_path(self) -> Path | None:
        """The WAV of the take being recorded (``None`` when not recording)."""
        return self._take.path if self._take is not None else None

    def stop_recording(self) -> RecordingStats | None:
        return self.recorder.stop()

    def _stopped(self, stats: RecordingStats) -> None:
        take, self._take = self._take, None
        self.record_button.setText("● Record")
        self.record_button.setChecked(False)
        self.meter.setValue(0)
        self.update_devices()
        self.recording_changed.emit(False)
        if take is None:
            return
        take.dropouts = stats.dropouts
        take.note = stats.error
        if stats.frames == 0:
            try:
                self.store.delete(take)
            except RecordingError:
                pass
            self.message.emit(stats.error or "Nothing was recorded: the take was stopped before "
                              "any audio came in.", "warning")
            self.take_finished.emit(None)
            return
        if stats.dropouts:
            log.warning("take %s: %d dropouts", take.path, stats.dropouts)
        grid = 4 * 60.0 / take.tempo_bpm if take.tempo_bpm else None
        if self._closing:  # the window is closing: trimmed here, before the app goes
            self.store.finish(take, grid_s=grid)
            return
        task = Task(self._finish, take, grid, name=f"trimming {take.name}")
        task.signals.finished.connect(lambda t, s=stats: self._finished(t, s))
        task.signals.failed.connect(lambda msg, _e: self._finish_failed(msg))
        self._finishing = task
        self.runner.start(task)

    def _finish(self, take: Take, grid: float | None, *, progress: Any = None,
                cancel: Any = None) -> Take:
        return self.store.finish(take, grid_s=grid)

    def _finished(self, take: Take, stats: RecordingStats) -> None:
        self._finishing = None
        self.refresh_takes(select=take.path)
        self.take_finished.emit(take)
        if stats.error:
            self.message.emit(stats.error + f" The take is listed as “{take.name}”.", "error")
            return
        if stats.dropouts:
            self.message.emit(
                f"“{take.name}”: {stats.dropouts} block{'s' if stats.dropouts != 1 else ''} of "
                "audio were lost while recording (the computer was too busy).", "warning")
        self.take_ready.emit(str(take.path), take.tempo_bpm)

    def _finish_failed(self, msg: str) -> None:
        self._finishing = None
        self.refresh_takes()
        self.message.emit(msg, "error")
        self.take_finished.emit(None)

    def _level(self, db: float) -> None:
        v = 0 if math.isinf(db) else int(round((max(db, METER_FLOOR_DB) - METER_FLOOR_DB) * 10))
        self.meter.setValue(v)

    def _elapsed(self, seconds: float) -> None:
        self.time_label.setText(fmt_duration(seconds))

    def _counting_in(self, beats: int) -> None:
        if beats > 0:
            self.time_label.setText(f"in {beats}…")

    def _recover(self) -> None:
        """Takes cut short by a crash: repaired and trimmed in a worker, then listed."""
        if not any(t.state == "recording" for t in self.store.takes()):
            return
        task = Task(lambda progress=None, cancel=None: self.store.recover(),
                    name="recovering takes")
        task.signals.finished.connect(self._recovered)
        task.signals.failed.connect(lambda msg, _e: self.message.emit(msg, "error"))
        self.runner.start(task)

    def _recovered(self, takes: list[Take]) -> None:
        self.refresh_takes()
        if takes:
            names = ", ".join(f"“{t.name}”" for t in takes)
            self.message.emit(f"Recovered {names}: Crossmix stopped while recording; what was "
                              "recorded until then is kept.", "info")

    # --- takes ------------------------------------------------------------------------------

    def refresh_takes(self, *, select: Path | None = None) -> None:
        self.takes_list.clear()
        for take in self.store.takes(limit=TAKES_SHOWN):
            if take.state == "recording":
                continue
            tempo = f" · {take.tempo_bpm:.0f} BPM" if take.tempo_bpm else ""
            item = QListWidgetItem(f"{take.name} · {fmt_duration(take.duration)}{tempo}")
            item.setData(TAKE_ROLE, take)
            item.setToolTip(f"{take.path}" + (f"\n{take.note}" if take.note else ""))
            self.takes_list.addItem(item)
            if select is not None and take.path == select:
                self.takes_list.setCurrentItem(item)
        self._update_buttons()

    def takes(self) -> list[Take]:
        return [self.takes_list.item(i).data(TAKE_ROLE) for i in range(self.takes_list.count())]

    def selected_take(self) -> Take | None:
        item = self.takes_list.currentItem()
        return item.data(TAKE_ROLE) if item is not None and item.isSelected() else None

    def _update_buttons(self) -> None:
        t = self.selected_take() is not None
        busy = self.recorder.recording
        self.play_button.setEnabled(t and self.player.available and not busy)
        self.play_button.setToolTip("" if self.player.available else self.player.reason)
        for b in (self.rename_button, self.delete_button, self.search_button):
            b.setEnabled(t)

    def toggle_play_selected(self) -> None:
        if self.player.playing:
            self.player.stop()
            return
        take = self.selected_take()
        if take is None or not self.player.available:
            return
        task = Task(_load_take, take.path, name=f"loading {take.name}")
        task.signals.finished.connect(self._play_loaded)
        task.signals.failed.connect(lambda msg, _e: self.message.emit(msg, "error"))
        self.runner.start(task)

    def _play_loaded(self, loaded: tuple[Any, int]) -> None:
        layer, sr = loaded
        self.player.clear_sources()
        self.player.set_source("take", [layer], sr)
        self.player.select("take")
        self.player.play()

    def _player_state(self, state: str) -> None:
        self.play_button.setText("Stop" if state == "playing" else "Play")

    def rename_take(self, take: Take, name: str) -> Take | None:
        try:
            new = self.store.rename(take, name)
        except RecordingError as exc:
            self.message.emit(str(exc), "error")
            return None
        self.refresh_takes(select=new.path)
        if new.path != take.path:
            self.take_renamed.emit(str(take.path), str(new.path))
        return new

    def _rename_clicked(self) -> None:
        take = self.selected_take()
        if take is None:
            return
        name, ok = QInputDialog.getText(self, "Rename take", "Name", text=take.name)
        if ok:
            self.rename_take(take, name)

    def delete_take(self, take: Take, *, confirm: bool = True) -> bool:
        if confirm and QMessageBox.question(
                self, "Delete take", f"Delete “{take.name}” ({take.path})? This cannot be undone."
        ) != QMessageBox.StandardButton.Yes:
            return False
        self.player.stop()
        try:
            self.store.delete(take)
        except RecordingError as exc:
            self.message.emit(str(exc), "error")
            return False
        self.refresh_takes()
        self.take_deleted.emit(str(take.path))
        return True

    def _delete_clicked(self) -> None:
        take = self.selected_take()
        if take is not None:
            self.delete_take(take)

    def search_selected(self) -> None:
        take = self.selected_take()
        if take is None:
            return
        if not take.path.is_file():
            self.message.emit(f"{take.path}: the take is not there any more.", "error")
            self.refresh_takes()
            return
        self.take_ready.emit(str(take.path), take.tempo_bpm)

    # --- closing ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The window closes: a take being recorded is stopped, trimmed and kept."""
        self._closing = True
        self.player.close()
        if self.recorder.recording:
            self.recorder.stop()
        task = self._finishing
        if task is not None:
            task.finished_event.wait(60.0)
