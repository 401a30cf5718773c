"""The controls of a voice as the query (issue 15): is the query a voice alone, its tempo
(typed, tapped with T, or estimated), the part of the song searched, and the phase of the
accompaniment under it (bar offset in beats, fine offset in ms).

Widgets only: they say what the user asked for with signals; the window runs the engine.
"""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from core.remix.vocal_tempo import TAP_RESET_S, USER_MAX_BPM, USER_MIN_BPM, tap_bpm

#: Where a tempo came from, as the query panel says it.
TEMPO_SOURCES = {
    "mix": "tracked in the mix",
    "onsets": "estimated from the voice's onsets",
    "given": "given (metronome)",
    "typed": "typed",
    "tapped": "tapped",
}


def region_hint(voice_alone: bool) -> str:
    """What the region row says before a part is chosen, named after the upper waveform."""
    return f"Drag across the {'voice' if voice_alone else 'mix'} to choose a part."


class VoiceControls(QWidget):
    """Voice alone (toggle), tempo (typed / tapped / estimated) and the searched region."""

    vocal_only_toggled = Signal(bool)  # the user overrode the detection
    tempo_requested = Signal(float, str)  # BPM, "typed" | "tapped"
    estimate_requested = Signal()  # back to the estimated tempo
    region_search_requested = Signal(object)  # (start, end) seconds
    whole_song_requested = Signal()

    #: After the last tap, how long (ms) before the tapped tempo is applied.
    TAP_SETTLE_MS = 1200

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.vocal_only = QCheckBox("Voice alone (not separated)")
        self.vocal_only.setToolTip(
            "The query is only a voice (an a-cappella): its vocal is the file itself. Crossmix "
            "recognises it; tick or untick to override, and the query runs again.")
        self.vocal_only.clicked.connect(self.vocal_only_toggled)
        self.vocal_note = QLabel("")
        self.vocal_note.setWordWrap(True)
        self._taps: list[float] = []
        self._shown_bpm: float | None = None
        self.selection: tuple[float, float] | None = None
        self.searched_region: tuple[float, float] | None = None

        tempo_row = self._build_tempo_row()
        region_row = self._build_region_row()

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.vocal_only, 0, 0, 1, 2)
        grid.addWidget(self.vocal_note, 1, 0, 1, 2)
        grid.addWidget(QLabel("Beat"), 2, 0)
        grid.addLayout(tempo_row, 2, 1)
        grid.addWidget(self.tempo_note, 3, 0, 1, 2)
        grid.addWidget(self.region_label, 4, 0, 1, 2)
        grid.addLayout(region_row, 5, 0, 1, 2)
        self.clear()

    def _build_tempo_row(self) -> QHBoxLayout:
        """The tempo box, Tap and Estimate (the note under them is not in the row)."""
        self.tempo = QDoubleSpinBox()
        self.tempo.setRange(USER_MIN_BPM, USER_MAX_BPM)
        self.tempo.setDecimals(1)
        self.tempo.setSuffix(" BPM")
        self.tempo.setToolTip("The query's tempo: type it and press Enter; the cross-mix's "
                              "beats follow")
        self.tempo.setKeyboardTracking(False)
        self.tempo.editingFinished.connect(self._typed)
        self.tap_button = QPushButton("Tap (T)")
        self.tap_button.setToolTip("Tap the beat (or press T) four times or more")
        self.tap_button.clicked.connect(lambda: self.tap())
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip("Go back to the tempo Crossmix estimated")
        self.estimate_button.clicked.connect(self.estimate_requested)
        self.tempo_note = QLabel("")
        self.tempo_note.setWordWrap(True)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(self.TAP_SETTLE_MS)
        self._settle.timeout.connect(self._tapped)
        tempo_row = QHBoxLayout()
        tempo_row.addWidget(self.tempo)
        tempo_row.addWidget(self.tap_button)
        tempo_row.addWidget(self.estimate_button)
        return tempo_row

    def _build_region_row(self) -> QHBoxLayout:
        """Search with this part and Whole song (the region's label is not in the row)."""
        self.region_label = QLabel(region_hint(False))
        self.region_label.setWordWrap(True)
        self.search_region_button = QPushButton("Search with this part")
        self.search_region_button.setToolTip("Embed only the selected part and search again; "
                                             "the cross-mix previews start there")
        self.search_region_button.clicked.connect(self._search_region)
        self.whole_song_button = QPushButton("Whole song")
        self.whole_song_button.setToolTip("Search with the whole song again")
        self.whole_song_button.clicked.connect(self.whole_song_requested)
        region_row = QHBoxLayout()
        region_row.addWidget(self.search_region_button)
        region_row.addWidget(self.whole_song_button)
        return region_row

    # --- state ------------------------------------------------------------------------------

    def clear(self) -> None:
        """No query: nothing to toggle, tap or search."""
        self.vocal_only.setChecked(False)
        self.vocal_note.setText("")
        self._shown_bpm = None
        self._taps.clear()
        self._settle.stop()
        self.tempo_note.setText("")
        self.selection = self.searched_region = None
        self._update_region()
        self.set_enabled(query=False, tempo=False)

    def set_enabled(self, *, query: bool, tempo: bool) -> None:
        """``query``: a query is shown (toggle, region); ``tempo``: its analysis is done."""
        self.vocal_only.setEnabled(query)
        for w in (self.tempo, self.tap_button, self.estimate_button):
            w.setEnabled(tempo)
        self._query_ready = query
        self._update_region()

    def show_vocal(self, vocal_only: bool, note: str) -> None:
        self.vocal_only.setChecked(vocal_only)
        self.vocal_note.setText(note)
        self._update_region()

    def show_tempo(self, bpm: float, source: str, confidence: float | None) -> None:
        """The tempo in use and where it came from (with the confidence of an estimate)."""
        self._shown_bpm = round(float(bpm), 1)
        self.tempo.blockSignals(True)
        self.tempo.setValue(float(bpm))
        self.tempo.blockSignals(False)
        how = TEMPO_SOURCES.get(source, source)
        if source == "onsets" and confidence is not None:
            sure = "sure" if confidence >= 0.5 else "unsure: type or tap it"
            how += f", confidence {confidence:.2f} ({sure})"
        self.tempo_note.setText(f"{bpm:.1f} BPM, {how}")

    # --- tempo ------------------------------------------------------------------------------

    def tap(self, at: float | None = None) -> float | None:
        """One tap (the T key, the Tap button) at ``at`` seconds (default now); the tempo so far,
        applied once the taps stop for :attr:`TAP_SETTLE_MS`."""
        if not self.tap_button.isEnabled():
            return None
        t = time.monotonic() if at is None else float(at)
        if self._taps and not 0.0 < t - self._taps[-1] <= TAP_RESET_S:
            self._taps.clear()  # a pause (or a clock that went back): a new count
        self._taps.append(t)
        bpm = tap_bpm(self._taps)
        if bpm is None or not USER_MIN_BPM <= bpm <= USER_MAX_BPM:
            self.tempo_note.setText(f"Tapping… ({len(self._taps)})")
            return None
        self.tempo.blockSignals(True)
        self.tempo.setValue(bpm)
        self.tempo.blockSignals(False)
        self.tempo_note.setText(f"Tapping… {bpm:.1f} BPM ({len(self._taps)} taps)")
        if len(self._taps) >= 3:
            self._settle.start()
        return bpm

    def _tapped(self) -> None:
        bpm = tap_bpm(self._taps)
        self._taps.clear()
        if bpm is not None and USER_MIN_BPM <= bpm <= USER_MAX_BPM:
            self._shown_bpm = round(bpm, 1)
            self.tempo_requested.emit(float(bpm), "tapped")

    def _typed(self) -> None:
        v = round(self.tempo.value(), 1)
        if self.tempo.isEnabled() and v != self._shown_bpm:
            self._shown_bpm = v
            self.tempo_requested.emit(float(v), "typed")

    # --- region -----------------------------------------------------------------------------

    def set_selection(self, region: tuple[float, float] | None) -> None:
        """The part dragged across the query's waveform (``None``: none)."""
        self.selection = region
        self._update_region()

    def show_searched_region(self, region: tuple[float, float] | None) -> None:
        self.searched_region = region
        self._update_region()

    def _search_region(self) -> None:
        if self.selection is not None:
            self.region_search_requested.emit(self.selection)

    def _update_region(self) -> None:
        ready = getattr(self, "_query_ready", False)
        sel, used = self.selection, self.searched_region
        self.search_region_button.setEnabled(ready and sel is not None and sel != used)
        self.whole_song_button.setEnabled(ready and used is not None)
        if used is not None:
            text = f"Searching with {used[0]:.1f}–{used[1]:.1f} s of the song."
        elif sel is not None:
            text = f"Selected {sel[0]:.1f}–{sel[1]:.1f} s."
        else:
            text = region_hint(self.vocal_only.isChecked()) if ready else ""
        self.region_label.setText(text)


