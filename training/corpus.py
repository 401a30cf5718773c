"""Deterministic synthetic singing corpus: many singers, several songs each, with ground truth.

``generate_corpus(out_dir=..., seed=1, singers=260, songs=5)`` writes, for each song,
``singer_017/song_03/`` holding

- ``mix.flac``: 44.1 kHz stereo, tagged artist = singer (``"Singer 017"``), title, BPM, key;
- ``vocals.flac`` and ``accompaniment.flac``: the two stems (``mix == vocals + accompaniment``);
- ``truth.json``: singer parameters, tempo, key, beat and downbeat times, chords, sung notes.

and ``corpus.json`` at the top listing every song. A singer is drawn from ``(seed, singer)``
alone and a song from ``(seed, singer, song)`` alone (:mod:`training.corpus_singers`), so the
output is bit-identical on re-run, whatever ``jobs`` is, and generation can resume.

The pieces: :mod:`training.corpus_singers` (voices), :mod:`training.corpus_melody` (song
plans), :mod:`training.corpus_accompaniment` (MIDI + fluidsynth), :mod:`training.corpus_render`
(singing, effects, mixing).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import json
import logging
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.audio.decode import Audio, save_audio
from core.errors import TrainingError
from core.progress import CancelToken, EtaClock, Progress, ProgressFn, check_cancel
from training.corpus_accompaniment import build_midi, render_midi
from training.corpus_melody import SongPlan, draw_plan
from training.corpus_render import SR, VOCAL_BANDWIDTH_HZ, fade, mix_stems, sing, vocal_effects
from training.corpus_singers import Singer, draw_singer, song_part_rng, song_rng

log = logging.getLogger(__name__)

#: Bumped whenever the generator's output changes for the same seed.
GENERATOR_VERSION = 1
TRUTH_FORMAT = "crossmix-corpus-song/1"
DEFAULT_SECONDS = 20.0
#: The manifests are rewritten every this many songs, so an interrupted run is usable.
MANIFEST_EVERY = 50
MIX_NAME, VOCALS_NAME, ACCOMPANIMENT_NAME, TRUTH_NAME = (
    "mix.flac", "vocals.flac", "accompaniment.flac", "truth.json")


@dataclass(frozen=True)
class RenderedSong:
    """One generated song: stereo 44.1 kHz audio and its ground truth (JSON-able)."""

    mix: Audio
    vocals: Audio
    accompaniment: Audio
    truth: dict[str, Any]


@dataclass(frozen=True)
class CorpusReport:
    """What :func:`generate_corpus` did. ``elapsed_s`` is wall time for the generated songs."""

    out_dir: Path
    songs_written: int
    songs_skipped: int
    elapsed_s: float
    audio_seconds: float

    @property
    def songs_per_second(self) -> float:
        return self.songs_written / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of song generated per second of wall time."""
        return self.audio_seconds / self.elapsed_s if self.elapsed_s > 0 else 0.0


def song_dir(out_dir: Path, singer: int, song: int) -> Path:
    return Path(out_dir) / f"singer_{singer:03d}" / f"song_{song:02d}"


def render_song(*, seed: int, singer: int, song: int, seconds: float = DEFAULT_SECONDS,
                voices: str = "classic", workdir: Path | None = None,
                timings: dict[str, float] | None = None) -> RenderedSong:
    """Generate song ``song`` of singer ``singer`` of corpus ``seed`` (deterministic).

    Parameters
    ----------
    seed, singer, song : int
        The song's identity; nothing else feeds its randomness.
    seconds : float
        Song length in seconds (the first bar is instrumental).
    voices : str
        The base-voice set singers are drawn from (:data:`training.corpus_singers.VOICE_SETS`).
    workdir : Path, optional
        Folder for Festival's and fluidsynth's files; a temporary one when ``None``.
    timings : dict, optional
        Filled with the seconds spent per stage (``festival``, ``world``, ``effects``,
        ``accompaniment``, ``mix``), for benchmarks.

    Returns
    -------
    RenderedSong
        ``mix``, ``vocals``, ``accompaniment``: float32 ``(2, round(seconds * 44100))``.
    """
    who = draw_singer(seed=seed, index=singer, voices=voices)
    rng = song_rng(seed, singer, song)
    plan = draw_plan(singer=who, rng=rng, seconds=seconds)
    # Separate streams for the performance, the accompaniment and the room, so that changing
    # one part of the generator does not reshuffle the others.
    perf_rng, band_rng, room_rng = (song_part_rng(seed, singer, song, part)
                                    for part in ("performance", "band", "room"))
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="crossmix-corpus-") as tmp:
            rendered = _render(plan, who, seed, song, Path(tmp), perf_rng, band_rng, room_rng,
                               timings if timings is not None else {})
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        rendered = _render(plan, who, seed, song, workdir, perf_rng, band_rng, room_rng,
                           timings if timings is not None else {})
    if voices != "classic":  # classic corpora keep their truth.json byte for byte
        rendered.truth["voices"] = voices
    return rendered


