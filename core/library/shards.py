"""Parquet shards of indexed songs, and their transactional, idempotent ingest into a catalog.

A distributed indexing job (:mod:`core.library.cluster`) writes one row per file to Parquet files in
a shard folder (a local or shared path, or an object-store URI such as ``s3://bucket/lib``):

=================  ===========================================================================
``path``           the file, as the cluster's nodes see it (the same mount on every node)
``size``           bytes, and ``mtime_ns``: what a later scan compares to see a change
``status``         ``indexed`` (embedded), ``linked`` (content already a song of the catalog)
                   or ``failed``
``content_hash``   sha256 of the file's bytes (the catalog's song key)
``model_id``       the encoder checkpoint that made the vectors
``mode``           ``fast`` or ``full``
tags               ``artist``, ``title``, ``album``; ``duration`` in seconds, ``audio_key``
``vec_M`` ...      the embeddings per space (``vec_M``, ``vec_V``, ``vec_MplusV``,
                   ``vec_MV``), lists of float32; null when the mode has no such space
``fingerprint``    :mod:`core.audio.fingerprints` words as bytes
``analysis``       :meth:`core.remix.analysis.Analysis.to_dict` as JSON (tempo, beats, key)
``stage``          for a failure: where it failed, ``error`` (the exception class) and
                   ``reason`` (the message)
=================  ===========================================================================

:func:`ingest_shards` applies every shard file in ONE transaction per file, and remembers the
files it applied (catalog meta ``shard:<name>``), so ingesting twice, or after a crash in the
middle, gives the same catalog. A shard file that cannot be read (a job killed while writing
it) is skipped with a warning: its songs are simply indexed again by the next run.

Needs ``pyarrow`` (the ``scale`` extra).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import ClusterError
from core.library.catalog import Catalog, Failure, SongInfo
from core.library.scan import IndexedSong, ScanItem, commit_song

log = logging.getLogger(__name__)

#: Embedding space -> shard column.
VECTOR_COLUMNS = {"M": "vec_M", "V": "vec_V", "[M+V]": "vec_MplusV", "[M,V]": "vec_MV"}
_META_PREFIX = "shard:"

SCHEMA = pa.schema([
    ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
    ("status", pa.string()), ("content_hash", pa.string()), ("model_id", pa.string()),
    ("mode", pa.string()), ("artist", pa.string()), ("title", pa.string()),
    ("album", pa.string()), ("duration", pa.float64()), ("audio_key", pa.string()),
    *[(col, pa.list_(pa.float32())) for col in VECTOR_COLUMNS.values()],
    ("fingerprint", pa.binary()), ("analysis", pa.string()),
    ("stage", pa.string()), ("error", pa.string()), ("reason", pa.string()),
])


def songs_to_table(songs: Iterable[IndexedSong], *, model_id: str) -> pa.Table:
    """Shard rows (:data:`SCHEMA`) of indexed songs."""
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for s in songs:
        info, fail = s.info, s.failure
        row: dict[str, Any] = {
            "path": s.item.path, "size": s.item.size, "mtime_ns": s.item.mtime_ns,
            "status": s.status, "content_hash": s.content_hash or None, "model_id": model_id,
            "mode": s.mode,
            "artist": info.artist if info else None, "title": info.title if info else None,
            "album": info.album if info else None,
            "duration": info.duration if info else None,
            "audio_key": info.audio_key if info else None,
            "fingerprint": s.fingerprint,
            "analysis": json.dumps(s.analysis) if s.analysis is not None else None,
            "stage": fail.stage if fail else None, "error": fail.error if fail else None,
            "reason": fail.reason if fail else None,
        }
        for space, col in VECTOR_COLUMNS.items():
            v = s.vectors.get(space)
            row[col] = None if v is None else np.asarray(v, dtype=np.float32)
        for name in SCHEMA.names:
            cols[name].append(row[name])
    arrays = []
    for f in SCHEMA:
        if pa.types.is_list(f.type):
            arrays.append(pa.array([None if v is None else v.tolist() for v in cols[f.name]],
                                   type=f.type))
        else:
            arrays.append(pa.array(cols[f.name], type=f.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def row_to_song(row: dict[str, Any]) -> IndexedSong:
    """The :class:`IndexedSong` a shard row holds (the inverse of :func:`songs_to_table`)."""
    item = ScanItem(str(row["path"]), "new", int(row["size"]), int(row["mtime_ns"]))
    status = str(row["status"])
    chash = row.get("content_hash") or ""
    if status == "failed":
        return IndexedSong(item, "failed", chash, failure=Failure(
            path=item.path, stage=str(row.get("stage") or "index"),
            error=str(row.get("error") or "Error"), reason=str(row.get("reason") or ""),
            size=item.size, mtime_ns=item.mtime_ns, at=time.time()))
    if status == "linked":
        return IndexedSong(item, "linked", chash)
    vectors = {space: np.asarray(row[col], dtype=np.float32)
               for space, col in VECTOR_COLUMNS.items() if row.get(col) is not None}
    info = SongInfo(content_hash=chash, size=item.size, duration=row.get("duration"),
                    artist=row.get("artist"), title=row.get("title"), album=row.get("album"),
                    audio_key=row.get("audio_key"))
    fp = row.get("fingerprint")
    analysis = json.loads(row["analysis"]) if row.get("analysis") else None
    return IndexedSong(item, "indexed", chash, info=info, vectors=vectors,
                       mode=row.get("mode"), analysis=analysis,
                       fingerprint=bytes(fp) if fp is not None else None,
                       audio_s=float(row.get("duration") or 0.0))


# --- the shard folder ------------------------------------------------------------------------


def shard_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system and path of a shard folder: a local path or a URI
    (``s3://``, ``gs://``, ``hdfs://``... whatever pyarrow can open on this machine).

    Raises
    ------
    ClusterError
        The URI cannot be opened here.
    """
    if "://" in location:
        try:
            fs, path = pafs.FileSystem.from_uri(location)
            return fs, str(path)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise ClusterError(f"{location}: cannot open this shard location ({exc}); give a "
                               "folder every node can reach, or a URI pyarrow can open.") from None
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def prepare_shard_folder(location: str) -> None:
    """Make sure the shard folder exists and may be written (local folders only; an object
    store is checked by the job's first write).

    Raises
    ------
    ClusterError
        It is a file, or cannot be created or written.
    """
    fs, path = shard_filesystem(location)
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise ClusterError(f"{path}: the shard location is a file; give a folder (--shards DIR).")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ClusterError(f"{path}: cannot create the shard folder ({exc}); give a folder you "
                           "may write (--shards DIR).") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ClusterError(f"{path}: the shard folder may not be written; make it writable or "
                           "give another one (--shards DIR).")


