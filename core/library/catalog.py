"""The library catalog: one SQLite file, the source of truth for a song library.

Tables
------
``meta``
    ``schema_version``, ``library_id`` (random, made once), ``model_id`` (the encoder
    checkpoint the library searches with) and ``generation`` (bumped by every change to the
    searchable vectors, so derived faiss indexes know when they are stale).
``roots`` / ``excludes``
    Folders and files the user added, and paths the user removed from inside a root.
``songs``
    One row per distinct recording, keyed by the sha256 of the file's bytes (duplicates are
    stored once): tags (artist, title, album), duration, the decoded-audio key of its cached
    stems, analysis (tempo, key, beats as JSON) and which checkpoint/mode embedded it.
``files``
    Paths on disk -> song, with size and mtime (nanoseconds) for incremental re-scans. A moved
    or renamed file is a new path pointing at the old song, so it keeps its embeddings.
``embeddings``
    One float32 vector (a blob) per song and space (``M``, ``V``, ``[M+V]``, ``[M,V]``), with
    the checkpoint id and a checksum of the blob. A song's vectors are always written together
    in one transaction. A vector that fails its checksum is never read (as if missing) and the
    next scan re-embeds its song.
``failures``
    Files that could not be indexed: the stage, the error class and the reason.

Durability: WAL journal, one ``BEGIN IMMEDIATE`` transaction per song, so a killed process
loses at most the song it was working on. The connection is shared between threads behind a
lock (the GUI reads while a worker scans).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import CatalogDamagedError, DiskFullError, LibraryError, LibraryReadOnlyError

#: 2: ``embeddings.checksum`` (a flipped byte in a stored vector is recognised)
SCHEMA_VERSION = 2
#: Embedding spaces stored per song (the names used by ``core.embedding.song``).
STORED_SPACES = ("M", "V", "[M+V]", "[M,V]")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS excludes (path TEXT PRIMARY KEY, added_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS songs (
    id INTEGER PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    audio_key TEXT,
    duration REAL,
    artist TEXT,
    title TEXT,
    album TEXT,
    tempo REAL,
    key TEXT,
    analysis TEXT,
    stems_model TEXT,
    model_id TEXT,
    mode TEXT,
    added_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    song_id INTEGER NOT NULL REFERENCES songs(id) ON DELETE CASCADE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_song ON files(song_id);
CREATE INDEX IF NOT EXISTS songs_tempo ON songs(tempo);
CREATE INDEX IF NOT EXISTS songs_key ON songs(key);
CREATE TABLE IF NOT EXISTS embeddings (
    song_id INTEGER NOT NULL REFERENCES songs(id) ON DELETE CASCADE,
    space TEXT NOT NULL,
    model_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    checksum TEXT,
    PRIMARY KEY (song_id, space)
);
CREATE INDEX IF NOT EXISTS embeddings_space ON embeddings(space, model_id);
CREATE TABLE IF NOT EXISTS fingerprints (
    song_id INTEGER PRIMARY KEY REFERENCES songs(id) ON DELETE CASCADE,
    fp BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    size INTEGER,
    mtime_ns INTEGER,
    stage TEXT NOT NULL,
    error TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class FileRow:
    """A path the catalog knows: its song and the size/mtime seen when it was indexed."""

    path: str
    song_id: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed. ``stage`` is where it failed (``hash``, ``decode``,
    ``separate``, ``embed``...), ``error`` the exception class, ``reason`` the message."""

    path: str
    stage: str
    error: str
    reason: str
    size: int | None = None
    mtime_ns: int | None = None
    at: float = 0.0


@dataclass(frozen=True)
class SongRecord:
    """One song of the catalog (a distinct recording; ``paths`` lists where it lives)."""

    id: int
    content_hash: str
    size: int
    paths: tuple[str, ...]
    duration: float | None
    artist: str | None
    title: str | None
    album: str | None
    tempo: float | None
    key: str | None
    audio_key: str | None
    stems_model: str | None
    model_id: str | None
    mode: str | None
    analysis: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        """The first path (sorted) where the song lives; ``""`` if it has none left."""
        return self.paths[0] if self.paths else ""


@dataclass(frozen=True)
class SongInfo:
    """What a scan learned about a song before embedding it (tags, duration, keys)."""

    content_hash: str
    size: int
    duration: float | None = None
    artist: str | None = None
    title: str | None = None
    album: str | None = None
    audio_key: str | None = None
    stems_model: str | None = None


