"""A tiny labelled song folder for tests and benchmarks: sine "singers" over noise.

Each singer has its own timbre (harmonic amplitudes, a formant-like resonance), pitch range
and vibrato; each song is a random melody of that singer over a random accompaniment
(filtered noise and a drone chord that do not depend on the singer). Songs are written as
``singer_XX/song_YY/mix.wav`` and ``vocals.wav`` (22 050 Hz mono) with a ``manifest.csv``
(``path,singer,song,vocals``). Seeded, so a folder is the same on every run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def _singer(rng: np.random.Generator) -> dict[str, float | np.ndarray]:
    return {
        "base": float(rng.uniform(48, 72)),  # MIDI pitch centre
        "harm": rng.uniform(0.05, 1.0, size=12) * (1.0 / np.arange(1, 13)) ** rng.uniform(0.3, 1.5),
        "formant": float(rng.uniform(500, 3500)),
        "vib_rate": float(rng.uniform(3.5, 7.5)),
        "vib_depth": float(rng.uniform(0.05, 0.6)),
    }


def _vocal(s: dict[str, float | np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SR)
    note_len = int(rng.uniform(0.25, 0.6) * SR)
    pitches = float(s["base"]) + rng.choice([-5, -3, 0, 2, 4, 7], size=n // note_len + 1)
    midi = np.repeat(pitches, note_len)[:n]
    t = np.arange(n) / SR
    midi = midi + float(s["vib_depth"]) * np.sin(2 * np.pi * float(s["vib_rate"]) * t)
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    harm = np.asarray(s["harm"])
    out = np.zeros(n)
    for h, a in enumerate(harm, start=1):
        fh = f0 * h
        gain = a * (1.0 + 2.0 * np.exp(-((fh - float(s["formant"])) / 400.0) ** 2))
        out += np.where(fh < SR / 2 - 500, gain, 0.0) * np.sin(h * phase)
    # phrases: sing 75% of the time
    gate = np.repeat(rng.random(n // SR + 1) < 0.75, SR)[:n].astype(float)
    gate = np.convolve(gate, np.ones(441) / 441, mode="same")
    out *= gate
    return 0.25 * out / max(1e-9, float(np.max(np.abs(out))))


def _accompaniment(seconds: float, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * SR)
    noise = rng.standard_normal(n)
    k = int(rng.integers(2, 40))
    noise = np.convolve(noise, np.ones(k) / k, mode="same")
    t = np.arange(n) / SR
    root = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5))
    acc = 0.05 * noise / max(1e-9, float(np.std(noise))) + 0.05 * chord
    return np.asarray(acc)


def make_toy_corpus(out: str | Path, *, singers: int = 6, songs: int = 3, seconds: float = 8.0,
                    seed: int = 0) -> Path:
    """Write the folder (see the module docstring); returns ``out``."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(singers):
        s = _singer(np.random.default_rng([seed, i]))
        for j in range(songs):
            rng = np.random.default_rng([seed, i, j, 1])
            voc = _vocal(s, seconds, rng)
            mix = voc + _accompaniment(seconds, rng)
            d = root / f"singer_{i:02d}" / f"song_{j:02d}"
            d.mkdir(parents=True, exist_ok=True)
            sf.write(d / "mix.wav", mix.astype(np.float32), SR)
            sf.write(d / "vocals.wav", voc.astype(np.float32), SR)
            rows.append([f"{d.relative_to(root)}/mix.wav", f"Singer {i:02d}", f"song {j}",
                         f"{d.relative_to(root)}/vocals.wav"])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "singer", "song", "vocals"])
        w.writerows(rows)
    return root
