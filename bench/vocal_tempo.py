"""How good is the tempo Crossmix estimates from a voice's onsets, and does its confidence say so?

On generated vocal stems with a known tempo (``truth.json``): the demo songs' generator output
and a seeded sample of a larger generated corpus. A tempo counts as right within 4 %, as an
octave error at half or double that; the table splits the songs by the confidence shown
(``core.remix.vocal_tempo.estimate_vocal_tempo``), at 0.5, where the app says "unsure".

    .venv/bin/python bench/vocal_tempo.py [--corpus DIR] [--songs N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio.decode import load_audio  # noqa: E402
from core.paths import data_dir  # noqa: E402
from core.remix.vocal_tempo import estimate_vocal_tempo  # noqa: E402

SURE = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=data_dir() / "demo" / "corpus")
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--songs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dirs = sorted(p.parent for p in args.demo.glob("singer_*/song_*/vocals.flac"))
    if args.corpus is not None:
        more = sorted(p.parent for p in args.corpus.glob("singer_*/song_*/vocals.flac"))
        random.Random(args.seed).shuffle(more)
        dirs += more[: args.songs]
    rows = []
    for i, d in enumerate(dirs):
        truth = float(json.loads((d / "truth.json").read_text())["tempo"])
        est = estimate_vocal_tempo(load_audio(d / "vocals.flac"))
        ratio = est.bpm / truth
        kind = ("right" if abs(ratio - 1) <= 0.04 else
                "octave" if min(abs(ratio - 2), abs(ratio - 0.5) * 2) <= 0.08 else "wrong")
        rows.append((est.confidence, kind))
        print(f"\r{i + 1}/{len(dirs)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    conf = np.array([c for c, _ in rows])
    kinds = np.array([k for _, k in rows])
    print(f"{len(rows)} vocal stems")
    print(f"{'confidence':<14}{'songs':>6}{'right':>7}{'octave':>8}{'wrong':>7}")
    for name, sel in ((f">= {SURE}", conf >= SURE), (f"< {SURE}", conf < SURE),
                      ("all", np.ones(conf.size, bool))):
        n = int(sel.sum())
        counts = [int(np.sum(kinds[sel] == k)) for k in ("right", "octave", "wrong")]
        print(f"{name:<14}{n:>6}" + "".join(f"{c:>{w}}" for c, w in zip(counts, (7, 8, 7),
                                                                          strict=True)))
    for k in ("right", "octave", "wrong"):
        c = conf[kinds == k]
        if c.size:
            print(f"median confidence when {k}: {np.median(c):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
