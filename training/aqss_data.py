"""Multitrack data for audio-query-based separation (Lee, Choi & Lee): one stem per source.

``generate_multitracks(vocals_dir=..., out_dir=..., seed=1, split="train", count=400)`` writes,
for song ``i`` of a split, ``train/song_0007/`` holding ``drums.flac``, ``bass.flac``,
``chords.flac``, ``pad.flac``, ``lead.flac``, ``vocals.flac`` (16 kHz mono, 24-bit),
``mix.flac`` (their sum) and ``parts.json`` (programs, classes; written last: it marks the song
complete, so an interrupted run resumes).

- **Vocals** come from a ``crossmix corpus`` folder (Festival singing re-voiced with WORLD;
  never espeak-ng), and the accompaniment is written for that song (its tempo, chords and style),
  so the vocal sits in the music as in a real song.
- **Accompaniment**: the corpus's drum, bass, chord and pad patterns
  (:func:`training.corpus_accompaniment.build_midi`) plus a lead line, with programs drawn from
  many more General MIDI programs and drum kits than the corpus uses. Every part is rendered on
  its own by a fresh ``fluidsynth`` process, so a stem depends on its MIDI alone.
- **Held-out programs** (:data:`HELD_OUT`) are never used in the train and validation splits;
  every song of the ``zeroshot`` split has one part played by a held-out program.
- **Splits** take disjoint singers of the vocal corpus (:data:`SPLIT_FRACTIONS`).
- Song ``i`` of a split is a function of ``(seed, split, i)`` and the vocal corpus alone:
  re-runs are bit-identical.

Mixtures are made on the fly from random subsets of these stems (:func:`draw_mixture`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pretty_midi
import soundfile as sf

from core.audio.decode import resample
from core.errors import TrainingError
from core.progress import CancelToken, EtaClock, Progress, ProgressFn, check_cancel
from training.corpus_accompaniment import _triad, build_midi, soundfont_path
from training.corpus_melody import Chord, Note, SongPlan

#: Bumped whenever the output changes for the same seed.
GENERATOR_VERSION = 1
SR = 16000
PARTS = ("drums", "bass", "chords", "pad", "lead")
STEMS = (*PARTS, "vocals")
#: The paper's four classes (MUSDB18's): every stem belongs to one.
CLASS_OF = {"drums": "drums", "bass": "bass", "chords": "other", "pad": "other", "lead": "other",
            "vocals": "vocals"}
CLASSES = ("drums", "bass", "vocals", "other")

#: General MIDI programs (0-based) per part used for training; drum "programs" are kits of
#: the soundfont's percussion bank. The corpus itself uses 3 drum-free programs per part.
PROGRAMS: dict[str, tuple[int, ...]] = {
    "drums": (0, 8, 16, 24, 32, 40),  # standard, room, power, electronic, jazz, brush
    "bass": (32, 33, 34, 36, 37, 38, 39, 43),
    "chords": (0, 1, 2, 4, 5, 7, 16, 17, 24, 25, 26, 27, 29, 46, 80, 81),
    "pad": (48, 49, 50, 52, 61, 88, 89, 90, 91, 94, 95, 19),
    "lead": (40, 56, 57, 65, 66, 68, 71, 73, 22, 82, 84, 11),
}
#: Programs never heard in training or validation: the zero-shot test.
HELD_OUT: dict[str, tuple[int, ...]] = {
    "drums": (25,),        # TR-808 kit
    "bass": (35,),         # fretless bass
    "chords": (6, 105),    # harpsichord, banjo
    "pad": (92,),          # bowed pad
    "lead": (60, 75),      # French horn, pan flute
}
#: Fractions of the vocal corpus's singers per split (in singer order).
SPLIT_FRACTIONS = {"train": (0.0, 0.8), "val": (0.8, 0.86), "test": (0.86, 0.93), "zeroshot": (0.93, 1.0)}
SPLITS = tuple(SPLIT_FRACTIONS)
PARTS_NAME, MIX_NAME = "parts.json", "mix.flac"
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GenerateReport:
    out_dir: Path
    written: int
    skipped: int
    elapsed_s: float


def split_songs(vocals_dir: Path, split: str) -> list[dict[str, Any]]:
    """The vocal corpus's songs (``corpus.json`` entries) whose singers belong to ``split``."""
    if split not in SPLIT_FRACTIONS:
        raise TrainingError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    path = Path(vocals_dir) / "corpus.json"
    try:
        songs = json.loads(path.read_text(encoding="utf-8"))["songs"]
    except FileNotFoundError:
        raise TrainingError(f"{path}: no corpus manifest; make the vocals with 'crossmix corpus' first.") from None
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"{path}: unreadable corpus manifest ({exc}).") from None
    singers = sorted({int(s["singer"]) for s in songs})
    lo, hi = SPLIT_FRACTIONS[split]
    chosen = set(singers[int(round(lo * len(singers))): int(round(hi * len(singers)))])
    return sorted((s for s in songs if int(s["singer"]) in chosen), key=lambda s: (s["singer"], s["song"]))


