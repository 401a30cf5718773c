"""faiss inner-product indexes, derived from the catalog and rebuilt whenever in doubt.

Vectors are L2-normalised, so inner product is cosine similarity. Up to
:data:`FLAT_LIMIT` songs the index is exact (``IndexFlatIP``); above it a compressed
approximate index is built instead: IVF-PQ (``IndexIVFPQ``, ``nlist`` about ``sqrt(n)``
lists, ``d/4`` sub-quantisers of 8 bits: 64 bytes a 256-d vector, :data:`PQ_NPROBE` lists
probed per query), whose top ``k *`` :data:`RERANK_FACTOR` candidates are re-ranked by their
exact vectors (read from the catalog, the source of truth) when the caller gives a way to
read them, so similarities are exact (``bench/catalogue.py`` measures the recall/latency
curve these defaults come from: recall@10 0.999 at 10^6 clustered vectors, 1.5 ms; ``kind="ivf"``, the
older uncompressed ``IndexIVFFlat``, is still read and built on request).

Each index file ``<space>.faiss`` has a JSON sidecar naming the catalog it came from
(library id, catalog generation, checkpoint), its size and sha256. An index whose sidecar
does not match the catalog is stale; one whose bytes do not match the sidecar, or that faiss
cannot read, is corrupt. Both are rebuilt from the catalog (corrupt ones with a
:class:`IndexRebuiltWarning`). Files are written to a temporary file and renamed, so a crash
leaves either the old index or the new one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write, sha256_file
from core.errors import LibraryError
from core.library.catalog import Catalog

log = logging.getLogger(__name__)

#: Above this many vectors an approximate (IVF) index replaces exact flat search.
FLAT_LIMIT = 200_000
#: Inverted lists probed per query by the approximate index (see docs/benchmarks.md).
IVF_NPROBE = 128
#: Lists probed per query by the IVF-PQ index, and candidates re-ranked exactly per result
#: wanted: from bench/catalogue.py's curve at 10^6 (docs/benchmarks.md, Catalogue scale).
PQ_NPROBE = 32
RERANK_FACTOR = 20
#: Index kinds: exact, approximate uncompressed (IVF-Flat), approximate compressed (IVF-PQ).
KINDS = ("flat", "ivf", "ivfpq")
_FORMAT = 1
#: Catalog meta key holding the index kind chosen with ``crossmix library index --kind``.
INDEX_KIND_META = "index_kind"
#: Batches with fewer queries than this are searched on one thread.
_PARALLEL_QUERIES = 8

FloatMatrix = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


class IndexRebuiltWarning(UserWarning):
    """An index file was damaged and has been rebuilt from the catalog."""


def normalize_rows(x: npt.ArrayLike) -> FloatMatrix:
    """L2-normalise the rows of ``x`` ``(n, d)`` (zero rows stay zero)."""
    a = np.array(x, dtype=np.float32, copy=True, ndmin=2)
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    np.divide(a, norms, out=a, where=norms > 0)
    return a


#: Reads the exact vectors of ids (for re-ranking): ``ids (n,) -> {id: vector}``.
ExactVectors = Callable[[npt.NDArray[np.int64]], Mapping[int, npt.NDArray[np.float32]]]


def ivf_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: about ``sqrt(n)``, at least 39 vectors a list
    (faiss's floor for training), at least 1."""
    return max(1, min(int(math.sqrt(n)), n // 39))


@dataclass
class VectorIndex:
    """A faiss index over song ids. ``kind`` is ``"flat"`` (exact), ``"ivf"`` or ``"ivfpq"``
    (approximate; see the module docstring). ``rerank`` is the IVF-PQ re-ranking factor."""

    index: Any
    kind: str
    dim: int
    rerank: int = RERANK_FACTOR

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    @classmethod
    def build(
        cls,
        ids: npt.ArrayLike,
        vectors: npt.ArrayLike,
        *,
        kind: str = "auto",
        nlist: int | None = None,
        nprobe: int | None = None,
        pq_m: int | None = None,
        rerank: int = RERANK_FACTOR,
        train_size: int | None = None,
        seed: int = 0,
    ) -> VectorIndex:
        """Index ``vectors`` ``(n, d)`` (normalised here) under int64 ``ids`` ``(n,)``.

        ``kind="auto"`` is exact flat search up to :data:`FLAT_LIMIT` vectors, IVF-PQ above.
        ``nlist`` (default :func:`ivf_nlist`), ``nprobe``, ``pq_m`` (sub-quantisers, default
        ``d/4``), ``rerank`` and ``train_size`` (default ``64 nlist``, at least 10 000 for
        IVF-PQ) tune the approximate kinds.
        """
        vid = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        mat = normalize_rows(vectors) if len(vid) else np.zeros((0, 0), np.float32)
        n = len(vid)
        if mat.shape[0] != n:
            raise ValueError(f"{n} ids but {mat.shape[0]} vectors")
        dim = int(mat.shape[1]) if n else 0
        if kind == "auto":
            kind = "ivfpq" if n > FLAT_LIMIT else "flat"
        if n == 0:
            return cls(None, "flat", 0)
        if kind == "flat":
            index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "ivf":
            nl = nlist or max(1, min(int(math.sqrt(n)), n // 64))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nl, faiss.METRIC_INNER_PRODUCT)
            index.train(_sample(mat, train_size or 64 * nl, seed))
            index.nprobe = min(nprobe or IVF_NPROBE, nl)
        elif kind == "ivfpq":
            index = _train_ivfpq(mat, nlist=nlist or ivf_nlist(n), pq_m=pq_m,
                                 train_size=train_size, seed=seed)
            index.nprobe = min(nprobe or PQ_NPROBE, index.nlist)
        else:
            raise ValueError(f"unknown index kind {kind!r}: use auto, {', '.join(KINDS)}")
        for start in range(0, n, 100_000):  # bounded temporary memory while encoding
            index.add_with_ids(mat[start:start + 100_000], vid[start:start + 100_000])
        return cls(index, kind, dim, rerank=max(1, int(rerank)))

    @classmethod
    def empty_trained(cls, sample: npt.ArrayLike, *, kind: str = "ivfpq",
                      nlist: int, nprobe: int | None = None, pq_m: int | None = None,
                      rerank: int = RERANK_FACTOR, seed: int = 0) -> VectorIndex:
        """An approximate index trained on ``sample`` with nothing added yet (vectors are
        then added in chunks with :meth:`add`: an index bigger than memory allows for its
        input is built this way)."""
        mat = normalize_rows(sample)
        dim = int(mat.shape[1])
        if kind == "ivfpq":
            index = _train_ivfpq(mat, nlist=nlist, pq_m=pq_m, train_size=len(mat), seed=seed)
            index.nprobe = min(nprobe or PQ_NPROBE, index.nlist)
        elif kind == "ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(mat)
            index.nprobe = min(nprobe or IVF_NPROBE, nlist)
        else:
            raise ValueError(f"{kind!r} is not a trained index kind: use ivf or ivfpq")
        return cls(index, kind, dim, rerank=max(1, int(rerank)))

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add vectors (normalised here) to an index from :meth:`empty_trained`."""
        self.index.add_with_ids(normalize_rows(vectors),
                                np.ascontiguousarray(np.asarray(ids, dtype=np.int64)))

    def search(
        self, queries: npt.ArrayLike, k: int, *, allowed: npt.ArrayLike | None = None,
        exact: ExactVectors | None = None,
    ) -> tuple[FloatMatrix, IdArray]:
        """Top-``k`` by cosine for each query row ``(q, d)``: similarities ``(q, k)`` and ids
        ``(q, k)``; ``-1`` ids (similarity ``-inf``) pad when fewer than ``k`` exist.

        ``allowed`` (int64 ids) restricts the search to those vectors (a filter applied
        inside faiss, so a selective filter costs no more than an unfiltered search).
        ``exact`` reads stored vectors: an IVF-PQ index then re-ranks its top
        ``k * rerank`` candidates by their exact cosine (ids it cannot read are dropped).
        """
        q = normalize_rows(queries)
        k = int(k)
        if self.kind == "ivfpq" and exact is not None and k > 0 and self.ntotal:
            return self._search_reranked(q, k, allowed, exact)
        return self._search(q, k, allowed)

    def _search_reranked(self, q: FloatMatrix, k: int, allowed: npt.ArrayLike | None,
                         exact: ExactVectors) -> tuple[FloatMatrix, IdArray]:
        _sims, cand = self._search(q, k * self.rerank, allowed)
        out_s = np.full((q.shape[0], k), -np.inf, np.float32)
        out_i = np.full((q.shape[0], k), -1, np.int64)
        for row in range(q.shape[0]):
            ids = cand[row][cand[row] >= 0]
            vecs = exact(ids)
            ids = np.array([i for i in ids if int(i) in vecs], dtype=np.int64)
            if not len(ids):
                continue
            mat = normalize_rows(np.stack([vecs[int(i)] for i in ids]))
            sims = mat @ q[row]
            order = np.argsort(-sims, kind="stable")[:k]
            out_s[row, :len(order)] = sims[order]
            out_i[row, :len(order)] = ids[order]
        return out_s, out_i

    def _search(self, q: FloatMatrix, k: int,
                allowed: npt.ArrayLike | None) -> tuple[FloatMatrix, IdArray]:
        if self.index is None or self.ntotal == 0 or k <= 0:
            return (np.full((q.shape[0], max(k, 0)), -np.inf, np.float32),
                    np.full((q.shape[0], max(k, 0)), -1, np.int64))
        if q.shape[1] != self.dim:
            raise LibraryError(
                f"The query vector has {q.shape[1]} dimensions but the library index has "
                f"{self.dim}; the query and the library were embedded by different encoders."
            )
        params: Any = None
        if allowed is not None:
            # ``sel`` stays referenced by this frame for the whole search
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if self.kind in ("ivf", "ivfpq"):
                params = faiss.SearchParametersIVF()
                params.nprobe = int(self.index.nprobe)
            else:
                params = faiss.SearchParameters()
            params.sel = sel
        if q.shape[0] < _PARALLEL_QUERIES:
            # One query at a time (the app's case): a single thread is faster, and far more
            # robust on a busy machine, than OpenMP threads waiting on each other.
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                sims, ids = self.index.search(q, k, params=params)
            finally:
                faiss.omp_set_num_threads(before)
        else:
            sims, ids = self.index.search(q, k, params=params)
        sims = np.where(ids < 0, -np.inf, sims).astype(np.float32)
        return sims, ids.astype(np.int64)

    def set_nprobe(self, nprobe: int) -> None:
        if self.kind in ("ivf", "ivfpq"):
            self.index.nprobe = int(nprobe)

    @property
    def approximate(self) -> bool:
        return self.kind in ("ivf", "ivfpq")

    # --- files ------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically: a temporary file in the same folder, fsync, rename."""
        with atomic_write(path, fsync=True) as tmp:
            if self.index is None:
                tmp.write_bytes(b"")
            else:
                faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path, *, kind: str, mmap: bool = False) -> VectorIndex:
        """Read an index written by :meth:`save` (``mmap``: its inverted lists stay on disk
        and are paged in on use, for an approximate index larger than memory should hold).
        Raises ``RuntimeError`` if faiss cannot."""
        if path.stat().st_size == 0 and kind == "empty":
            return cls(None, "flat", 0)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(str(path), flags)
        return cls(index, kind, int(index.d))


def _sample(mat: FloatMatrix, size: int, seed: int) -> FloatMatrix:
    n = len(mat)
    if size >= n:
        return mat
    rng = np.random.default_rng(seed)
    return mat[np.sort(rng.choice(n, size=size, replace=False))]


def _train_ivfpq(mat: FloatMatrix, *, nlist: int, pq_m: int | None, train_size: int | None,
                 seed: int) -> Any:
    """An ``IndexIVFPQ`` (inner product) trained on a sample of ``mat``. Codes are 8 bits a
    sub-quantiser when the sample allows 256 centroids, fewer for tiny libraries."""
    n, dim = mat.shape
    m = pq_m or max(1, dim // 4)
    while dim % m:
        m -= 1
    sample = _sample(mat, train_size or max(64 * nlist, 10_000), seed)
    nbits = int(min(8, max(1, math.floor(math.log2(max(2, len(sample)))))))
    nl = max(1, min(nlist, len(sample)))
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nl, m, nbits,
                             faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = index.pq.cp.seed = seed
    index.cp.niter = index.pq.cp.niter = 10  # k-means rounds: recall is measured, not assumed
    index.train(sample)
    return index


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    with atomic_write(path, fsync=True) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")


def space_file_stem(space: str) -> str:
    """File-name-safe name of a space: ``M`` -> ``M``, ``[M,V]`` -> ``M_V``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", space).strip("_") or "space"


class IndexStore:
    """The per-space indexes of one library folder (``<root>/<space>.faiss`` + ``.json``).

    :meth:`get` returns an index that matches the catalog right now, loading it from disk,
    or rebuilding and saving it when it is missing, stale or corrupt. Thread-safe.
    """

    def __init__(self, root: Path, catalog: Catalog, *, flat_limit: int = FLAT_LIMIT) -> None:
        self.root = Path(root)
        self.catalog = catalog
        self.flat_limit = flat_limit
        self._cache: dict[tuple[str, str], tuple[int, VectorIndex]] = {}
        self._lock = threading.Lock()

    def paths(self, space: str) -> tuple[Path, Path]:
        stem = space_file_stem(space)
        return self.root / f"{stem}.faiss", self.root / f"{stem}.json"

    def get(self, space: str, model_id: str) -> VectorIndex:
        """The index of ``space`` over vectors made by ``model_id``, fresh for the catalog."""
        with self._lock:
            gen = self.catalog.generation
            hit = self._cache.get((space, model_id))
            if hit is not None and hit[0] == gen:
                return hit[1]
            idx = self._load(space, model_id, gen)
            if idx is None:
                idx = self._rebuild(space, model_id, gen)
            self._cache[(space, model_id)] = (gen, idx)
            return idx

    def rebuild_all(self, spaces: list[str], model_id: str, *, force: bool = False) -> None:
        """Bring every index of ``spaces`` up to date (called at the end of a scan);
        ``force`` rebuilds them even when fresh (another index kind was chosen)."""
        for s in spaces:
            if force:
                with self._lock:
                    gen = self.catalog.generation
                    self._cache[(s, model_id)] = (gen, self._rebuild(s, model_id, gen))
            else:
                self.get(s, model_id)

    def _expected(self, space: str, model_id: str, gen: int) -> dict[str, Any]:
        return {"format": _FORMAT, "library_id": self.catalog.library_id, "generation": gen,
                "model_id": model_id, "space": space}

    def _load(self, space: str, model_id: str, gen: int) -> VectorIndex | None:
        ipath, jpath = self.paths(space)
        if not ipath.exists() or not jpath.exists():
            log.info("index %s missing: building it from the catalog", ipath.name)
            return None
        try:
            meta = json.loads(jpath.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("sidecar is not an object")
        except (OSError, ValueError) as exc:
            self._warn(ipath, f"its description {jpath.name} is unreadable ({exc})")
            return None
        expected = self._expected(space, model_id, gen)
        if any(meta.get(k) != v for k, v in expected.items()):
            log.info("index %s is stale: rebuilding it from the catalog", ipath.name)
            return None
        try:
            size = ipath.stat().st_size
            if size != meta.get("size") or sha256_file(ipath) != meta.get("sha256"):
                self._warn(ipath, "its bytes do not match its checksum (truncated or overwritten)")
                return None
            kind = str(meta.get("kind"))
            idx = VectorIndex.load(ipath, kind=kind)
        except (OSError, RuntimeError) as exc:
            self._warn(ipath, f"faiss cannot read it ({str(exc).splitlines()[0] if str(exc) else exc})")
            return None
        if idx.ntotal != meta.get("ntotal") or idx.dim != meta.get("dim"):
            self._warn(ipath, "its size does not match its description")
            return None
        if idx.approximate and "nprobe" in meta:
            idx.set_nprobe(int(meta["nprobe"]))
        if "rerank" in meta:
            idx.rerank = max(1, int(meta["rerank"]))
        return idx

    def _warn(self, ipath: Path, why: str) -> None:
        msg = f"{ipath}: the search index is damaged ({why}); rebuilding it from the catalog."
        log.warning(msg)
        warnings.warn(IndexRebuiltWarning(msg), stacklevel=4)

    def kind_for(self, n: int) -> str:
        """The kind of index for ``n`` vectors: the catalog's ``index_kind`` (set by
        ``crossmix library index --kind``) or, ``auto``, flat up to ``flat_limit``, IVF-PQ
        above."""
        chosen = self.catalog.get_meta(INDEX_KIND_META) or "auto"
        if chosen in KINDS:
            return chosen
        return "ivfpq" if n > self.flat_limit else "flat"

    def _rebuild(self, space: str, model_id: str, gen: int) -> VectorIndex:
        n = self.catalog.count_vectors(space, model_id)
        kind = self.kind_for(n) if n else "flat"
        ipath, jpath = self.paths(space)
        if kind == "flat":
            ids, mat = self.catalog.vectors(space, model_id)
            idx = VectorIndex.build(ids, mat, kind="flat")
        elif self.catalog.read_only:
            raise LibraryError(
                f"{ipath}: the library's {kind} search index is missing or out of date, and a "
                "read-only library cannot rebuild it; run 'crossmix library index --library "
                f"{self.root.parent}' where it may be written.")
        else:
            idx = self._build_approximate(space, model_id, n, kind)
        if self.catalog.read_only:
            return idx  # searched from memory; nothing is written
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            idx.save(ipath)
            meta = self._expected(space, model_id, gen)
            meta.update({
                "kind": idx.kind if idx.ntotal else "empty", "ntotal": idx.ntotal,
                "dim": idx.dim, "size": ipath.stat().st_size, "sha256": sha256_file(ipath),
            })
            if idx.approximate:
                meta["nprobe"] = int(idx.index.nprobe)
                meta["rerank"] = idx.rerank
            _write_json_atomic(jpath, meta)
        except OSError as exc:
            # The index is derived data: searching still works from memory.
            log.warning("%s: could not save the search index (%s); it will be rebuilt next time.",
                        ipath, exc)
        return idx

    def _build_approximate(self, space: str, model_id: str, n: int, kind: str) -> VectorIndex:
        """Train on a random sample of the catalog's vectors, then add them all in chunks, so
        memory holds the compressed index and one chunk, never the whole float matrix."""
        nlist = ivf_nlist(n)
        want = max(64 * nlist, 10_000) if kind == "ivfpq" else 64 * nlist
        sample = self.catalog.sample_vectors(space, model_id, min(n, want), seed=0)
        idx = VectorIndex.empty_trained(sample, kind=kind, nlist=nlist)
        for ids, mat in self.catalog.iter_vectors(space, model_id):
            idx.add(ids, mat)
        log.info("built a %s index of %d vectors (%s, %d lists)", kind, idx.ntotal, space, nlist)
        return idx
