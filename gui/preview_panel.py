"""Preview of the selected match: its mix, its accompaniment and the cross-mix, with transport,
source switch, A-B loop, vocal/accompaniment gain and the key-match toggle."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from gui.playback import MIN_LOOP_S
from gui.query_panel import fmt_duration
from gui.source_choice import SourceChoiceBar
from gui.voice_controls import PhaseControls
from gui.waveform import Envelope, WaveformView

SOURCES: tuple[tuple[str, str], ...] = (
    ("mix", "Match mix"),
    ("accompaniment", "Match accompaniment"),
    ("crossmix", "Cross-mix"),
)


class PreviewPanel(QGroupBox):
    source_changed = Signal(str)
    gains_changed = Signal(float, float)  # vocal dB, accompaniment dB
    key_match_changed = Signal(bool)
    export_requested = Signal()
    loop_changed = Signal(object)  # (A, B) in seconds while the loop is on, else None

    IDLE_HEADING = "Select a match to hear it under your vocal."

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Preview", parent)
        self.heading = QLabel(self.IDLE_HEADING)
        self.heading.setWordWrap(True)
        self.waves: dict[str, WaveformView] = {
            "mix": WaveformView("Match mix", color="#4aa3df"),
            "accompaniment": WaveformView("Match accompaniment", color="#6cc070"),
            "crossmix": WaveformView("Cross-mix (your vocal over its accompaniment)",
                                     color="#c774e8"),
        }
        src_row = self._build_source_row()
        # A-B loop: A and B are set at the playhead; Loop repeats what lies between them.
        self.loop_a: float | None = None
        self.loop_b: float | None = None
        self._seconds = 0.0
        transport = self._build_transport()
        self.playback_reason = QLabel("")
        self.playback_reason.setWordWrap(True)
        self.playback_reason.setObjectName("warning")
        gains = self._build_gains()
        # where the accompaniment's bar lines sit under the voice, heard at once
        self.phase = PhaseControls()
        self.report = QLabel("")
        self.report.setWordWrap(True)
        # "Remove (or keep only) a sound like this one" on the match's accompaniment.
        self.choice_bar = SourceChoiceBar(
            {k: self.waves[k] for k in ("mix", "accompaniment")})

        lay = QVBoxLayout(self)
        lay.addWidget(self.heading)
        for w in self.waves.values():
            lay.addWidget(w, 1)
        lay.addLayout(src_row)
        lay.addLayout(transport)
        lay.addWidget(self.playback_reason)
        lay.addLayout(gains)
        lay.addWidget(self.phase)
        lay.addWidget(self.choice_bar)
        lay.addWidget(self.report)
        self.set_ready(False)

    def _build_source_row(self) -> QHBoxLayout:
        """Listen to: one radio button per source (the cross-mix at first)."""
        self.source_buttons: dict[str, QRadioButton] = {}
        group = QButtonGroup(self)
        src_row = QHBoxLayout()
        src_row.addWidget(QLabel("Listen to:"))
        for key, text in SOURCES:
            b = QRadioButton(text)
            b.toggled.connect(lambda on, k=key: self._source_toggled(on, k))
            group.addButton(b)
            self.source_buttons[key] = b
            src_row.addWidget(b)
        src_row.addStretch(1)
        self.source_buttons["crossmix"].setChecked(True)
        return src_row

    def _build_transport(self) -> QHBoxLayout:
        """Play, Stop, the position, the A-B loop and Export."""
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.stop_button = QPushButton("Stop")
        self.position = QLabel("0:00 / 0:00")
        transport = QHBoxLayout()
        transport.addWidget(self.play_button)
        transport.addWidget(self.stop_button)
        transport.addWidget(self.position)
        self.set_a_button = QPushButton("A")
        self.set_a_button.setToolTip("Set the loop start (A) at the playhead")
        self.set_a_button.clicked.connect(self.set_a)
        self.set_b_button = QPushButton("B")
        self.set_b_button.setToolTip("Set the loop end (B) at the playhead")
        self.set_b_button.clicked.connect(self.set_b)
        self.loop_button = QPushButton("Loop")
        self.loop_button.setCheckable(True)
        self.loop_button.setToolTip("Repeat from A to B (set both first)")
        self.loop_button.toggled.connect(self._loop_toggled)
        self.loop_label = QLabel("")
        for b in (self.set_a_button, self.set_b_button):
            b.setMaximumWidth(40)
        transport.addWidget(self.set_a_button)
        transport.addWidget(self.set_b_button)
        transport.addWidget(self.loop_button)
        transport.addWidget(self.loop_label)
        transport.addStretch(1)
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self.export_requested)
        transport.addWidget(self.export_button)
        return transport

    def _build_gains(self) -> QGridLayout:
        """The vocal and accompaniment gains and key matching."""
        self.vocal_gain = self._slider()
        self.acc_gain = self._slider()
        self.vocal_gain_label = QLabel("0.0 dB")
        self.acc_gain_label = QLabel("0.0 dB")
        self.key_match = QCheckBox("Match the key (shift the accompaniment)")
        self.key_match.toggled.connect(self.key_match_changed)
        gains = QGridLayout()
        gains.addWidget(QLabel("Vocal gain"), 0, 0)
        gains.addWidget(self.vocal_gain, 0, 1)
        gains.addWidget(self.vocal_gain_label, 0, 2)
        gains.addWidget(QLabel("Accompaniment gain"), 1, 0)
        gains.addWidget(self.acc_gain, 1, 1)
        gains.addWidget(self.acc_gain_label, 1, 2)
        gains.addWidget(self.key_match, 2, 0, 1, 3)
        return gains

    # --- A-B loop ---------------------------------------------------------------------------

    def set_a(self) -> None:
        self.loop_a = self._seconds
        if self.loop_b is not None and self.loop_b - self.loop_a < MIN_LOOP_S:
            self.loop_b = None  # B before A: set it again
        self._loop_points_moved()

    def set_b(self) -> None:
        a = self.loop_a if self.loop_a is not None else 0.0
        if self._seconds - a < MIN_LOOP_S:
            self.loop_label.setText("B must come after A")
            return
        self.loop_a, self.loop_b = a, self._seconds
        self._loop_points_moved()

    def reset_loop(self) -> None:
        """No A, no B, loop off (another match)."""
        self.loop_a = self.loop_b = None
        self._loop_points_moved()

    def loop_region(self) -> tuple[float, float] | None:
        if self.loop_button.isChecked() and self.loop_a is not None and self.loop_b is not None:
            return self.loop_a, self.loop_b
        return None

    def _loop_points_moved(self) -> None:
        both = self.loop_a is not None and self.loop_b is not None
        if not both and self.loop_button.isChecked():
            self.loop_button.setChecked(False)  # emits loop_changed(None)
        self.loop_button.setEnabled(both and self.set_a_button.isEnabled())
        a = "–" if self.loop_a is None else f"{self.loop_a:.1f} s"
        b = "–" if self.loop_b is None else f"{self.loop_b:.1f} s"
        self.loop_label.setText("" if self.loop_a is None and self.loop_b is None
                                else f"A {a}  B {b}")
        if self.loop_button.isChecked():
            self.loop_changed.emit(self.loop_region())

    def _loop_toggled(self, _on: bool) -> None:
        self.loop_changed.emit(self.loop_region())

    def _source_toggled(self, on: bool, key: str) -> None:
        if on:
            self.source_changed.emit(key)

    def _slider(self) -> QSlider:
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(-240, 120)  # tenths of a dB
        s.setValue(0)
        s.valueChanged.connect(self._gain_moved)
        return s

    def _gain_moved(self, _v: int) -> None:
        v, a = self.gains_db()
        self.vocal_gain_label.setText(f"{v:+.1f} dB")
        self.acc_gain_label.setText(f"{a:+.1f} dB")
        self.gains_changed.emit(v, a)

    def gains_db(self) -> tuple[float, float]:
        return self.vocal_gain.value() / 10.0, self.acc_gain.value() / 10.0

    def set_gains_db(self, vocal: float, acc: float) -> None:
        self.vocal_gain.setValue(int(round(vocal * 10)))
        self.acc_gain.setValue(int(round(acc * 10)))

    def current_source(self) -> str:
        for key, b in self.source_buttons.items():
            if b.isChecked():
                return key
        return "crossmix"

    def set_ready(self, ready: bool, *, playback_ok: bool = True) -> None:
        """Enable the controls once a preview is rendered (transport only with a device)."""
        for b in (self.play_button, self.stop_button):
            b.setEnabled(ready and playback_ok)
        w: QWidget
        for w in (*self.source_buttons.values(), self.vocal_gain, self.acc_gain, self.key_match,
                  self.export_button, self.set_a_button, self.set_b_button, self.phase):
            w.setEnabled(ready)
        self.loop_button.setEnabled(ready and self.loop_a is not None and self.loop_b is not None)
        self.choice_bar.set_ready(ready)

    def clear(self) -> None:
        """Nothing previewed: no waves, heading or report of an earlier match."""
        self.heading.setText(self.IDLE_HEADING)
        self.report.setText("")
        self.reset_loop()
        self.show_message("")
        self.set_ready(False)

    def show_message(self, text: str) -> None:
        for w in self.waves.values():
            w.show_message(text)

    def set_waves(self, envs: dict[str, Envelope]) -> None:
        for key, env in envs.items():
            if key in self.waves:
                self.waves[key].set_envelope(env)

    def set_position(self, seconds: float, duration: float, source: str) -> None:
        self._seconds = seconds
        self.position.setText(f"{fmt_duration(seconds)} / {fmt_duration(duration)}")
        for key, w in self.waves.items():
            w.playhead.setVisible(key == source and w.env is not None)
            if key == source:
                w.set_playhead(seconds)

    def set_playing(self, playing: bool) -> None:
        self.play_button.setText("Pause" if playing else "Play")
