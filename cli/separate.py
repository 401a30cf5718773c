"""``crossmix separate``: split songs into vocals and accompaniment files (Spleeter 2-stems)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.options import add_model_flags
from core.errors import Cancelled, CrossmixError
from core.progress import Progress

HELP = "separate songs into <name>_vocals and <name>_accompaniment files (Spleeter 2-stems)"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "separate",
        help=HELP,
        description=(
            "Separate each SONG into <name>_vocals.<fmt> and <name>_accompaniment.<fmt> in DIR, "
            "with Deezer's Spleeter 2-stems model (44.1 kHz stereo output, same length as the song). "
            "By default the accompaniment is Spleeter's own stem, which has nothing above 11 kHz; "
            "--full-band writes mix minus vocals instead (keeps the top octave; this is what "
            "Crossmix's cross-mixes use). Stems are cached, so a song is separated once."
        ),
    )
    p.add_argument("songs", nargs="+", metavar="SONG", type=Path, help="audio files (wav, flac, mp3, ogg, m4a...)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="folder for the stem files")
    p.add_argument("--format", choices=("wav", "flac"), default="wav",
                   help="wav (32-bit float, default) or flac (24-bit)")
    p.add_argument(
        "--full-band",
        action="store_true",
        help="write the full-band accompaniment (mix - vocals) instead of Spleeter's band-limited "
        "one (default: Spleeter's own accompaniment)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor fill the stem cache")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_model_flags(p, encoders=False, old_model_flag="separator")
    from cli.query_separate import add_arguments

    add_arguments(p)
    p.set_defaults(func=run)


class _SeparatorFailed(Exception):
    """The separator could not be made (device, weights): fatal for every song."""


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm import tqdm

    from cli import query_separate
    from core.api import Crossmix
    from core.audio.decode import (
        DEFAULT_MAX_DURATION,
        load_audio,
        probe_duration,
        save_audio,
    )
    from core.separation.separator import default_stem_cache

    if query_separate.wants_query(args):
        return query_separate.run(args)
    if args.keep or args.remove:
        raise CrossmixError("--keep and --remove need --query CLIP or --class NAME.")
    if args.output.exists() and not args.output.is_dir():  # said before any separation
        raise CrossmixError(f"{args.output}: -o must be a folder, and this is a file; choose "
                            "a folder (it is created if missing).")

    def make_separator() -> Any:
        from core.device import resolve_device  # imports torch (about 1.3 s)
        from core.registry import load_separator

        return load_separator(args.separator, device=resolve_device(args.device))

    # The separator (torch, the weights) loads on a second thread while the first song is
    # decoded here, and each song's stem-cache entry is written beside its output files:
    # both pairs spend their time in C code that lets the other run.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossmix-separate")
    separator_future = pool.submit(make_separator)
    cache = None if args.no_cache else default_stem_cache()
    # the same engine object as the app's (core.api.Crossmix): one way to stems
    cx = Crossmix(separator=lambda device: separator_future.result(), query_cache=cache)
    out_dir: Path = args.output
    failures = 0
    written: dict[str, Path] = {}  # output name -> the song that got it in this run
    try:
        for song in args.songs:
            name = song.stem
            targets = {
                "vocals": out_dir / f"{name}_vocals.{args.format}",
                "accompaniment": out_dir / f"{name}_accompaniment.{args.format}",
            }
            try:
                if name in written:
                    raise CrossmixError(
                        f"{song}: its stems would have the same names as those of "
                        f"{written[name]}; separate it into another -o folder."
                    )
                written[name] = song
                if not args.overwrite:
                    for t in targets.values():
                        if t.exists():
                            raise CrossmixError(f"{t}: the file exists; use --overwrite or another -o folder.")
                audio = load_audio(song, max_duration=DEFAULT_MAX_DURATION)
                try:
                    cx.separator()  # loaded on the second thread meanwhile
                except CrossmixError as exc:
                    raise _SeparatorFailed(str(exc)) from None
                caching: list[Future[Any]] = []
                hit: list[bool] = []
                with tqdm(total=probe_duration(song) or 1.0, desc=name[:30], unit="s", leave=False,
                          file=sys.stderr,
                          bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                                     "[{elapsed}<{remaining}]") as bar:

                    def on_progress(p: Progress, bar: Any = bar, song: Path = song,
                                    hit: list[bool] = hit) -> None:
                        if p.message == "from the stem cache":
                            hit.append(True)
                            return
                        bar.total = max(p.total, 1e-9)
                        bar.n = p.done
                        if p.message:
                            bar.write(f"crossmix: {song}: {p.message}")
                        bar.refresh()

                    def put(c: Any, key: str, model: str, st: Any,
                            caching: list[Future[Any]] = caching) -> None:
                        caching.append(pool.submit(c.put, key, model, st))

                    stems = cx.separate(audio, put=put, progress=on_progress)
                if hit:
                    print(f"crossmix: {song}: from the stem cache", file=sys.stderr)
                accomp = stems.full_band_accompaniment if args.full_band else stems.accompaniment
                save_audio(targets["vocals"], stems.vocals, overwrite=True)
                save_audio(targets["accompaniment"], accomp, overwrite=True)
                for pending in caching:
                    try:
                        pending.result()
                    except CrossmixError as exc:  # the stems are written: only the cache missed
                        print(f"crossmix: warning: {exc}", file=sys.stderr)
                print(f"{song} -> {targets['vocals'].name}, {targets['accompaniment'].name}")
            except Cancelled:
                raise
            except CrossmixError as exc:
                failures += 1
                print(f"crossmix: error: {exc}", file=sys.stderr)
    except _SeparatorFailed as exc:
        raise CrossmixError(str(exc)) from None
    finally:
        pool.shutdown(wait=True)
    if failures:
        print(f"crossmix: {failures} of {len(args.songs)} file(s) failed.", file=sys.stderr)
        return 1
    return 0
