"""Synthetic corpus generation speed.

    .venv/bin/python bench/corpus.py [--songs 8] [--seconds 20] [--jobs 1 2] [--json FILE]

Generates ``--songs`` songs (one per singer, seed 1000, so every base voice and style shows
up) into a temporary folder, once per ``--jobs`` value, and reports wall time, songs per
second, seconds of audio per second (real-time factor), and the time per stage (Festival,
WORLD re-voicing, vocal effects, MIDI + fluidsynth, mixing) from single-process renders.
Writing the FLACs and tags is the rest of the per-song time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.corpus import generate_corpus, render_song  # noqa: E402


def stages(songs: int, seconds: float) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for i in range(songs):
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        render_song(seed=1000, singer=i, song=0, seconds=seconds, timings=t)
        t["total_render"] = time.perf_counter() - t0
        for k, v in t.items():
            per.setdefault(k, []).append(v)
    return {f"{k}_median_s": round(statistics.median(v), 3) for k, v in per.items()}


def run(songs: int, seconds: float, jobs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="crossmix-bench-corpus-") as tmp:
        rep = generate_corpus(out_dir=Path(tmp), seed=1000, singers=songs, songs=1,
                              seconds=seconds, jobs=jobs)
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.flac"))
    return {
        "jobs": jobs, "songs": rep.songs_written, "wall_s": round(rep.elapsed_s, 2),
        "songs_per_s": round(rep.songs_per_second, 3),
        "s_per_song": round(rep.elapsed_s / max(rep.songs_written, 1), 2),
        "realtime_factor": round(rep.realtime_factor, 2),
        "flac_mb_per_song": round(size / 1e6 / max(rep.songs_written, 1), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": os.getloadavg()[0],
        "seconds_per_song": args.seconds,
        "stages": stages(min(args.songs, 6), args.seconds),
        "runs": [run(args.songs, args.seconds, j) for j in args.jobs],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
