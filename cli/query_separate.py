"""``crossmix separate SONG --query CLIP[@start-end] | --class NAME [--keep|--remove]``:
separate "a sound like this one" with the query-based separator (:mod:`core.separation.by_example`)."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import CrossmixError

_TIME = r"(?:\d+:)?\d+(?:\.\d*)?"


@dataclass(frozen=True)
class QuerySpec:
    """A query clip and the stretch of it to use (seconds; ``None``: to its end / from 0)."""

    path: Path
    start: float = 0.0
    end: float | None = None


def _seconds(text: str) -> float:
    if ":" in text:
        m, s = text.split(":", 1)
        return int(m) * 60.0 + float(s)
    return float(text)


def parse_query(text: str) -> QuerySpec:
    """``CLIP``, ``CLIP@START-END``, ``CLIP@START-`` or ``CLIP@-END`` (seconds or m:ss).

    A path that exists as given is taken whole, even if it holds an ``@``.

    Raises
    ------
    CrossmixError
        A malformed or empty range.
    """
    if Path(text).exists() or "@" not in text:
        return QuerySpec(Path(text))
    path, _, rng = text.rpartition("@")
    m = re.fullmatch(rf"\s*({_TIME})?\s*-\s*({_TIME})?\s*", rng)
    if not path or m is None or (m.group(1) is None and m.group(2) is None):
        raise CrossmixError(f"{text}: the query's range must read START-END in seconds or m:ss "
                            "(for example clip.wav@12.5-18 or clip.wav@1:05-1:12).")
    start = _seconds(m.group(1)) if m.group(1) else 0.0
    end = _seconds(m.group(2)) if m.group(2) else None
    if end is not None and end <= start:
        raise CrossmixError(f"{text}: the query's range ends ({end:g} s) before it starts ({start:g} s).")
    return QuerySpec(Path(path), start, end)


def load_query(spec: QuerySpec) -> Any:
    """The query's audio, cut to its range (``core.audio.decode.Audio``).

    Raises
    ------
    core.errors.AudioError
        Not audio, unreadable, or the range lies outside the clip.
    """
    from core.audio.decode import Audio, load_audio

    audio = load_audio(spec.path)
    end = audio.duration if spec.end is None else spec.end
    if spec.start >= audio.duration:
        raise CrossmixError(f"{spec.path}: the query starts at {spec.start:g} s but the clip is only "
                            f"{audio.duration:.2f} s long.")
    end = min(end, audio.duration)
    a, b = int(round(spec.start * audio.sr)), int(round(end * audio.sr))
    return Audio(audio.samples[:, a:b].copy(), audio.sr, spec.path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The query options of ``crossmix separate``."""
    g = p.add_argument_group("separate by example (query-based separator)")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--query", metavar="CLIP[@START-END]",
                       help="an example of the sound to separate: an audio file, optionally a stretch "
                            "of it in seconds or m:ss (clip.wav@12-15.5)")
    which.add_argument("--class", dest="source_class", choices=("drums", "bass", "vocals", "other"),
                       help="separate a whole class instead (its mean latent)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true",
                      help="write only the queried sound (<name>_<query>.<fmt>)")
    mode.add_argument("--remove", action="store_true",
                      help="write only the song without it (<name>_without_<query>.<fmt>)")
    g.add_argument("--iterations", type=int, default=0,
                   help="re-query refinement steps (the paper's iterative method; default 0)")
    g.add_argument("--qsep-model", default="shipped", metavar="NAME|PATH",
                   help="query-separator weights: shipped (default) or a .safetensors path")


def wants_query(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "query", None) or getattr(args, "source_class", None))


def run(args: argparse.Namespace) -> int:
    """Separate each song by the query; one line per song, exit status 1 if any failed."""
    from core.audio.decode import DEFAULT_MAX_DURATION, load_audio, save_audio
    from core.device import resolve_device
    from core.registry import DEFAULT_SEPARATOR, load_query_separator
    from core.separation.by_example import separate_with_query

    if args.full_band or args.separator != DEFAULT_SEPARATOR:
        raise CrossmixError("--full-band and --separator are Spleeter's options; they do not apply with "
                            "--query/--class (--qsep-model chooses the query separator).")
    if args.iterations < 0:
        raise CrossmixError("--iterations must be 0 or more.")
    out_dir: Path = args.output
    if out_dir.exists() and not out_dir.is_dir():
        raise CrossmixError(f"{out_dir}: -o must be a folder, and this is a file; choose a folder.")
    # Query and model problems concern every song: said once, before any work.
    query = None
    label = args.source_class
    if args.query:
        spec = parse_query(args.query)
        query = load_query(spec)
        label = "query"
    model = load_query_separator(args.qsep_model, device=resolve_device(args.device))
    if query is not None:
        from core.separation.by_example import prepare_query

        prepare_query(query, sr=model.config.sr, what=str(args.query))
    failures = 0
    for song in args.songs:
        name = song.stem
        targets = {}
        if not args.remove:
            targets["source"] = out_dir / f"{name}_{label}.{args.format}"
        if not args.keep:
            targets["rest"] = out_dir / f"{name}_without_{label}.{args.format}"
        try:
            if not args.overwrite:
                for t in targets.values():
                    if t.exists():
                        raise CrossmixError(f"{t}: the file exists; use --overwrite or another -o folder.")
            audio = load_audio(song, max_duration=DEFAULT_MAX_DURATION)
            result = separate_with_query(model, audio, query=query,
                                         source_class=None if query is not None else label,
                                         iterations=args.iterations)
            out_dir.mkdir(parents=True, exist_ok=True)
            for kind, path in targets.items():
                save_audio(path, getattr(result, kind), overwrite=True)
            print(f"{song} -> {', '.join(p.name for p in targets.values())} ({result.seconds:.1f} s)")
        except CrossmixError as exc:
            failures += 1
            print(f"crossmix: error: {exc}", file=sys.stderr)
    if failures:
        print(f"crossmix: {failures} of {len(args.songs)} file(s) failed.", file=sys.stderr)
        return 1
    return 0