def song_rng(seed: int, split: str, index: int, part: str) -> np.random.Generator:
    tags = [int.from_bytes(t.encode("utf-8")[:8].ljust(8, b"\0"), "little") for t in (split, part)]
    return np.random.default_rng([seed, index, *tags, 0xA055])


def plan_from_truth(truth: dict[str, Any]) -> SongPlan:
    """The corpus song plan recorded in a song's ``truth.json``."""
    return SongPlan(
        title=truth["title"], tempo=float(truth["tempo"]), key_root=int(truth["key_root"]),
        key_mode=truth["key_mode"], style=truth["style"], bars=len(truth["chords"]),
        seconds=float(truth["seconds"]), beats=list(truth["beats"]), downbeats=list(truth["downbeats"]),
        chords=[Chord(**c) for c in truth["chords"]], notes=[Note(**n) for n in truth["notes"]],
        vocal_to_accompaniment_db=float(truth["vocal_to_accompaniment_db"]),
        effects=dict(truth.get("effects", {})),
    )


def draw_programs(rng: np.random.Generator, *, zeroshot: bool) -> tuple[dict[str, int], str | None]:
    """A program per part; in the zero-shot split one part (returned) gets a held-out program."""
    programs = {p: int(rng.choice(PROGRAMS[p])) for p in PARTS}
    held = None
    if zeroshot:
        held = str(PARTS[int(rng.integers(len(PARTS)))])
        programs[held] = int(rng.choice(HELD_OUT[held]))
    return programs, held


def _lead_line(plan: SongPlan, rng: np.random.Generator, program: int) -> pretty_midi.Instrument:
    """A counter-melody on chord tones, an octave above the pads, in the vocal's rests or over it."""
    inst = pretty_midi.Instrument(program=program)
    beat = plan.beat_period
    rhythms = ((1, 1, 2), (2, 2), (0.5, 0.5, 1, 2), (1.5, 0.5, 2), (3, 1), (0.5,) * 8, (4,))
    for chord in plan.chords:
        if chord.start >= plan.seconds or rng.random() < 0.2:
            continue
        tones = [n + 12 for n in _triad(chord.root, chord.quality, low=60)]
        tones = tones + [tones[0] + 12]
        t = chord.start
        for d in rhythms[int(rng.integers(len(rhythms)))]:
            if rng.random() < 0.8 and t < plan.seconds:
                pitch = int(rng.choice(tones))
                vel = int(np.clip(80 + rng.integers(-15, 16), 30, 120))
                inst.notes.append(pretty_midi.Note(vel, pitch, float(t), float(min(t + 0.95 * d * beat,
                                                                                    plan.seconds + 0.5))))
            t += d * beat
    return inst


def build_parts(plan: SongPlan, programs: dict[str, int], *, seed: int, split: str,
                index: int) -> dict[str, pretty_midi.PrettyMIDI]:
    """One single-instrument MIDI per accompaniment part."""
    base = build_midi(plan, rng=song_rng(seed, split, index, "band"))
    insts = dict(zip(("drums", "bass", "chords", "pad"), base.instruments, strict=True))
    insts["lead"] = _lead_line(plan, song_rng(seed, split, index, "lead"), programs["lead"])
    out = {}
    for part in PARTS:
        inst = insts[part]
        inst.program = programs[part]
        midi = pretty_midi.PrettyMIDI(initial_tempo=plan.tempo)
        midi.instruments.append(inst)
        out[part] = midi
    return out