def shard_files(location: str) -> list[str]:
    """The Parquet files under the shard folder (sorted; relative names).

    Raises
    ------
    ClusterError
        The folder cannot be listed.
    """
    fs, root = shard_filesystem(location)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise ClusterError(f"{location}: the shard location is not a folder.")
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, pa.ArrowException) as exc:
        raise ClusterError(f"{location}: cannot list the shard folder ({exc}); check that it "
                           "exists and that you may read it.") from None
    names = [f.path for f in found if f.type == pafs.FileType.File
             and f.path.endswith(".parquet") and not os.path.basename(f.path).startswith(".")]
    return sorted(os.path.relpath(n, root) for n in names)


def read_shard(location: str, name: str) -> pa.Table | None:
    """One shard file as a table in :data:`SCHEMA`, or ``None`` when it cannot be read
    (truncated by a killed job, another program's file)."""
    fs, root = shard_filesystem(location)
    full = f"{root.rstrip('/')}/{name}"
    try:
        table = pq.read_table(full, filesystem=fs)
        return table.select(SCHEMA.names).cast(SCHEMA)
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
        log.warning("%s: shard file unreadable (%s); its songs will be indexed again", full, exc)
        return None


def iter_rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(max_chunksize=1024):
        yield from batch.to_pylist()


# --- ingest ----------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What :func:`ingest_shards` applied."""

    files: int = 0              #: shard files applied now
    already: int = 0            #: shard files applied before (skipped)
    unreadable: list[str] = field(default_factory=list)
    indexed: int = 0            #: songs written
    linked: int = 0             #: paths linked to a song of the same content
    failed: int = 0             #: failures recorded
    unchanged: int = 0          #: rows the catalog already held
    other_model: int = 0        #: rows made by another checkpoint (ignored)
    audio_s: float = 0.0


def _applied_key(name: str, size: int) -> str:
    return f"{_META_PREFIX}{name}:{size}"


def ingest_shards(catalog: Catalog, location: str, *, model_id: str,
                  only: Iterable[str] | None = None) -> IngestReport:
    """Apply the shard files at ``location`` (all, or the names in ``only``) to ``catalog``:
    one transaction per file, files applied before are skipped, rows the catalog already
    holds change nothing, rows of another checkpoint are ignored.

    Raises
    ------
    ClusterError
        The shard folder cannot be listed.
    LibraryError
        The catalog cannot be written.
    """
    report = IngestReport()
    fs, root = shard_filesystem(location)
    names = shard_files(location) if only is None else sorted(only)
    for name in names:
        try:
            size = fs.get_file_info(f"{root.rstrip('/')}/{name}").size or 0
        except (OSError, pa.ArrowException):
            size = 0
        key = _applied_key(name, size)
        if catalog.get_meta(key) is not None:
            report.already += 1
            continue
        shard = read_shard(location, name)
        if shard is None:
            report.unreadable.append(name)
            continue
        with catalog.transaction() as c:
            for row in iter_rows(shard):
                _apply_row(catalog, row, model_id, report)
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(time.time())))
        report.files += 1
    return report


def _apply_row(catalog: Catalog, row: dict[str, Any], model_id: str,
               report: IngestReport) -> None:
    song = row_to_song(row)
    item = song.item
    known = catalog.file_rows_for([item.path]).get(item.path)
    unchanged_file = known is not None and known.size == item.size and \
        known.mtime_ns == item.mtime_ns
    if song.status == "failed":
        if unchanged_file:
            report.unchanged += 1  # indexed since (a retry succeeded): keep the song
            return
        commit_song(catalog, song, model_id=model_id)
        report.failed += 1
        return
    if row.get("model_id") != model_id:
        report.other_model += 1
        return
    sid = catalog.song_id_by_hash(song.content_hash)
    rec = catalog.song(sid) if sid is not None else None
    complete = rec is not None and rec.model_id == model_id and (
        rec.mode == "full" or song.mode != "full")
    if complete and unchanged_file and known is not None and known.song_id == sid:
        report.unchanged += 1
        return
    if song.status == "linked" or complete:
        if sid is None:  # its song was removed since the job planned: indexed next time
            log.info("%s: its song is no longer in the catalog; it will be indexed again",
                     item.path)
            return
        commit_song(catalog, song, model_id=model_id, link_to=sid)
        report.linked += 1
        return
    commit_song(catalog, song, model_id=model_id)
    report.indexed += 1
    report.audio_s += song.audio_s