def _render(plan: SongPlan, who: Singer, seed: int, song: int, workdir: Path,
            perf_rng: np.random.Generator, band_rng: np.random.Generator,
            room_rng: np.random.Generator, timings: dict[str, float]) -> RenderedSong:
    n = int(round(plan.seconds * SR))
    dry = sing(plan, singer=who, rng=perf_rng, workdir=workdir, timings=timings)
    t0 = time.perf_counter()
    vocal = vocal_effects(dry, effects=plan.effects, rng=room_rng)
    t1 = time.perf_counter()
    midi = build_midi(plan, rng=band_rng)
    midi_path = workdir / "accompaniment.mid"
    midi.write(str(midi_path))
    acc = render_midi(midi_path, workdir / "accompaniment.wav").astype(np.float64)
    acc = np.pad(acc, ((0, 0), (0, max(0, n - acc.shape[1]))))[:, :n]
    t2 = time.perf_counter()
    mix, vocal, acc = mix_stems(fade(vocal), fade(acc),
                                vocal_to_accompaniment_db=plan.vocal_to_accompaniment_db)
    timings.update(effects=t1 - t0, accompaniment=t2 - t1, mix=time.perf_counter() - t2)
    truth = _truth(plan, who, seed, song)
    return RenderedSong(
        mix=Audio(mix.astype(np.float32), SR),
        vocals=Audio(vocal.astype(np.float32), SR),
        accompaniment=Audio(acc.astype(np.float32), SR),
        truth=truth,
    )


def _truth(plan: SongPlan, who: Singer, seed: int, song: int) -> dict[str, Any]:
    p = plan.to_json()
    return {
        "format": TRUTH_FORMAT,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "singer": who.to_json(),
        "artist": who.name,
        "song_index": song,
        "title": p["title"],
        "tempo": p["tempo"],
        "key": p["key"],
        "key_root": p["key_root"],
        "key_mode": p["key_mode"],
        "time_signature": "4/4",
        "style": p["style"],
        "seconds": p["seconds"],
        "sr": SR,
        "vocal_bandwidth_hz": VOCAL_BANDWIDTH_HZ,
        "vocal_to_accompaniment_db": p["vocal_to_accompaniment_db"],
        "effects": p["effects"],
        "beats": p["beats"],
        "downbeats": p["downbeats"],
        "chords": p["chords"],
        "notes": p["notes"],
        "files": {"mix": MIX_NAME, "vocals": VOCALS_NAME, "accompaniment": ACCOMPANIMENT_NAME},
    }


