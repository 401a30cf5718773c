"""Calibrate the near-duplicate rule: how similar is a re-encode or an edit of a library song
to it, compared with the most similar *other* song?

    .venv/bin/python bench/duplicates.py                       # the default (demo) library
    .venv/bin/python bench/duplicates.py --library DIR --songs 12 --json out.json

For each of ``--songs`` library songs (all by default) the song file is turned into versions a
user may really drop (ffmpeg): an MP3 at 128 kbit/s, a mono downmix, a "remaster" (-4 dB, a
treble shelf and a 0.725 s trim at the start) and an "edit" (the first 5.02 s cut). Each version is
queried exactly as the app does (:meth:`core.api.Crossmix.embed_query`, the steps of the app's query
before its search: decoded, separated by Spleeter, embedded by the shipped encoders), and its mix
vector ``M`` is compared with

- the original song's ``M`` in the catalog (a true duplicate, which should be excluded), and
- every other song's ``M`` (not duplicates; the same singer's other songs are the hardest).

It prints both distributions and how two rules classify them: the embedding rule
(``DUPLICATE_SIMILARITY`` and ``DUPLICATE_MARGIN`` above the query's mean similarity, used for
songs indexed without a fingerprint) and the audio-fingerprint rule the library uses
(:mod:`core.audio.fingerprints`; library songs indexed before fingerprints existed are fingerprinted
here from their files). Nothing is written to the library (queries are not added to it); the
versions' stems go to a temporary stem cache.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.api import Crossmix  # noqa: E402
from core.audio.decode import load_audio  # noqa: E402
from core.audio.fingerprints import fingerprint as make_fingerprint  # noqa: E402
from core.audio.fingerprints import from_blob, same_recording  # noqa: E402
from core.library.library import Library  # noqa: E402
from core.library.spaces import DUPLICATE_MARGIN, DUPLICATE_SIMILARITY  # noqa: E402
from core.paths import default_library_dir  # noqa: E402
from core.separation.separator import StemCache  # noqa: E402

#: name -> ffmpeg output options (the input is the library file)
VERSIONS: dict[str, list[str]] = {
    "mp3-128k": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "mono": ["-ac", "1"],
    "remaster": ["-ss", "0.725", "-af", "volume=-4dB,treble=g=3:f=6000"],
    "edit": ["-ss", "5.02"],
}


def make_version(src: str, name: str, out_dir: Path) -> Path:
    ext = ".mp3" if name.startswith("mp3") else ".flac"
    out = out_dir / f"{Path(src).stem}.{name}{ext}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, *VERSIONS[name], str(out)],
                   check=True)
    return out


def pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x), q)) if x else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", default=str(default_library_dir()))
    ap.add_argument("--songs", type=int, default=0, help="songs to test (0: all)")
    ap.add_argument("--json", default=None, help="write the raw similarities here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crossmix-dups-") as tmp, \
            Crossmix(library=Library.open(args.library),
                     query_cache=StemCache(Path(tmp) / "stems")) as cx:  # the versions' stems
        lib = cx.library()
        model = lib.catalog.model_id
        if model is None:
            print(f"{args.library} holds no embedded songs", file=sys.stderr)
            return 1
        songs = [s for s in lib.songs() if s.paths and Path(s.paths[0]).is_file()]
        ids, mat = lib.catalog.vectors("M", model)
        row = {int(i): r for r, i in enumerate(ids)}
        artist = {s.id: s.artist or "" for s in songs}
        mean = mat.mean(axis=0)
        stored = lib.catalog.fingerprints(s.id for s in songs)
        fps = {s.id: from_blob(stored[s.id]) if s.id in stored
               else make_fingerprint(load_audio(s.paths[0])) for s in songs}
        chosen = songs[: args.songs] if args.songs else songs
        print(f"library {args.library}: {len(ids)} songs with encoders {model[:12]}; "
              f"testing {len(chosen)} songs x {len(VERSIONS)} versions")
        dup: dict[str, list[float]] = {v: [] for v in VERSIONS}
        same_singer: list[float] = []
        other_singer: list[float] = []
        floors: list[float] = []
        caught = {v: 0 for v in VERSIONS}
        false_excl = 0
        false_pairs = 0
        fp_caught = {v: 0 for v in VERSIONS}
        fp_false = 0
        fp_ber_dup: list[float] = []
        fp_ber_other: list[float] = []
        for n, s in enumerate(chosen, 1):
            for v in VERSIONS:
                f = make_version(s.paths[0], v, Path(tmp))
                qe = cx.embed_query(f)
                q = qe.embedding.M
                sims = mat @ q
                floor = max(DUPLICATE_SIMILARITY, float(q @ mean) + DUPLICATE_MARGIN)
                floors.append(float(q @ mean) + DUPLICATE_MARGIN)
                own = float(sims[row[s.id]])
                dup[v].append(own)
                caught[v] += own >= floor
                verdict = same_recording(qe.fingerprint, fps[s.id])
                assert verdict is not None
                fp_caught[v] += verdict[0]
                fp_ber_dup.append(verdict[1])
                for sid, r in row.items():
                    if sid == s.id:
                        continue
                    sim = float(sims[r])
                    (same_singer if artist.get(sid) == artist[s.id] else other_singer).append(sim)
                    false_pairs += 1
                    false_excl += sim >= floor
                    if sid in fps:
                        verdict = same_recording(qe.fingerprint, fps[sid])
                        assert verdict is not None
                        fp_false += verdict[0]
                        fp_ber_other.append(verdict[1])
                f.unlink()
            print(f"  {n}/{len(chosen)} {Path(s.paths[0]).name}: own "
                  + ", ".join(f"{v} {dup[v][-1]:.3f}" for v in VERSIONS), flush=True)

    all_dup = [x for xs in dup.values() for x in xs]
    others = same_singer + other_singer
    print("\nTrue duplicates (a version against its own song), M cosine similarity:")
    for v, xs in dup.items():
        print(f"  {v:9s} min {min(xs):.3f}  p5 {pct(xs, 5):.3f}  median {pct(xs, 50):.3f}  "
              f"caught by the rule {caught[v]}/{len(xs)}")
    print("Other songs:")
    for name, xs in (("same singer", same_singer), ("other singer", other_singer)):
        if xs:
            print(f"  {name:12s} max {max(xs):.3f}  p99 {pct(xs, 99):.3f}  median {pct(xs, 50):.3f}"
                  f"  ({len(xs)} pairs)")
    print(f"Query mean similarity + margin ({DUPLICATE_MARGIN}): median {pct(floors, 50):.3f}, "
          f"max {max(floors):.3f}")
    lo, hi = max(others), min(all_dup)
    print(f"\nEmbedding rule (>= {DUPLICATE_SIMILARITY} and >= mean + {DUPLICATE_MARGIN}): "
          f"{sum(caught.values())}/{len(all_dup)} versions excluded, "
          f"{false_excl}/{false_pairs} other songs wrongly excluded")
    print(f"Fingerprint rule (bit error rate < MATCH_BER): {sum(fp_caught.values())}/{len(all_dup)} "
          f"versions excluded ({', '.join(f'{v} {n}' for v, n in fp_caught.items())}), "
          f"{fp_false}/{len(fp_ber_other)} other songs wrongly excluded; bit error rate of "
          f"versions max {max(fp_ber_dup):.3f}, of other songs min {min(fp_ber_other):.3f}")
    if lo < hi:
        print(f"Separable: any threshold in ({lo:.3f}, {hi:.3f}] excludes every version and no "
              "other song.")
    else:
        print(f"Not separable: the most similar other song ({lo:.3f}) reaches above the least "
              f"similar version ({hi:.3f}).")
    print(f"took {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "library": args.library, "model": model, "duplicates": dup,
            "same_singer": same_singer, "other_singer": other_singer, "floors": floors,
            "fingerprint_ber": {"versions": fp_ber_dup, "others": fp_ber_other},
            "rule": {"similarity": DUPLICATE_SIMILARITY, "margin": DUPLICATE_MARGIN},
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