def vector_to_blob(v: npt.ArrayLike) -> bytes:
    """float32 little-endian bytes of a 1-D vector."""
    a = np.ascontiguousarray(np.asarray(v, dtype="<f4").reshape(-1))
    return a.tobytes()


def blob_to_vector(b: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


def blob_checksum(b: bytes) -> str:
    """Checksum stored beside each vector blob (BLAKE2b, 8 bytes, hex)."""
    return hashlib.blake2b(bytes(b), digest_size=8).hexdigest()


def _intact(blob: bytes, checksum: str | None) -> bool:
    # rows written before checksums existed got theirs when the catalog was upgraded
    return checksum is None or blob_checksum(blob) == checksum


class Catalog:
    """The SQLite catalog of one library. Use :meth:`open`; close with :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: bool = False) -> None:
        self._conn = conn
        self.path = path
        self.read_only = read_only
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction(): inner ones join the outer one

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> Catalog:
        """Open (creating if needed, unless ``read_only``) the catalog file at ``path``.

        ``read_only`` opens it with SQLite's ``mode=ro`` (``immutable`` when even that cannot
        be done, e.g. a read-only share without the WAL's index file): nothing is ever
        written, every write raises :class:`LibraryReadOnlyError`.

        Raises
        ------
        LibraryError
            The file is not a Crossmix catalog (damaged, another program's database) or was
            written by a newer Crossmix; read-only: there is no catalog at ``path``.
        """
        p = Path(path)
        if read_only:
            return cls._open_read_only(p)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(p), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except OSError as exc:
            raise LibraryError(f"{p}: cannot open the library catalog ({exc}).") from None
        except sqlite3.Error as exc:
            raise storage_error(p, exc) from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            cat = cls(conn, p)
            cat._init_schema()
        except sqlite3.Error as exc:
            conn.close()
            raise storage_error(p, exc) from None
        except LibraryError:
            conn.close()
            raise
        return cat

    @classmethod
    def _open_read_only(cls, p: Path) -> Catalog:
        if not p.is_file():
            raise LibraryError(f"{p}: there is no library catalog here; check the folder.")
        last: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{p.resolve().as_uri()}?{flags}", uri=True, timeout=30.0,
                                       isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                last = exc
                continue
            try:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.Error as exc:
                conn.close()
                last = exc
                continue
            if row is None or int(row[0]) > SCHEMA_VERSION:
                conn.close()
                raise LibraryError(
                    f"{p}: this catalog was written by a newer Crossmix (or is not one); "
                    "update Crossmix to open it.")
            if int(row[0]) < SCHEMA_VERSION:
                conn.close()
                raise LibraryReadOnlyError(
                    f"{p}: this catalog needs an upgrade that a read-only library cannot get; "
                    "open it once where its folder may be written.")
            return cls(conn, p, read_only=True)
        assert last is not None
        raise storage_error(p, last) from None

    def _init_schema(self) -> None:
        with self._lock:
            self._conn.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS), commits itself
        with self.transaction() as c:
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                c.execute("INSERT INTO meta VALUES ('library_id', ?)", (uuid.uuid4().hex,))
                c.execute("INSERT INTO meta VALUES ('generation', '0')")
            elif int(row[0]) > SCHEMA_VERSION:
                raise LibraryError(
                    f"{self.path}: this library was written by a newer Crossmix (schema "
                    f"{row[0]} > {SCHEMA_VERSION}); update Crossmix to open it."
                )
            else:
                _upgrade(c, int(row[0]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error).
        Nested in another one (same thread), it is part of the outer transaction."""
        with self._lock:
            if self.read_only:
                raise LibraryReadOnlyError(
                    f"{self.path.parent}: this library is open read-only (a catalogue built "
                    "with '--engine ray', or a folder you may not write); nothing was changed. "
                    "Change it with 'crossmix library ... --library "
                    f"{self.path.parent}' where it may be written.")
            if self._depth:  # inside another transaction: part of it
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc) from None
            self._depth = 1
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite rolled back itself (a full disk); nothing was written
                if isinstance(exc, sqlite3.Error):
                    raise storage_error(self.path, exc) from None
                raise
            finally:
                self._depth = 0

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cur = self._conn.execute(sql, tuple(params))
                return list(cur.fetchall())
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc) from None

    # --- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def library_id(self) -> str:
        return self.get_meta("library_id") or ""

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    @property
    def model_id(self) -> str | None:
        """The encoder checkpoint the library searches with (``None`` before the first scan)."""
        return self.get_meta("model_id")

    def set_model_id(self, model_id: str) -> None:
        """Switch the library to another checkpoint; songs of the old one become stale."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES ('model_id', ?)", (model_id,))
            _bump(c)

    # --- roots and excludes -----------------------------------------------------------------

    def add_root(self, path: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO roots VALUES (?, ?)", (path, time.time()))
            c.execute("DELETE FROM excludes WHERE path=? OR path LIKE ? ESCAPE '\\'",
                      (path, _like_under(path)))

    def roots(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT path FROM roots ORDER BY path")]

    def excludes(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT path FROM excludes ORDER BY path")]

    # --- files and songs --------------------------------------------------------------------

    def file_rows(self) -> dict[str, FileRow]:
        rows = self._query("SELECT path, song_id, size, mtime_ns FROM files")
        return {str(r[0]): FileRow(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows}

    def file_rows_for(self, paths: Iterable[str]) -> dict[str, FileRow]:
        """The rows of :meth:`file_rows` for ``paths`` only (those the catalog knows)."""
        out: dict[str, FileRow] = {}
        plist = [str(p) for p in paths]
        for i in range(0, len(plist), 900):
            chunk = plist[i:i + 900]
            marks = ",".join("?" * len(chunk))
            for r in self._query(
                    f"SELECT path, song_id, size, mtime_ns FROM files WHERE path IN ({marks})",
                    chunk):
                out[str(r[0])] = FileRow(str(r[0]), int(r[1]), int(r[2]), int(r[3]))
        return out

    def song_id_by_hash(self, content_hash: str) -> int | None:
        rows = self._query("SELECT id FROM songs WHERE content_hash=?", (content_hash,))
        return int(rows[0][0]) if rows else None

    def song(self, song_id: int) -> SongRecord | None:
        got = self.songs(ids=[song_id])
        return got[0] if got else None

    def song_by_path(self, path: str) -> SongRecord | None:
        rows = self._query("SELECT song_id FROM files WHERE path=?", (path,))
        return self.song(int(rows[0][0])) if rows else None

    def songs(self, *, ids: Iterable[int] | None = None,
              with_analysis: bool = True) -> list[SongRecord]:
        """Songs ordered by id (all, or those in ``ids``); ``with_analysis=False`` leaves
        ``analysis`` (beats as JSON) unread, for speed."""
        cols = ("id, content_hash, size, duration, artist, title, album, tempo, key, "
                "audio_key, stems_model, model_id, mode, "
                + ("analysis" if with_analysis else "NULL"))
        if ids is None:
            rows = self._query(f"SELECT {cols} FROM songs ORDER BY id")
            files = self._query("SELECT song_id, path FROM files ORDER BY path")
        else:
            id_list = [int(i) for i in ids]
            if not id_list:
                return []
            rows, files = [], []
            for chunk in _chunks(id_list, 900):
                marks = ",".join("?" * len(chunk))
                rows += self._query(f"SELECT {cols} FROM songs WHERE id IN ({marks})", chunk)
                files += self._query(
                    f"SELECT song_id, path FROM files WHERE song_id IN ({marks})", chunk
                )
            rows.sort(key=lambda r: int(r[0]))
        paths: dict[int, list[str]] = {}
        for sid, p in files:
            paths.setdefault(int(sid), []).append(str(p))
        for v in paths.values():
            v.sort()
        return [
            SongRecord(
                id=int(r[0]), content_hash=str(r[1]), size=int(r[2]),
                paths=tuple(paths.get(int(r[0]), [])),
                duration=_opt_float(r[3]), artist=r[4], title=r[5], album=r[6],
                tempo=_opt_float(r[7]), key=r[8], audio_key=r[9], stems_model=r[10],
                model_id=r[11], mode=r[12], analysis=json.loads(r[13]) if r[13] else None,
            )
            for r in rows
        ]

    def put_song(
        self,
        *,
        path: str,
        size: int,
        mtime_ns: int,
        info: SongInfo,
        vectors: Mapping[str, npt.ArrayLike],
        model_id: str,
        mode: str,
        analysis: Mapping[str, Any] | None = None,
        fingerprint: bytes | None = None,
    ) -> int:
        """Record one indexed song in ONE transaction: the song (created or updated by content
        hash), its vectors (replacing any older ones), its audio fingerprint when given
        (:mod:`core.audio.fingerprints`), the path, and clear its failure.

        Returns the song id.
        """
        if not vectors:
            raise ValueError("put_song needs at least one vector")
        now = time.time()
        tempo = key = None
        if analysis is not None:
            tempo, key = analysis.get("tempo"), analysis.get("key")
        with self.transaction() as c:
            song_id = _upsert_song(c, info, model_id=model_id, mode=mode, now=now)
            if analysis is not None:
                c.execute("UPDATE songs SET tempo=?, key=?, analysis=? WHERE id=?",
                          (tempo, key, json.dumps(dict(analysis)), song_id))
            if fingerprint is not None:
                c.execute("INSERT OR REPLACE INTO fingerprints VALUES (?,?)",
                          (song_id, fingerprint))
            c.execute("DELETE FROM embeddings WHERE song_id=?", (song_id,))
            for space, vec in vectors.items():
                blob = vector_to_blob(vec)
                c.execute("INSERT INTO embeddings (song_id, space, model_id, dim, vector, checksum) "
                          "VALUES (?,?,?,?,?,?)",
                          (song_id, space, model_id, len(blob) // 4, blob, blob_checksum(blob)))
            c.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                      (path, song_id, size, mtime_ns))
            c.execute("DELETE FROM failures WHERE path=?", (path,))
            _drop_orphans(c)  # the path's previous song, if the file changed
            _bump(c)
        return song_id

    def link_file(self, *, path: str, song_id: int, size: int, mtime_ns: int) -> None:
        """Point ``path`` at an existing song (a moved, renamed or duplicate file)."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                      (path, song_id, size, mtime_ns))
            c.execute("DELETE FROM failures WHERE path=?", (path,))
            _drop_orphans(c)

    def forget_paths(self, paths: Iterable[str]) -> int:
        """Remove file rows (and failures) for ``paths``; songs left with no file are deleted
        with their vectors. Returns how many songs were deleted."""
        with self.transaction() as c:
            for p in paths:
                c.execute("DELETE FROM files WHERE path=?", (p,))
                c.execute("DELETE FROM failures WHERE path=?", (p,))
            return _drop_orphans(c)

    def remove_tree(self, path: str) -> tuple[int, int]:
        """Remove ``path`` (a file or folder) from the library: roots at or under it, files
        under it; exclude it from roots that still contain it. Returns (files, songs) removed."""
        like = _like_under(path)
        with self.transaction() as c:
            c.execute("DELETE FROM roots WHERE path=? OR path LIKE ? ESCAPE '\\'", (path, like))
            n_files = c.execute(
                "DELETE FROM files WHERE path=? OR path LIKE ? ESCAPE '\\'", (path, like)
            ).rowcount
            c.execute("DELETE FROM failures WHERE path=? OR path LIKE ? ESCAPE '\\'",
                      (path, like))
            roots = [str(r[0]) for r in c.execute("SELECT path FROM roots")]
            if any(_is_under(path, r) for r in roots):
                c.execute("INSERT OR REPLACE INTO excludes VALUES (?, ?)", (path, time.time()))
            n_songs = _drop_orphans(c)
        return int(n_files), n_songs

    def set_analysis(self, song_id: int, analysis: Mapping[str, Any]) -> None:
        """Cache an analysis (``Analysis.to_dict()``) and its tempo/key columns."""
        with self.transaction() as c:
            c.execute("UPDATE songs SET tempo=?, key=?, analysis=? WHERE id=?",
                      (analysis.get("tempo"), analysis.get("key"), json.dumps(dict(analysis)),
                       song_id))

    def fingerprints(self, ids: Iterable[int]) -> dict[int, bytes]:
        """The stored audio fingerprints of songs ``ids`` (songs without one are absent)."""
        out: dict[int, bytes] = {}
        for chunk in _chunks([int(i) for i in ids], 900):
            marks = ",".join("?" * len(chunk))
            for sid, fp in self._query(
                    f"SELECT song_id, fp FROM fingerprints WHERE song_id IN ({marks})", chunk):
                out[int(sid)] = bytes(fp)
        return out

    def fingerprinted_ids(self) -> set[int]:
        """Ids of the songs that have a stored fingerprint."""
        return {int(r[0]) for r in self._query("SELECT song_id FROM fingerprints")}

    def set_stems(self, song_id: int, *, audio_key: str, stems_model: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE songs SET audio_key=?, stems_model=? WHERE id=?",
                      (audio_key, stems_model, song_id))

    def filter_ids(
        self, *, tempo_range: tuple[float, float] | None = None,
        keys: Iterable[str] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Ids of songs whose analysed tempo lies in ``[lo, hi]`` BPM and whose key is one of
        ``keys`` (names as the analysis writes them, e.g. ``"A minor"``); ``None``: any."""
        where: list[str] = []
        params: list[Any] = []
        if tempo_range is not None:
            where.append("tempo BETWEEN ? AND ?")
            params += [float(tempo_range[0]), float(tempo_range[1])]
        if keys is not None:
            key_list = list(keys)
            where.append(f"key IN ({','.join('?' * len(key_list))})" if key_list else "0")
            params += key_list
        sql = "SELECT id FROM songs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._query(sql, params)
        return np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))

    # --- failures ---------------------------------------------------------------------------

    def record_failure(self, failure: Failure) -> None:
        """Record a failed file; a path that held a song no longer does (its content is
        unusable now), and a song left with no file is deleted."""
        with self.transaction() as c:
            if c.execute("DELETE FROM files WHERE path=?", (failure.path,)).rowcount:
                _drop_orphans(c)
            c.execute(
                "INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?)",
                (failure.path, failure.size, failure.mtime_ns, failure.stage, failure.error,
                 failure.reason, failure.at or time.time()),
            )

    def failures(self) -> list[Failure]:
        rows = self._query(
            "SELECT path, stage, error, reason, size, mtime_ns, at FROM failures ORDER BY path"
        )
        return [Failure(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5], float(r[6]))
                for r in rows]

    # --- vectors ----------------------------------------------------------------------------

    def vectors(
        self, space: str, model_id: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """All vectors of ``space`` made by ``model_id``: ids ``(n,)`` and matrix ``(n, d)``."""
        rows = self._query(
            "SELECT song_id, vector, checksum FROM embeddings WHERE space=? AND model_id=? "
            "ORDER BY song_id",
            (space, model_id),
        )
        return _stack([r for r in rows if _intact(r[1], r[2])])

    def count_vectors(self, space: str, model_id: str) -> int:
        """How many vectors of ``space`` ``model_id`` made."""
        rows = self._query("SELECT COUNT(*) FROM embeddings WHERE space=? AND model_id=?",
                           (space, model_id))
        return int(rows[0][0])

    def iter_vectors(
        self, space: str, model_id: str, *, batch: int = 50_000
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """The vectors of :meth:`vectors` in chunks of ``batch`` (ids ascending), so a catalog
        of millions of songs is read in bounded memory."""
        last = -1
        while True:
            rows = self._query(
                "SELECT song_id, vector, checksum FROM embeddings WHERE space=? AND model_id=? "
                "AND song_id>? ORDER BY song_id LIMIT ?", (space, model_id, last, batch))
            if not rows:
                return
            last = int(rows[-1][0])
            ids, mat = _stack([r for r in rows if _intact(r[1], r[2])])
            if len(ids):
                yield ids, mat

    def sample_vectors(self, space: str, model_id: str, size: int, *,
                       seed: int = 0) -> npt.NDArray[np.float32]:
        """About ``size`` vectors of ``space`` drawn at random (to train an approximate
        index), ``(m, d)``."""
        ids = np.fromiter((int(r[0]) for r in self._query(
            "SELECT song_id FROM embeddings WHERE space=? AND model_id=?", (space, model_id))),
            dtype=np.int64)
        if len(ids) > size:
            ids = np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))
        got = self.vectors_for(ids.tolist(), space, model_id)
        if not got:
            return np.zeros((0, 0), np.float32)
        return np.stack([got[int(i)] for i in ids if int(i) in got]).astype(np.float32)

    def vectors_for(
        self, ids: Iterable[int], space: str, model_id: str
    ) -> dict[int, npt.NDArray[np.float32]]:
        out: dict[int, npt.NDArray[np.float32]] = {}
        for chunk in _chunks([int(i) for i in ids], 900):
            marks = ",".join("?" * len(chunk))
            for sid, blob, check in self._query(
                # "+space": look rows up by primary key (song_id), not by the space index
                f"SELECT song_id, vector, checksum FROM embeddings WHERE song_id IN ({marks}) "
                f"AND +space=? AND model_id=?", [*chunk, space, model_id]
            ):
                if _intact(blob, check):
                    out[int(sid)] = blob_to_vector(blob)
        return out

    def song_vectors(self, song_id: int, model_id: str) -> dict[str, npt.NDArray[np.float32]]:
        rows = self._query(
            "SELECT space, vector, checksum FROM embeddings WHERE song_id=? AND model_id=?",
            (song_id, model_id),
        )
        return {str(s): blob_to_vector(b) for s, b, check in rows if _intact(b, check)}

    def damaged_vector_songs(self) -> set[int]:
        """Ids of songs with a stored vector that fails its checksum (to be re-embedded)."""
        rows = self._query("SELECT song_id, vector, checksum FROM embeddings")
        return {int(sid) for sid, blob, check in rows if not _intact(blob, check)}

    # --- counts -----------------------------------------------------------------------------

    def counts(self, model_id: str | None) -> dict[str, int]:
        """songs, files, failures, songs embedded with ``model_id`` (current), stale, and per
        space the number of current vectors (``space:M`` ...)."""
        def one(sql: str, *p: Any) -> int:
            return int(self._query(sql, p)[0][0])

        out = {
            "songs": one("SELECT COUNT(*) FROM songs"),
            "files": one("SELECT COUNT(*) FROM files"),
            "failures": one("SELECT COUNT(*) FROM failures"),
            "current": one("SELECT COUNT(*) FROM songs WHERE model_id IS ?", model_id),
            "full": one("SELECT COUNT(*) FROM songs WHERE model_id IS ? AND mode='full'",
                        model_id),
            "analysed": one("SELECT COUNT(*) FROM songs WHERE analysis IS NOT NULL"),
        }
        out["stale"] = out["songs"] - out["current"]
        for space, n in self._query(
            "SELECT space, COUNT(*) FROM embeddings WHERE model_id IS ? GROUP BY space",
            (model_id,),
        ):
            out[f"space:{space}"] = int(n)
        return out

    def dump(self) -> dict[str, Any]:
        """A comparable snapshot (no ids, no times): for tests and consistency checks."""
        songs = {}
        model = self.model_id
        all_songs = self.songs()
        fps = self.fingerprints(s.id for s in all_songs)
        for s in all_songs:
            vecs = self.song_vectors(s.id, s.model_id or "")
            fp = fps.get(s.id)
            songs[s.content_hash] = {
                "fingerprint": hashlib.sha256(fp).hexdigest() if fp is not None else None,
                "paths": s.paths, "size": s.size, "duration": s.duration, "artist": s.artist,
                "title": s.title, "album": s.album, "tempo": s.tempo, "key": s.key,
                "audio_key": s.audio_key, "model_id": s.model_id, "mode": s.mode,
                "vectors": {k: v.tolist() for k, v in sorted(vecs.items())},
            }
        return {
            "model_id": model,
            "roots": self.roots(),
            "songs": songs,
            "failures": {f.path: (f.stage, f.error) for f in self.failures()},
        }


# --- helpers -------------------------------------------------------------------------------


def _nearly_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has under 1 MiB free (SQLite reports a full disk
    while growing its journal as a plain I/O error)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def storage_error(path: Path, exc: sqlite3.Error) -> LibraryError:
    """What an SQLite error on the catalog at ``path`` means to the user, and what to do."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    folder = path.parent
    code = getattr(exc, "sqlite_errorcode", None)
    unwritable = (folder.is_dir() and not os.access(folder, os.W_OK)) or (
        path.exists() and not os.access(path, os.W_OK))
    if ("readonly" in low or "read-only" in low or code == sqlite3.SQLITE_READONLY
            or (unwritable and ("unable to open" in low or code == sqlite3.SQLITE_CANTOPEN))):
        return LibraryReadOnlyError(
            f"{path}: the library may not be written ({text}); nothing was changed. Make "
            f"{folder} writable, or use another library folder (--library DIR)."
        )
    if "disk is full" in low or code == sqlite3.SQLITE_FULL or (
            ("disk i/o error" in low or code == sqlite3.SQLITE_IOERR) and _nearly_full(folder)):
        return DiskFullError(
            f"{path}: the disk holding the library is full ({text}); the change in progress "
            "was undone and nothing already in the library was lost. Free some space and run "
            "the command again (an interrupted scan resumes where it stopped)."
        )
    if ("malformed" in low or "not a database" in low or "could not decode" in low
            or code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)):
        return CatalogDamagedError(
            f"{path}: the library catalog is damaged ({text}). Run 'crossmix library repair "
            f"--library {folder}' to check it and keep what can be read; the songs it loses "
            "are indexed again from their files by the next scan."
        )
    if "unable to open" in low or code == sqlite3.SQLITE_CANTOPEN:
        return LibraryError(
            f"{path}: cannot open the library catalog ({text}); check that {folder} exists "
            "and that you may write to it."
        )
    return LibraryError(f"{path}: the library catalog could not be used ({text}).")


