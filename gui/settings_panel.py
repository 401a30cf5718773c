"""Settings tab: one editor per declared option, written back as soon as it changes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.paths import models_dir
from gui.playback import list_output_devices, output_device_status
from gui.recorder import input_device_status, list_input_devices
from gui.settings import Option, Settings, choice_label

if TYPE_CHECKING:
    from core.separation.separator import StemCache

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Compute and model", ("compute/device", "model/encoder_checkpoint")),
    ("Search", ("search/space", "search/k", "search/duplicate_threshold")),
    ("Cross-mix defaults", ("remix/preview_seconds", "remix/key_match", "remix/max_shift",
                            "remix/vocal_gain_db", "remix/accompaniment_gain_db")),
    ("Audio and library", ("audio/output_device", "audio/input_device", "library/location",
                           "library/scan_mode",
                           "cache/stem_cache_gb")),
)


def trained_checkpoints() -> list[Path]:
    """Encoder checkpoints the user trained (``models_dir()/**/*.safetensors``), newest first."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(root.rglob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)


class SettingsPanel(QScrollArea):
    def __init__(self, settings: Settings, *, device_description: str = "",
                 stem_cache: StemCache | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.stem_cache = stem_cache
        self.setWidgetResizable(True)
        self.editors: dict[str, QWidget] = {}
        body = QWidget()
        body.setMaximumWidth(980)
        lay = QVBoxLayout(body)
        for title, keys in GROUPS:
            box = QGroupBox(title)
            form = QFormLayout(box)
            for key in keys:
                opt = settings.option(key)
                form.addRow(opt.label, self._editor(opt))
                if key == "compute/device":
                    self.device_found = QLabel(device_description)
                    self.device_found.setWordWrap(True)
                    form.addRow("", self.device_found)
                if key == "audio/output_device":
                    self.audio_status = QLabel("")
                    self.audio_status.setWordWrap(True)
                    form.addRow("", self.audio_status)
                    self._update_audio_status()
                if key == "audio/input_device":
                    self.input_status = QLabel("")
                    self.input_status.setWordWrap(True)
                    form.addRow("", self.input_status)
                    self._update_input_status()
                if key == "cache/stem_cache_gb" and stem_cache is not None:
                    form.addRow("", self._cache_row())
                if key == "model/encoder_checkpoint":
                    self.quality_label = QLabel("")
                    self.quality_label.setWordWrap(True)
                    form.addRow("Measured quality", self.quality_label)
                    self._update_quality()
            lay.addWidget(box)
        lay.addStretch(1)
        self.setWidget(body)
        settings.changed.connect(self._external_change)

    # --- editors ----------------------------------------------------------------------------

    def _editor(self, opt: Option) -> QWidget:
        key = opt.key
        value = self.settings.get(key)
        w: QWidget
        if key == "model/encoder_checkpoint":
            w = self._checkpoint_editor(value)
        elif key in ("audio/output_device", "audio/input_device"):
            combo = QComboBox()
            combo.addItem("System default", "")
            names = list_output_devices() if key == "audio/output_device" else list_input_devices()
            for name in names:
                combo.addItem(name, name)
            if value and combo.findData(value) < 0:
                combo.addItem(f"{value} (not found)", value)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.currentIndexChanged.connect(lambda _i, c=combo: self._set(key, c.currentData()))
            w = combo
        elif key == "library/location":
            w = self._folder_editor(key, value, placeholder="default library folder")
        elif opt.choices is not None:
            combo = QComboBox()
            for c in opt.choices:
                combo.addItem(choice_label(key, c), c)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.currentIndexChanged.connect(lambda _i, c=combo: self._set(key, c.currentData()))
            w = combo
        elif opt.type is bool:
            cb = QCheckBox()
            cb.setChecked(bool(value))
            cb.toggled.connect(lambda on: self._set(key, on))
            w = cb
        elif opt.type is int:
            sp = QSpinBox()
            sp.setRange(int(opt.minimum if opt.minimum is not None else -10**6),
                        int(opt.maximum if opt.maximum is not None else 10**6))
            sp.setValue(int(value))
            sp.valueChanged.connect(lambda v: self._set(key, v))
            w = sp
        elif opt.type is float:
            ds = QDoubleSpinBox()
            ds.setDecimals(2)
            ds.setSingleStep(0.01 if (opt.maximum or 0) <= 1.0 else 0.5)
            ds.setRange(opt.minimum if opt.minimum is not None else -1e6,
                        opt.maximum if opt.maximum is not None else 1e6)
            ds.setValue(float(value))
            ds.valueChanged.connect(lambda v: self._set(key, v))
            w = ds
        else:
            le = QLineEdit(str(value))
            le.editingFinished.connect(lambda e=le: self._set(key, e.text()))
            w = le
        self.editors[key] = w
        return w

    def _checkpoint_editor(self, value: str) -> QWidget:
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        combo = QComboBox()
        self.checkpoint_combo = combo
        self.refresh_checkpoints(value)
        combo.currentIndexChanged.connect(
            lambda _i: self._set("model/encoder_checkpoint", combo.currentData()))
        browse = QPushButton("Browse…")

        def pick() -> None:
            f, _ = QFileDialog.getOpenFileName(self, "Encoder checkpoint", str(models_dir()),
                                               "Encoder weights (*.safetensors)")
            if f:
                self.settings.set("model/encoder_checkpoint", f)

        browse.clicked.connect(pick)
        lay.addWidget(combo, 1)
        lay.addWidget(browse)
        return row

    def refresh_checkpoints(self, value: str | None = None) -> None:
        combo = self.checkpoint_combo
        value = self.settings.get("model/encoder_checkpoint") if value is None else value
        combo.blockSignals(True)
        combo.clear()
        from core.embedding.encoders import DEFAULT_MODEL_NAME
        from core.registry import shipped_encoder_names

        combo.addItem(f"Shipped default ({DEFAULT_MODEL_NAME})", "")
        for name in shipped_encoder_names():
            if name != DEFAULT_MODEL_NAME:
                combo.addItem(f"Shipped {name}", name)
        combo.addItem("resemblyzer: real-speech speaker encoder (no training)", "resemblyzer")
        for p in trained_checkpoints():
            combo.addItem(f"{p.parent.name}/{p.name}", str(p))
        if value and combo.findData(value) < 0:
            combo.addItem(value, value)
        combo.setCurrentIndex(max(0, combo.findData(value)))
        combo.blockSignals(False)

    def _folder_editor(self, key: str, value: str, *, placeholder: str) -> QWidget:
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        le = QLineEdit(value)
        le.setPlaceholderText(placeholder)
        le.editingFinished.connect(lambda: self._set(key, le.text().strip()))
        browse = QPushButton("Browse…")

        def pick() -> None:
            d = QFileDialog.getExistingDirectory(self, "Choose a folder", le.text())
            if d:
                le.setText(d)
                self._set(key, d)

        browse.clicked.connect(pick)
        lay.addWidget(le, 1)
        lay.addWidget(browse)
        self.editors[key + "#edit"] = le
        return row

    def _cache_row(self) -> QWidget:
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        self.cache_usage = QLabel("")
        self.cache_usage.setWordWrap(True)
        self.clear_cache_button = QPushButton("Clear stem cache")
        self.clear_cache_button.setToolTip(
            "Delete the separated vocals and accompaniments of songs you dropped. Your library "
            "and its search index are not touched; a song dropped again is separated again.")
        self.clear_cache_button.clicked.connect(self.clear_stem_cache)
        lay.addWidget(self.cache_usage, 1)
        lay.addWidget(self.clear_cache_button)
        self.update_cache_usage()
        return row

    def update_cache_usage(self) -> None:
        """Show how much the stem cache of dropped songs holds."""
        if self.stem_cache is None:
            return
        n, size = self.stem_cache.usage()
        self.cache_usage.setText(
            f"Holds {n} separated song{'s' if n != 1 else ''}, {size / 1e9:.2f} GB, in "
            f"{self.stem_cache.root}. The least recently used go first when it is full.")
        self.clear_cache_button.setEnabled(n > 0)

    def clear_stem_cache(self) -> None:
        if self.stem_cache is None:
            return
        freed = self.stem_cache.clear()
        self.update_cache_usage()
        self.cache_usage.setText(f"Cleared {freed / 1e9:.2f} GB. " + self.cache_usage.text())

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.update_cache_usage()

    # --- syncing ----------------------------------------------------------------------------

    def _set(self, key: str, value: Any) -> None:
        self.settings.set(key, value)
        if key == "audio/output_device":
            self._update_audio_status()
        elif key == "audio/input_device":
            self._update_input_status()
        elif key == "cache/stem_cache_gb":
            self.update_cache_usage()

    def _update_audio_status(self) -> None:
        ok, text = output_device_status(self.settings.get("audio/output_device") or None)
        self.audio_status.setText(f"Found: {text}" if ok else text)

    def _update_input_status(self) -> None:
        ok, text = input_device_status(self.settings.get("audio/input_device") or None)
        self.input_status.setText(f"Found: {text}" if ok else text)

    def _update_quality(self) -> None:
        """Per-space quality of the chosen encoders, as measured (``core.embedding.quality``)."""
        from core.embedding.quality import quality_for_choice

        q = quality_for_choice(self.settings.get("model/encoder_checkpoint"))
        if q is None:
            self.quality_label.setText("Not measured for these encoders ('crossmix evaluate' measures it). "
                                       "The search uses vocal → mix.")
            return
        rows = "".join(f"<tr><td>{space}</td><td align='right'>&nbsp;{v.top1:.2f}</td>"
                       f"<td align='right'>&nbsp;{v.top5:.2f}</td></tr>" for space, v in q.spaces.items())
        if q.chance_top1 > 0:  # what a random ranking scores, so the figures can be read
            rows += (f"<tr><td><i>chance</i></td><td align='right'>&nbsp;<i>{q.chance_top1:.2f}</i></td>"
                     f"<td align='right'>&nbsp;<i>{min(1.0, 5 * q.chance_top1):.2f}</i></td></tr>")
        full, _ = q.best_space(has_vocals=True)
        fast, _ = q.best_space(has_vocals=False)
        self.quality_label.setText(
            f"Singer identification on {q.protocol} ({q.name}):"
            f"<table><tr><th align='left'>space</th><th>&nbsp;top-1</th><th>&nbsp;top-5</th></tr>{rows}</table>"
            f"“Best measured (auto)” searches {full} in a library indexed in full mode and {fast} in a fast one.")

    def _external_change(self, key: str, value: Any) -> None:
        """Reflect a change made elsewhere (e.g. the search tab's k) in the editor."""
        if key == "model/encoder_checkpoint" and hasattr(self, "quality_label"):
            self._update_quality()
        w = self.editors.get(key)
        if w is None:
            return
        w.blockSignals(True)
        try:
            if isinstance(w, QComboBox):
                i = w.findData(value)
                if i >= 0:
                    w.setCurrentIndex(i)
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QSpinBox):
                w.setValue(int(value))
            elif isinstance(w, QDoubleSpinBox):
                w.setValue(float(value))
            elif key == "model/encoder_checkpoint":
                self.refresh_checkpoints(value)
        finally:
            w.blockSignals(False)