def render_part(midi_path: Path, wav_path: Path, *, n: int, gain: float = 0.5) -> F32:
    """Render ``midi_path`` with a fresh fluidsynth at :data:`SR`; mono float32 ``(n,)``."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise TrainingError("fluidsynth is not installed; install it with: sudo apt-get install fluidsynth")
    cmd = [exe, "-ni", "-q", "-g", f"{gain:g}", "-r", str(SR), "-o", "audio.file.format=float",
           "-F", str(wav_path), str(soundfont_path()), str(midi_path)]
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=600)
    if proc.returncode != 0 or not wav_path.is_file():
        msg = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise TrainingError(f"{midi_path}: fluidsynth could not render it ({msg or 'no output'}).")
    data, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    if sr != SR:
        raise TrainingError(f"{wav_path}: fluidsynth wrote {sr} Hz, expected {SR} Hz.")
    mono = data.mean(axis=1)
    return np.pad(mono, (0, max(0, n - len(mono))))[:n].astype(np.float32)


def load_vocal(path: Path, *, n: int) -> F32:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = resample(np.ascontiguousarray(data.mean(axis=1, keepdims=True).T), int(sr), SR)[0]
    return np.pad(mono, (0, max(0, n - len(mono))))[:n].astype(np.float32)


def render_multitrack(*, vocals_dir: Path, entry: dict[str, Any], seed: int, split: str, index: int,
                      workdir: Path) -> tuple[dict[str, F32], dict[str, Any]]:
    """Song ``index`` of ``split``: stems (16 kHz mono float32, mix peak 0.9) and its parts.json."""
    truth = json.loads((Path(vocals_dir) / entry["truth"]).read_text(encoding="utf-8"))
    plan = plan_from_truth(truth)
    n = int(round(plan.seconds * SR))
    programs, held = draw_programs(song_rng(seed, split, index, "programs"), zeroshot=split == "zeroshot")
    stems: dict[str, F32] = {}
    for part, midi in build_parts(plan, programs, seed=seed, split=split, index=index).items():
        midi_path = workdir / f"{part}.mid"
        midi.write(str(midi_path))
        stems[part] = render_part(midi_path, workdir / f"{part}.wav", n=n)
    stems["vocals"] = load_vocal(Path(vocals_dir) / entry["vocals"], n=n)
    peak = float(np.max(np.abs(sum(stems.values()))))
    scale = 0.9 / max(peak, 1e-9)
    stems = {k: (v * scale).astype(np.float32) for k, v in stems.items()}
    meta = {
        "format": "crossmix-aqss-song/1", "generator_version": GENERATOR_VERSION, "seed": seed,
        "split": split, "index": index, "sr": SR, "seconds": plan.seconds, "style": plan.style,
        "tempo": plan.tempo, "vocals_from": entry["vocals"], "programs": programs, "held_out_part": held,
        "classes": {s: CLASS_OF[s] for s in STEMS},
        "silent": [s for s, x in stems.items() if float(np.max(np.abs(x))) < 1e-4],
    }
    return stems, meta


def song_folder(out_dir: Path, split: str, index: int) -> Path:
    return Path(out_dir) / split / f"song_{index:04d}"


def _is_done(folder: Path, *, seed: int) -> bool:
    try:
        meta = json.loads((folder / PARTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (meta.get("generator_version") == GENERATOR_VERSION and meta.get("seed") == seed
            and all((folder / f"{s}.flac").is_file() for s in (*STEMS, "mix")))


def write_multitrack(folder: Path, stems: dict[str, F32], meta: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, x in stems.items():
        sf.write(str(folder / f"{name}.flac"), x, SR, subtype="PCM_24")
    sf.write(str(folder / MIX_NAME), np.clip(sum(stems.values()), -1, 1), SR, subtype="PCM_24")
    tmp = folder / (PARTS_NAME + ".part")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / PARTS_NAME)


def generate_multitracks(*, vocals_dir: Path, out_dir: Path, seed: int, split: str, count: int,
                         progress: ProgressFn | None = None,
                         cancel: CancelToken | None = None) -> GenerateReport:
    """Generate (or complete) songs ``0 .. count-1`` of ``split`` under ``out_dir/split``."""
    entries = split_songs(vocals_dir, split)
    if count < 1 or count > len(entries):
        raise TrainingError(f"{vocals_dir}: split {split!r} has {len(entries)} vocals; "
                            f"ask for 1 to {len(entries)} songs (got {count}).")
    out_dir = Path(out_dir)
    todo = [i for i in range(count) if not _is_done(song_folder(out_dir, split, i), seed=seed)]
    clock, t0 = EtaClock(), time.perf_counter()
    for k, i in enumerate(todo):
        check_cancel(cancel, "multitrack generation")
        with tempfile.TemporaryDirectory(prefix="crossmix-aqss-") as tmp:
            stems, meta = render_multitrack(vocals_dir=vocals_dir, entry=entries[i], seed=seed,
                                            split=split, index=i, workdir=Path(tmp))
        write_multitrack(song_folder(out_dir, split, i), stems, meta)
        if progress is not None:
            progress(Progress("generate", count - len(todo) + k + 1, count, "songs", f"{split} {i}",
                              clock.eta(k + 1, len(todo))))
    return GenerateReport(out_dir, len(todo), count - len(todo), time.perf_counter() - t0)


# --- loading and on-the-fly mixtures ---------------------------------------------------------


@dataclass(frozen=True)
class Multitrack:
    """A generated song in memory: ``stems`` name -> float32 ``(n,)`` at :data:`SR`."""

    folder: Path
    stems: dict[str, F32]
    meta: dict[str, Any]

    def present(self) -> list[str]:
        """The stems that are not silent."""
        return [s for s in STEMS if s not in self.meta.get("silent", [])]


def load_multitrack(folder: Path) -> Multitrack:
    folder = Path(folder)
    meta = json.loads((folder / PARTS_NAME).read_text(encoding="utf-8"))
    stems = {s: sf.read(str(folder / f"{s}.flac"), dtype="float32")[0] for s in STEMS}
    return Multitrack(folder, stems, meta)


def load_split(out_dir: Path, split: str, *, limit: int | None = None) -> list[Multitrack]:
    folders = sorted(p.parent for p in (Path(out_dir) / split).glob(f"song_*/{PARTS_NAME}"))
    if not folders:
        raise TrainingError(f"{Path(out_dir) / split}: no multitracks; generate them with "
                            f"'crossmix multitracks --split {split} ...'.")
    return [load_multitrack(f) for f in folders[:limit]]


@dataclass(frozen=True)
class Example:
    """One training example: ``mix`` and ``target`` (same excerpt), ``query`` (another excerpt of
    the target's stem), all float32 ``(n,)``; ``mix == target + sum(others)`` exactly."""

    mix: F32
    target: F32
    query: F32
    target_name: str
    others: tuple[str, ...]


def _active(x: F32, *, floor: float = 1e-3) -> bool:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) > floor


