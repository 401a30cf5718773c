"""What the window draws and plays, computed from audio without Qt (in workers, and in the
engine adapter :mod:`gui.engine`, which must not import Qt).

:func:`envelope` reduces ``(channels, n)`` audio to min/max pairs per bin at several
resolutions for :class:`gui.waveform.WaveformView`; :func:`playable` makes the ``(frames, 2)``
float32 arrays the player's callback copies from (:class:`gui.playback.Player`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.audio.decode import Audio

#: Samples per bin at the finest level, and the factor between levels.
FINEST_BIN = 32
LEVEL_FACTOR = 4
#: Most bins drawn at once (about twice a wide screen's pixels).
MAX_DRAWN_BINS = 4000


@dataclass(frozen=True)
class Envelope:
    """Peak envelope of a signal. ``levels[i]`` is ``(lo, hi)``, each ``(bins_i,)`` float32,
    for bins of ``bin_sizes[i]`` samples at ``sr`` Hz; ``duration`` is in seconds."""

    levels: tuple[tuple[np.ndarray, np.ndarray], ...]
    bin_sizes: tuple[int, ...]
    sr: int
    duration: float

    def level_for(self, seconds_visible: float) -> int:
        """Index of the finest level drawing at most :data:`MAX_DRAWN_BINS` bins in view."""
        for i, size in enumerate(self.bin_sizes):
            if seconds_visible * self.sr / size <= MAX_DRAWN_BINS:
                return i
        return len(self.bin_sizes) - 1

    def pairs(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (s) and ``y`` for a 'pairs' line plot of the bins between ``t0`` and ``t1``."""
        t0 = max(0.0, t0)
        t1 = min(self.duration, t1)
        if t1 <= t0:
            return np.zeros(0), np.zeros(0)
        i = self.level_for(t1 - t0)
        lo, hi = self.levels[i]
        size = self.bin_sizes[i]
        a = max(0, int(t0 * self.sr / size) - 1)
        b = min(lo.size, int(np.ceil(t1 * self.sr / size)) + 1)
        x = (np.arange(a, b, dtype=np.float64) + 0.5) * size / self.sr
        xs = np.repeat(x, 2)
        ys = np.empty(2 * (b - a), dtype=np.float32)
        ys[0::2] = lo[a:b]
        ys[1::2] = hi[a:b]
        return xs, ys


def envelope(audio: Audio) -> Envelope:
    """Build the min/max pyramid of ``audio`` (channels summed to mono, peak kept per bin).

    Runs in a worker: O(n) numpy over the whole signal.
    """
    x = audio.samples
    mono = x[0] if x.shape[0] == 1 else x.mean(axis=0)
    n = mono.size
    nb = max(1, -(-n // FINEST_BIN))
    padded = np.zeros(nb * FINEST_BIN, dtype=np.float32)
    padded[:n] = mono
    blocks = padded.reshape(nb, FINEST_BIN)
    lo = blocks.min(axis=1)
    hi = blocks.max(axis=1)
    levels = [(lo, hi)]
    sizes = [FINEST_BIN]
    while lo.size > MAX_DRAWN_BINS // 2:
        m = -(-lo.size // LEVEL_FACTOR)
        lo_p = np.full(m * LEVEL_FACTOR, np.inf, dtype=np.float32)
        hi_p = np.full(m * LEVEL_FACTOR, -np.inf, dtype=np.float32)
        lo_p[: lo.size] = lo
        hi_p[: hi.size] = hi
        lo = lo_p.reshape(m, LEVEL_FACTOR).min(axis=1)
        hi = hi_p.reshape(m, LEVEL_FACTOR).max(axis=1)
        levels.append((lo, hi))
        sizes.append(sizes[-1] * LEVEL_FACTOR)
    return Envelope(tuple(levels), tuple(sizes), audio.sr, audio.duration)


def playable(audio: Audio) -> np.ndarray:
    """``(frames, 2)`` float32 C-contiguous copy of ``audio`` for the callback (run in a worker)."""
    x = audio.samples
    if x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    elif x.shape[0] > 2:
        x = x[:2]
    return np.ascontiguousarray(x.T, dtype=np.float32)
