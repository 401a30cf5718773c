"""Microphone recording with sounddevice: an input stream whose callback only fills a ring
buffer, a writer thread that puts it on disk (``core.audio.recording``), and an optional metronome
on the output device that is never recorded (it is another stream).

The input callback copies each block into the preallocated :class:`core.audio.recording.RingBuffer`
and keeps the block's peak for the level meter; it allocates no buffer and does no I/O. The
GUI polls the recorder with a timer: level, elapsed time, and whether the writer failed (disk
full) or the device stopped delivering audio (unplugged): then the take is stopped and kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from core.audio.recording import Metronome, RecordingError, RingBuffer, TakeWriter, free_bytes

log = logging.getLogger(__name__)

#: Frames per callback (as playback's): about 23 ms at 44.1 kHz.
BLOCKSIZE = 1024
#: Seconds of audio the ring holds: the writer may fall that far behind before a block is lost.
RING_SECONDS = 20.0
#: Longest the GUI thread waits for a stream to close: a device that hangs (stops delivering
#: without an error) blocks PortAudio's abort until it wakes; the close then goes on in the
#: background.
CLOSE_WAIT_S = 1.0
#: A take needs at least this much free disk to start (about 6 min of 48 kHz mono 24-bit).
MIN_FREE_BYTES = 50 * 1024 * 1024


def input_device_status(device: str | int | None = None) -> tuple[bool, str]:
    """``(True, description)`` when an input device can be used, else ``(False, reason)``."""
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        return False, (f"Recording is off: the PortAudio library could not be loaded ({exc}). "
                       "Install libportaudio2.")
    try:
        dev = None if device in (None, "") else device
        info = sd.query_devices(dev, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        if device not in (None, ""):
            return False, (f"Recording is off: the input device {device!r} was not found "
                           f"({exc}). Plug it in, or choose another one in Settings.")
        return False, ("Recording is off: no microphone or other audio input was found on this "
                       "computer. Connect one, then choose it in Settings ▸ Audio input device.")
    if int(info.get("max_input_channels", 0)) < 1:
        return False, f"Recording is off: {info.get('name')} has no input channels."
    return True, str(info.get("name", "default"))


def list_input_devices() -> list[str]:
    """Names of the input devices PortAudio knows (empty when none or no PortAudio)."""
    try:
        import sounddevice as sd

        return [str(d["name"]) for d in sd.query_devices() if d["max_input_channels"] > 0]
    except Exception:  # noqa: BLE001 - no PortAudio means no devices
        return []


def _close(streams: list[Any]) -> None:
    for stream in streams:
        try:
            stream.abort()
            stream.close()
        except Exception as exc:  # noqa: BLE001 - closing a dead stream must not raise
            log.warning("closing the audio stream: %s", exc)


@dataclasses.dataclass
class RecordingStats:
    """What happened during a take (the bench and the take's sidecar report it)."""

    path: Path
    samplerate: int
    frames: int  # frames written to the file
    callbacks: int
    status_flags: int  # callbacks that reported any status flag (PortAudio)
    input_overflows: int  # of which input overflows (the device dropped input)
    ring_overflows: int  # blocks the ring could not take (the writer fell behind)
    ring_overflow_frames: int
    output_underflows: int  # metronome blocks the output device played late
    max_backlog_s: float  # longest the writer fell behind, seconds
    latency_s: float  # input + output latency skipped after the count-in
    clicks: int = 0  # metronome clicks played (count-in included)
    error: str = ""  # why it stopped early ("" when stopped by the user)

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0

    @property
    def dropouts(self) -> int:
        return self.input_overflows + self.ring_overflows


class Recorder(QObject):
    """Records one take at a time from the input device; methods run on the GUI thread."""

    level_changed = Signal(float)  # peak in dBFS since the last poll (-inf: silence)
    elapsed_changed = Signal(float)  # seconds of the take recorded so far
    counting_in = Signal(int)  # beats of the count-in left (0: recording)
    stopped = Signal(object)  # RecordingStats (its error says why when the take stopped itself)

    def __init__(self, parent: QObject | None = None, *, input_device: str | int | None = None,
                 output_device: str | int | None = None, poll_ms: int = 50,
                 stall_s: float = 2.0) -> None:
        super().__init__(parent)
        self.input_device = input_device
        self.output_device = output_device
        self.stall_s = stall_s
        self._in: Any = None
        self._out: Any = None
        self._ring: RingBuffer | None = None
        self._writer: TakeWriter | None = None
        self._metronome: Metronome | None = None
        self.samplerate = 0
        self._skip = 0  # input frames still to drop (count-in and latency); callback writes
        self._beat_frames = 0.0
        self._peak = 0.0  # callback writes, poll reads and resets
        self._frames_in = 0  # frames put in the ring
        self._callbacks = 0
        self._status_flags = 0
        self._input_overflows = 0
        self._output_underflows = 0
        self._latency_s = 0.0
        self._last_frames = 0
        self._last_progress = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._poll)

    @property
    def recording(self) -> bool:
        return self._writer is not None

    @property
    def frames_recorded(self) -> int:
        return self._frames_in

    # --- start / stop -----------------------------------------------------------------------

    def start(self, path: str | Path, *, bpm: float | None = None, metronome: bool = False,
              count_in_bars: int = 0, beats_per_bar: int = 4) -> None:
        """Start recording into ``path`` (a new WAV). With ``bpm`` and ``metronome`` or a
        count-in, clicks play on the output device (``count_in_bars`` bars before the take
        starts; the whole take when ``metronome``).

        Raises
        ------
        RecordingError
            No input device, the device refuses to open, or the take cannot be written.
        """
        if self.recording:
            raise RecordingError("A take is already being recorded.")
        ok, reason = input_device_status(self.input_device)
        if not ok:
            raise RecordingError(reason)
        path = Path(path)
        try:
            free = free_bytes(path.parent)
        except OSError:
            free = MIN_FREE_BYTES
        if free < MIN_FREE_BYTES:
            raise RecordingError(f"{path.parent}: the disk holding your takes has only "
                                 f"{free / 1e6:.0f} MB free. Free some space, then record.")
        import sounddevice as sd

        dev_in = None if self.input_device in (None, "") else self.input_device
        info = sd.query_devices(dev_in, kind="input")
        sr = int(info["default_samplerate"])
        clicks = bool(bpm) and (metronome or count_in_bars > 0)
        ring = RingBuffer(int(RING_SECONDS * sr), channels=1)
        writer = TakeWriter(path, ring, samplerate=sr)  # raises RecordingError
        self._reset_counters()
        self.samplerate = sr
        self._ring = ring
        self._beat_frames = 60.0 * sr / bpm if bpm else 0.0
        self._skip = int(round(count_in_bars * beats_per_bar * self._beat_frames)) if clicks else 0
        try:
            if clicks:
                self._open_metronome(sd, float(bpm or 0), count_in_bars * beats_per_bar,
                                     keep_going=metronome, beats_per_bar=beats_per_bar)
            self._in = sd.InputStream(samplerate=sr, channels=1, dtype="float32", device=dev_in,
                                      blocksize=BLOCKSIZE, callback=self._in_callback)
            if self._out is not None:
                # Heard after the output latency, sung into the input's: skipped with the count-in.
                self._latency_s = float(self._in.latency) + float(self._out.latency)
                self._skip += int(round(self._latency_s * sr))
                self._out.start()
            self._in.start()
        except Exception as exc:  # noqa: BLE001 - PortAudio refuses the device or the format
            self._close_streams()
            writer.stop()
            Path(path).unlink(missing_ok=True)
            raise RecordingError(f"Recording could not start: the audio device refused to open "
                                 f"({exc}). Choose another input device in Settings.") from exc
        writer.start()
        self._writer = writer
        self._last_progress = time.monotonic()
        self._timer.start()

    def _open_metronome(self, sd: Any, bpm: float, count_in_beats: int, *, keep_going: bool,
                        beats_per_bar: int) -> None:
        dev_out = None if self.output_device in (None, "") else self.output_device
        try:
            out = sd.query_devices(dev_out, kind="output")
        except (ValueError, sd.PortAudioError) as exc:
            raise RecordingError(f"The metronome needs an audio output device ({exc}); turn the "
                                 "metronome and the count-in off to record without it.") from exc
        sr = int(out["default_samplerate"])
        channels = max(1, min(2, int(out["max_output_channels"])))
        self._metronome = Metronome(sr, bpm, beats_per_bar=beats_per_bar,
                                    count_in_beats=count_in_beats, keep_going=keep_going)
        self._out = sd.OutputStream(samplerate=sr, channels=channels, dtype="float32",
                                    device=dev_out, blocksize=BLOCKSIZE,
                                    callback=self._out_callback)

    def stop(self, error: str = "") -> RecordingStats | None:
        """Stop the take: the streams close, the writer empties the ring and closes the file
        (its header final). Emits and returns the :class:`RecordingStats`."""
        writer, ring = self._writer, self._ring
        if writer is None or ring is None:
            return None
        self._timer.stop()
        self._close_streams()
        writer.stop()
        self._writer = None
        stats = RecordingStats(
            path=writer.path, samplerate=self.samplerate, frames=writer.frames_written,
            callbacks=self._callbacks, status_flags=self._status_flags,
            input_overflows=self._input_overflows, ring_overflows=ring.overflows,
            ring_overflow_frames=ring.overflow_frames, output_underflows=self._output_underflows,
            max_backlog_s=writer.max_backlog / self.samplerate, latency_s=self._latency_s,
            clicks=self._metronome.clicks if self._metronome is not None else 0,
            error=error or (writer.error or ""))
        self.stopped.emit(stats)
        return stats

    def _reset_counters(self) -> None:
        self._peak = 0.0
        self._frames_in = self._callbacks = self._status_flags = 0
        self._input_overflows = self._output_underflows = 0
        self._latency_s = 0.0
        self._last_frames = 0
        self._metronome = None

    def _close_streams(self) -> None:
        streams = [s for s in (self._in, self._out) if s is not None]
        self._in = self._out = None
        self._ring = None  # a callback still running from here on writes nothing
        if not streams:
            return
        closer = threading.Thread(target=_close, args=(streams,), name="crossmix-close-streams",
                                  daemon=True)
        closer.start()
        closer.join(CLOSE_WAIT_S)
        if closer.is_alive():
            log.warning("the audio device did not close within %.1f s; closing it in the "
                        "background", CLOSE_WAIT_S)

    # --- callbacks (PortAudio's threads) ----------------------------------------------------

    def _in_callback(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        # No buffers allocated, no I/O: a peak, counters, and the copy into the ring.
        self._callbacks += 1
        if status:
            self._status_flags += 1
            if status.input_overflow:
                self._input_overflows += 1
        peak = max(float(indata.max()), -float(indata.min())) if frames else 0.0
        if peak > self._peak:
            self._peak = peak
        skip = self._skip
        if skip > 0:
            if frames <= skip:
                self._skip = skip - frames
                return
            indata = indata[skip:]
            self._skip = 0
        ring = self._ring
        if ring is not None:
            self._frames_in += ring.write(indata)

    def _out_callback(self, outdata: np.ndarray, _frames: int, _time: Any, status: Any) -> None:
        if status and status.output_underflow:
            self._output_underflows += 1
        m = self._metronome
        if m is None:
            outdata.fill(0.0)
        else:
            m.fill(outdata)

    # --- polling (GUI thread) ---------------------------------------------------------------

    def _poll(self) -> None:
        writer = self._writer
        if writer is None:
            return
        peak, self._peak = self._peak, 0.0
        self.level_changed.emit(20 * math.log10(peak) if peak > 0 else -math.inf)
        # The skip is the count-in, then the latency: beats left of the count-in proper.
        left = self._skip - int(round(self._latency_s * self.samplerate))
        self.counting_in.emit(int(math.ceil(left / self._beat_frames))
                              if left > 0 and self._beat_frames else 0)
        self.elapsed_changed.emit(self._frames_in / self.samplerate)
        if writer.error is not None:
            self.stop(writer.error)
            return
        now = time.monotonic()
        moved = self._callbacks != self._last_frames
        self._last_frames = self._callbacks
        if moved:
            self._last_progress = now
        stream = self._in
        dead = stream is not None and not stream.active
        if dead or now - self._last_progress > self.stall_s:
            secs = self._frames_in / self.samplerate
            self.stop(f"The input device stopped delivering audio after {secs:.1f} s (was it "
                      "unplugged?). What was recorded until then is kept.")
