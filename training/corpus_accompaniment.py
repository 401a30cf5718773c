"""Accompaniment: drums, bass, chords and a pad as MIDI (pretty_midi), rendered by fluidsynth.

Every render starts a fresh ``fluidsynth`` process on the General MIDI soundfont, so the
output depends on the MIDI file alone (checked bit-identical in ``tests/test_corpus.py``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pretty_midi
import soundfile as sf

from core.errors import TrainingError
from training.corpus_melody import SongPlan

SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
SR = 44100

# General MIDI programs (0-based) per style: (bass, chords, pad) candidates.
_PROGRAMS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "pop": ((33, 34, 38), (0, 4, 25), (48, 89, 50)),
    "rock": ((34, 33, 35), (29, 27, 25), (48, 16)),
    "ballad": ((32, 33, 35), (0, 4, 46), (89, 48, 52, 91)),
    "dance": ((38, 39, 87), (81, 80, 4), (90, 88, 94)),
    "funk": ((36, 37, 33), (27, 28, 17), (16, 18, 61)),
    "bossa": ((32, 33), (24, 0, 11), (48, 49, 52)),
}

KICK, SNARE, STICK, CLAP, HAT, PEDAL_HAT, OPEN_HAT, RIDE, CRASH, SHAKER = (
    36, 38, 37, 39, 42, 44, 46, 51, 49, 70)


def soundfont_path() -> Path:
    for p in SOUNDFONT_CANDIDATES:
        if p.is_file():
            return p
    raise TrainingError(
        "No General MIDI soundfont found (looked for "
        + ", ".join(str(p) for p in SOUNDFONT_CANDIDATES)
        + "). Install it with: sudo apt-get install fluid-soundfont-gm"
    )


def _triad(root: int, quality: str, low: int = 55) -> list[int]:
    third = 4 if quality == "maj" else 3
    base = low + ((root - low) % 12)
    return sorted(n if n < low + 14 else n - 12 for n in (base, base + third, base + 7))


class _Track:
    def __init__(self, rng: np.random.Generator, program: int, *, drum: bool = False) -> None:
        self.inst = pretty_midi.Instrument(program=program, is_drum=drum)
        self.rng = rng

    def add(self, pitch: int, start: float, end: float, velocity: int, *, limit: float) -> None:
        if start >= limit:
            return
        vel = int(np.clip(velocity + self.rng.integers(-8, 9), 20, 127))
        self.inst.notes.append(pretty_midi.Note(vel, int(pitch), float(start), float(min(end, limit + 0.5))))


def build_midi(plan: SongPlan, *, rng: np.random.Generator) -> pretty_midi.PrettyMIDI:
    """The accompaniment of ``plan`` as General MIDI: drums, bass, chords and a pad."""
    style = plan.style
    bass_p, chord_p, pad_p = (int(rng.choice(c)) for c in _PROGRAMS[style])
    midi = pretty_midi.PrettyMIDI(initial_tempo=plan.tempo)
    drums = _Track(rng, 0, drum=True)
    bass = _Track(rng, bass_p)
    keys = _Track(rng, chord_p)
    pad = _Track(rng, pad_p)
    beat = plan.beat_period
    e = beat / 2.0
    s = beat / 4.0
    limit = plan.seconds
    for bar, chord in enumerate(plan.chords):
        t0 = chord.start
        if t0 >= limit:
            break
        triad = _triad(chord.root, chord.quality)
        root_b = 36 + ((chord.root - 36) % 12)
        fifth_b = root_b + 7 if root_b + 7 <= 52 else root_b - 5
        if bar % 4 == 0:
            drums.add(CRASH, t0, t0 + beat, 90, limit=limit)
        pad.add(triad[0] + 12, t0, t0 + 4 * beat, 55, limit=limit)
        for n in triad[1:]:
            pad.add(n + 12, t0, t0 + 4 * beat, 50, limit=limit)
        if style == "pop":
            for b in range(4):
                drums.add(KICK if b in (0, 2) else SNARE, t0 + b * beat, t0 + b * beat + e, 100, limit=limit)
            for k in range(8):
                drums.add(HAT, t0 + k * e, t0 + k * e + s, 70 if k % 2 else 85, limit=limit)
            for k in range(8):
                bass.add(root_b, t0 + k * e, t0 + (k + 0.9) * e, 90, limit=limit)
            for b in range(4):
                for n in triad:
                    keys.add(n, t0 + b * beat, t0 + (b + 0.9) * beat, 72, limit=limit)
        elif style == "rock":
            for t, d in ((0, KICK), (1, SNARE), (2.5, KICK), (2, KICK), (3, SNARE)):
                drums.add(d, t0 + t * beat, t0 + t * beat + e, 110, limit=limit)
            for k in range(8):
                drums.add(HAT, t0 + k * e, t0 + k * e + s, 80, limit=limit)
                bass.add(root_b, t0 + k * e, t0 + (k + 0.85) * e, 100, limit=limit)
            for b in range(4):
                for n in (triad[0] - 12, triad[0] - 5, triad[0], triad[1]):
                    keys.add(n, t0 + b * beat, t0 + (b + 0.8) * beat, 75, limit=limit)
        elif style == "ballad":
            drums.add(KICK, t0, t0 + e, 90, limit=limit)
            drums.add(SNARE, t0 + 2 * beat, t0 + 2 * beat + e, 85, limit=limit)
            drums.add(KICK, t0 + 2.5 * beat, t0 + 3 * beat, 70, limit=limit)
            for b in range(4):
                drums.add(RIDE, t0 + b * beat, t0 + b * beat + e, 65, limit=limit)
            bass.add(root_b, t0, t0 + 2 * beat, 85, limit=limit)
            bass.add(fifth_b, t0 + 2 * beat, t0 + 4 * beat, 80, limit=limit)
            arp = [triad[0], triad[1], triad[2], triad[0] + 12]
            for k in range(8):
                keys.add(arp[k % 4], t0 + k * e, t0 + (k + 1.5) * e, 70, limit=limit)
        elif style == "dance":
            for b in range(4):
                drums.add(KICK, t0 + b * beat, t0 + b * beat + e, 110, limit=limit)
                drums.add(OPEN_HAT, t0 + b * beat + e, t0 + (b + 1) * beat, 75, limit=limit)
                if b % 2:
                    drums.add(CLAP, t0 + b * beat, t0 + b * beat + e, 95, limit=limit)
            for k in range(8):
                bass.add(root_b + (12 if k % 2 else 0), t0 + k * e, t0 + (k + 0.6) * e, 95, limit=limit)
            for t in (0.5, 1.5, 2.5, 3.5):
                for n in triad:
                    keys.add(n + 12, t0 + t * beat, t0 + t * beat + s, 80, limit=limit)
        elif style == "funk":
            for t in (0, 0.75, 2.5):
                drums.add(KICK, t0 + t * beat, t0 + t * beat + s, 105, limit=limit)
            for t in (1, 3):
                drums.add(SNARE, t0 + t * beat, t0 + t * beat + e, 105, limit=limit)
            drums.add(SNARE, t0 + 2.75 * beat, t0 + 3 * beat, 45, limit=limit)
            for k in range(16):
                drums.add(HAT, t0 + k * s, t0 + (k + 0.5) * s, 100 if k % 4 == 0 else 50, limit=limit)
            for t, n in ((0, root_b), (0.75, root_b + 12), (1, root_b), (2, root_b), (2.5, fifth_b),
                         (3, root_b), (3.5, root_b + 10)):
                bass.add(n, t0 + t * beat, t0 + t * beat + s * 1.5, 100, limit=limit)
            for k in (1, 3, 6, 9, 11, 14):
                for n in triad:
                    keys.add(n + 12, t0 + k * s, t0 + (k + 0.6) * s, 75, limit=limit)
        else:  # bossa
            for t, v in ((0, 95), (1, 70), (1.5, 50), (2, 95), (3, 70), (3.5, 50)):
                drums.add(KICK, t0 + t * beat, t0 + t * beat + e, v, limit=limit)
            for t in (0, 0.75, 1.5, 2.5, 3.25):
                drums.add(STICK, t0 + t * beat, t0 + t * beat + s, 80, limit=limit)
            for k in range(8):
                drums.add(SHAKER, t0 + k * e, t0 + k * e + s, 80 if k % 2 == 0 else 50, limit=limit)
            for b in range(4):
                drums.add(PEDAL_HAT, t0 + b * beat, t0 + b * beat + s, 85, limit=limit)
            bass.add(root_b, t0, t0 + 1.5 * beat, 85, limit=limit)
            bass.add(fifth_b, t0 + 1.5 * beat, t0 + 2 * beat, 55, limit=limit)
            bass.add(fifth_b, t0 + 2 * beat, t0 + 3.5 * beat, 85, limit=limit)
            bass.add(root_b, t0 + 3.5 * beat, t0 + 4 * beat, 55, limit=limit)
            for t in (0, 1, 2, 2.5, 3):
                for n in triad:
                    keys.add(n, t0 + t * beat, t0 + t * beat + e, 70, limit=limit)
    midi.instruments.extend([drums.inst, bass.inst, keys.inst, pad.inst])
    return midi


def render_midi(midi_path: Path, wav_path: Path, *, gain: float = 0.4) -> npt.NDArray[np.float32]:
    """Render ``midi_path`` with a fresh fluidsynth process; returns float32 ``(2, n)`` at 44.1 kHz."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise TrainingError("fluidsynth is not installed; install it with: sudo apt-get install fluidsynth")
    sf2 = soundfont_path()
    cmd = [exe, "-ni", "-q", "-g", f"{gain:g}", "-r", str(SR), "-o", "audio.file.format=float",
           "-F", str(wav_path), str(sf2), str(midi_path)]
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    if proc.returncode != 0 or not wav_path.is_file():
        msg = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise TrainingError(f"{midi_path}: fluidsynth could not render it ({msg or 'no output'}).")
    data, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    if sr != SR:
        raise TrainingError(f"{wav_path}: fluidsynth wrote {sr} Hz, expected {SR} Hz.")
    return np.ascontiguousarray(data.T)
