"""Microphone takes written to disk as they are recorded (no sound card code here).

The audio callback (``gui/recorder.py``) only copies each block into a :class:`RingBuffer`;
a :class:`TakeWriter` thread drains it into a WAV file opened with ``soundfile`` and flushes
it every second, so the header is valid up to the last second written. A take cut short by a
crash or a kill is repaired at the next start (:func:`repair_wav_header` sets the RIFF and
data sizes from the file's length). Once stopped, the take is trimmed of its leading and
trailing silence (:func:`trim_take`), in whole bars when it was recorded to a metronome, so
its beat grid stays at 0 and its tempo is exact (the query gets ``tempo`` and ``first_beat=0``).

The :class:`Metronome` renders clicks into an output block from two preallocated clicks.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write
from core.errors import CrossmixError

FloatArray = npt.NDArray[np.float32]

#: libsndfile subtype of takes: 24-bit PCM keeps a quiet voice's detail with headroom.
TAKE_SUBTYPE = "PCM_24"
#: How often the writer updates the WAV header on disk (seconds of wall time).
FLUSH_INTERVAL_S = 1.0


class RecordingError(CrossmixError):
    """A take could not be recorded or written (no device, disk full, read-only folder)."""


# --- ring buffer ------------------------------------------------------------------------------


class RingBuffer:
    """A single-producer single-consumer ring of ``capacity`` frames of float32 audio.

    The producer (the audio callback) calls :meth:`write`; the consumer (the writer thread)
    calls :meth:`read_into`. Each side only advances its own counter (a Python int stored in
    one attribute, so the other side sees the old or the new value), hence no lock: the
    producer never waits. When the ring is full the frames that do not fit are dropped and
    counted (:attr:`overflow_frames`, :attr:`overflows`): a take loses a block rather than
    stalling the audio thread.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError("a ring buffer needs at least one frame and one channel")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf: FloatArray = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._written = 0  # frames ever written (producer only)
        self._read = 0  # frames ever read (consumer only)
        self.overflow_frames = 0
        self.overflows = 0

    @property
    def available(self) -> int:
        """Frames written and not read yet."""
        return self._written - self._read

    def write(self, block: npt.NDArray[Any]) -> int:
        """Copy ``block`` (``(frames, channels)``) in; returns the frames kept. Allocates no
        buffer: at most two slice copies into the preallocated array."""
        n = int(block.shape[0])
        free = self.capacity - (self._written - self._read)
        if n > free:
            self.overflow_frames += n - free
            self.overflows += 1
            n = free
        if n <= 0:
            return 0
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start:start + first] = block[:first]
        if first < n:
            self._buf[:n - first] = block[first:n]
        self._written += n  # published last: the reader never sees frames not yet copied
        return n

    def read_into(self, out: FloatArray) -> int:
        """Copy up to ``len(out)`` frames into ``out``; returns how many."""
        n = min(int(out.shape[0]), self._written - self._read)
        if n <= 0:
            return 0
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start:start + first]
        if first < n:
            out[first:n] = self._buf[:n - first]
        self._read += n
        return n


# --- the writer thread ------------------------------------------------------------------------


