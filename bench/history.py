"""Reopening a query of the history vs running it again (issue 15, item 5).

    .venv/bin/python bench/history.py [--seconds 180] [--library-songs 6] [--device cpu]
                                      [--threads N] [--json FILE]

One generated song of ``--seconds`` (tests/synth_songs.py) is the query; a library of
``--library-songs`` generated 30-s songs is indexed in fast mode. With the real models (Deezer's
Spleeter, the shipped encoders), each step in a fresh :class:`gui.engine.Session` (a restart;
models loaded before the clock starts) runs ``query`` then ``analyze`` (the table's columns),
as the window does:

1. the first query: decode, separation, embedding, search, analysis;
2. the query run again without a query store (what reopening an entry beyond the results kept
   in memory cost before): the stem cache spares the separation; decode, detection, embedding,
   search and analysis run;
3. the query reopened from the query store (``Crossmix(query_store=...)``): its vectors and
   analysis from the store, its stems from the stem cache; only the search and the matches'
   compatibility run.

Prints the wall time of each (and the engine's stage timings), the time to read the stems
from the stem cache and to draw the waveform envelopes (the remaining costs of a reopen), and
the time a full decode of the file takes, for comparison. Checks the three rankings agree.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))



def _timed_query(session: Any, song: Path, k: int) -> tuple[Any, dict[str, Any]]:
    t = time.perf_counter()
    r = session.query(song, space="auto", k=k)
    query_s = time.perf_counter() - t
    t = time.perf_counter()
    session.analyze(r)
    analyze_s = time.perf_counter() - t
    return r, {"query_s": round(query_s, 3), "analyze_s": round(analyze_s, 3),
               "total_s": round(query_s + analyze_s, 3),
               "stages": {k: round(v, 3) for k, v in r.timings.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--library-songs", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crossmix-bench-history-"))
    atexit.register(shutil.rmtree, work, True)  # songs, stems and libraries: 0.5 GB a run
    os.environ.setdefault("CROSSMIX_DATA_DIR", str(work / "data"))
    os.environ.setdefault("CROSSMIX_CACHE_DIR", str(work / "cache"))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from core.audio.decode import load_audio
    from core.device import resolve_device
    from core.embedding.encoders import load_default_encoders
    from core.library.library import Library
    from core.library.query_store import QueryStore
    from core.separation.separator import Separator, StemCache
    from gui.engine import Session
    from gui.waveform import envelope

    device = resolve_device(args.device)
    from synth_songs import write_library, write_song

    songs = work / "songs"
    write_library(songs, args.library_songs)
    song = write_song(work / "query.wav", args.seconds, tempo=104.0, key=9, seed=7)

    def session(store: QueryStore | None) -> Session:
        s = Session(device=device,
                    separator_factory=lambda d: Separator.spleeter_2stems(device=d),
                    encoders_factory=lambda d: load_default_encoders(device=d),
                    library_factory=lambda: Library.open(work / "lib"),
                    stem_cache=StemCache(work / "stems"), query_store=store)
        s.preload()  # models loaded and the analysis compiled before the clock starts
        return s

    s = session(None)
    s.add_folder(songs)
    assert s.scan(mode="fast").indexed == args.library_songs
    s.close()
    store = QueryStore(work / "query-vectors")
    out: dict[str, Any] = {"seconds": args.seconds, "library_songs": args.library_songs,
                           "device": str(device), "torch_threads": torch.get_num_threads()}
    rankings = {}
    for name, st in (("first_query", store), ("run_again_without_store", None),
                     ("reopen_from_store", store)):
        s = session(st)
        r, out[name] = _timed_query(s, song, k=5)
        out[name]["reopened"] = bool(r.reopened)
        rankings[name] = [(row.path, round(row.similarity, 5)) for row in r.rows]
        s.close()
        print(f"{name:26s} {out[name]['total_s']:7.2f} s  (query {out[name]['query_s']:.2f} s, "
              f"analysis {out[name]['analyze_s']:.2f} s)  {out[name]['stages']}", flush=True)
    assert out["reopen_from_store"]["reopened"] and not out["first_query"]["reopened"]
    out["same_ranking"] = len(set(map(tuple, rankings.values()))) == 1

    # the remaining costs of a reopen, alone
    sep_id = Separator.spleeter_2stems().model_id
    t = time.perf_counter()
    stems = StemCache(work / "stems").get(str(r.audio_key), sep_id)
    out["stems_from_cache_s"] = round(time.perf_counter() - t, 3)
    assert stems is not None
    t = time.perf_counter()
    envelope(stems.mix)
    envelope(stems.vocals)
    out["envelopes_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    load_audio(song)
    out["full_decode_s"] = round(time.perf_counter() - t, 3)
    out["speedup_vs_run_again"] = round(out["run_again_without_store"]["total_s"]
                                        / out["reopen_from_store"]["total_s"], 1)
    print(f"stems from the stem cache {out['stems_from_cache_s']:.2f} s, envelopes "
          f"{out['envelopes_s']:.2f} s, a full decode of the file {out['full_decode_s']:.2f} s; "
          f"same ranking: {out['same_ranking']}; reopen {out['speedup_vs_run_again']}x "
          "faster than running the query again")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
