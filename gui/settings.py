"""Application settings: each one declared once, with its type and default.

Values (never widget indices) are stored with :class:`QSettings` in an INI file whose location
can be redirected (``CROSSMIX_CONFIG_DIR`` or the ``path`` argument), so tests and screenshots
never touch a real user's configuration. ``SCHEMA_VERSION`` and :data:`MIGRATIONS` upgrade
files written by older versions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from PySide6.QtCore import QObject, QSettings, Signal

from core.library.spaces import DUPLICATE_SIMILARITY, SEARCH_SPACES
from core.paths import APP_NAME

if TYPE_CHECKING:
    import torch

#: Bumped whenever a key is renamed or a value's meaning changes; see :data:`MIGRATIONS`.
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Option:
    """One setting: ``key`` in the INI file, Python ``type``, ``default`` and a label."""

    key: str
    type: type
    default: Any
    label: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def coerce(self, raw: Any) -> Any:
        """Turn what QSettings returns (often a string) into ``type``; bad values -> default."""
        if raw is None:
            return self.default
        try:
            if self.type is bool:
                value: Any = raw if isinstance(raw, bool) else str(raw).strip().lower() in (
                    "1", "true", "yes", "on")
            elif self.type is int:
                value = int(float(raw))
            elif self.type is float:
                value = float(raw)
            else:
                value = str(raw)
        except (TypeError, ValueError):
            return self.default
        if self.choices is not None and value not in self.choices:
            return self.default
        if self.minimum is not None and value < self.minimum:
            return self.default
        if self.maximum is not None and value > self.maximum:
            return self.default
        return value


#: The search-space setting's choices: "auto" (the best measured) or a space.
SPACES = ("auto", *SEARCH_SPACES)
#: How choices are shown (the stored value is the key).
CHOICE_LABELS: dict[str, str] = {
    "vocal->mix": "Vocal → mix (cross-domain)",
    "mix->mix": "Mix → mix",
    "vocal->vocal": "Vocal → vocal",
    "[M,V]": "[mix, vocal] → [mix, vocal]",
    "auto": "Automatic (CUDA when present)",
    "cpu": "CPU",
    "cuda": "CUDA",
    "fast": "Fast (mixes only)",
    "full": "Full (also separate vocals)",
}
#: Labels that depend on the setting ("auto" is a device choice and a search-space choice).
KEY_CHOICE_LABELS: dict[tuple[str, str], str] = {("search/space", "auto"): "Best measured (auto)"}


def choice_label(key: str, value: object) -> str:
    """How a choice of setting ``key`` is shown."""
    v = str(value)
    return KEY_CHOICE_LABELS.get((key, v)) or CHOICE_LABELS.get(v, v)


EXPORT_FORMATS = ("wav", "flac", "mp3", "ogg")
BITRATES = ("128k", "192k", "256k", "320k")

#: The Retrain form, remembered across restarts; the defaults are sized for a CPU.
TRAIN_OPTIONS: tuple[Option, ...] = (
    Option("train/source", str, "library", "Training data", choices=("library", "folder")),
    Option("train/folder", str, "", "Training folder or manifest"),
    Option("train/loss", str, "cross-sp", "Loss",
           choices=("mixed", "cross", "cross-sp", "infonce")),
    Option("train/lambdas", str, "", "Loss weights (empty: the loss's own)"),
    Option("train/margin", float, 0.4, "Margin", minimum=0.0, maximum=2.0),
    Option("train/temperature", float, 0.1, "Temperature", minimum=0.01, maximum=2.0),
    Option("train/pairs", str, "label", "Pairs", choices=("label", "agnostic")),
    Option("train/sampling", str, "real", "Mixes",
           choices=("real", "artificial", "both")),
    Option("train/arch", str, "cnn", "Architecture", choices=("cnn", "ge2e")),
    Option("train/head_hidden", int, 512, "Head hidden units", minimum=16, maximum=4096),
    Option("train/teacher", float, 0.0, "Teacher weight", minimum=0.0, maximum=10.0),
    Option("train/batches_per_epoch", int, 100, "Batches per epoch", minimum=1,
           maximum=100000),
    Option("train/epochs", int, 30, "Max epochs", minimum=1, maximum=100000),
    Option("train/patience", int, 5, "Patience", minimum=1, maximum=1000),
    Option("train/device", str, "auto", "Training device", choices=("auto", "cpu", "cuda")),
    Option("train/width", float, 0.25, "Width", minimum=0.05, maximum=4.0),
    Option("train/batch_size", int, 16, "Batch size", minimum=2, maximum=512),
    Option("train/vocals", str, "separated", "Vocals", choices=("separated", "stems")),
    Option("train/held_out", float, 0.1, "Held-out singers", minimum=0.0, maximum=0.45),
)

OPTIONS: tuple[Option, ...] = (
    Option("compute/device", str, "auto", "Compute device", choices=("auto", "cpu", "cuda")),
    Option("model/encoder_checkpoint", str, "", "Encoders (empty: shipped default; 'resemblyzer'; or a checkpoint path)"),
    Option("search/space", str, "auto", "Default search space (auto: the space that measured best "
           "for the encoders, among those the library can serve)", choices=SPACES),
    Option("search/k", int, 10, "Results shown (k)", minimum=1, maximum=200),
    Option("search/duplicate_threshold", float, DUPLICATE_SIMILARITY, "Near-duplicate threshold",
           minimum=0.5, maximum=1.0),
    # The Search tab's filters (as the CLI's `library match --tempo LO:HI --key KEY`).
    Option("search/tempo_filter", bool, False, "Filter the matches by tempo"),
    Option("search/tempo_min", float, 90.0, "Slowest tempo kept (BPM)", minimum=20.0,
           maximum=300.0),
    Option("search/tempo_max", float, 130.0, "Fastest tempo kept (BPM)", minimum=20.0,
           maximum=300.0),
    Option("search/key", str, "", "Key kept (empty: any key), e.g. 'A minor'"),
    Option("search/include_duplicates", bool, False,
           "Keep near-duplicates of the query (other versions of the same recording) among the matches"),
    Option("remix/preview_seconds", float, 30.0, "Preview length (s)", minimum=5.0, maximum=300.0),
    Option("remix/key_match", bool, False, "Match the key by default"),
    Option("remix/max_shift", int, 3, "Largest key shift (semitones)", minimum=0, maximum=6),
    Option("remix/vocal_gain_db", float, 0.0, "Vocal gain (dB)", minimum=-24.0, maximum=12.0),
    Option("remix/accompaniment_gain_db", float, 0.0, "Accompaniment gain (dB)",
           minimum=-24.0, maximum=12.0),
    Option("audio/output_device", str, "", "Audio output device (empty: system default)"),
    Option("audio/input_device", str, "", "Audio input device for recording (empty: system "
           "default)"),
    Option("record/metronome", bool, False, "Metronome while recording"),
    Option("record/bpm", int, 100, "Metronome tempo (BPM)", minimum=40, maximum=240),
    Option("record/count_in_bars", int, 1, "Count-in (bars)", minimum=0, maximum=4),
    Option("library/location", str, "", "Library folder (empty: default)"),
    Option("cache/stem_cache_gb", float, 10.0, "Stem cache of dropped songs, limit (GB)",
           minimum=0.5, maximum=100000.0),
    Option("library/scan_mode", str, "fast", "Indexing mode (fast: mixes only; full: also "
           "separate vocals)", choices=("fast", "full")),
    Option("export/format", str, "wav", "Export format", choices=EXPORT_FORMATS),
    Option("export/bitrate", str, "192k", "Export bitrate", choices=BITRATES),
    Option("export/full", bool, False, "Export the full song (not the preview)"),
    Option("export/directory", str, "", "Export folder"),
    Option("export/stems", bool, False, "Also export the vocal and accompaniment stems"),
    Option("ui/first_run_done", bool, False, "First-run hint dismissed"),
    Option("library/demo_added", bool, False, "Demo songs added to the library once"),
    Option("ui/last_open_dir", str, "", "Last folder used in Open..."),
    *TRAIN_OPTIONS,
)

_BY_KEY = {o.key: o for o in OPTIONS}


def compute_device(name: str) -> tuple[torch.device, str]:
    """``(torch.device, note)``: the Compute device setting's device, or the CPU and a note for
    the user when it cannot be used (``""`` when it can)."""
    from core.device import usable_device

    device, problem = usable_device(name)
    if problem is None:
        return device, ""
    # Said in the app's terms (not the CLI's --device): where to change it.
    return device, (
        f"The compute device “{name}” cannot be used: no usable NVIDIA GPU was found, so "
        "the CPU is used. Settings ▸ Compute device is set back to “Automatic”.")


def gigabytes(value: float) -> int:
    """A size setting in GB (10^9 bytes) as bytes."""
    return int(round(float(value) * 1e9))


#: The space list of settings version 1 (its combo-box order), for its migration: frozen as it
#: was, whatever the spaces become.
_V1_SPACES = ("vocal->mix", "mix->mix", "vocal->vocal", "[M,V]")


def _v1_to_v2(qs: QSettings) -> None:
    # Version 1 stored the search space as a combo-box index; version 2 stores the value.
    raw = qs.value("search/space_index")
    if raw is not None:
        try:
            qs.setValue("search/space", _V1_SPACES[int(raw)])
        except (ValueError, IndexError):
            pass
        qs.remove("search/space_index")


#: ``MIGRATIONS[n]`` upgrades a file of version ``n`` to ``n + 1``.
def _v2_to_v3(qs: QSettings) -> None:
    # Version 3 adds "auto" (the best measured space) as the default. Up to version 2 the
    # window stored the space on every search, so a stored "vocal->mix" is almost always the
    # old default rather than a choice: it becomes "auto".
    if qs.value("search/space") == "vocal->mix":
        qs.setValue("search/space", "auto")


MIGRATIONS: dict[int, Callable[[QSettings], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def default_settings_path() -> Path:
    """``$CROSSMIX_CONFIG_DIR/settings.ini``, else the platform's config folder."""
    env = os.environ.get("CROSSMIX_CONFIG_DIR")
    base = Path(env) if env else Path(platformdirs.user_config_dir(APP_NAME))
    return base / "settings.ini"


