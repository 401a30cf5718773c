"""``crossmix remix QUERY MATCH -o OUT``: the query's vocal over the match's accompaniment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.flags import add_voice_flags
from cli.options import add_model_flags
from core.errors import CrossmixError

HELP = "render a cross-mix: QUERY's vocal over MATCH's accompaniment, tempo- and beat-aligned"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "remix",
        help=HELP,
        description=(
            "Separate both songs (Spleeter 2-stems, cached), analyse their mixes (tempo, beats, "
            "key, loudness), stretch MATCH's full-band accompaniment (mix minus vocals) to QUERY's "
            "tempo with Rubber Band, lay its beats on QUERY's beats over the whole song, optionally "
            "shift it to QUERY's key, balance, limit and write OUT (.wav, .flac, .mp3 or .ogg). "
            "The compatibility report's similarity is only computed with --similarity (it needs "
            "the encoders); without it, similarity is reported as null and the mashability score "
            "counts it as 0."
        ),
    )
    p.add_argument("query", type=Path, metavar="QUERY", help="song whose vocal is kept")
    p.add_argument("match", type=Path, metavar="MATCH", help="song whose accompaniment is used")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                   help="output file; its extension picks the format (wav, flac, mp3, ogg)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--preview", dest="full", action="store_false",
                        help="render a preview from QUERY's most vocal-active region (default)")
    length.add_argument("--full", dest="full", action="store_true", help="render the whole of QUERY")
    p.set_defaults(full=False)
    p.add_argument("--preview-seconds", type=float, default=30.0, metavar="S", help="preview length (default 30)")
    p.add_argument("--preview-start", type=float, default=None, metavar="S",
                   help="preview start in QUERY seconds (default: most vocal-active region)")
    p.add_argument("--key-match", action="store_true",
                   help="shift the accompaniment (never the vocal) to QUERY's key, formant-preserving")
    p.add_argument("--max-shift", type=int, default=3, metavar="N",
                   help="largest key shift in semitones (default 3)")
    p.add_argument("--vocal-gain", type=float, default=0.0, metavar="DB",
                   help="vocal level relative to the loudness balance, dB (default 0)")
    p.add_argument("--accompaniment-gain", type=float, default=0.0, metavar="DB",
                   help="accompaniment level relative to the balance, dB (default 0)")
    p.add_argument("--balance", type=float, default=0.0, metavar="LU",
                   help="target loudness of the vocal above the accompaniment, LU (default 0)")
    add_voice_flags(p, "QUERY")
    p.add_argument("--bpm", type=float, default=None, metavar="BPM",
                   help="QUERY's tempo: its beats become a grid at BPM (default: the mix's "
                   "tracked beats, or for a voice alone a tempo estimated from its onsets)")
    p.add_argument("--first-beat", type=float, default=None, metavar="S",
                   help="with --bpm: time of QUERY's first beat, s (default: fitted to its onsets)")
    p.add_argument("--bar-offset", type=int, default=0, metavar="N",
                   help="move MATCH's bar lines N beats later (negative: earlier) against "
                   "QUERY's beats (default 0)")
    p.add_argument("--offset-ms", type=float, default=0.0, metavar="MS",
                   help="move MATCH's accompaniment MS milliseconds later (negative: earlier) "
                   "after beat alignment (default 0)")
    p.add_argument("--spleeter-accompaniment", action="store_true",
                   help="use Spleeter's band-limited accompaniment instead of mix minus vocals")
    p.add_argument("--stems", action="store_true",
                   help="also write <OUT>_vocals and <OUT>_accompaniment, sample-aligned with OUT")
    p.add_argument("--bitrate", default="192k", help="mp3/ogg bitrate (default 192k)")
    p.add_argument("--similarity", action="store_true",
                   help="embed both songs with the encoders (--encoders) for the report's similarity")
    p.add_argument("--json", action="store_true", help="print the analyses and compatibility report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-cache", action="store_true", help="neither read nor fill the stem cache")
    add_model_flags(p, old_model_flag="separator")
    p.set_defaults(func=run)


def _say(args: argparse.Namespace, text: str) -> None:
    # With --json, stdout is the JSON document; progress notes go to stderr.
    print(text, file=sys.stderr if args.json else sys.stdout)


def run(args: argparse.Namespace) -> int:
    from core.api import Crossmix, write_cross_mix
    from core.audio.export import export_format, stem_paths
    from core.device import resolve_device
    from core.remix.render import RemixOptions
    from core.separation.separator import default_stem_cache

    out: Path = args.output
    export_format(out)  # an unknown extension is refused now, not after the separation
    if args.bpm is None and args.first_beat is not None:  # Crossmix.remix checks --bpm itself
        raise CrossmixError("--first-beat places the beat grid of --bpm: give --bpm too.")
    targets = [out, *stem_paths(out)] if args.stems else [out]
    if not args.overwrite:
        for t in targets:
            if t.exists():
                raise CrossmixError(f"{t}: the file exists; use --overwrite or another -o name.")
    options = RemixOptions(
        preview=not args.full,
        preview_seconds=args.preview_seconds,
        preview_start=args.preview_start,
        key_match=args.key_match,
        max_shift=args.max_shift,
        vocal_to_accompaniment_db=args.balance,
        vocal_gain_db=args.vocal_gain,
        accompaniment_gain_db=args.accompaniment_gain,
        bar_offset_beats=args.bar_offset,
        offset_ms=args.offset_ms,
    )
    _say(args, f"separating {args.query.name} and {args.match.name}, analysing and rendering...")
    # the same engine object as the app's (core.api.Crossmix): the same stems, analysis,
    # rendering and tags
    with Crossmix(device=resolve_device(args.device), separator=args.separator,
                  encoders=args.encoders or "",
                  query_cache=None if args.no_cache else default_stem_cache()) as cx:
        fr = cx.remix(args.query, args.match, options=options, vocal_only=args.vocal_only,
                      tempo=args.bpm, first_beat=args.first_beat,
                      band_limited=args.spleeter_accompaniment, similarity=args.similarity)
    q = fr.query
    if q.vocal_check is not None and q.vocal_only:
        _say(args, f"{args.query.name}: {q.vocal_check.describe()}")
    similarity = fr.similarity
    if args.similarity and similarity is None:
        _say(args, "crossmix: note: no encoders available; similarity not computed (counted as 0).")
    cm = fr.crossmix
    written = write_cross_mix(cm, out, tags=fr.tags, bitrate=args.bitrate, stems=args.stems,
                              overwrite=args.overwrite)
    q_an, tempo_source, m_an = q.analysis, q.tempo_source, fr.match_analysis
    assert q_an is not None  # Crossmix.remix analyses the query
    if args.json:
        doc = {
            "query": {"path": str(args.query), "analysis": q_an.to_dict(),
                      "vocal_only": q.vocal_only, "tempo_source": tempo_source},
            "match": {"path": str(args.match), "analysis": m_an.to_dict()},
            "report": {**cm.report.to_dict(), "similarity": similarity},
            "similarity_computed": similarity is not None,
            "render": {
                "preview": options.preview,
                "start_s": cm.start_s,
                "duration_s": cm.mix.duration,
                "semitones_applied": cm.semitones_applied,
                "stretcher": cm.stretcher,
                "accompaniment": "spleeter" if args.spleeter_accompaniment else "full-band (mix - vocals)",
            },
            "outputs": [str(p) for p in written],
        }
        print(json.dumps(doc, indent=2))
    else:
        r = cm.report
        print(
            f"{args.query.name} ({r.query_tempo:.1f} BPM, {r.query_key}) x "
            f"{args.match.name} ({r.match_tempo:.1f} BPM, {r.match_key}): "
            f"stretch {r.stretch_percent:+.1f} %, shift {cm.semitones_applied:+d} st, "
            f"mashability {r.mashability:.2f}"
            + ("" if similarity is not None else " (similarity not computed)")
        )
        if args.key_match and r.shift_out_of_range:
            advice = r.key_advice(applied=cm.semitones_applied,
                                  remedy=f"--max-shift {abs(r.needed_shift)} allows it")
            print(f"note: key {advice}")
        for p in written:
            print(f"wrote {p}")
    return 0