def _upgrade(c: sqlite3.Connection, version: int) -> None:
    """Bring a catalog of schema ``version`` to :data:`SCHEMA_VERSION` (inside a transaction)."""
    if version < 2:
        cols = {str(r[1]) for r in c.execute("PRAGMA table_info(embeddings)")}
        if "checksum" not in cols:
            c.execute("ALTER TABLE embeddings ADD COLUMN checksum TEXT")
        rows = c.execute("SELECT rowid, vector FROM embeddings WHERE checksum IS NULL").fetchall()
        c.executemany("UPDATE embeddings SET checksum=? WHERE rowid=?",
                      [(blob_checksum(b), rid) for rid, b in rows])
    if version < SCHEMA_VERSION:
        c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))


def _upsert_song(c: sqlite3.Connection, info: SongInfo, *, model_id: str, mode: str,
                 now: float) -> int:
    """The id of the song with ``info.content_hash``, created or updated from ``info``."""
    row = c.execute("SELECT id FROM songs WHERE content_hash=?",
                    (info.content_hash,)).fetchone()
    if row is None:
        cur = c.execute(
            "INSERT INTO songs (content_hash, size, audio_key, duration, artist, title, "
            "album, stems_model, model_id, mode, added_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (info.content_hash, info.size, info.audio_key, info.duration, info.artist,
             info.title, info.album, info.stems_model, model_id, mode, now, now),
        )
        song_id = int(cur.lastrowid or 0)
    else:
        song_id = int(row[0])
        c.execute(
            "UPDATE songs SET size=?, audio_key=COALESCE(?, audio_key), "
            "duration=COALESCE(?, duration), artist=?, title=?, album=?, "
            "stems_model=COALESCE(?, stems_model), model_id=?, mode=?, updated_at=? "
            "WHERE id=?",
            (info.size, info.audio_key, info.duration, info.artist, info.title,
             info.album, info.stems_model, model_id, mode, now, song_id),
        )
    return song_id


