"""Generated songs with known tempo, beats, bars and key, for analysis and remix tests.

A song is drums (kick on beats 1 and 3, snare on 2 and 4, hi-hat on every eighth), one
chord per bar from a progression in the key (harmonic tones plus a bass root) and a
"vocal": pitched, vibrato tones from the key's scale starting on beats. Everything is numpy,
seeded, 44.1 kHz stereo. The vocal and accompaniment are returned separately, so tests can
use them as perfect stems, and the beat/downbeat times are the ground truth.

Also used by ``bench/remix.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio.decode import Audio

SR = 44100
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
# Chords as (degree offset in semitones from the tonic, quality).
_MAJOR_PROG = ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj"))  # I V vi IV
_MINOR_PROG = ((0, "min"), (5, "min"), (7, "maj"), (0, "min"))  # i iv V i (harmonic-minor V)


@dataclass(frozen=True)
class SynthSong:
    mix: Audio
    vocals: Audio
    accompaniment: Audio
    beats: np.ndarray  # ground-truth beat times, s
    downbeats: np.ndarray  # ground-truth bar starts, s
    tempo: float
    key_root: int
    key_mode: str


def _env(n: int, attack: int, decay_s: float, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    e = np.exp(-t / decay_s)
    a = min(attack, n)
    e[:a] *= np.linspace(0.0, 1.0, a, endpoint=False)
    return e


def _add(buf: np.ndarray, start: int, x: np.ndarray) -> None:
    if start >= buf.size:
        return
    end = min(buf.size, start + x.size)
    buf[start:end] += x[: end - start]


def _tone(freq: float, n: int, *, partials: int, rng: np.random.Generator, vibrato: float = 0.0) -> np.ndarray:
    t = np.arange(n) / SR
    phase = 2 * np.pi * freq * t
    if vibrato:
        phase += vibrato * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi))
    out = np.zeros(n)
    for h in range(1, partials + 1):
        out += np.sin(h * phase) / h
    return out


def make_song(
    *,
    tempo: float,
    key_root: int,
    key_mode: str = "major",
    seconds: float = 20.0,
    first_beat: float = 0.5,
    seed: int = 0,
    vocal: bool = True,
) -> SynthSong:
    """A song at ``tempo`` BPM in ``key_root`` (0 = C) ``key_mode``, ``seconds`` long."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    period = 60.0 / tempo
    beats = np.arange(first_beat, seconds - 0.05, period)
    downbeats = beats[::4]
    drums = np.zeros(n)
    harm = np.zeros(n)
    voc = np.zeros(n)

    kick_n = int(0.15 * SR)
    tk = np.arange(kick_n) / SR
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk / 0.03)) * 0.03 * 2)) * _env(kick_n, 20, 0.06)
    snare_n = int(0.12 * SR)
    hat_n = int(0.03 * SR)
    scale = _MAJOR_SCALE if key_mode == "major" else _MINOR_SCALE
    prog = _MAJOR_PROG if key_mode == "major" else _MINOR_PROG

    for i, b in enumerate(beats):
        s = int(round(b * SR))
        if i % 4 in (0, 2):
            _add(drums, s, 0.9 * kick)
        else:
            noise = rng.standard_normal(snare_n)
            _add(drums, s, 0.35 * noise * _env(snare_n, 10, 0.035))
        for half in (0.0, 0.5):
            hs = int(round((b + half * period) * SR))
            hat = np.diff(rng.standard_normal(hat_n + 1)) * _env(hat_n, 5, 0.008)
            _add(drums, hs, 0.12 * hat)

    bar_len = int(round(4 * period * SR))
    for j, d in enumerate(downbeats):
        off, quality = prog[j % len(prog)]
        root = key_root + off
        third = 4 if quality == "maj" else 3
        s = int(round(d * SR))
        env = _env(bar_len, 400, 2.5)
        for semis in (0, third, 7):
            f = 261.63 * 2 ** (((root + semis) % 12) / 12)
            harm[s : s + bar_len] += (0.09 * _tone(f, bar_len, partials=4, rng=rng) * env)[: max(0, min(bar_len, n - s))]
        fb = 65.41 * 2 ** ((root % 12) / 12)
        harm[s : s + bar_len] += (0.18 * _tone(fb, bar_len, partials=3, rng=rng) * env)[: max(0, min(bar_len, n - s))]

    if vocal:
        note_n = int(0.8 * period * SR)
        for b in beats:
            if rng.random() < 0.15:
                continue  # a rest now and then
            degree = scale[int(rng.integers(0, len(scale)))]
            f = 392.0 * 2 ** (((key_root + degree - 7) % 12) / 12)
            env = _env(note_n, 150, 0.6) * np.minimum(1.0, np.linspace(8.0, 0.0, note_n))
            _add(voc, int(round(b * SR)), 0.25 * _tone(f, note_n, partials=6, rng=rng, vibrato=0.3) * env)

    acc = drums + harm
    pan = np.array([[0.9], [1.1]])
    acc_st = (pan * acc[None, :]).astype(np.float32)
    voc_st = np.stack([voc, voc]).astype(np.float32)
    mix = (acc_st + voc_st).astype(np.float32)
    return SynthSong(
        mix=Audio(mix, SR),
        vocals=Audio(voc_st, SR),
        accompaniment=Audio(acc_st, SR),
        beats=beats,
        downbeats=downbeats,
        tempo=tempo,
        key_root=key_root,
        key_mode=key_mode,
    )


def write_song(path: Path, seconds: float, *, tempo: float, key: int, seed: int) -> Path:
    """:func:`make_song`'s mix written to ``path`` as 16-bit WAV (benches and scripts)."""
    import soundfile as sf

    s = make_song(tempo=tempo, key_root=key, seconds=seconds, seed=seed)
    sf.write(path, s.mix.samples.T, s.mix.sr, subtype="PCM_16")
    return path


def write_library(folder: Path, n: int, *, seconds: float = 30.0) -> list[Path]:
    """``n`` songs of random tempo (80-150 BPM) and key in ``folder`` (created), the same ones every time."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    return [write_song(folder / f"song{i:02d}.wav", seconds, tempo=float(rng.uniform(80, 150)),
                       key=int(rng.integers(12)), seed=100 + i) for i in range(n)]
