"""``crossmix corpus``: generate the synthetic singing corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.progress import Progress


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="generate a synthetic singing corpus (singers x songs, stems and ground truth)",
        description=(
            "Generate a deterministic synthetic singing corpus: Festival voices re-voiced into "
            "distinct singers, over fluidsynth accompaniments. Writes per song mix.flac, "
            "vocals.flac, accompaniment.flac and truth.json, plus corpus.json. Songs already "
            "generated with the same seed and length are kept (an interrupted run resumes)."
        ),
    )
    p.add_argument("--singers", type=int, required=True, help="number of singers")
    p.add_argument("--songs", type=int, required=True, help="songs per singer")
    p.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    p.add_argument("--seconds", type=float, default=20.0, help="song length in seconds (default 20)")
    p.add_argument("--first-singer", type=int, default=0,
                   help="index of the first singer (to add singers to a corpus; default 0)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--voices", choices=("classic", "extended", "speech", "wide", "independent", "independent-val",
                                         "distinct", "distinct-val"),
                   default="classic",
                   help="base voices: classic (6 Czech/Finnish Festival voices, as the first corpora), "
                        "extended (also 2 English and 2 Italian ones), speech (4 speech-only voices "
                        "of real speakers made to sing: flite awb, rms, slt and Festival's Catalan "
                        "ona) or wide (all 14); default classic. independent: 30 espeak-ng voices, "
                        "one per singer, for evaluation only, and independent-val: 30 other espeak-ng "
                        "voices for choosing between finished models (each espeak-ng variant sings in two languages "
                        "there); distinct and distinct-val: 30 singers each with its own espeak-ng variant "
                        "(crossmix train refuses all four; no espeak-ng voice is ever used in training)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from training.corpus import generate_corpus

    def show(p: Progress) -> None:
        eta = f", about {p.eta_s / 60:.1f} min left" if p.eta_s is not None else ""
        print(f"\r{int(p.done)}/{int(p.total)} songs{eta}   ", end="", file=sys.stderr, flush=True)

    report = generate_corpus(
        out_dir=args.out, seed=args.seed, singers=args.singers, songs=args.songs,
        seconds=args.seconds, first_singer=args.first_singer, jobs=args.jobs, voices=args.voices,
        progress=show,
    )
    print(file=sys.stderr)
    print(
        f"{report.songs_written} songs generated, {report.songs_skipped} already there, in "
        f"{report.elapsed_s:.1f} s ({report.songs_per_second:.3f} songs/s, "
        f"{report.realtime_factor:.1f}x real time) -> {report.out_dir}"
    )
    return 0