def write_song(folder: Path, song: RenderedSong) -> Path:
    """Write the three FLACs (24-bit) and ``truth.json`` (last: it marks the song complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = song.truth
    save_audio(folder / VOCALS_NAME, song.vocals)
    save_audio(folder / ACCOMPANIMENT_NAME, song.accompaniment)
    save_audio(folder / MIX_NAME, song.mix)
    tag_mix(folder / MIX_NAME, truth)
    tmp = folder / (TRUTH_NAME + ".part")
    tmp.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / TRUTH_NAME)
    return folder


def tag_mix(path: Path, truth: dict[str, Any]) -> None:
    """Vorbis comments: ARTIST, TITLE, ALBUM, BPM, KEY/INITIALKEY, TEMPO, GENRE, COMMENT."""
    from mutagen.flac import FLAC

    f = FLAC(str(path))  # type: ignore[no-untyped-call]
    f["ARTIST"] = truth["artist"]
    f["TITLE"] = truth["title"]
    f["ALBUM"] = f"Crossmix synthetic corpus (seed {truth['seed']})"
    f["TRACKNUMBER"] = str(truth["song_index"] + 1)
    f["GENRE"] = truth["style"]
    f["BPM"] = f"{truth['tempo']:g}"
    f["TEMPO"] = f"{truth['tempo']:g}"
    f["KEY"] = truth["key"]
    f["INITIALKEY"] = truth["key"]
    f["COMMENT"] = f"tempo {truth['tempo']:g} BPM, key {truth['key']}"
    f.save()


def _song_is_done(folder: Path, *, seed: int, seconds: float, voices: str = "classic") -> bool:
    try:
        truth = json.loads((folder / TRUTH_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        truth.get("generator_version") == GENERATOR_VERSION
        and truth.get("seed") == seed
        and truth.get("voices", "classic") == voices
        and abs(float(truth.get("seconds", -1)) - seconds) < 1e-9
        and all((folder / name).is_file() for name in (MIX_NAME, VOCALS_NAME, ACCOMPANIMENT_NAME))
    )


def _job(args: tuple[str, int, int, int, float, str]) -> tuple[int, int, float]:
    out_dir, seed, singer, song, seconds, voices = args
    t0 = time.perf_counter()
    rendered = render_song(seed=seed, singer=singer, song=song, seconds=seconds, voices=voices)
    write_song(song_dir(Path(out_dir), singer, song), rendered)
    return singer, song, time.perf_counter() - t0


def generate_corpus(
    *,
    out_dir: Path,
    seed: int,
    singers: int,
    songs: int,
    seconds: float = DEFAULT_SECONDS,
    first_singer: int = 0,
    jobs: int = 1,
    voices: str = "classic",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> CorpusReport:
    """Generate (or complete) a corpus of ``singers`` x ``songs`` songs under ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Output folder; songs already there with the same seed, length and generator version
        are kept (an interrupted run resumes).
    seed : int
        Corpus seed: singer ``i`` is the same singer in every corpus with this seed.
    singers, songs : int
        Singers ``first_singer .. first_singer + singers - 1``, ``songs`` songs each.
    seconds : float
        Length of each song, s.
    jobs : int
        Worker processes; the output does not depend on it.
    voices : str
        Base-voice set: ``"classic"`` (six Czech and Finnish voices) or ``"extended"`` (also
        two English and two Italian ones); see :data:`training.corpus_singers.VOICE_SETS`.
        ``"independent"`` (espeak-ng voices) makes an evaluation-only corpus: its folder gets
        :data:`training.corpus_singers.EVALUATION_MARKER` and ``crossmix train`` refuses it.

    Raises
    ------
    TrainingError
        Bad arguments, or Festival/fluidsynth missing or failing.
    core.errors.Cancelled
        When ``cancel`` is set (songs finished so far are kept).
    """
    if singers < 1 or songs < 1:
        raise TrainingError(f"{out_dir}: need at least one singer and one song (got {singers} x {songs}).")
    if seconds < 4.0:
        raise TrainingError(f"{out_dir}: songs must be at least 4 s long (got {seconds}).")
    if first_singer < 0 or jobs < 1:
        raise TrainingError(f"{out_dir}: first singer must be >= 0 and jobs >= 1.")
    from training.corpus_singers import EVALUATION_MARKER, EVALUATION_VOICE_SETS, VOICE_SETS

    if voices not in VOICE_SETS and voices not in EVALUATION_VOICE_SETS:
        raise TrainingError(f"Unknown voice set {voices!r}: use one of "
                            f"{', '.join([*VOICE_SETS, *EVALUATION_VOICE_SETS])}.")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if voices in EVALUATION_VOICE_SETS:  # written first: training refuses these songs
            (out_dir / EVALUATION_MARKER).write_text(
                f"Voice set {voices!r} (espeak-ng voices) is reserved for independent evaluation: "
                "crossmix train refuses the songs of this folder.\n", encoding="utf-8")
    except OSError as exc:
        raise TrainingError(f"{out_dir}: cannot create the corpus folder ({exc.strerror or exc}).") from None
    indices = [(i, j) for i in range(first_singer, first_singer + singers) for j in range(songs)]
    todo = [(i, j) for i, j in indices
            if not _song_is_done(song_dir(out_dir, i, j), seed=seed, seconds=seconds, voices=voices)]
    skipped = len(indices) - len(todo)
    total = len(indices)
    clock = EtaClock()
    t0 = time.perf_counter()
    done = 0

    def report(msg: str) -> None:
        if progress is not None:
            progress(Progress("generate", skipped + done, total, "songs", msg,
                              clock.eta(done, len(todo))))

    report("")
    work = [(str(out_dir), seed, i, j, float(seconds), voices) for i, j in todo]
    if jobs == 1:
        for args in work:
            check_cancel(cancel, "corpus generation")
            _job(args)
            done += 1
            report(f"singer {args[2]:03d} song {args[3]:02d}")
            if done % MANIFEST_EVERY == 0:
                write_manifest(out_dir, seed=seed, seconds=seconds)
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(_job, a) for a in work]
            try:
                for fut in cf.as_completed(futures):
                    singer_i, song_j, _ = fut.result()
                    done += 1
                    report(f"singer {singer_i:03d} song {song_j:02d}")
                    if done % MANIFEST_EVERY == 0:
                        write_manifest(out_dir, seed=seed, seconds=seconds)
                    check_cancel(cancel, "corpus generation")
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    elapsed = time.perf_counter() - t0
    write_manifest(out_dir, seed=seed, seconds=seconds)
    return CorpusReport(out_dir, done, skipped, elapsed, done * float(seconds))


def write_manifest(out_dir: Path, *, seed: int, seconds: float) -> Path:
    """``corpus.json`` and ``manifest.csv``: every complete song under ``out_dir``, sorted.

    ``manifest.csv`` is the labelled-folder format of :mod:`training.dataset`
    (``path,singer,song,vocals``, paths relative to ``out_dir``).
    """
    entries = []
    for truth_path in sorted(Path(out_dir).glob(f"singer_*/song_*/{TRUTH_NAME}")):
        try:
            t = json.loads(truth_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if t.get("seed") != seed:
            continue
        folder = truth_path.parent.relative_to(out_dir).as_posix()
        entries.append({
            "singer": t["singer"]["index"], "artist": t["artist"], "song": t["song_index"],
            "title": t["title"], "tempo": t["tempo"], "key": t["key"], "style": t["style"],
            "voice": t["singer"]["voice"], "seconds": t["seconds"],
            "mix": f"{folder}/{MIX_NAME}", "vocals": f"{folder}/{VOCALS_NAME}",
            "accompaniment": f"{folder}/{ACCOMPANIMENT_NAME}", "truth": f"{folder}/{TRUTH_NAME}",
        })
    manifest = {"format": "crossmix-corpus/1", "generator_version": GENERATOR_VERSION,
                "seed": seed, "seconds": seconds, "songs": entries}
    path = Path(out_dir) / "corpus.json"
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    # The same list as the manifest.csv that training.dataset reads (path,singer,song,vocals).
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "singer", "song", "vocals"])
    for e in entries:
        writer.writerow([e["mix"], e["artist"], f"{e['artist']} - {e['title']}", e["vocals"]])
    csv_path = Path(out_dir) / "manifest.csv"
    tmp = csv_path.with_suffix(".csv.part")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, csv_path)
    return path


def load_manifest(out_dir: Path) -> dict[str, Any]:
    """Read ``corpus.json`` of a generated corpus."""
    path = Path(out_dir) / "corpus.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"{path}: no corpus manifest; generate one with 'crossmix corpus'.") from None
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable corpus manifest ({exc}); regenerate the corpus.") from None
    return data