def _bump(c: sqlite3.Connection) -> None:
    c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")


def _drop_orphans(c: sqlite3.Connection) -> int:
    n = c.execute("DELETE FROM songs WHERE id NOT IN (SELECT song_id FROM files)").rowcount
    if n:
        _bump(c)
    return int(n)


def _like_under(path: str) -> str:
    """A LIKE pattern matching paths strictly under folder ``path``."""
    base = path.rstrip("/\\")
    esc = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return esc + "/%"


def _is_under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path != root and path.startswith(root + "/")


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _chunks(xs: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(xs), n):
        yield xs[i: i + n]


def _stack(rows: list[sqlite3.Row]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    ids = np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))
    mat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").astype(np.float32)
    return ids, mat.reshape(len(rows), -1)


# --- checking and salvaging a damaged catalog ----------------------------------------------

#: Tables in the order they are salvaged (parents before children).
_TABLES = ("meta", "roots", "excludes", "songs", "files", "embeddings", "fingerprints", "failures")


@dataclass
class RepairReport:
    """What :func:`repair_catalog` found and did."""

    problems: list[str] = field(default_factory=list)  #: integrity_check and unreadable values
    repaired: bool = False      #: a salvaged catalog replaced the damaged one
    kept: dict[str, int] = field(default_factory=dict)  #: rows kept per table
    lost_songs: int = 0         #: songs dropped (unreadable, or without their mix vector)
    damaged_copy: str | None = None  #: where the damaged file was moved


