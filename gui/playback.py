"""Audio playback with sounddevice: play / pause / stop / seek over a few named sources.

A *source* is one or more layers (``(frames, 2)`` float32, C-contiguous, prepared in a worker
with :func:`playable`) summed with per-layer gains: the cross-mix is played as its vocal and
accompaniment layers so the gain sliders act at once. The PortAudio callback only copies (and
scales) from those preallocated arrays; an A-B loop only changes which frames it copies. The GUI polls the position with a timer to move the
playheads. When no output device exists the player says why and the controls are disabled.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)

BLOCKSIZE = 1024
#: Shortest A-B loop (s): shorter ones would make the callback wrap many times per block.
MIN_LOOP_S = 0.05


def output_device_status(device: str | int | None = None) -> tuple[bool, str]:
    """``(True, description)`` when an output device can be used, else ``(False, reason)``."""
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        return False, f"Playback is off: the PortAudio library could not be loaded ({exc}). " \
                      "Install libportaudio2. Export still works."
    try:
        dev = None if device in (None, "") else device
        info = sd.query_devices(dev, kind="output")
    except (ValueError, sd.PortAudioError) as exc:
        if device not in (None, ""):
            return False, f"Playback is off: the audio output device {device!r} was not found " \
                          f"({exc}). Choose another one in Settings. Export still works."
        return False, "Playback is off: no audio output device was found on this computer. " \
                      "Export still works."
    if int(info.get("max_output_channels", 0)) < 1:
        return False, f"Playback is off: {info.get('name')} has no output channels."
    return True, str(info.get("name", "default"))


def list_output_devices() -> list[str]:
    """Names of the output devices PortAudio knows (empty when none or no PortAudio)."""
    try:
        import sounddevice as sd

        return [str(d["name"]) for d in sd.query_devices() if d["max_output_channels"] > 0]
    except Exception:  # noqa: BLE001 - no PortAudio means no devices
        return []


@dataclass
class _Source:
    layers: tuple[np.ndarray, ...]
    gains: tuple[float, ...]
    sr: int
    frames: int
    offsets: tuple[int, ...] = ()  # frames each layer is delayed by (negative: advanced)


class Player(QObject):
    """Plays one of several named sources; all methods are called on the GUI thread."""

    position_changed = Signal(float)  # seconds
    state_changed = Signal(str)  # "stopped" | "playing" | "paused"
    error = Signal(str)

    def __init__(self, parent: QObject | None = None, *, device: str | int | None = None,
                 poll_ms: int = 33) -> None:
        super().__init__(parent)
        self.device = device
        self.available, self.reason = output_device_status(device)
        self._sources: dict[str, _Source] = {}
        self._current: str | None = None
        self._src: _Source | None = None  # read by the callback
        self._pos = 0  # frames; written by the callback while playing
        self._playing = False
        self._stream: Any = None
        self._callback_stop: type[Exception] = RuntimeError
        self._lock = threading.Lock()
        self.frames_written = 0  # frames of real audio handed to the device
        self.peak_written = 0.0
        self._scratch = np.zeros((BLOCKSIZE * 4, 2), dtype=np.float32)
        self._loop_s: tuple[float, float] | None = None  # A, B in seconds (any source)
        self._loop_frames: tuple[int, int] | None = None  # in the current source; callback reads
        self.state = "stopped"
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._poll)

    # --- sources ----------------------------------------------------------------------------

    def set_device(self, device: str | int | None) -> None:
        self.stop()
        self._close_stream()
        self.device = device
        self.available, self.reason = output_device_status(device)

    def set_source(self, name: str, layers: list[np.ndarray], sr: int,
                   gains: list[float] | None = None) -> None:
        """Register ``name`` as the sum of ``layers`` (each ``(frames, 2)`` float32)."""
        frames = min(int(a.shape[0]) for a in layers)
        g = tuple(gains) if gains is not None else tuple(1.0 for _ in layers)
        self._sources[name] = _Source(tuple(layers), g, int(sr), frames,
                                      tuple(0 for _ in layers))
        if name == self._current:
            self._src = self._sources[name]
            self._pos = min(self._pos, frames)
            self._update_loop_frames()

    def clear_sources(self) -> None:
        self.stop()
        self._sources.clear()
        self._current = None
        self._src = None
        self._update_loop_frames()

    # --- A-B loop ---------------------------------------------------------------------------

    def set_loop(self, a: float, b: float) -> None:
        """Loop between ``a`` and ``b`` seconds (in either order): reaching B jumps to A.

        Raises
        ------
        ValueError
            The loop is shorter than :data:`MIN_LOOP_S`.
        """
        a, b = (float(a), float(b)) if a <= b else (float(b), float(a))
        a = max(a, 0.0)
        if b - a < MIN_LOOP_S - 1e-9:
            raise ValueError(f"an A-B loop needs at least {MIN_LOOP_S * 1000:.0f} ms between A and B")
        self._loop_s = (a, b)
        self._update_loop_frames()

    def clear_loop(self) -> None:
        self._loop_s = None
        self._update_loop_frames()

    @property
    def loop(self) -> tuple[float, float] | None:
        return self._loop_s

    def _update_loop_frames(self) -> None:
        src, loop = self._src, self._loop_s
        frames: tuple[int, int] | None = None
        if src is not None and loop is not None:
            a = min(round(loop[0] * src.sr), src.frames)
            b = min(round(loop[1] * src.sr), src.frames)
            if b - a >= max(1, round(MIN_LOOP_S * src.sr)):
                frames = (a, b)
        self._loop_frames = frames  # one attribute store: the callback sees old or new

    def has_source(self, name: str) -> bool:
        return name in self._sources

    def select(self, name: str) -> None:
        """Switch to source ``name``, keeping the position (in seconds) and the play state."""
        src = self._sources[name]
        if self._src is not None and src.sr != self._src.sr:
            t = self.position
            self._pos = int(t * src.sr)
            if self._stream is not None:
                was = self._playing
                self._playing = False
                self._close_stream()
                self._src = src
                self._current = name
                self._update_loop_frames()
                if was:
                    self.play()
                return
        self._current = name
        self._pos = min(self._pos, src.frames)
        self._src = src
        self._update_loop_frames()

    @property
    def current(self) -> str | None:
        return self._current

    def set_gains(self, name: str, gains: list[float]) -> None:
        src = self._sources.get(name)
        if src is None:
            return
        src.gains = tuple(gains)  # one attribute store: the callback sees old or new

    def set_offsets(self, name: str, seconds: list[float]) -> None:
        """Delay each layer of ``name`` by ``seconds`` (negative: earlier), live: the cross-mix's
        accompaniment is moved against the vocal while it plays (silence where it runs out)."""
        src = self._sources.get(name)
        if src is None:
            return
        src.offsets = tuple(int(round(s * src.sr)) for s in seconds)  # one store, as gains

    # --- transport --------------------------------------------------------------------------

    @property
    def duration(self) -> float:
        return 0.0 if self._src is None else self._src.frames / self._src.sr

    @property
    def position(self) -> float:
        return 0.0 if self._src is None else self._pos / self._src.sr

    def play(self) -> None:
        if not self.available or self._src is None:
            return
        if self._pos >= self._src.frames:
            self._pos = 0
        try:
            self._ensure_stream()
        except Exception as exc:  # noqa: BLE001 - the device vanished or refused the format
            self.available = False
            self.reason = f"Playback is off: the audio device could not be opened ({exc})."
            self.error.emit(self.reason)
            self._set_state("stopped")
            return
        self._playing = True
        self._timer.start()
        self._set_state("playing")

    def pause(self) -> None:
        if self._playing:
            self._playing = False
            self._close_stream()
            self._timer.stop()
            self._set_state("paused")
            self.position_changed.emit(self.position)

    def toggle(self) -> None:
        if self._playing:
            self.pause()
        else:
            self.play()

    def stop(self) -> None:
        self._playing = False
        self._close_stream()
        self._timer.stop()
        self._pos = 0
        self._set_state("stopped")
        self.position_changed.emit(0.0)

    def seek(self, seconds: float) -> None:
        if self._src is None:
            return
        self._pos = int(min(max(seconds, 0.0), self.duration) * self._src.sr)
        self.position_changed.emit(self.position)

    @property
    def playing(self) -> bool:
        return self._playing

    def close(self) -> None:
        self.stop()
        self._close_stream()

    # --- internals --------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def _ensure_stream(self) -> None:
        assert self._src is not None
        if self._stream is not None and self._stream.active \
                and int(self._stream.samplerate) == self._src.sr:
            return
        self._close_stream()
        import sounddevice as sd

        dev = None if self.device in (None, "") else self.device
        self._callback_stop = sd.CallbackStop
        self._stream = sd.OutputStream(samplerate=self._src.sr, channels=2, dtype="float32",
                                       blocksize=BLOCKSIZE, device=dev, callback=self._callback)
        self._stream.start()

    def _close_stream(self) -> None:
        # Streams live only while playing: an open stream keeps the device (and, on a null
        # device, a CPU core) busy. abort() drops queued buffers so pause is immediate.
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except Exception as exc:  # noqa: BLE001 - closing a dead stream must not raise
                log.warning("closing the audio stream: %s", exc)
            self._stream = None

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        # Runs on PortAudio's thread: no buffers are allocated here, only views and copies
        # into preallocated arrays.
        src = self._src
        if not self._playing or src is None:
            outdata.fill(0)
            return
        loop = self._loop_frames
        pos = self._pos
        k = 0
        while k < frames and pos < src.frames:
            looping = loop is not None and pos < loop[1]
            stop = loop[1] if looping else src.frames  # type: ignore[index]
            n = min(frames - k, stop - pos)
            self._mix_into(src, pos, pos + n, outdata[k:k + n])
            k += n
            pos += n
            if looping and pos >= stop:
                pos = loop[0]  # type: ignore[index]
        outdata[k:] = 0
        self._pos = pos
        self.frames_written += k
        if k:
            block = outdata[:k]  # max and -min: np.abs would allocate a block
            self.peak_written = max(self.peak_written, float(block.max()), -float(block.min()))
        if pos >= src.frames:
            self._playing = False
            raise self._callback_stop  # PortAudio plays this last block, then stops

    def _mix_into(self, src: _Source, start: int, end: int, out: np.ndarray) -> None:
        gains, offsets = src.gains, src.offsets
        n = end - start
        scratch = self._scratch[:n] if n <= self._scratch.shape[0] else np.empty((n, 2), np.float32)
        for i, (layer, g) in enumerate(zip(src.layers, gains, strict=True)):
            target = out if i == 0 else scratch
            o = offsets[i] if i < len(offsets) else 0
            a = start - o  # the layer's frames that sound here: [a, a + n)
            lo, hi = max(a, 0), min(a + n, layer.shape[0])
            if lo != a or hi != a + n:  # moved past its start or end: silence there
                target.fill(0)
            if hi > lo:
                np.multiply(layer[lo:hi], g, out=target[lo - a : hi - a])
            if i:
                out += scratch

    def _poll(self) -> None:
        self.position_changed.emit(self.position)
        if not self._playing:
            self._timer.stop()
            self._close_stream()
            if self._src is not None and self._pos >= self._src.frames:
                self._pos = 0
                self._set_state("stopped")
                self.position_changed.emit(0.0)