class PhaseControls(QWidget):
    """Where the accompaniment's bar lines and beats sit under the query: a bar offset in beats
    and a fine offset in ms, heard at once in the preview."""

    offsets_changed = Signal(int, float)  # beats, ms

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar_offset = QSpinBox()
        self.bar_offset.setRange(-7, 7)
        self.bar_offset.setSuffix(" beats")
        self.bar_offset.setToolTip("Move the accompaniment's bar lines (its downbeat) by whole "
                                   "beats against your voice")
        self.fine = QSlider(Qt.Orientation.Horizontal)
        self.fine.setRange(-250, 250)  # ms
        self.fine.setToolTip("Move the accompaniment a little later (right) or earlier (left)")
        self.fine_label = QLabel("+0 ms")
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Bar offset"))
        lay.addWidget(self.bar_offset)
        lay.addWidget(QLabel("Fine"))
        lay.addWidget(self.fine, 1)
        lay.addWidget(self.fine_label)
        lay.addWidget(self.reset_button)
        self.bar_offset.valueChanged.connect(self._moved)
        self.fine.valueChanged.connect(self._moved)

    def offsets(self) -> tuple[int, float]:
        return int(self.bar_offset.value()), float(self.fine.value())

    def reset(self) -> None:
        self.bar_offset.setValue(0)
        self.fine.setValue(0)

    def _moved(self, _v: int) -> None:
        beats, ms = self.offsets()
        self.fine_label.setText(f"{ms:+.0f} ms")
        self.offsets_changed.emit(beats, ms)


def show_voice(panel: Any, r: Any) -> None:
    """Fill the query panel's voice controls (and the vocal waveform's title) from a query
    result (``gui.engine.QueryResult``)."""
    voice: VoiceControls = panel.voice
    check = r.vocal_check
    if check is None:
        note = "A voice alone, as asked: not separated." if r.vocal_only else "Separated, as asked."
    else:
        level = (f"accompaniment {check.accompaniment_db:.0f} dB"
                 if math.isfinite(check.accompaniment_db) else "no accompaniment")
        note = f"Recognised as {'a voice alone' if r.vocal_only else 'a mix'} ({level})."
    voice.show_vocal(bool(r.vocal_only), note)
    voice.vocal_note.setToolTip(check.describe() if check is not None else note)
    panel.title_waves(voice_alone=bool(r.vocal_only))
    panel.stages.set_skipped("separate", "Not separated" if r.vocal_only else None,
                             why="A voice alone is searched as it is: there is nothing to separate.")
    analysed = r.analysis is not None and r.auto_analysis is not None
    voice.set_enabled(query=True, tempo=analysed)
    voice.show_searched_region(r.region)
    if analysed:
        voice.show_tempo(r.analysis.tempo, r.tempo_source, r.analysis.tempo_confidence)