def _tolerant_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    # undecodable text (a flipped byte in a tag) is kept with U+FFFD instead of failing the row
    conn.text_factory = lambda b: b.decode("utf-8", "replace")
    return conn


def check_catalog(path: str | Path) -> list[str]:
    """Problems of the catalog at ``path``: ``PRAGMA integrity_check`` findings and text
    values that are not valid UTF-8. An empty list means it is sound."""
    p = Path(path)
    try:
        conn = sqlite3.connect(str(p), isolation_level=None)
    except sqlite3.Error as exc:
        return [str(exc)]
    problems: list[str] = []
    try:
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            problems += [str(r[0]) for r in rows if str(r[0]) != "ok"]
        except sqlite3.Error as exc:
            return [str(exc)]
        for table in _TABLES:
            try:
                for _ in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed names
                    pass
            except sqlite3.Error as exc:
                problems.append(f"table {table}: {exc}")
    finally:
        conn.close()
    return problems


def _salvage_rows(conn: sqlite3.Connection, table: str, cols: list[str]) -> list[tuple[Any, ...]]:
    """Every row of ``table`` that can still be read, stepping over damaged pages."""
    out: list[tuple[Any, ...]] = []
    last = -(1 << 63)
    step = 1
    tries = 0
    sel = f"SELECT rowid, {', '.join(cols)} FROM {table} WHERE rowid > ? ORDER BY rowid"  # noqa: S608
    while tries < 200:
        try:
            for row in conn.execute(sel, (last,)):
                out.append(tuple(row))
                last = int(row[0])
                step = 1
            return out
        except sqlite3.Error:
            tries += 1
            last += step  # past the damaged page, in growing steps
            step *= 2
    return out


