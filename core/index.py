"""faiss inner-product indexes, derived from the catalog and rebuilt whenever in doubt.

Vectors are L2-normalised, so inner product is cosine similarity. Up to
:data:`FLAT_LIMIT` songs the index is exact (``IndexFlatIP``); above it an approximate
inverted-file index (``IndexIVFFlat``, ``nlist`` about ``sqrt(n)``, :data:`IVF_NPROBE`
lists probed per query) is built instead; ``bench/library.py`` measures its recall@10
against exact search.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write, sha256_file
from core.catalog import Catalog
from core.errors import LibraryError

log = logging.getLogger(__name__)

#: Above this many vectors an approximate (IVF) index replaces exact flat search.
FLAT_LIMIT = 200_000
#: Inverted lists probed per query by the approximate index (see docs/benchmarks.md).
IVF_NPROBE = 128
_FORMAT = 1
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


@dataclass
class VectorIndex:
    """A faiss index over song ids. ``kind`` is ``"flat"`` (exact) or ``"ivf"``."""

    index: Any
    kind: str
    dim: int

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
        nprobe: int = IVF_NPROBE,
        seed: int = 0,
    ) -> VectorIndex:
        """Index ``vectors`` ``(n, d)`` (normalised here) under int64 ``ids`` ``(n,)``.

        ``kind="auto"`` is exact flat search up to :data:`FLAT_LIMIT` vectors, IVF above.
        """
        vid = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        mat = normalize_rows(vectors) if len(vid) else np.zeros((0, 0), np.float32)
        n = len(vid)
        if mat.shape[0] != n:
            raise ValueError(f"{n} ids but {mat.shape[0]} vectors")
        dim = int(mat.shape[1]) if n else 0
        if kind == "auto":
            kind = "ivf" if n > FLAT_LIMIT else "flat"
        if n == 0:
            return cls(None, "flat", 0)
        if kind == "flat":
            index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "ivf":
            nl = nlist or max(1, min(int(math.sqrt(n)), n // 64))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nl, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            n_train = min(n, 64 * nl)
            sample = mat[np.sort(rng.choice(n, size=n_train, replace=False))]
            index.train(sample)
            index.nprobe = min(nprobe, nl)
        else:
            raise ValueError(f"unknown index kind {kind!r}: use auto, flat or ivf")
        index.add_with_ids(mat, vid)
        return cls(index, kind, dim)

    def search(
        self, queries: npt.ArrayLike, k: int, *, allowed: npt.ArrayLike | None = None
    ) -> tuple[FloatMatrix, IdArray]:
        """Top-``k`` by cosine for each query row ``(q, d)``: similarities ``(q, k)`` and ids
        ``(q, k)``; ``-1`` ids (similarity ``-inf``) pad when fewer than ``k`` exist.

        ``allowed`` (int64 ids) restricts the search to those vectors (a filter applied
        inside faiss, so a selective filter costs no more than an unfiltered search).
        """
        q = normalize_rows(queries)
        k = int(k)
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
            if self.kind == "ivf":
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
        if self.kind == "ivf":
            self.index.nprobe = int(nprobe)

    # --- files ------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically: a temporary file in the same folder, fsync, rename."""
        with atomic_write(path, fsync=True) as tmp:
            if self.index is None:
                tmp.write_bytes(b"")
            else:
                faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path, *, kind: str) -> VectorIndex:
        """Read an index written by :meth:`save`. Raises ``RuntimeError`` if faiss cannot."""
        if path.stat().st_size == 0 and kind == "empty":
            return cls(None, "flat", 0)
        index = faiss.read_index(str(path))
        return cls(index, kind, int(index.d))


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

    def rebuild_all(self, spaces: list[str], model_id: str) -> None:
        """Bring every index of ``spaces`` up to date (called at the end of a scan)."""
        for s in spaces:
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
        if idx.kind == "ivf" and "nprobe" in meta:
            idx.set_nprobe(int(meta["nprobe"]))
        return idx

    def _warn(self, ipath: Path, why: str) -> None:
        msg = f"{ipath}: the search index is damaged ({why}); rebuilding it from the catalog."
        log.warning(msg)
        warnings.warn(IndexRebuiltWarning(msg), stacklevel=4)

    def _rebuild(self, space: str, model_id: str, gen: int) -> VectorIndex:
        ids, mat = self.catalog.vectors(space, model_id)
        kind = "ivf" if len(ids) > self.flat_limit else "flat"
        idx = VectorIndex.build(ids, mat, kind=kind)
        ipath, jpath = self.paths(space)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            idx.save(ipath)
            meta = self._expected(space, model_id, gen)
            meta.update({
                "kind": idx.kind if idx.ntotal else "empty", "ntotal": idx.ntotal,
                "dim": idx.dim, "size": ipath.stat().st_size, "sha256": sha256_file(ipath),
            })
            if idx.kind == "ivf":
                meta["nprobe"] = int(idx.index.nprobe)
            _write_json_atomic(jpath, meta)
        except OSError as exc:
            # The index is derived data: searching still works from memory.
            log.warning("%s: could not save the search index (%s); it will be rebuilt next time.",
                        ipath, exc)
        return idx