class TakeWriter:
    """Drains a :class:`RingBuffer` into a WAV file on its own thread.

    The file is opened (created) by the constructor, so a folder that may not be written or a
    full disk fails at once, as a :class:`RecordingError`. While running, an error (the disk
    filling up) stops the writer and is kept in :attr:`error`; what was written stays valid.
    """

    def __init__(self, path: str | Path, ring: RingBuffer, *, samplerate: int,
                 poll_s: float = 0.05, flush_s: float = FLUSH_INTERVAL_S,
                 chunk_frames: int = 1 << 15) -> None:
        import soundfile as sf

        self.path = Path(path)
        self.ring = ring
        self.samplerate = int(samplerate)
        self.poll_s = poll_s
        self.flush_s = flush_s
        self.frames_written = 0
        self.error: str | None = None
        self.max_backlog = 0  # most frames waiting in the ring at one time (bench figure)
        self._chunk: FloatArray = np.zeros((chunk_frames, ring.channels), dtype=np.float32)
        self._stop = threading.Event()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(str(self.path), "w", samplerate=self.samplerate,
                                      channels=ring.channels, format="WAV",
                                      subtype=TAKE_SUBTYPE)
        except (OSError, RuntimeError) as exc:  # soundfile raises LibsndfileError(RuntimeError)
            raise RecordingError(
                f"{self.path}: the take cannot be written there ({_why(exc, self.path)}). "
                "Choose another data folder (CROSSMIX_DATA_DIR) or free some space.") from exc
        self._thread = threading.Thread(target=self._run, name="crossmix-take-writer",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _drain(self) -> int:
        total = 0
        while True:
            n = self.ring.read_into(self._chunk)
            if n == 0:
                return total
            self._file.write(self._chunk[:n])
            self.frames_written += n
            total += n

    def _run(self) -> None:
        last_flush = time.monotonic()
        try:
            while not self._stop.is_set():
                self.max_backlog = max(self.max_backlog, self.ring.available)
                self._drain()
                now = time.monotonic()
                if now - last_flush >= self.flush_s:
                    self._file.flush()  # libsndfile rewrites the header's sizes
                    last_flush = now
                self._stop.wait(self.poll_s)
            self._drain()
        except (OSError, RuntimeError) as exc:
            self.error = (f"{self.path}: writing the take stopped after "
                          f"{self.frames_written / self.samplerate:.1f} s "
                          f"({_why(exc, self.path)}); what was recorded until then is kept.")
        finally:
            try:
                self._file.close()
            except (OSError, RuntimeError):
                pass
            if self.error is not None:  # a failed write may leave the header behind
                try:
                    repair_wav_header(self.path)
                except (OSError, RecordingError):
                    pass

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is left in the ring, close the file (header final) and end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not self._file.closed:  # never started
            self._file.close()


def _why(exc: BaseException, path: Path) -> str:
    text = str(exc)
    # libsndfile reports a failed write as "System error": the free space tells why.
    try:
        full = free_bytes(path.parent) < (1 << 20)
    except OSError:
        full = False
    if full or "No space" in text or getattr(exc, "errno", None) == 28:
        return "the disk is full"
    if isinstance(exc, PermissionError) or "ermission" in text or "ead-only" in text:
        return f"the folder {path.parent} may not be written"
    return text


# --- WAV header repair ------------------------------------------------------------------------


def repair_wav_header(path: str | Path) -> int:
    """Set the RIFF and ``data`` chunk sizes of a WAV file from the file's length.

    A take whose writer was killed has the sizes of its last flush (or 0): the samples are
    all there, only the header undercounts them. Returns the frames the file now holds.

    Raises
    ------
    RecordingError
        Not a WAV file, or no ``fmt``/``data`` chunk.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise RecordingError(f"{p}: not a WAV file, so it cannot be repaired.")
        pos = 12
        block_align = 0
        while pos + 8 <= size:
            fh.seek(pos)
            cid, csize = struct.unpack("<4sI", fh.read(8))
            if cid == b"fmt ":
                fmt = fh.read(16)
                block_align = struct.unpack("<H", fmt[12:14])[0]
            if cid == b"data":
                if block_align <= 0:
                    raise RecordingError(f"{p}: the WAV file has no format chunk before its data.")
                data_bytes = size - (pos + 8)
                data_bytes -= data_bytes % block_align
                fh.seek(pos + 4)
                fh.write(struct.pack("<I", data_bytes))
                fh.seek(4)
                fh.write(struct.pack("<I", pos + 8 + data_bytes - 8))
                fh.truncate(pos + 8 + data_bytes)
                return data_bytes // block_align
            pos += 8 + csize + (csize & 1)
    raise RecordingError(f"{p}: the WAV file has no data chunk.")


# --- trimming ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Trim:
    """Where the voice is in a take: ``[start, end)`` frames of the untrimmed file."""

    start: int
    end: int
    samplerate: int
    silent: bool = False  # nothing above the threshold: the take is kept whole

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / self.samplerate


def find_voice(path: str | Path, *, window_s: float = 0.02, floor_db: float = -60.0,
               below_peak_db: float = 35.0, pad_s: float = 0.15,
               grid_s: float | None = None) -> Trim:
    """The span of ``path`` holding sound: windows whose RMS is above
    ``max(floor_db, loudest window - below_peak_db)`` dBFS, with ``pad_s`` kept either side.
    With ``grid_s`` (a bar, when recorded to a metronome) the start moves back to a whole
    number of grid periods, so the take still starts on the grid. Reads in blocks."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        sr = int(f.samplerate)
        total = int(f.frames)
        win = max(1, int(round(window_s * sr)))
        levels: list[float] = []
        for block in f.blocks(blocksize=win * 512, dtype="float32", always_2d=True):
            n = block.shape[0] // win * win
            if n:
                w = block[:n].reshape(-1, win, block.shape[1])
                levels.extend(np.sqrt(np.mean(w.astype(np.float64) ** 2, axis=(1, 2))).tolist())
            if block.shape[0] > n:
                rest = block[n:].astype(np.float64)
                levels.append(float(np.sqrt(np.mean(rest ** 2))))
    if not levels:
        return Trim(0, total, sr, silent=True)
    db = 20 * np.log10(np.maximum(np.asarray(levels), 1e-10))
    threshold = max(floor_db, float(db.max()) - below_peak_db)
    loud = np.flatnonzero(db > threshold)
    if loud.size == 0:
        return Trim(0, total, sr, silent=True)
    pad = int(round(pad_s * sr))
    start = max(0, int(loud[0]) * win - pad)
    end = min(total, (int(loud[-1]) + 1) * win + pad)
    if grid_s:
        period = grid_s * sr
        start = int(np.floor(start / period) * period)
    return Trim(start, end, sr)


def trim_take(path: str | Path, *, grid_s: float | None = None) -> Trim:
    """Cut ``path`` to :func:`find_voice`'s span, in place (written beside it, then renamed)."""
    import soundfile as sf

    trim = find_voice(path, grid_s=grid_s)
    p = Path(path)
    with sf.SoundFile(str(p)) as src:
        if trim.silent or (trim.start == 0 and trim.end >= src.frames):
            return trim
        try:
            with atomic_write(p, suffix=".part.wav") as tmp, \
                    sf.SoundFile(str(tmp), "w", samplerate=src.samplerate,
                                 channels=src.channels, format="WAV",
                                 subtype=TAKE_SUBTYPE) as dst:
                src.seek(trim.start)
                left = trim.end - trim.start
                while left > 0:
                    block = src.read(min(left, 1 << 16), dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break
                    dst.write(block)
                    left -= block.shape[0]
        except (OSError, RuntimeError) as exc:
            raise RecordingError(f"{p}: the take could not be trimmed ({_why(exc, p)}); it is "
                                 "kept untrimmed.") from exc
    return trim


# --- the metronome ----------------------------------------------------------------------------


def click(sr: int, *, freq: float, seconds: float = 0.03, amp: float = 0.5) -> FloatArray:
    """A short decaying sine: one metronome click."""
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * np.exp(-t / (seconds / 5))).astype(np.float32)


class Metronome:
    """Clicks at ``bpm`` into output blocks: a higher click on each bar's first beat.

    ``count_in_beats`` beats are always played; after them the clicks go on only when
    ``keep_going``. :meth:`fill` runs in the output callback: it writes into the block it is
    given from the two clicks made here, and allocates nothing.
    """

    def __init__(self, sr: int, bpm: float, *, beats_per_bar: int = 4, count_in_beats: int = 4,
                 keep_going: bool = True) -> None:
        if bpm <= 0:
            raise ValueError("a tempo must be positive")
        self.sr = int(sr)
        self.period = 60.0 * sr / bpm  # frames per beat (fractional: no drift)
        self.beats_per_bar = beats_per_bar
        self.count_in_beats = count_in_beats
        self.keep_going = keep_going
        self._accent = click(sr, freq=1760.0)
        self._beat = click(sr, freq=880.0)
        self.pos = 0  # frames rendered so far
        self.clicks = 0

    def fill(self, out: npt.NDArray[np.float32]) -> None:
        """Render the next ``len(out)`` frames (``(frames, channels)``) of clicks into ``out``."""
        out.fill(0.0)
        frames = out.shape[0]
        start, end = self.pos, self.pos + frames
        beat = int(max(0.0, np.ceil((start - len(self._beat)) / self.period)))
        while True:
            b0 = int(round(beat * self.period))
            if b0 >= end:
                break
            if beat < self.count_in_beats or self.keep_going:
                c = self._accent if beat % self.beats_per_bar == 0 else self._beat
                a = max(start, b0)
                z = min(end, b0 + len(c))
                if z > a:
                    out[a - start:z - start] += c[a - b0:z - b0, None]
                    if a == b0:
                        self.clicks += 1
            beat += 1
        self.pos = end


def free_bytes(folder: str | Path) -> int:
    """Bytes free on the disk holding ``folder`` (its nearest existing parent)."""
    import shutil

    p = Path(folder)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def can_write(folder: str | Path) -> bool:
    """Whether files may be created in ``folder`` (created when missing)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)
