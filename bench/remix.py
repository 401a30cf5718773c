"""Remix speed and analysis accuracy on generated songs.

    .venv/bin/python bench/remix.py [--seconds 180] [--songs 24] [--reps 3] [--json FILE]
                                    [--corpus DIR [--corpus-songs 60]] [--skip-speed]

*Speed*: wall seconds and CPU seconds (this process plus the rubberband processes; the
reference machine is shared, so CPU seconds are the steadier figure). Two generated 3-minute songs (query 100 BPM A minor, match 121 BPM D major, perfect
stems). Times ``analyze`` of each mix, a 30-s preview render (default options; with
``--key-match``; with the librosa fallback) and a full-length render, once the stems and
analyses exist (the app caches both). Medians of ``--reps`` runs after a warm-up (librosa's
numba JIT compiles on the first call: that first-call time is reported separately).

*Accuracy*: ``--songs`` generated 20-s songs with random tempo (66-170 BPM) and key (all 24);
tempo counts as right within 4 % (and separately within 4 % of half/double), key only
when exact; beats by the median distance to the written beats; downbeats by how often they
were found and how often right.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synth_songs import make_song  # noqa: E402

from core.remix.analysis import analyze  # noqa: E402
from core.remix.render import RemixOptions, render_cross_mix  # noqa: E402


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children (rubberband)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


_CPU: dict[str, float] = {}


def _median_time(fn, reps: int, name: str = "") -> float:  # type: ignore[no-untyped-def]
    """Median wall seconds of ``fn``; its median CPU seconds go to ``_CPU[name]``."""
    times, cpus = [], []
    for _ in range(reps):
        c0, t0 = _cpu_s(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(_cpu_s() - c0)
    if name:
        _CPU[name] = statistics.median(cpus)
    return statistics.median(times)


def speed(seconds: float, reps: int) -> dict[str, float]:
    q = make_song(tempo=100.0, key_root=9, key_mode="minor", seconds=seconds, seed=1)
    m = make_song(tempo=121.0, key_root=2, key_mode="major", seconds=seconds + 10, seed=2)
    res: dict[str, float] = {}
    t0 = time.perf_counter()
    analyze(q.mix.resampled(22050).with_channels(1))  # warm-up: numba JIT
    res["first_analysis_call_s"] = time.perf_counter() - t0
    res["analyze_3min_s"] = _median_time(lambda: analyze(q.mix), reps, "analyze_3min_cpu_s")
    qa, ma = analyze(q.mix), analyze(m.mix)

    def render(**kw: object):  # type: ignore[no-untyped-def]
        return render_cross_mix(query_vocals=q.vocals, query_analysis=qa,
                                match_accompaniment=m.accompaniment, match_analysis=ma,
                                options=RemixOptions(**kw))  # type: ignore[arg-type]

    render(preview_seconds=5.0)  # warm-up
    res["preview_30s_s"] = _median_time(lambda: render(), reps, "preview_30s_cpu_s")
    res["preview_30s_key_match_s"] = _median_time(lambda: render(key_match=True), reps, "preview_30s_key_match_cpu_s")
    res["preview_30s_fallback_s"] = _median_time(lambda: render(use_rubberband=False), reps, "preview_30s_fallback_cpu_s")
    res["full_render_s"] = _median_time(lambda: render(preview=False), max(1, reps // 2), "full_render_cpu_s")
    res["full_render_key_match_s"] = _median_time(lambda: render(preview=False, key_match=True), 1, "full_render_key_match_cpu_s")
    res.update(_CPU)
    res["song_seconds"] = seconds
    res["load_average_1min"] = os.getloadavg()[0]
    return res


def accuracy(n_songs: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    tempo_ok = tempo_oct_ok = key_ok = db_found = db_ok = 0
    beat_err = []
    for i in range(n_songs):
        tempo = float(rng.uniform(66, 170))
        root = int(rng.integers(0, 12))
        mode = "major" if i % 2 == 0 else "minor"
        song = make_song(tempo=tempo, key_root=root, key_mode=mode, seconds=20.0, seed=100 + i,
                         first_beat=float(rng.uniform(0.1, 1.0)))
        an = analyze(song.mix)
        tempo_ok += abs(an.tempo / tempo - 1) < 0.04
        tempo_oct_ok += min(abs(an.tempo / (tempo * f) - 1) for f in (0.5, 1, 2)) < 0.04
        key_ok += (an.key_root, an.key_mode) == (root, mode)
        beat_err.append(float(np.median([np.min(np.abs(an.beats - b)) for b in song.beats[2:-2]])))
        if an.downbeats is not None:
            db_found += 1
            db_ok += bool(np.median([np.min(np.abs(song.downbeats - d)) for d in an.downbeats]) < 0.05)
    return {
        "songs": n_songs,
        "tempo_within_4pct": tempo_ok / n_songs,
        "tempo_within_4pct_or_octave": tempo_oct_ok / n_songs,
        "key_exact": key_ok / n_songs,
        "beat_median_abs_error_ms": 1000 * statistics.median(beat_err),
        "downbeats_found": db_found / n_songs,
        "downbeats_right_when_found": db_ok / max(1, db_found),
    }


def corpus_accuracy(folder: Path, limit: int) -> dict[str, float]:
    """The same measures on songs of a ``crossmix corpus`` folder (``*/song_*/truth.json``).

    Those songs are closer to real ones: General MIDI accompaniment in several styles (pop,
    rock, ballad, dance, funk, bossa) under a sung, re-voiced vocal.
    """
    from core.audio.decode import load_audio

    truths = sorted(folder.glob("*/song_*/truth.json"))[:limit]
    n = tempo_ok = tempo_oct_ok = key_ok = key_notes_ok = db_found = db_ok = 0
    beat_err = []
    for tp in truths:
        truth = json.loads(tp.read_text())
        an = analyze(load_audio(tp.parent / truth["files"]["mix"]))
        n += 1
        tempo = float(truth["tempo"])
        tempo_ok += abs(an.tempo / tempo - 1) < 0.04
        tempo_oct_ok += min(abs(an.tempo / (tempo * f) - 1) for f in (0.5, 1, 2)) < 0.04
        key_ok += (an.key_root, an.key_mode) == (truth["key_root"], truth["key_mode"])
        rel = (an.key_root + 3 * (an.key_mode == "minor")) % 12
        key_notes_ok += rel == (truth["key_root"] + 3 * (truth["key_mode"] == "minor")) % 12
        tb = np.asarray(truth["beats"])
        if an.beats.size and tb.size > 4:
            beat_err.append(float(np.median([np.min(np.abs(an.beats - b)) for b in tb[2:-2]])))
        if an.downbeats is not None:
            db_found += 1
            tdb = np.asarray(truth["downbeats"])
            db_ok += bool(np.median([np.min(np.abs(tdb - d)) for d in an.downbeats]) < 0.07)
    return {
        "songs": n,
        "tempo_within_4pct": tempo_ok / max(1, n),
        "tempo_within_4pct_or_octave": tempo_oct_ok / max(1, n),
        "key_exact": key_ok / max(1, n),
        "key_same_notes_(relative_ok)": key_notes_ok / max(1, n),
        "beat_median_abs_error_ms": 1000 * statistics.median(beat_err) if beat_err else float("nan"),
        "downbeats_found": db_found / max(1, n),
        "downbeats_right_when_found": db_ok / max(1, db_found),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--songs", type=int, default=24)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--corpus", type=Path, help="also measure accuracy on a crossmix corpus folder")
    ap.add_argument("--corpus-songs", type=int, default=60)
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    if not args.skip_speed:
        out["speed"] = speed(args.seconds, args.reps)
    out["accuracy"] = accuracy(args.songs)
    if args.corpus is not None:
        out["corpus_accuracy"] = corpus_accuracy(args.corpus, args.corpus_songs)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
