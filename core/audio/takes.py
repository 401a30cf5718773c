"""The user's microphone takes: dated WAV files in ``data_dir()/takes``, each with a JSON
sidecar (name, tempo, state).

A take is created in state ``"recording"`` and marked ``"done"`` once stopped and trimmed. A
take still ``"recording"`` when the store opens was cut short (a crash, a kill, power lost):
:meth:`TakeStore.recover` repairs its WAV header (``core.audio.recording.repair_wav_header``), trims
it and marks it ``"recovered"``, so nothing recorded is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any

from core.atomic import atomic_write
from core.audio.recording import RecordingError, repair_wav_header, trim_take
from core.paths import data_dir

log = logging.getLogger(__name__)

#: Characters left out of a take's file name (the name itself is kept in the sidecar).
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


def takes_dir() -> Path:
    return data_dir() / "takes"


@dataclasses.dataclass
class Take:
    """One take on disk. ``tempo_bpm`` is the metronome's (``None``: recorded without one)."""

    path: Path
    name: str
    created: str  # ISO 8601, local time
    tempo_bpm: float | None = None
    state: str = "recording"  # "recording" | "done" | "recovered"
    duration: float = 0.0  # seconds, after trimming
    dropouts: int = 0  # blocks lost (device overflows and ring overflows)
    note: str = ""  # what happened to it (e.g. "stopped: the disk is full")

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d


class TakeStore:
    """Creates, lists, renames, deletes and recovers takes in ``root`` (default
    :func:`takes_dir`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else takes_dir()

    def new_take(self, *, tempo_bpm: float | None = None,
                 now: dt.datetime | None = None) -> Take:
        """A new dated take (its sidecar written, in state ``"recording"``); the WAV itself
        is created by the writer.

        Raises
        ------
        RecordingError
            The folder cannot be created or written.
        """
        now = now or dt.datetime.now()
        name = now.strftime("Take %Y-%m-%d %H-%M-%S")
        path = self._free_path(name)
        take = Take(path=path, name=name, created=now.isoformat(timespec="seconds"),
                    tempo_bpm=tempo_bpm)
        self.save(take)
        return take

    def _free_path(self, name: str, *, keep: Path | None = None) -> Path:
        stem = _UNSAFE.sub("_", name).strip(" .") or "Take"
        path = self.root / f"{stem}.wav"
        i = 2
        while (path.exists() or path.with_suffix(".json").exists()) and path != keep:
            path = self.root / f"{stem} ({i}).wav"
            i += 1
        return path

    def save(self, take: Take) -> None:
        try:
            with atomic_write(take.sidecar, suffix=".part") as tmp:
                tmp.write_text(json.dumps(take.to_json(), indent=1), encoding="utf-8")
        except OSError as exc:
            raise RecordingError(
                f"{take.sidecar}: the take's details cannot be written ({exc.strerror or exc}). "
                f"Check that {self.root} may be written and the disk is not full.") from exc

    def load(self, wav: Path) -> Take | None:
        side = wav.with_suffix(".json")
        try:
            d = json.loads(side.read_text(encoding="utf-8"))
            fields = {f.name for f in dataclasses.fields(Take)} - {"path"}
            return Take(path=wav, **{k: v for k, v in d.items() if k in fields})
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable take details (%s)", side, exc)
            return None

    def takes(self, limit: int | None = None) -> list[Take]:
        """The takes whose WAV and sidecar are both there, newest first."""
        if not self.root.is_dir():
            return []
        out = []
        for wav in self.root.glob("*.wav"):
            if wav.name.startswith(".") or not wav.with_suffix(".json").is_file():
                continue
            t = self.load(wav)
            if t is not None:
                out.append(t)
        out.sort(key=lambda t: (t.created, t.path.name), reverse=True)
        return out[:limit] if limit is not None else out

    def finish(self, take: Take, *, grid_s: float | None = None, state: str = "done") -> Take:
        """Trim ``take`` (in whole ``grid_s`` periods at the start when given) and mark it
        ``state``. A take that cannot be trimmed is kept whole (its note says why)."""
        import soundfile as sf

        try:
            trim_take(take.path, grid_s=grid_s)
        except RecordingError as exc:
            take.note = str(exc)
        try:
            take.duration = float(sf.info(str(take.path)).duration)
        except (OSError, RuntimeError) as exc:
            take.note = f"{take.path}: unreadable after recording ({exc})."
        take.state = state
        self.save(take)
        return take

    def recover(self) -> list[Take]:
        """Repair and finish every take left in state ``"recording"`` (a crash or a kill cut
        it short). Returns those recovered; a take that cannot be repaired is left as it is
        and logged."""
        fixed = []
        for take in self.takes():
            if take.state != "recording":
                continue
            if not take.path.is_file():  # stopped before any audio was written
                take.sidecar.unlink(missing_ok=True)
                continue
            try:
                repair_wav_header(take.path)
            except (OSError, RecordingError) as exc:
                log.warning("%s: %s", take.path, exc)
                continue
            grid = 4 * 60.0 / take.tempo_bpm if take.tempo_bpm else None
            take.note = "recovered after the app stopped during the recording"
            fixed.append(self.finish(take, grid_s=grid, state="recovered"))
        return fixed

    def rename(self, take: Take, name: str) -> Take:
        """Give ``take`` a new name (its files are renamed to it too).

        Raises
        ------
        RecordingError
            An empty name, or the files cannot be renamed.
        """
        name = name.strip()
        if not name:
            raise RecordingError("A take needs a name.")
        new = self._free_path(name, keep=take.path)
        try:
            if new != take.path:
                take.path.rename(new)
                take.sidecar.rename(new.with_suffix(".json"))
        except OSError as exc:
            raise RecordingError(f"{take.path}: the take cannot be renamed "
                                 f"({exc.strerror or exc}).") from exc
        renamed = dataclasses.replace(take, path=new, name=name)
        self.save(renamed)
        return renamed

    def delete(self, take: Take) -> None:
        """Delete the take's WAV and sidecar.

        Raises
        ------
        RecordingError
            The files cannot be deleted.
        """
        try:
            take.path.unlink(missing_ok=True)
            take.sidecar.unlink(missing_ok=True)
        except OSError as exc:
            raise RecordingError(f"{take.path}: the take cannot be deleted "
                                 f"({exc.strerror or exc}).") from exc