def repair_catalog(path: str | Path, *, dry_run: bool = False) -> RepairReport:
    """Check the catalog at ``path`` and, when damaged, replace it with what can be read.

    Rows are copied table by table into a fresh catalog, stepping over damaged pages;
    unreadable text becomes U+FFFD. Songs that lost their files or their mix vector are
    dropped, so the next scan indexes their files again (from cached stems in full mode). The
    damaged file is kept beside it as ``catalog.sqlite.damaged-<time>``.

    Raises
    ------
    LibraryError
        The folder cannot be written (nothing is changed then).
    """
    p = Path(path)
    report = RepairReport(problems=check_catalog(p))
    if not report.problems or dry_run:
        return report
    salvage = p.with_name(f".{p.name}.salvage")
    for leftover in (salvage, Path(f"{salvage}-wal"), Path(f"{salvage}-shm")):
        leftover.unlink(missing_ok=True)
    _salvage_into(p, salvage, report)
    damaged = _swap_in_salvage(p, salvage)
    report.repaired = True
    report.damaged_copy = str(damaged)
    return report


def _salvage_into(p: Path, salvage: Path, report: RepairReport) -> None:
    """Copy what can be read of the catalog ``p`` into a fresh catalog at ``salvage``, drop
    songs that lost their files or their mix vector, and count both in ``report``."""
    old = _tolerant_connect(p)
    new = Catalog.open(salvage)
    try:
        with new.transaction() as c:
            c.execute("PRAGMA defer_foreign_keys=ON")
            for table in ("meta", *_TABLES[1:]):
                cols = [str(r[1]) for r in c.execute(f"PRAGMA table_info({table})")]
                try:
                    rows = _salvage_rows(old, table, cols)
                except sqlite3.Error:
                    rows = []
                if table == "meta":
                    c.execute("DELETE FROM meta")
                marks = ",".join("?" * len(cols))
                c.executemany(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                    [r[1:] for r in rows])
                report.kept[table] = len(rows)
            songs_before = c.execute("SELECT COUNT(*) FROM songs").fetchone()[0]
            c.execute("DELETE FROM files WHERE song_id NOT IN (SELECT id FROM songs)")
            c.execute("DELETE FROM songs WHERE id NOT IN "
                      "(SELECT song_id FROM embeddings WHERE space='M')")
            c.execute("DELETE FROM files WHERE song_id NOT IN (SELECT id FROM songs)")
            c.execute("DELETE FROM embeddings WHERE song_id NOT IN (SELECT id FROM songs)")
            c.execute("DELETE FROM fingerprints WHERE song_id NOT IN (SELECT id FROM songs)")
            _drop_orphans(c)
            report.lost_songs = (int(songs_before)
                                 - int(c.execute("SELECT COUNT(*) FROM songs").fetchone()[0]))
            for key, value in (("schema_version", str(SCHEMA_VERSION)), ("generation", "0"),
                               ("library_id", uuid.uuid4().hex)):
                c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            _bump(c)  # derived indexes are rebuilt
        with new._lock:
            new._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        new.close()
        old.close()


def _swap_in_salvage(p: Path, salvage: Path) -> Path:
    """Move the damaged catalog ``p`` (and its WAL files) aside and ``salvage`` in its place;
    the damaged copy's path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    damaged = p.with_name(f"{p.name}.damaged-{stamp}")
    try:
        os.replace(p, damaged)
        for ext in ("-wal", "-shm"):
            side = Path(f"{p}{ext}")
            if side.exists():
                os.replace(side, Path(f"{damaged}{ext}"))
        os.replace(salvage, p)
        Path(f"{salvage}-wal").unlink(missing_ok=True)
        Path(f"{salvage}-shm").unlink(missing_ok=True)
    except OSError as exc:
        raise LibraryError(f"{p}: could not put the salvaged catalog in place ({exc}); the "
                           f"salvaged copy is {salvage}.") from None
    return damaged
