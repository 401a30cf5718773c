"""The vectors of the last queries, kept so a query of the history reopens without embedding.

A finished query's embedding (the vectors the search used, per space), the fingerprint its
search compares, its tempo/key analysis and what the window shows of it (title, duration,
whether it is a voice alone) are written to ``cache_dir()/query-vectors/<key>.npz``, one file
per query. ``<key>`` (:func:`query_key`) hashes everything the vectors depend on: the file's
bytes (sha256), the query's options (``vocal_only``, ``region``, ``tempo``, ``first_beat``),
the encoders' ``model_id`` and the separator's (which made the vocal). Another file at the same
path, other encoders or other options make another key, so stale vectors are never served.

Each file is written atomically (:func:`core.atomic.atomic_write`); at most ``limit`` files are
kept (:data:`core.library.history.HISTORY_LIMIT`, like the history), the least recently used
dropped first. An unreadable file is set aside as ``<key>.npz.bad`` and counts as absent: the
query runs in full instead, and the app never stops for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.atomic import atomic_write
from core.library.history import HISTORY_LIMIT
from core.paths import cache_dir

log = logging.getLogger(__name__)

STORE_VERSION = 1
#: The vectors of a :class:`core.embedding.song.SongEmbedding`, by attribute.
VECTOR_FIELDS = ("M", "V", "MplusV", "MV")
#: Set-aside files kept (the newest), for a look at what went wrong.
BAD_KEPT = 5
#: What ``StoredQuery.meta`` must hold.
REQUIRED_META = ("audio_key", "duration", "title", "artist", "vocal_only")


def query_store_dir() -> Path:
    return cache_dir() / "query-vectors"


def query_key(content_hash: str, *, encoders_id: str, separator_id: str | None,
              vocal_only: bool | None = None, region: tuple[float, float] | None = None,
              tempo: float | None = None, first_beat: float | None = None) -> str:
    """The store's key of a query: a sha256 of the file's sha256, the options and the models.

    ``separator_id`` is ``None`` when nothing is separated (``vocal_only=True``)."""
    doc = {
        "version": STORE_VERSION,
        "file": content_hash,
        "encoders": encoders_id,
        "separator": separator_id,
        "vocal_only": vocal_only,
        "region": None if region is None else [round(float(x), 6) for x in region],
        "tempo": None if tempo is None else round(float(tempo), 6),
        "first_beat": None if first_beat is None else round(float(first_beat), 6),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class StoredQuery:
    """What the store keeps of one query.

    ``embedding`` is the one searched (a region's when ``meta["region"]`` is set);
    ``song_embedding`` the whole song's when it was computed too (``None`` else); ``analysis``
    is :meth:`core.remix.analysis.Analysis.to_dict` once the query was analysed. ``meta``
    holds JSON values: ``audio_key``, ``duration``, ``title``, ``artist``, ``vocal_only``,
    ``vocal_check`` (a dict or ``None``), ``region``, ``tempo_source``, ``tempo_bpm``,
    ``stored_vectors``.
    """

    key: str
    embedding: Any  # core.embedding.song.SongEmbedding
    song_embedding: Any | None = None
    fingerprint: npt.NDArray[np.uint32] | None = None
    analysis: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _vectors(prefix: str, emb: Any) -> dict[str, np.ndarray]:
    return {f"{prefix}{name}": np.asarray(getattr(emb, name), dtype=np.float32)
            for name in VECTOR_FIELDS if getattr(emb, name) is not None}


def _embedding_doc(emb: Any) -> dict[str, Any]:
    return {"n_segments": int(emb.n_segments), "vocal_found": bool(emb.vocal_found),
            "model_id": str(emb.model_id)}


def _embedding(prefix: str, arrays: Any, doc: dict[str, Any]) -> Any:
    from core.embedding.song import SongEmbedding

    vecs: dict[str, Any] = {}
    for name in VECTOR_FIELDS:
        k = f"{prefix}{name}"
        if k in arrays:
            v = np.asarray(arrays[k])
            if v.dtype != np.float32 or v.ndim != 1 or not np.all(np.isfinite(v)):
                raise ValueError(f"vector {k} is malformed")
            vecs[name] = v
        else:
            vecs[name] = None
    if vecs["M"] is None:
        raise ValueError(f"no {prefix}M vector")
    return SongEmbedding(M=vecs["M"], V=vecs["V"], MplusV=vecs["MplusV"], MV=vecs["MV"],
                         n_segments=int(doc["n_segments"]), vocal_found=bool(doc["vocal_found"]),
                         model_id=str(doc["model_id"]))


class QueryStore:
    """The folder of stored queries (see the module's description).

    Parameters
    ----------
    root : path, optional
        The folder (default :func:`query_store_dir`), created on the first write.
    limit : int
        Queries kept; the least recently used beyond it are deleted.
    """

    def __init__(self, root: str | Path | None = None, *, limit: int = HISTORY_LIMIT) -> None:
        self.root = Path(root) if root is not None else query_store_dir()
        self.limit = limit
        self.note = ""  # the last thing that went wrong reading or writing it, for the user

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str) -> StoredQuery | None:
        """The stored query, or ``None`` when absent or unreadable (then set aside)."""
        p = self.path_for(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as arrays:
                doc = json.loads(str(arrays["meta"][()]))
                if doc.get("version") != STORE_VERSION or doc.get("key") != key:
                    raise ValueError("written for another key or version")
                emb = _embedding("", arrays, doc["embedding"])
                song = (_embedding("song_", arrays, doc["song_embedding"])
                        if doc.get("song_embedding") is not None else
                        emb if doc.get("song_is_embedding") else None)
                fp = (np.asarray(arrays["fingerprint"], dtype=np.uint32)
                      if "fingerprint" in arrays else None)
            analysis = doc.get("analysis")
            if analysis is not None and not isinstance(analysis, dict):
                raise ValueError("the analysis is malformed")
            meta = doc["meta"]
            if not isinstance(meta, dict) or any(k not in meta for k in REQUIRED_META):
                raise ValueError("the description is malformed")
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            self._set_aside(p, exc)
            return None
        try:  # a hit makes it the most recently used (see prune)
            os.utime(p)
        except OSError:
            pass
        return StoredQuery(key=key, embedding=emb, song_embedding=song, fingerprint=fp,
                           analysis=analysis, meta=meta)

    def put(self, entry: StoredQuery) -> bool:
        """Write ``entry`` (replacing the one of its key) and drop the oldest beyond the
        limit. A folder that cannot be written is logged and noted, never raised: the
        query's results do not depend on it. Returns whether it was written."""
        emb, song = entry.embedding, entry.song_embedding
        arrays: dict[str, Any] = _vectors("", emb)
        doc: dict[str, Any] = {"version": STORE_VERSION, "key": entry.key,
                               "embedding": _embedding_doc(emb), "song_embedding": None,
                               "song_is_embedding": song is emb, "analysis": entry.analysis,
                               "meta": entry.meta}
        if song is not None and song is not emb:
            arrays.update(_vectors("song_", song))
            doc["song_embedding"] = _embedding_doc(song)
        if entry.fingerprint is not None:
            arrays["fingerprint"] = np.asarray(entry.fingerprint, dtype=np.uint32)
        arrays["meta"] = np.array(json.dumps(doc))
        try:
            with atomic_write(self.path_for(entry.key)) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        except (OSError, TypeError, ValueError) as exc:
            self.note = (f"{self.root}: the query's vectors could not be kept ({exc}); "
                         "reopening it from the history will embed it again.")
            log.warning("%s", self.note)
            return False
        self.prune()
        return True

    def set_analysis(self, key: str, analysis: dict[str, Any], tempo_source: str) -> bool:
        """Add the query's analysis (known after its results) to its stored entry, if any."""
        entry = self.get(key)
        if entry is None:
            return False
        entry.analysis = analysis
        entry.meta["tempo_source"] = tempo_source
        return self.put(entry)

    def keys(self) -> list[str]:
        """The stored keys, most recently used first."""
        return [p.stem for p in self._newest_first("*.npz")]

    def prune(self) -> int:
        """Delete the least recently used entries beyond the limit (and old set-aside files);
        how many entries were deleted."""
        gone = 0
        for p in self._newest_first("*.npz")[self.limit:]:
            p.unlink(missing_ok=True)
            gone += 1
        for p in self._newest_first("*.bad")[BAD_KEPT:]:
            p.unlink(missing_ok=True)
        return gone

    def _newest_first(self, pattern: str) -> list[Path]:
        found = []
        try:
            for p in self.root.glob(pattern):
                try:
                    found.append((p.stat().st_mtime_ns, p))
                except OSError:
                    continue
        except OSError:
            return []
        return [p for _, p in sorted(found, key=lambda t: t[0], reverse=True)]

    def _set_aside(self, p: Path, exc: BaseException) -> None:
        bad = p.with_name(p.name + ".bad")
        try:
            os.replace(p, bad)
            where = f" (set aside as {bad})"
        except OSError:
            where = ""
        self.note = (f"{p}: the stored vectors of a query could not be read ({exc}){where}; "
                     "the query is run again in full.")
        log.warning("%s", self.note)
