"""``crossmix remix QUERY MATCH -o OUT``: the query's vocal over the match's accompaniment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.flags import add_voice_flags
from cli.options import add_model_flags
from core.errors import CrossmixError, ModelError

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
    from core.audio.decode import audio_hash, load_audio
    from core.audio.export import cross_mix_tags, export_cross_mix, export_format, stem_paths
    from core.device import resolve_device
    from core.registry import load_separator
    from core.remix.analysis import analyze
    from core.remix.render import RemixOptions, render_cross_mix
    from core.remix.vocal_tempo import analyze_query, check_bpm
    from core.separation.separator import default_stem_cache, separate_file
    from core.separation.vocal_only import query_stems

    out: Path = args.output
    export_format(out)  # an unknown extension is refused now, not after the separation
    if args.bpm is not None:
        check_bpm(args.bpm)
    elif args.first_beat is not None:
        raise CrossmixError("--first-beat places the beat grid of --bpm: give --bpm too.")
    targets = [out, *stem_paths(out)] if args.stems else [out]
    if not args.overwrite:
        for t in targets:
            if t.exists():
                raise CrossmixError(f"{t}: the file exists; use --overwrite or another -o name.")
    device = resolve_device(args.device)
    separator = load_separator(args.separator, device=device)
    cache = None if args.no_cache else default_stem_cache()

    _say(args, f"separating {args.query.name} and {args.match.name}...")
    q_audio = load_audio(args.query)
    qs = query_stems(q_audio, audio_hash(q_audio), separator=separator, cache=cache,
                     vocal_only=args.vocal_only)
    if qs.check is not None and qs.vocal_only:
        _say(args, f"{args.query.name}: {qs.check.describe()}")
    q_stems = qs.stems
    m_stems = separate_file(args.match, separator=separator, cache=cache)
    _say(args, "analysing tempo, beats and key...")
    q_an, tempo_source = analyze_query(q_stems.mix, voice=qs.vocal_only, bpm=args.bpm,
                                       first_beat=args.first_beat)
    m_an = analyze(m_stems.mix)

    similarity: float | None = None
    if args.similarity:
        similarity = _similarity(q_stems, m_stems, device, args.encoders)
        if similarity is None:
            _say(args, "crossmix: note: no encoders available; similarity not computed (counted as 0).")

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
    accompaniment = m_stems.accompaniment if args.spleeter_accompaniment else m_stems.full_band_accompaniment
    _say(args, "rendering the cross-mix...")
    cm = render_cross_mix(
        query_vocals=q_stems.vocals,
        query_analysis=q_an,
        match_accompaniment=accompaniment,
        match_analysis=m_an,
        options=options,
        similarity=similarity or 0.0,
    )
    tags = cross_mix_tags(
        query_title=args.query.stem, match_title=args.match.stem,
        query_source=args.query.name, match_source=args.match.name,
    )
    written = export_cross_mix(
        out, cm.mix,
        vocals=cm.vocals if args.stems else None,
        accompaniment=cm.accompaniment if args.stems else None,
        bitrate=args.bitrate, tags=tags, overwrite=args.overwrite,
    )
    if args.json:
        doc = {
            "query": {"path": str(args.query), "analysis": q_an.to_dict(),
                      "vocal_only": qs.vocal_only, "tempo_source": tempo_source},
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


def _similarity(q_stems: Any, m_stems: Any, device: Any, encoders_choice: str | None = None) -> float | None:
    """Cosine of the query's vocal embedding and the match's mix embedding (V -> M)."""
    import numpy as np

    from core.embedding.song import embed_song
    from core.registry import load_encoders

    try:
        encoders = load_encoders(encoders_choice, device=device)
    except ModelError:
        return None
    q = embed_song(mix=q_stems.mix, vocals=q_stems.vocals, encoders=encoders)
    m = embed_song(mix=m_stems.mix, vocals=m_stems.vocals, encoders=encoders)
    if q.V is None:
        return None
    return float(np.dot(q.V, m.M))