class Settings(QObject):
    """Typed access to the declared :data:`OPTIONS`; emits ``changed(key, value)``."""

    changed = Signal(str, object)

    def __init__(self, path: str | Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path) if path is not None else default_settings_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._qs = QSettings(str(self.path), QSettings.Format.IniFormat)
        self._migrate()

    def _migrate(self) -> None:
        version = int(str(self._qs.value("meta/version", 0) or 0))
        if version == 0 and not self._qs.allKeys():
            self._qs.setValue("meta/version", SCHEMA_VERSION)
            return
        version = max(version, 1)
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](self._qs)
            version += 1
        self._qs.setValue("meta/version", SCHEMA_VERSION)
        self._qs.sync()

    @property
    def version(self) -> int:
        return int(str(self._qs.value("meta/version", SCHEMA_VERSION)))

    def get(self, key: str) -> Any:
        opt = _BY_KEY[key]
        return opt.coerce(self._qs.value(key))

    def set(self, key: str, value: Any) -> None:
        opt = _BY_KEY[key]
        value = opt.coerce(value)
        if self._qs.value(key) is not None and self.get(key) == value:
            return
        self._qs.setValue(key, value)
        self._qs.sync()
        self.changed.emit(key, value)

    def reset(self, key: str) -> None:
        self._qs.remove(key)
        self._qs.sync()
        self.changed.emit(key, _BY_KEY[key].default)

    def option(self, key: str) -> Option:
        return _BY_KEY[key]

    def sync(self) -> None:
        self._qs.sync()
