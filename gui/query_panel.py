"""Query panel: what was dropped (title, artist, duration, tempo, key), its mix and its vocal,
and the staged progress of the query with a Cancel button."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.progress import Progress
from gui.region_select import RegionWaveformView
from gui.voice_controls import VoiceControls
from gui.waveform import Envelope, WaveformView

#: The query's waveforms: the file as dropped (a mix, or a voice alone) and its vocal.
MIX_TITLE = "Mix (drag across it to search with a part)"
VOICE_TITLE = "Voice alone (drag across it to search with a part)"
SEPARATED_TITLE = "Separated vocal"
VOCAL_ALONE_TITLE = "Vocal (the file itself)"

#: The stages of a query, in order, with the label shown.
STAGES: tuple[tuple[str, str], ...] = (
    ("decode", "Decode"),
    ("separate", "Separate"),
    ("embed", "Embed"),
    ("search", "Search"),
    ("analyze", "Analyse"),  # after the matches are shown: tempo, key, compatibility
)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


class StageProgress(QWidget):
    """A row of stage labels (pending / running / done), a bar for the running stage, Cancel."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.labels: dict[str, QLabel] = {}
        for key, text in STAGES:
            lab = QLabel(text)
            lab.setObjectName("stage")
            self.labels[key] = lab
            lay.addWidget(lab)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        lay.addWidget(self.bar, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        lay.addWidget(self.cancel_button)
        self.current: str | None = None
        #: stages the query did not need (key -> what the label says instead of a tick)
        self.skipped: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        self.current = None
        self.skipped = {}
        for key, lab in self.labels.items():
            lab.setToolTip("")
            lab.setText(dict(STAGES)[key])
            lab.setProperty("state", "pending")
            lab.setEnabled(False)
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.cancel_button.setEnabled(False)

    def start(self) -> None:
        self.reset()
        self.cancel_button.setEnabled(True)

    def set_skipped(self, key: str, text: str | None, *, why: str = "") -> None:
        """Mark stage ``key`` as not needed (``text`` replaces its name, without a tick, e.g. a
        voice alone is not separated; ``why`` is its tooltip), or, with ``None``, as a stage
        like the others again."""
        lab = self.labels[key]
        name = dict(STAGES)[key]
        if text:
            self.skipped[key] = text
            lab.setText(f"– {text}")
            lab.setToolTip(why or f"{name}: not needed for this query")
            lab.setProperty("state", "skipped")
            lab.setEnabled(True)
        elif self.skipped.pop(key, None) is not None:
            lab.setToolTip("")
            order = [k for k, _ in STAGES]
            done = self.current is None or order.index(key) < order.index(self.current)
            lab.setText(f"✓ {name}" if done else name)
            lab.setProperty("state", "done" if done else "pending")

    def update_progress(self, p: Progress) -> None:
        if p.stage not in self.labels:
            return
        order = [k for k, _ in STAGES]
        idx = order.index(p.stage)
        for i, key in enumerate(order):
            lab = self.labels[key]
            name = dict(STAGES)[key]
            if key in self.skipped and i != idx:
                continue
            if i < idx:
                lab.setText(f"✓ {name}")
                lab.setEnabled(True)
            elif i == idx:
                lab.setText(f"▸ {name}")
                lab.setEnabled(True)
        self.current = p.stage
        self.bar.setValue(int(p.fraction * 1000))
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        msg = f" – {p.message}" if p.message else ""
        self.bar.setFormat(f"{dict(STAGES)[p.stage]} {p.fraction * 100:.0f} %{eta}{msg}")

    def finish(self, text: str, *, stage: str | None = None) -> None:
        """End the row: ``"done"`` ticks every stage reached; otherwise (failed, cancelled)
        only the stages before the one that was running (``stage``, default the last
        reported) are ticked, and that one is marked ✗ (failed) or left unticked."""
        order = [k for k, _ in STAGES]
        names = dict(STAGES)
        failed = "failed" in text
        current = stage or self.current
        if current is None and failed:  # failed before its first report: the first stage
            current = order[0]
        if current is not None and text != "done":
            for key in order[:order.index(current)]:  # reached to get there
                self.labels[key].setEnabled(True)
        for key, lab in self.labels.items():
            if key in self.skipped and key != current:
                continue
            if key == current and text != "done":
                lab.setText(f"✗ {names[key]}" if failed else names[key])
                lab.setEnabled(True)
                lab.setProperty("state", "failed" if failed else "pending")
            elif lab.isEnabled() and (text == "done" or current is None
                                      or order.index(key) < order.index(current)):
                lab.setText(f"✓ {names[key]}")
                lab.setProperty("state", "done")
        self.bar.setValue(1000 if text == "done" else self.bar.value())
        self.bar.setFormat(text)
        self.cancel_button.setEnabled(False)


class QueryPanel(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Query", parent)
        self.title_label = QLabel("–")
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.artist_label = QLabel("–")
        self.duration_label = QLabel("–")
        self.tempo_label = QLabel("–")
        self.key_label = QLabel("–")
        form = QFormLayout()
        form.addRow("Title", self.title_label)
        form.addRow("Artist", self.artist_label)
        form.addRow("Duration", self.duration_label)
        form.addRow("Tempo", self.tempo_label)
        form.addRow("Key", self.key_label)
        info = QWidget()
        info_lay = QVBoxLayout(info)
        info_lay.setContentsMargins(0, 0, 0, 0)
        info_lay.addLayout(form)
        # a voice alone, its tempo, the part searched (gui/voice_controls.py)
        self.voice = VoiceControls()
        info_lay.addWidget(self.voice)
        info_lay.addStretch(1)
        info.setMinimumWidth(220)
        self.mix_wave = RegionWaveformView(MIX_TITLE, color="#4aa3df")
        self.mix_wave.region_changed.connect(self.voice.set_selection)
        self.vocal_wave = WaveformView(SEPARATED_TITLE, color="#e39c3c")
        waves = QVBoxLayout()
        waves.addWidget(self.mix_wave)
        waves.addWidget(self.vocal_wave)
        top = QHBoxLayout()
        top.addWidget(info)
        top.addLayout(waves, 1)
        self.stages = StageProgress()
        lay = QVBoxLayout(self)
        lay.addLayout(top, 1)
        lay.addWidget(self.stages)
        self.clear()

    def clear(self, *, voice_alone: bool = False) -> None:
        """Nothing shown; the waveforms titled for the query to come (``voice_alone``: asked
        to be searched as a voice alone, so nothing is separated)."""
        for lab in (self.title_label, self.artist_label, self.duration_label, self.tempo_label, self.key_label):
            lab.setText("–")
        self.mix_wave.show_message("")
        self.vocal_wave.show_message("")
        self.title_waves(voice_alone=voice_alone)
        self.voice.clear()

    def title_waves(self, *, voice_alone: bool) -> None:
        """The two waveforms' titles: the file and its separated vocal, or a voice alone twice."""
        self.mix_wave.set_title(VOICE_TITLE if voice_alone else MIX_TITLE)
        self.vocal_wave.set_title(VOCAL_ALONE_TITLE if voice_alone else SEPARATED_TITLE)

    def show_file(self, *, title: str, artist: str, duration: float | None) -> None:
        self.title_label.setText(title or "–")
        self.artist_label.setText(artist or "–")
        self.duration_label.setText(fmt_duration(duration))

    def show_analysis(self, *, tempo: float | None, key: str | None) -> None:
        self.tempo_label.setText("–" if tempo is None else f"{tempo:.1f} BPM")
        self.key_label.setText(key or "–")

    def show_waves(self, mix: Envelope | None, vocal: Envelope | None) -> None:
        if mix is not None:
            self.mix_wave.set_envelope(mix, playhead=False)
        if vocal is not None:
            self.vocal_wave.set_envelope(vocal, playhead=False)