def draw_mixture(song: Multitrack, rng: np.random.Generator, *, samples: int, query_samples: int,
                 target: str | None = None, tries: int = 8, full_prob: float = 0.0,
                 balance_classes: bool = False) -> Example:
    """A random mixture of ``song``: a target stem plus a random subset (at least one) of the
    others, each with a random gain (-6..+3 dB), over a random excerpt; the query is another
    excerpt of the target stem (at least partly disjoint in time).

    With probability ``full_prob`` the subset is all the others: the whole song, as the app
    separates it (a full accompaniment or mix). At 0 (the default) no extra random number is
    drawn, so fixed sets drawn before this option existed are unchanged.

    ``balance_classes`` draws the target's class first (each of the song's classes equally
    often), then a stem of it: drums and bass are then targets as often as the three "other"
    stems together, instead of a sixth of the time each. Off by default, for the same reason."""
    present = song.present()
    n = len(song.stems[present[0]])
    for _ in range(tries):
        if target is not None:
            name = target
        elif balance_classes:
            classes = sorted({CLASS_OF[s] for s in present})
            wanted = classes[int(rng.integers(len(classes)))]
            name = str(rng.choice([s for s in present if CLASS_OF[s] == wanted]))
        else:
            name = str(rng.choice(present))
        others_pool = [s for s in present if s != name]
        k = int(rng.integers(1, len(others_pool) + 1))
        if full_prob > 0.0 and float(rng.random()) < full_prob:
            k = len(others_pool)
        others = tuple(str(s) for s in rng.choice(others_pool, size=k, replace=False))
        start = int(rng.integers(0, n - samples + 1))
        qstart = int(rng.integers(0, n - query_samples + 1))
        gains = {s: np.float32(10.0 ** (rng.uniform(-6.0, 3.0) / 20.0)) for s in (name, *others)}
        tgt = song.stems[name][start:start + samples] * gains[name]
        query = song.stems[name][qstart:qstart + query_samples] * gains[name]
        if _active(tgt) and _active(query):
            break
    mix = tgt.copy()
    for s in others:
        mix = mix + song.stems[s][start:start + samples] * gains[s]
    return Example(mix.astype(np.float32), tgt.astype(np.float32), query.astype(np.float32), name, others)
