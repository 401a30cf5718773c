"""Song plans: key, tempo, chord progression, accompaniment style and a sung melody.

A plan is drawn from the song's own random stream plus the singer's range (the melody is
written for the singer, everything else is independent of the singer). Times are seconds
from the start of the song; pitches are MIDI note numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from training.corpus_singers import Singer

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor

#: Progressions as (semitones above the tonic, chord quality), one chord per bar.
PROGRESSIONS: dict[str, tuple[tuple[tuple[int, str], ...], ...]] = {
    "major": (
        ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),    # I V vi IV
        ((0, "maj"), (5, "maj"), (7, "maj"), (5, "maj")),    # I IV V IV
        ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),    # I vi IV V
        ((0, "maj"), (2, "min"), (7, "maj"), (0, "maj")),    # I ii V I
        ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")),    # I IV I V
        ((0, "maj"), (2, "min"), (5, "maj"), (7, "maj")),    # I ii IV V
    ),
    "minor": (
        ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),   # i VI III VII
        ((0, "min"), (5, "min"), (7, "min"), (0, "min")),    # i iv v i
        ((0, "min"), (8, "maj"), (10, "maj"), (0, "min")),   # i VI VII i
        ((0, "min"), (5, "min"), (10, "maj"), (3, "maj")),   # i iv VII III
        ((0, "min"), (8, "maj"), (5, "min"), (7, "maj")),    # i VI iv V
    ),
}

STYLES = ("pop", "rock", "ballad", "dance", "funk", "bossa")

#: Rhythms of one 4/4 bar in eighth notes (a bar is 8).
_BAR_RHYTHMS = (
    (2, 2, 2, 2), (1, 1, 2, 2, 2), (3, 1, 2, 2), (2, 1, 1, 2, 2), (4, 2, 2), (2, 2, 4),
    (1, 1, 1, 1, 2, 2), (3, 3, 2), (2, 2, 1, 1, 2), (6, 2),
)
#: Last bar of a phrase: notes then a rest (negative = rest), in eighths.
_CADENCE_RHYTHMS = ((2, 2, 2, -2), (4, 2, -2), (2, 4, -2), (6, -2), (2, 1, 1, 2, -2), (4, -4))

_ONSETS = ("", "m", "n", "l", "t", "k", "p", "s", "v", "r", "j", "d", "b", "h")
_VOWELS = ("a", "e", "i", "o", "u")


@dataclass(frozen=True)
class Note:
    """One sung note: ``onset`` and ``duration`` in s, ``pitch`` MIDI, ``lyric`` a syllable."""

    onset: float
    duration: float
    pitch: int
    lyric: str
    phrase: int
    legato: bool


@dataclass(frozen=True)
class Chord:
    """One chord: ``start``/``end`` s, ``root`` pitch class (0 = C), ``quality`` maj/min."""

    start: float
    end: float
    root: int
    quality: str


@dataclass
class SongPlan:
    title: str
    tempo: float                 # BPM
    key_root: int                # pitch class of the tonic, 0 = C
    key_mode: str                # "major" | "minor"
    style: str
    bars: int
    seconds: float               # length of the rendered song
    beats: list[float]           # beat times, s (within the song)
    downbeats: list[float]
    chords: list[Chord]
    notes: list[Note]
    vocal_to_accompaniment_db: float
    effects: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{PITCH_NAMES[self.key_root]} {self.key_mode}"

    @property
    def beat_period(self) -> float:
        return 60.0 / self.tempo

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key
        return d


def _syllable(rng: np.random.Generator) -> str:
    return str(_ONSETS[int(rng.integers(len(_ONSETS)))]) + str(_VOWELS[int(rng.integers(len(_VOWELS)))])


def _title(rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.integers(1, 4))):
        w = "".join(_syllable(rng) for _ in range(int(rng.integers(1, 4))))
        words.append(w.capitalize())
    return " ".join(words)


def _scale_notes(key_root: int, mode: str, low: int, high: int) -> list[int]:
    scale = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    return [m for m in range(low, high + 1) if (m - key_root) % 12 in scale]


def draw_plan(*, singer: Singer, rng: np.random.Generator, seconds: float) -> SongPlan:
    """Draw a song for ``singer`` from the song's random stream ``rng``.

    The song is ``seconds`` long: one bar of accompaniment, then two-bar sung phrases
    separated by rests, over a four-bar chord progression repeated to the end.
    """
    if seconds < 4.0:
        raise ValueError(f"a song needs at least 4 s, got {seconds}")
    title = _title(rng)
    tempo = float(rng.integers(80, 141))
    key_root = int(rng.integers(12))
    mode = "major" if rng.random() < 0.6 else "minor"
    style = str(STYLES[int(rng.integers(len(STYLES)))])
    progression = PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))]
    beat = 60.0 / tempo
    bar = 4 * beat
    bars = int(np.ceil(seconds / bar)) + 1  # one extra so the accompaniment never runs out
    beats = [round(i * beat, 6) for i in range(bars * 4) if i * beat < seconds]
    downbeats = [b for i, b in enumerate(beats) if i % 4 == 0]
    chords = []
    for b in range(bars):
        off, quality = progression[b % len(progression)]
        chords.append(Chord(round(b * bar, 6), round((b + 1) * bar, 6), (key_root + off) % 12, quality))

    notes = _draw_melody(singer=singer, rng=rng, key_root=key_root, mode=mode, chords=chords,
                         beat=beat, seconds=seconds, bars=bars)
    effects = {
        "reverb_seconds": round(float(rng.uniform(0.25, 2.2)), 3),    # RT60
        "reverb_wet_db": round(float(rng.uniform(-22.0, -8.0)), 2),
        "predelay_ms": round(float(rng.uniform(0.0, 40.0)), 1),
        "eq_low_db": round(float(rng.uniform(-5.0, 4.0)), 2),         # shelf at 200 Hz
        "eq_mid_db": round(float(rng.uniform(-4.0, 4.0)), 2),         # peak at eq_mid_hz
        "eq_mid_hz": round(float(np.exp(rng.uniform(np.log(500.0), np.log(3500.0)))), 1),
        "eq_high_db": round(float(rng.uniform(-5.0, 4.0)), 2),        # shelf at 4 kHz
        "width": round(float(rng.uniform(0.3, 1.0)), 3),              # reverb stereo width
    }
    return SongPlan(
        title=title, tempo=tempo, key_root=key_root, key_mode=mode, style=style, bars=bars,
        seconds=float(seconds), beats=beats, downbeats=downbeats, chords=chords, notes=notes,
        vocal_to_accompaniment_db=round(float(rng.uniform(-5.0, 3.0)), 2), effects=effects,
    )


def _draw_melody(*, singer: Singer, rng: np.random.Generator, key_root: int, mode: str,
                 chords: list[Chord], beat: float, seconds: float, bars: int) -> list[Note]:
    eighth = beat / 2.0
    bar_len = 4 * beat
    pool = _scale_notes(key_root, mode, singer.low_note, singer.high_note)
    idx = len(pool) // 2 + int(rng.integers(-2, 3))
    tonics = [j for j, m in enumerate(pool) if m % 12 == key_root]
    notes: list[Note] = []
    phrase = 0
    bar_i = 1  # bar 0 is the intro
    while bar_i + 1 < bars:
        phrase_bars = 2 if rng.random() < 0.75 else 1
        rhythm: list[int] = []
        for k in range(phrase_bars):
            last = k == phrase_bars - 1
            pats = _CADENCE_RHYTHMS if last else _BAR_RHYTHMS
            rhythm.extend(pats[int(rng.integers(len(pats)))])
        t = bar_i * bar_len
        legato_next = False
        last_sung = max(k for k, u in enumerate(rhythm) if u > 0)
        for k, units in enumerate(rhythm):
            dur = abs(units) * eighth
            if t + dur > seconds - 0.25:
                break
            if units < 0:
                t += dur
                legato_next = False
                continue
            chord = next((c for c in chords if c.start <= t + 1e-6 < c.end), chords[-1])
            step = int(rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3)))
            idx = int(np.clip(idx + step, 0, len(pool) - 1))
            on_beat = abs((t / beat) - round(t / beat)) < 1e-6
            if k == last_sung and tonics:
                idx = min(tonics, key=lambda j: (abs(j - idx), j))  # phrases come home
            elif on_beat:
                tones = {(chord.root + iv) % 12 for iv in ((0, 4, 7) if chord.quality == "maj" else (0, 3, 7))}
                cands = [j for j, m in enumerate(pool) if m % 12 in tones]
                if cands:
                    idx = min(cands, key=lambda j: (abs(j - idx), j))
            notes.append(Note(round(t, 6), round(dur, 6), int(pool[idx]), _syllable(rng), phrase,
                              legato_next))
            legato_next = True
            t += dur
        phrase += 1
        bar_i += phrase_bars
        if rng.random() < 0.3:
            bar_i += 1  # an instrumental bar between phrases
    return notes
