"""``crossmix library ...`` (add, scan, index, status, repair, remove) and ``crossmix match SONG``.

Every command runs through :class:`core.api.Crossmix`, the engine object the app's Library
tab uses; this module parses flags and prints what it returns."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cli.flags import add_voice_flags
from cli.options import add_model_flags
from core.library.spaces import SEARCH_SPACES
from core.progress import CancelToken, Progress

if TYPE_CHECKING:
    from core.api import LibraryReport
    from core.library.cluster import ModelSpec, RayOptions
    from core.library.library import Library
    from core.library.scan import ScanReport


def _common(p: argparse.ArgumentParser, *, models: bool = True) -> None:
    p.add_argument("--library", type=Path, metavar="DIR", default=None,
                   help="library folder (default: the user's library in the data directory)")
    if models:
        add_model_flags(p)


def _scan_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("fast", "full"), default="fast",
                   help="fast: embed mixes only (enough for vocal->mix and mix->mix search); "
                   "full: also separate and embed vocals (vocal->vocal and [M,V] spaces)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--analyze", dest="analyze", action="store_const", const=True, default=None,
                   help="estimate tempo and key of every song (default in full mode; enables "
                   "the match --tempo/--key filters)")
    g.add_argument("--no-analyze", dest="analyze", action="store_const", const=False,
                   help="skip tempo/key analysis (default in fast mode)")
    p.add_argument("--workers", type=int, default=2,
                   help="threads decoding ahead of the embedding (default 2)")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again files that failed before and did not change")
    r = p.add_argument_group("distributed indexing (needs the scale extra: pip install -e '.[scale]')")
    r.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process; ray: a Ray Data job writing Parquet "
                   "shards that the catalog then ingests (resumable)")
    r.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                   help="the Ray cluster to join (auto: the one 'ray start' began on this "
                   "machine); default: a local cluster for this job")
    r.add_argument("--shards", default=None, metavar="DIR|URI",
                   help="where the job writes its shards (a folder every node can reach, or an "
                   "object-store URI); default LIBRARY/shards")
    r.add_argument("--actors", type=_positive_int, default=None, metavar="N",
                   help="actors holding the models (default: one per CPU, or per GPU)")
    r.add_argument("--gpus-per-actor", type=float, default=None, metavar="G",
                   help="GPUs per actor (default 1 when the cluster has GPUs, else 0)")
    r.add_argument("--rows-per-shard", type=_positive_int, default=256, metavar="N",
                   help="songs per shard file (default 256): what a killed job redoes at most "
                   "per writer")


def _positive_int(text: str) -> int:
    """``-k``: a whole number of at least 1 (0 would search for nothing and say "no matches")."""
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"{k}: ask for at least 1 match")
    return k


def register(subparsers: Any) -> None:
    lib = subparsers.add_parser(
        "library", help="manage song libraries (add folders, scan, status, remove)",
        description="A library is a folder holding a SQLite catalog of songs and their "
        "embeddings, search indexes and a stem cache. Every command takes --library DIR, so "
        "several libraries can coexist.",
    )
    sub = lib.add_subparsers(dest="library_command", metavar="ACTION", required=True)

    p = sub.add_parser("add", help="add folders or files, then scan them",
                       description="Add folders (scanned recursively) or files to the library "
                       "and index them (use --no-scan to index later with 'library scan').")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--no-scan", action="store_true", help="only record the paths")
    _common(p)
    _scan_opts(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("scan", help="index new and changed files, forget removed ones",
                       description="Re-scan the library's folders: new files are embedded, "
                       "changed ones re-embedded, moved ones recognised by content hash, removed "
                       "ones forgotten. An interrupted scan resumes where it stopped. A new "
                       "encoder checkpoint (--encoders) re-embeds every song from cached stems.")
    _common(p)
    _scan_opts(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("index", help="build the search indexes now (choose exact or approximate)",
                       description="Build the library's search indexes from its catalog. "
                       "--kind auto (default) searches exactly up to 200 000 songs and builds a "
                       "compressed approximate index (IVF-PQ, re-ranked by the exact vectors) "
                       "above; the choice is kept for later scans.")
    p.add_argument("--kind", choices=("auto", "flat", "ivfpq"), default=None,
                   help="index kind (default: keep the library's choice, auto at first)")
    _common(p, models=False)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("status", help="counts, failures, model id, size on disk")
    _common(p, models=False)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("repair", help="check the catalog and salvage a damaged one",
                       description="Check the library's catalog (SQLite integrity check and "
                       "unreadable values). When it is damaged, keep every row that can still be "
                       "read in a new catalog (the damaged file stays beside it as "
                       "catalog.sqlite.damaged-<time>); the next 'library scan' indexes the "
                       "songs that were lost again, from their cached stems where possible.")
    _common(p, models=False)
    p.add_argument("--check", action="store_true", help="only check; change nothing")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("remove", help="remove a file or folder from the library",
                       description="Forget a file or folder (the files on disk are untouched).")
    p.add_argument("path", type=Path, metavar="PATH")
    _common(p, models=False)
    p.set_defaults(func=cmd_remove)

    m = subparsers.add_parser(
        "match", help="find library songs whose accompaniment suits SONG's vocal",
        description="Separate SONG, embed it and list the nearest library songs by cosine "
        "similarity. The paper's space is vocal->mix: SONG's vocal (f_v) against the library's mixes "
        "(f_m); by default the space that measured best for the encoders is used. Near-duplicates of SONG (the same recording) are left out unless "
        "--include-duplicates.",
    )
    m.add_argument("song", type=Path, metavar="SONG")
    m.add_argument("-k", type=_positive_int, default=10, help="number of matches (default 10)")
    m.add_argument("--space", default="auto", choices=("auto", *SEARCH_SPACES),
                   help="search space; auto (default): the space that measured best for these encoders "
                   "among those the library can serve (see 'crossmix library status')")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.add_argument("--include-duplicates", action="store_true",
                   help="keep near-duplicates of SONG among the matches")
    m.add_argument("--tempo", metavar="LO:HI", default=None,
                   help="only songs whose tempo (BPM) is in this range, e.g. 100:130")
    m.add_argument("--key", action="append", default=None, metavar="KEY",
                   help="only songs in this key, e.g. 'A minor' (repeatable)")
    m.add_argument("--no-report", dest="report", action="store_false",
                   help="leave out the compatibility report (the query's tempo and key, and each "
                   "match's stretch, key shift and mashability): only the ranking")
    m.add_argument("--max-shift", type=int, default=3, metavar="N",
                   help="largest key shift (semitones) the report assumes (default 3)")
    add_voice_flags(m, "SONG")
    m.add_argument("--start", type=float, default=None, metavar="S",
                   help="search with only the part of SONG from S seconds (default: its start)")
    m.add_argument("--end", type=float, default=None, metavar="E",
                   help="... to E seconds (default: its end); at least 3 s in all")
    _common(m)
    m.set_defaults(func=cmd_match)


# --- helpers -------------------------------------------------------------------------------


def _open(args: argparse.Namespace, *, create: bool = False,
          read_only: bool | None = False) -> Library:
    """The library of ``--library`` (the default one when not given). Only ``add`` creates a
    library: elsewhere a mistyped folder is an error, not a new empty library.
    ``read_only=None``: as the library asks (a catalogue, or a folder that may not be
    written, opens read-only)."""
    from core.library.library import Library

    if args.library is not None and not create:
        _existing(args.library)
    return Library.open(args.library, read_only=read_only)


def _existing(folder: Path) -> Path:
    from core.errors import LibraryError
    from core.library.library import CATALOG_NAME

    catalog = folder.expanduser() / CATALOG_NAME
    if not catalog.is_file():
        raise LibraryError(
            f"{folder}: there is no library here (no {CATALOG_NAME}); check the folder name, or "
            f"create a library with 'crossmix library add SONGS --library {folder}'."
        )
    return catalog


def _models(args: argparse.Namespace) -> ModelSpec:
    """The models the flags name (resolved by core.registry, here or by each Ray actor on its
    node)."""
    from core.library.cluster import ModelSpec

    return ModelSpec(encoders=args.encoders, separator=args.separator, device=args.device)


@contextmanager
def _ctrl_c_cancels(token: CancelToken) -> Iterator[None]:
    """First Ctrl-C cancels cleanly between songs; a second one interrupts at once."""
    if not hasattr(signal, "SIGINT"):
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        print("\ncrossmix: stopping after the current song (Ctrl-C again to stop now)...",
              file=sys.stderr)
        token.cancel()

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _run_scan(lib: Library, args: argparse.Namespace) -> ScanReport:
    from tqdm import tqdm

    from core.api import Crossmix

    models = _models(args)
    encoders = models.load_encoders()
    token = CancelToken()
    bar = tqdm(total=0, unit="song", file=sys.stderr, disable=not sys.stderr.isatty(),
               dynamic_ncols=True)

    def on_progress(p: Progress) -> None:
        if p.stage == "scan" and p.total:
            bar.total = int(p.total)
            bar.n = int(p.done)
            bar.set_postfix_str(p.message[:40])
            bar.refresh()

    # the same engine object as the app's Library tab (core.api.Crossmix)
    cx = Crossmix(separator=lambda d: models.load_separator(), encoders=lambda d: encoders,
                  library=lib)
    try:
        with _ctrl_c_cancels(token):
            report: ScanReport
            if args.engine == "ray":
                report = cx.scan_on_ray(models=models, options=_ray_options(args),
                                        mode=args.mode, analyze=args.analyze,
                                        retry_failed=args.retry_failed, progress=on_progress,
                                        cancel=token)
            else:
                report = cx.scan(mode=args.mode, analyze=args.analyze, workers=args.workers,
                                 retry_failed=args.retry_failed, progress=on_progress,
                                 cancel=token)
            return report
    finally:
        bar.close()


def _ray_options(args: argparse.Namespace) -> RayOptions:
    from core.library.cluster import RayOptions

    return RayOptions(address=args.address, actors=args.actors,
                      gpus_per_actor=args.gpus_per_actor, shards=args.shards,
                      rows_per_shard=args.rows_per_shard)


def cmd_index(args: argparse.Namespace) -> int:
    from core.api import Crossmix
    from core.errors import EmptyLibraryError

    with _open(args) as lib:
        try:
            built = Crossmix(library=lib, query_cache=None).rebuild_indexes(kind=args.kind)
        except EmptyLibraryError:
            print(f"crossmix: the library {lib.root} is empty; add folders with "
                  "'crossmix library add DIR'.", file=sys.stderr)
            return 1
        for idx in built:
            if idx.songs:
                print(f"{idx.space}: {idx.kind} index of {idx.songs} songs")
    return 0


def _print_report(r: ScanReport) -> None:
    print(f"{r.total} audio files: {r.indexed} indexed, {r.reembedded} re-embedded, "
          f"{r.linked} moved/duplicate, {r.unchanged} unchanged, {r.failed} failed, "
          f"{r.skipped_failed} skipped (failed before), {r.removed} removed "
          f"({r.elapsed_s:.1f} s, {r.songs_per_minute:.1f} songs/min)")
    for m in r.missing_roots:
        print(f"warning: {m} is missing (unplugged drive?); its songs were kept.")
    if r.failed:
        print("see 'crossmix library status' for the reasons of failures.")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# --- commands ------------------------------------------------------------------------------


def _check_engine(args: argparse.Namespace) -> None:
    """``--engine ray`` without Ray installed is refused before anything is changed."""
    if args.engine == "ray":
        from core.library.cluster import require_ray

        require_ray()


def cmd_add(args: argparse.Namespace) -> int:
    _check_engine(args)
    with _open(args, create=True) as lib:
        added = lib.add_paths(args.paths)
        for p in added:
            print(f"added {p}")
        if args.no_scan:
            return 0
        report = _run_scan(lib, args)
        _print_report(report)
    return _scan_status(report)


def _scan_status(r: ScanReport) -> int:
    """1 when files failed and none is usable, so scripts notice."""
    usable = r.indexed + r.reembedded + r.linked + r.unchanged
    if r.failed and not usable:
        print(f"crossmix: error: none of the {r.failed} audio file(s) could be indexed; "
              "'crossmix library status' lists why.", file=sys.stderr)
        return 1
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    _check_engine(args)
    with _open(args) as lib:
        if not lib.roots():
            print(f"crossmix: the library {lib.root} has no folders; add some with "
                  "'crossmix library add DIR'.", file=sys.stderr)
            return 1
        report = _run_scan(lib, args)
        _print_report(report)
    return _scan_status(report)


def cmd_repair(args: argparse.Namespace) -> int:
    from core.api import Crossmix

    if args.library is not None:
        _existing(args.library)
    fixed = Crossmix(library=None).repair(args.library, check_only=args.check)
    r, catalog = fixed.report, fixed.catalog
    if not r.problems:
        print(f"{catalog}: the catalog is sound.")
        return 0
    print(f"{catalog}: the catalog is damaged:")
    for line in r.problems[:20]:
        print(f"  {line}")
    if args.check:
        print("run 'crossmix library repair' (without --check) to salvage it.")
        return 1
    kept = ", ".join(f"{t} {n}" for t, n in r.kept.items() if n)
    print(f"salvaged: {kept or 'nothing readable'}; {r.lost_songs} songs lost (their files are "
          f"indexed again by the next scan). The damaged file was kept as {r.damaged_copy}.")
    print(f"the library now holds {fixed.songs} songs; run 'crossmix library scan"
          + (f" --library {args.library}" if args.library is not None else "")
          + "' to index the lost ones again.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from core.api import Crossmix

    with _open(args, read_only=None) as lib:  # only reads: a catalogue stays untouched
        # the figures the app's Library tab shows (core.api.Crossmix.status)
        report = Crossmix(library=lib, query_cache=None).status()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    _print_status(report)
    return 0


def _print_status(report: LibraryReport) -> None:
    st, q, failures = report.status, report.quality, report.failures
    print(f"library   {st.root}")
    for r in st.roots:
        print(f"folder    {r}")
    print(f"model     {st.model_id or '(none yet)'}")
    if st.model_id and q is None:
        print("quality   not measured for these encoders (crossmix evaluate measures it)")
    elif q is not None:
        print(f"quality   {q.summary()}")
        print(f"search    default space {report.default_space}: {report.default_space_reason}")
    print(f"songs     {st.songs} ({st.files} files; {st.current} searchable, "
          f"{st.full} with vocals, {st.analysed} analysed)")
    if st.stale:
        print(f"stale     {st.stale} songs embedded by another checkpoint: run "
              "'crossmix library scan' to re-embed them")
    if st.damaged:
        print(f"damaged   {st.damaged} songs have a stored vector that fails its checksum "
              "(left out of searches): run 'crossmix library scan' to re-embed them")
    print("vectors   " + ", ".join(f"{k}: {v}" for k, v in sorted(st.vectors.items())))
    print(f"disk      {_size(st.size_bytes)} (catalog {_size(st.catalog_bytes)}, indexes "
          f"{_size(st.index_bytes)}, stems {_size(st.stems_bytes)})")
    print(f"failures  {st.failures}")
    for f in failures[:50]:
        print(f"  {f.path}: [{f.stage}] {f.error}: {f.reason}")
    if len(failures) > 50:
        print(f"  ... and {len(failures) - 50} more (--json lists all)")


def cmd_remove(args: argparse.Namespace) -> int:
    from core.api import Crossmix

    with _open(args) as lib:
        # as the app's Library tab does it (core.api.Crossmix); the removed songs' stems are
        # freed, as the app frees them once its undo is no longer offered
        cx = Crossmix(library=lib, query_cache=None)
        removal = cx.remove_path(args.path)
        freed = cx.free_stems(removal.stems)
        print(f"removed {removal.files} files and {removal.songs} songs from {lib.root}"
              + (f"; freed {_size(freed)} of their separated stems" if freed else ""))
    return 0


def _parse_tempo(text: str | None) -> tuple[float, float] | None:
    from core.errors import CrossmixError

    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.replace("-", ":", 1).split(":"))
    except ValueError:
        raise CrossmixError(f"--tempo {text!r}: write a BPM range like 100:130.") from None
    return (min(lo, hi), max(lo, hi))


def cmd_match(args: argparse.Namespace) -> int:
    from core.api import Crossmix
    from core.device import resolve_device
    from core.errors import CrossmixError
    from core.registry import load_encoders, load_separator
    from core.separation.separator import default_stem_cache

    # A query never changes the library's songs; a catalogue (or a folder that may not be
    # written) is opened read-only, and the query's stems then go to the user's cache. The
    # query runs through the same engine object as the app's (core.api.Crossmix).
    lib = _open(args, read_only=None)
    token = CancelToken()
    region = None if args.start is None and args.end is None else (args.start, args.end)
    with Crossmix(device=resolve_device(args.device),
                  separator=lambda d: load_separator(args.separator, device=d),
                  encoders=lambda d: load_encoders(args.encoders, device=d), library=lib,
                  query_cache=default_stem_cache()) as cx, _ctrl_c_cancels(token):
        cx.encoders_choice = args.encoders or ""
        q = cx.query(args.song, space=args.space, k=args.k, tempo_range=_parse_tempo(args.tempo),
                     key=args.key, include_duplicates=args.include_duplicates,
                     vocal_only=args.vocal_only, region=region, cancel=token)
        if q.error:
            raise CrossmixError(q.error)
        if args.report and q.rows:
            cx.compatibility(q, key_match=True, max_shift=args.max_shift, cancel=token)
    if args.json:
        print(json.dumps(q.to_json(), indent=2))
        return 0
    _print_matches(q)
    return 0


def _print_matches(q: Any) -> None:
    """``crossmix match``'s table: the ranking, then the compatibility when analysed."""
    res = q.search
    if q.space_note:
        print(q.space_note.replace("Search space: ", "space: ").rstrip("."))
    if q.vocal_check is not None:
        print(f"query: {q.vocal_check.describe()}")
    elif q.vocal_only:
        print("query: a voice alone (--vocal-only): not separated")
    if q.region is not None:
        print(f"query: only {q.region[0]:.1f}-{q.region[1]:.1f} s embedded")
    if q.analysis is not None:
        print(f"query: {q.analysis.tempo:.1f} BPM, {q.analysis.key}")
    print(f"query {res.query}   space {res.space}   model {res.model[:12]}")
    if not q.rows:
        print("no matches (is the library scanned? 'crossmix library status')")
    report = q.analysis is not None
    print(f"{'#':>3}  {'sim':>6}  {'tempo':>5}  {'key':<9}"
          + (f"  {'stretch':>7}  {'shift':>5}  {'mash':>5}" if report else "")
          + f"  {'artist':<20}  title")
    for m in q.rows:
        tempo = f"{m.tempo:5.0f}" if m.tempo is not None else "    -"
        fit = ""
        if report:
            fit = (f"  {m.stretch_percent:+6.1f}%  {m.semitone_shift:+5d}  {m.mashability:5.2f}"
                   if m.mashability is not None else f"  {'-':>7}  {'-':>5}  {'-':>5}")
        print(f"{m.rank:>3}  {m.similarity:6.3f}  {tempo}  {(m.key or '-'):<9}{fit}  "
              f"{(m.artist or '-')[:20]:<20}  {m.title}   ({m.path})")
    if res.excluded_duplicates:
        print("left out as near-duplicates of the query: "
              + "; ".join(f"{d.title} ({d.duplicate})" for d in res.excluded_duplicates))
