"""The song library: a folder with a SQLite catalog, derived faiss indexes and a stem cache.

Layout of a library folder (default :func:`core.paths.default_library_dir`)::

    catalog.sqlite (+ -wal, -shm)   the source of truth (core.library.catalog)
    index/<space>.faiss + .json     derived search indexes, rebuilt when missing/stale/corrupt
    stems/                          separated stems (core.separation.separator.StemCache)

Typical use (the engine's facade, :class:`core.api.Crossmix`, does this for the GUI and the CLI)::

    lib = Library.open(folder)                  # None: the default library
    lib.add_paths(["~/Music"])
    lib.scan(mode="fast", encoders=enc, progress=cb, cancel=token)
    result = lib.search(query_embedding, space="vocal->mix", k=10)
    lib.stems_for(result.matches[0].song_id, separator=sep)
    lib.analysis_for(result.matches[0].song_id)

The library searches vectors; it does not run queries. A song file becomes a query in one
place, the facade's query pipeline (:meth:`core.api.Crossmix.query`, whose steps up to the
search :meth:`core.api.Crossmix.embed_query` offers on their own): decoded, separated through
the stem caches, embedded or given the library's stored vectors (:meth:`Library.stored_embedding`),
and handed to :meth:`Library.search` as a :class:`QueryEmbedding`.

**Modes.** A *fast* scan embeds only each song's mix with ``f_m`` (no separation; the 3-s
segments are spread over the whole song), which is all the default ``vocal->mix`` and the
``mix->mix`` searches need. A *full* scan also separates every song (Spleeter, stems cached)
and embeds the vocal with ``f_v``, adding the ``V``, ``[M+V]`` and ``[M,V]`` spaces; its
segments are the vocal-active ones, so a song's ``M`` differs slightly between the modes.

**Checkpoints.** The catalog records the encoder checkpoint (``model_id``) it searches with.
Scanning with another checkpoint switches the library to it and re-embeds every song (full
songs from their cached stems); a song not yet re-embedded is left out of searches, so two
checkpoints are never mixed in one search.

**Near-duplicates.** Like the paper's demo, matches that are the query itself are left out:
the same file content (sha256), the same decoded audio, or another version of the same
recording (a re-encode, a remaster, an edit) recognised by the audio fingerprints of the two
(:mod:`core.audio.fingerprints`, stored per song at indexing). Only when either has no fingerprint
(a song indexed before fingerprints existed, a clip under 7.5 s) does the mix embedding
decide: ``M`` at least :data:`DUPLICATE_SIMILARITY` cosine-similar to the query's and standing
out from the query's average similarity to the library by :data:`DUPLICATE_MARGIN` (so a
collapsed, undertrained checkpoint, under which every song looks like every other, does not
hide everything); ``bench/duplicates.py`` shows why the embedding is the fallback only. They
are returned separately in ``SearchResult.excluded_duplicates`` and can be kept with
``include_duplicates=True``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from core.audio.decode import DEFAULT_MAX_DURATION, audio_hash, load_audio
from core.audio.fingerprints import from_blob as fp_from_blob
from core.audio.fingerprints import same_recording
from core.embedding.encoders import EncoderPair
from core.embedding.features import SEGMENT_SECONDS
from core.embedding.song import SongEmbedding
from core.errors import CrossmixError, LibraryError, LibraryReadOnlyError, NoVocalError
from core.library.catalog import Catalog, Failure, SongRecord
from core.library.index import IndexStore
from core.library.scan import MODES, Scanner, ScanReport, embedding_vectors
from core.library.spaces import (
    DEFAULT_SPACE,
    DUPLICATE_MARGIN,
    DUPLICATE_SIMILARITY,
    INDEXED_SPACES,
    SEARCH_SPACES,
    resolve_space,
)
from core.paths import default_library_dir
from core.progress import CancelToken, Progress, ProgressFn, check_cancel
from core.separation.separator import Separator, StemCache, Stems, get_or_separate

if TYPE_CHECKING:
    from core.remix.analysis import Analysis, KeyMode

log = logging.getLogger(__name__)

#: Age after which a leftover temporary file is certainly not being written any more.
TEMP_FILE_MAX_AGE_S = 3600.0
CATALOG_NAME = "catalog.sqlite"
INDEX_DIR = "index"
STEMS_DIR = "stems"


@dataclass(frozen=True)
class Match:
    """One search result. ``similarity`` is the cosine in the searched space;
    ``duplicate`` says why a song was excluded as a near-duplicate (``None`` otherwise)."""

    rank: int
    song_id: int
    path: str
    title: str
    artist: str | None
    album: str | None
    duration: float | None
    similarity: float
    tempo: float | None
    key: str | None
    duplicate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """Ranked matches (best first) and the near-duplicates that were left out."""

    query: str | None
    space: str
    model: str
    matches: list[Match]
    excluded_duplicates: list[Match] = field(default_factory=list)
    #: the query was a voice alone, embedded unseparated
    query_vocal_only: bool = False
    #: what the a-cappella detector found about the query (``VocalOnlyCheck``), if asked
    query_vocal_check: Any | None = None
    #: ``(start, end)`` seconds of the query that were embedded, when only a region was
    query_region: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``crossmix match --json`` document."""
        check = self.query_vocal_check
        return {
            "query": self.query,
            "space": self.space,
            "model": self.model,
            "query_vocal_only": self.query_vocal_only,
            "query_vocal_check": None if check is None else {
                "accompaniment_db": (check.accompaniment_db
                                     if math.isfinite(check.accompaniment_db) else None),
                "threshold_db": check.threshold_db,
                "probe_s": check.probe_s},
            "query_region": None if self.query_region is None else list(self.query_region),
            "matches": [m.to_dict() for m in self.matches],
            "excluded_duplicates": [m.to_dict() for m in self.excluded_duplicates],
        }


@dataclass
class QueryEmbedding:
    """A query's vectors and identity (for excluding itself from its matches), as
    :meth:`core.api.Crossmix.embed_query` makes them from a song file."""

    embedding: SongEmbedding
    path: str | None = None
    content_hash: str | None = None
    audio_key: str | None = None
    #: :func:`core.audio.fingerprints.fingerprint` of the query's audio (recognises other versions)
    fingerprint: npt.NDArray[np.uint32] | None = None
    #: length of the query's audio in seconds, when known (a query under one segment is refused)
    duration: float | None = None
    #: the query is a voice alone, embedded unseparated (:mod:`core.separation.vocal_only`)
    vocal_only: bool = False
    #: what the a-cappella detector found, when it was asked (``VocalOnlyCheck``)
    vocal_check: Any | None = None
    #: ``(start, end)`` seconds of the song that were embedded, when only a region was
    region: tuple[float, float] | None = None


@dataclass
class LibraryStatus:
    """Counts and sizes of a library (``crossmix library status``)."""

    root: str
    roots: list[str]
    model_id: str | None
    songs: int
    files: int
    failures: int
    current: int          #: songs embedded by ``model_id`` (searchable)
    stale: int            #: songs waiting to be re-embedded with ``model_id``
    full: int             #: current songs embedded in full mode (vocal spaces available)
    analysed: int
    vectors: dict[str, int]
    catalog_bytes: int
    index_bytes: int
    stems_bytes: int
    damaged: int = 0      #: songs with a stored vector failing its checksum (re-embedded by a scan)

    @property
    def size_bytes(self) -> int:
        return self.catalog_bytes + self.index_bytes + self.stems_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size_bytes"] = self.size_bytes
        return d


def _dir_bytes(p: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(p):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _abspath(p: str | Path) -> str:
    return os.path.abspath(os.path.expanduser(str(p)))


def _display_title(song: SongRecord) -> str:
    if song.title:
        return song.title
    return Path(song.path).stem if song.path else song.content_hash[:12]


class Library:
    """A song library folder. Open with :meth:`open`; it is also a context manager.

    ``separator`` and ``encoders`` given here are the defaults of the methods that need them;
    when neither is given, the shipped models are loaded on first use (on ``device``).

    A library opened ``read_only`` (a catalogue built on a cluster, or a folder the user may
    not write) is searched without writing anything to it: a query's stems go to the user's
    stem cache, analyses of matches are not stored, and every change raises
    :class:`core.errors.LibraryReadOnlyError`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        separator: Separator | None = None,
        encoders: EncoderPair | None = None,
        device: torch.device | None = None,
        read_only: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.read_only = read_only
        if read_only:
            self.catalog = Catalog.open(self.root / CATALOG_NAME, read_only=True)
            from core.separation.separator import default_stem_cache

            self.stem_cache = default_stem_cache()
        else:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LibraryError(
                    f"{self.root}: cannot create the library folder ({exc}).") from None
            self.catalog = Catalog.open(self.root / CATALOG_NAME)
            self.stem_cache = StemCache(self.root / STEMS_DIR)
        self.indexes = IndexStore(self.root / INDEX_DIR, self.catalog)
        self.device = device
        self._separator = separator
        self._encoders = encoders
        self._means: dict[tuple[str, str], tuple[int, npt.NDArray[np.float32]]] = {}

    @classmethod
    def open(
        cls,
        root: str | Path | None = None,
        *,
        separator: Separator | None = None,
        encoders: EncoderPair | None = None,
        device: torch.device | None = None,
        read_only: bool | None = False,
    ) -> Library:
        """Open (creating if needed) the library at ``root`` (default: the user's library).

        ``read_only=None`` decides by the library: a catalogue (built with ``--engine ray``,
        see :func:`is_catalogue`) or a folder that may not be written opens read-only.

        Raises
        ------
        LibraryError
            The folder cannot be created or its catalog is damaged.
        """
        folder = Path(root if root is not None else default_library_dir()).expanduser()
        if read_only is None:
            read_only = opens_read_only(folder)
        return cls(folder, separator=separator, encoders=encoders, device=device,
                   read_only=read_only)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- models -----------------------------------------------------------------------------

    def _get_encoders(self, encoders: EncoderPair | None) -> EncoderPair:
        if encoders is not None:
            return encoders
        if self._encoders is None:
            from core.registry import load_encoders

            self._encoders = load_encoders(None, device=self.device)
        return self._encoders

    def _get_separator(self, separator: Separator | None) -> Separator:
        if separator is not None:
            return separator
        if self._separator is None:
            from core.registry import load_separator

            self._separator = load_separator(None, device=self.device)
        return self._separator

    # --- contents ---------------------------------------------------------------------------

    def add_paths(self, paths: Iterable[str | Path]) -> list[str]:
        """Add folders (scanned recursively) or single files; returns their absolute paths.
        Nothing is indexed until :meth:`scan`.

        Raises
        ------
        LibraryError
            A path does not exist (nothing is added then).
        """
        absp = [_abspath(p) for p in paths]
        missing = [p for p in absp if not os.path.exists(p)]
        if missing:
            raise LibraryError(
                f"{missing[0]}: no such file or folder; check the path and add it again."
            )
        for p in absp:
            self.catalog.add_root(p)
        return absp

    def remove(self, path: str | Path) -> tuple[int, int]:
        """Remove a file or folder from the library (its songs, unless other files still hold
        them; the files on disk are untouched). Returns (files, songs) removed.

        Raises
        ------
        LibraryError
            Nothing in the library is at or under ``path``.
        """
        p = _abspath(path)
        known = p in self.catalog.roots() or any(
            f == p or f.startswith(p.rstrip("/") + "/") for f in self.catalog.file_rows()
        ) or any(f.path == p or f.path.startswith(p.rstrip("/") + "/")
                 for f in self.catalog.failures())
        if not known:
            raise LibraryError(
                f"{p}: not in this library ({self.root}); 'crossmix library status' lists its folders."
            )
        return self.catalog.remove_tree(p)

    def roots(self) -> list[str]:
        return self.catalog.roots()

    def songs(self) -> list[SongRecord]:
        """Every song (a distinct recording), ordered by id."""
        return self.catalog.songs()

    def song(self, song: int | SongRecord) -> SongRecord:
        sid = song.id if isinstance(song, SongRecord) else int(song)
        rec = self.catalog.song(sid)
        if rec is None:
            raise LibraryError(f"Song {sid} is not in the library {self.root} (removed?).")
        return rec

    def failures(self) -> list[Failure]:
        """Files that could not be indexed, with the stage and the reason."""
        return self.catalog.failures()

    def status(self) -> LibraryStatus:
        model = self.catalog.model_id
        c = self.catalog.counts(model)
        cat = self.catalog.path
        cat_bytes = sum(os.path.getsize(p) for p in (cat, Path(f"{cat}-wal"), Path(f"{cat}-shm"))
                        if p.exists())
        return LibraryStatus(
            root=str(self.root), roots=self.catalog.roots(), model_id=model,
            songs=c["songs"], files=c["files"], failures=c["failures"], current=c["current"],
            stale=c["stale"], full=c["full"], analysed=c["analysed"],
            vectors={k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("space:")},
            catalog_bytes=cat_bytes, index_bytes=_dir_bytes(self.root / INDEX_DIR),
            stems_bytes=_dir_bytes(self.root / STEMS_DIR),
            # a read-only catalogue is not re-embedded from here, and checking every stored
            # vector of millions of songs would take minutes
            damaged=0 if self.read_only else len(self.catalog.damaged_vector_songs()),
        )

    # --- indexing ---------------------------------------------------------------------------

    # long: 10 keyword options and their documentation; the body is 23 lines
    def scan(
        self,
        *,
        mode: str = "fast",
        separator: Separator | None = None,
        encoders: EncoderPair | None = None,
        analyze: bool | None = None,
        workers: int = 2,
        retry_failed: bool = False,
        max_duration: float | None = DEFAULT_MAX_DURATION,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> ScanReport:
        """Bring the catalog up to date with the files under the roots, then the indexes.

        Parameters
        ----------
        mode : {"fast", "full"}
            ``fast`` embeds mixes only; ``full`` also separates and embeds vocals.
        separator, encoders
            Override the library's models (``separator`` is only used in full mode and to
            re-embed full songs from cached stems).
        analyze : bool, optional
            Also estimate tempo, beats and key during the scan (enables the search filters
            for every song). Default: in full mode yes; in fast mode no (it would cost more
            than the embedding; :meth:`analysis_for` analyses a song on demand and caches it).
        workers : int
            Threads hashing and decoding ahead of the embedding (memory: ``workers + 1``
            decoded songs).
        retry_failed : bool
            Try files that failed before even if they did not change.
        progress : ProgressFn, optional
            ``Progress("scan", done, total, "songs", file name, eta_s)`` after each song.
        cancel : CancelToken, optional
            Stops between songs (and inside separation/embedding); everything committed so
            far is kept and the next scan resumes. Raises :class:`core.errors.Cancelled`.

        Returns
        -------
        ScanReport
        """
        self._check_scannable(mode)
        enc = self._get_encoders(encoders)
        if self.catalog.get_meta(ENGINE_META) == "ray":
            # scanned on this machine: a desktop library again, opened writable by the app
            self.catalog.set_meta(ENGINE_META, "local")
        sep: Separator | None = separator or self._separator
        if mode == "full":
            sep = self._get_separator(separator)
        if analyze is None:
            analyze = mode == "full"
        self.sweep_temporary_files()
        scanner = Scanner(
            self.catalog, self.stem_cache, encoders=enc, separator=sep, mode=mode,
            device=self.device, analyze=analyze, workers=workers, retry_failed=retry_failed,
            max_duration=max_duration,
        )
        report = scanner.run(progress=progress, cancel=cancel)
        if progress:
            progress(Progress("index", 0, 1, "steps", "building search indexes"))
        self.indexes.rebuild_all(list(INDEXED_SPACES), enc.model_id)
        if progress:
            progress(Progress("index", 1, 1, "steps", "done"))
        return report

    def _check_scannable(self, mode: str) -> None:
        if mode not in MODES:
            raise LibraryError(f"Unknown scan mode {mode!r}: use fast or full.")
        if self.read_only:
            raise LibraryReadOnlyError(
                f"{self.root}: this library is open read-only (a catalogue built with "
                "'--engine ray', or a folder you may not write), so it cannot be scanned here; "
                f"run 'crossmix library scan --library {self.root}' where it may be written.")

    def sweep_temporary_files(self, *, older_than_s: float = TEMP_FILE_MAX_AGE_S) -> int:
        """Delete temporary files (``*.part*``) that a killed process left in the stem cache
        and index folders. Only old ones: a younger one may belong to a running writer.
        Returns how many were deleted."""
        now = time.time()
        n = 0
        for folder in (self.root / STEMS_DIR, self.root / INDEX_DIR):
            if not folder.is_dir():
                continue
            for p in folder.rglob(".*.part*"):
                try:
                    if p.is_file() and now - p.stat().st_mtime > older_than_s:
                        p.unlink()
                        n += 1
                except OSError:
                    pass
        return n

    # --- queries ----------------------------------------------------------------------------

    def stored_embedding(self, content_hash: str) -> SongEmbedding | None:
        """The stored vectors of the song whose file has ``content_hash`` (sha256), when it
        was indexed in full mode by the library's checkpoint: a query of a library song needs
        no separation or embedding. ``None`` otherwise."""
        model = self.catalog.model_id
        sid = self.catalog.song_id_by_hash(content_hash)
        if sid is None or model is None:
            return None
        vecs = self.catalog.song_vectors(sid, model)
        if "V" not in vecs or "[M,V]" not in vecs:
            return None
        return SongEmbedding(M=vecs["M"], V=vecs["V"], MplusV=vecs.get("[M+V]"),
                             MV=vecs["[M,V]"], model_id=model)

    # long: 8 keyword options and their documentation; the body (39 lines) is the steps
    def search(
        self,
        query: SongEmbedding | QueryEmbedding,
        *,
        space: str = DEFAULT_SPACE,
        k: int = 10,
        include_duplicates: bool = False,
        duplicate_similarity: float = DUPLICATE_SIMILARITY,
        duplicate_margin: float = DUPLICATE_MARGIN,
        tempo_range: tuple[float, float] | None = None,
        key: str | Sequence[str] | None = None,
        cancel: CancelToken | None = None,
    ) -> SearchResult:
        """The ``k`` library songs nearest to ``query`` by cosine similarity.

        Parameters
        ----------
        query : SongEmbedding or QueryEmbedding
            Vectors made by the library's checkpoint; a :class:`QueryEmbedding` also says
            what the query is, so that it and its other versions are left out of its matches.
            A song file is embedded by the engine's one query pipeline:
            :meth:`core.api.Crossmix.embed_query` (the steps :meth:`core.api.Crossmix.query`
            runs before this search).
        space : str
            ``"vocal->mix"`` (default: the query's vocal through ``f_v`` against the library's
            mixes through ``f_m``), ``"mix->mix"``, ``"vocal->vocal"`` or ``"[M,V]"``. The
            last two need songs scanned in full mode.
        k : int
            Matches to return (fewer when the library, after filters, has fewer).
        include_duplicates : bool
            Keep near-duplicates of the query among the matches (they are still flagged
            in ``Match.duplicate``).
        duplicate_similarity : float
            ``M``-space cosine at or above which a song is a near-duplicate ...
        duplicate_margin : float
            ... provided it also exceeds the query's mean ``M`` similarity to the library by
            this much (see :data:`DUPLICATE_MARGIN`).
        tempo_range : (float, float), optional
            Keep songs whose analysed tempo (BPM) lies in ``[lo, hi]``; unanalysed songs are
            left out when a filter is set.
        key : str or sequence of str, optional
            Keep songs in this key (or one of these), e.g. ``"A minor"``.

        Raises
        ------
        LibraryError
            Empty library, unknown space, or the query was embedded by another checkpoint.
        """
        space = resolve_space(space)
        q_space, lib_space = SEARCH_SPACES[space]
        model = self.catalog.model_id
        if model is None:
            raise LibraryError(
                f"{self.root}: the library is empty; add folders with 'crossmix library add DIR'."
            )
        qe = QueryEmbedding(query) if isinstance(query, SongEmbedding) else query
        _check_query(qe, space)
        if qe.embedding.model_id and qe.embedding.model_id != model:
            raise LibraryError(
                f"The query was embedded by checkpoint {qe.embedding.model_id[:12]} but the "
                f"library {self.root} holds checkpoint {model[:12]}; re-scan the library with the "
                "new checkpoint ('crossmix library scan --encoders ...') or query with the "
                "library's."
            )
        index = self._index_for(space, lib_space, model)
        key_set = _key_set(key)
        allowed, available = self._allowed(index.ntotal, tempo_range, key_set)
        floor: list[float] = []  # the "another version" threshold, computed when first needed

        def version_floor() -> float:
            if not floor:
                mean = self._mean_vector("M", model)
                m = qe.embedding.M
                avg = float(np.dot(m, mean)) if mean.shape == m.shape else 0.0
                floor.append(max(duplicate_similarity, avg + duplicate_margin))
            return floor[0]

        matches, dups = self._ranked(
            qe, np.asarray(qe.embedding.space(q_space), dtype=np.float32), index, lib_space,
            model, k=k, allowed=allowed, available=available, tempo_range=tempo_range,
            key_set=key_set, duplicate_similarity=duplicate_similarity,
            version_floor=version_floor, include_duplicates=include_duplicates, cancel=cancel)
        ranked = [replace(m, rank=r) for r, m in enumerate(matches, start=1)]
        return SearchResult(query=qe.path, space=space, model=model, matches=ranked,
                            excluded_duplicates=[] if include_duplicates else dups,
                            query_vocal_only=qe.vocal_only, query_vocal_check=qe.vocal_check,
                            query_region=qe.region)

    def _index_for(self, space: str, lib_space: str, model: str) -> Any:
        """The search index of ``lib_space``; a clear error when a vocal space is asked of a
        library scanned in fast mode."""
        index = self.indexes.get(lib_space, model)
        if index.ntotal == 0 and lib_space != "M":
            counts = self.catalog.counts(model)
            if counts.get("space:M", 0):
                raise LibraryError(
                    f"{self.root}: the space {space} needs songs scanned in full mode (with "
                    f"their vocals), and its {counts['space:M']} songs were scanned in fast mode. "
                    "Run 'crossmix library scan --mode full' (it separates every song), or "
                    "search vocal->mix or mix->mix."
                )
        return index

    def _allowed(self, ntotal: int, tempo_range: tuple[float, float] | None,
                 key_set: set[tuple[int, KeyMode]] | None,
                 ) -> tuple[npt.NDArray[np.int64] | None, int]:
        """The song ids the tempo/key filters keep (``None``: all) and how many there are."""
        if tempo_range is None and key_set is None:
            return None, ntotal
        from core.remix.analysis import key_name

        allowed = self.catalog.filter_ids(
            tempo_range=(min(tempo_range), max(tempo_range)) if tempo_range else None,
            keys=None if key_set is None else [key_name(r, m) for r, m in key_set])
        return allowed, min(ntotal, len(allowed))

    def _ranked(self, qe: QueryEmbedding, qvec: npt.NDArray[np.float32], index: Any,
                lib_space: str, model: str, *, k: int,
                allowed: npt.NDArray[np.int64] | None, available: int,
                tempo_range: tuple[float, float] | None,
                key_set: set[tuple[int, KeyMode]] | None, duplicate_similarity: float,
                version_floor: Callable[[], float], include_duplicates: bool,
                cancel: CancelToken | None) -> tuple[list[Match], list[Match]]:
        """The first ``k`` matches and the near-duplicates met on the way: candidates are
        fetched in growing batches until ``k`` pass the filters and the duplicate rule."""

        def exact(ids: npt.NDArray[np.int64]) -> dict[int, npt.NDArray[np.float32]]:
            # an approximate (compressed) index re-ranks its candidates by the stored vectors
            return self.catalog.vectors_for(ids.tolist(), lib_space, model)

        matches: list[Match] = []
        dups: list[Match] = []
        seen: set[int] = set()
        fetch = min(max(k * 2, k + 8), max(available, 1))
        while available > 0:
            check_cancel(cancel, "the search")
            sims, ids = index.search(qvec[None, :], fetch, allowed=allowed, exact=exact)
            cand = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True)
                    if i >= 0 and int(i) not in seen]
            seen.update(i for i, _ in cand)
            songs = {s.id: s for s in self.catalog.songs(ids=[i for i, _ in cand],
                                                          with_analysis=False)}
            # songs deleted since the index was read, or filtered out, are dropped here
            cand = [(i, s) for i, s in cand
                    if i in songs and _passes(songs[i], tempo_range, key_set)]
            m_vecs = self.catalog.vectors_for([i for i, _ in cand], "M", model)
            fps = (self.catalog.fingerprints(i for i, _ in cand)
                   if qe.fingerprint is not None else {})
            for sid, sim in cand:
                song = songs[sid]
                dup = _duplicate_reason(qe, song, m_vecs.get(sid), duplicate_similarity,
                                        version_floor, fps.get(sid))
                m = Match(rank=0, song_id=sid, path=song.path, title=_display_title(song),
                          artist=song.artist, album=song.album, duration=song.duration,
                          similarity=sim, tempo=song.tempo, key=song.key, duplicate=dup)
                if dup is not None:
                    dups.append(m)
                    if not include_duplicates:
                        continue
                if len(matches) < k:
                    matches.append(m)
            if len(matches) >= k or fetch >= available or bool((ids[0] < 0).any()):
                break  # enough, or nothing more to find (an IVF index ran out of probed lists)
            fetch = min(fetch * 4, available)
        return matches, dups

    def _mean_vector(self, space: str, model: str) -> npt.NDArray[np.float32]:
        """Mean of the library's vectors of ``space`` (cached until the catalog changes);
        ``q @ mean`` is the query's average similarity to the library."""
        gen = self.catalog.generation
        hit = self._means.get((space, model))
        if hit is not None and hit[0] == gen:
            return hit[1]
        _ids, mat = self.catalog.vectors(space, model)
        mean = (mat.mean(axis=0) if len(mat) else np.zeros(0)).astype(np.float32)
        self._means[(space, model)] = (gen, mean)
        return mean

    # --- per-song data for the remix --------------------------------------------------------

    def stems_for(
        self,
        song: int | SongRecord,
        *,
        separator: Separator | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> Stems:
        """The song's stems from the stem cache, separating (and caching) them if needed.

        Raises
        ------
        LibraryError
            None of the song's files can be read any more.
        """
        rec = self.song(song)
        sep = self._get_separator(separator)
        if rec.audio_key:
            hit = self.stem_cache.get(rec.audio_key, sep.model_id)
            if hit is not None:  # known without decoding the song
                if progress:
                    progress(Progress("separate", 1, 1, "songs", "from the stem cache"))
                return hit
        audio = self._load_song_audio(rec)
        key = audio_hash(audio)
        stems = get_or_separate(audio, key, separator=sep, caches=[self.stem_cache],
                                progress=progress, cancel=cancel)
        if not self.read_only:
            self.catalog.set_stems(rec.id, audio_key=key, stems_model=sep.model_id)
        return stems

    def analysis_for(
        self,
        song: int | SongRecord,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> Analysis:
        """Tempo, beats and key of the song's mix (cached in the catalog after the first call).

        Raises
        ------
        LibraryError
            None of the song's files can be read any more.
        RemixError
            The song is too short to analyse.
        """
        from core.remix.analysis import ANALYSIS_VERSION, Analysis, analyze

        rec = self.song(song)
        if rec.analysis is not None and rec.analysis.get("version") == ANALYSIS_VERSION:
            try:
                return Analysis.from_dict(rec.analysis)
            except CrossmixError:
                log.info("song %d: stored analysis unreadable; analysing again", rec.id)
        audio = self._load_song_audio(rec)
        result = analyze(audio, progress=progress, cancel=cancel)
        if not self.read_only:
            self.catalog.set_analysis(rec.id, result.to_dict())
        return result

    def _load_song_audio(self, rec: SongRecord) -> Any:
        errors = []
        for p in rec.paths:
            try:
                return load_audio(p)
            except CrossmixError as exc:
                errors.append(str(exc))
        detail = f" ({errors[0]})" if errors else ""
        raise LibraryError(
            f"Song {rec.id} ({_display_title(rec)}): none of its files can be read{detail}; "
            "re-scan the library ('crossmix library scan')."
        )


#: Catalog meta key set when a library was indexed by the Ray engine (a catalogue).
ENGINE_META = "engine"


def is_catalogue(folder: str | Path) -> bool:
    """Whether the library at ``folder`` is a catalogue (indexed with ``--engine ray``)."""
    path = Path(folder).expanduser() / CATALOG_NAME
    if not path.is_file():
        return False
    try:
        cat = Catalog.open(path, read_only=True)
    except LibraryError:
        return False
    try:
        return cat.get_meta(ENGINE_META) == "ray"
    except LibraryError:
        return False
    finally:
        cat.close()


def opens_read_only(folder: str | Path) -> bool:
    """How the app and ``crossmix match`` open ``folder``: read-only for a catalogue, or for
    an existing library whose folder or catalog may not be written."""
    root = Path(folder).expanduser()
    catalog = root / CATALOG_NAME
    if not catalog.is_file():
        return False
    writable = os.access(root, os.W_OK) and os.access(catalog, os.W_OK)
    return not writable or is_catalogue(root)


# --- search helpers --------------------------------------------------------------------------


def _check_query(qe: QueryEmbedding, space: str) -> None:
    """Refuse a query too short to embed, or without a vocal in a space that ranks by it.

    Without a vocal, every query gets the same "vocal" vector (that of silence), so the
    ranking would be the same confident list for any of them.
    """
    name = qe.path or "The query"
    if qe.duration is not None and qe.duration < SEGMENT_SECONDS:
        raise NoVocalError(
            f"{name}: it is {qe.duration:.1f} s long; a query needs at least "
            f"{SEGMENT_SECONDS:.0f} s of audio to be matched. Choose a longer song or region."
        )
    vocal_space = SEARCH_SPACES[space][0] != "M"
    # ``n_segments`` is 0 for vectors not made by embed_song here (stored, or given by a caller)
    if vocal_space and qe.embedding.n_segments > 0 and not qe.embedding.vocal_found:
        raise NoVocalError(
            f"{name}: no singing voice was found in it (its separated vocal is silent or too "
            f"faint), so it cannot be matched by its vocal. Choose a song with singing, or "
            "search by the mix (space mix->mix)."
        )


def _key_set(key: str | Sequence[str] | None) -> set[tuple[int, KeyMode]] | None:
    if key is None:
        return None
    from core.remix.analysis import parse_key

    keys = [key] if isinstance(key, str) else list(key)
    out: set[tuple[int, KeyMode]] = set()
    for k in keys:
        try:
            out.add(parse_key(k))
        except ValueError:
            raise LibraryError(f"Unknown key {k!r}: write it like 'A minor' or 'F# major'.") from None
    return out


def _passes(song: SongRecord, tempo_range: tuple[float, float] | None,
            keys: set[tuple[int, KeyMode]] | None) -> bool:
    if tempo_range is not None:
        lo, hi = tempo_range
        if song.tempo is None or not lo <= song.tempo <= hi:
            return False
    if keys is not None:
        if song.key is None:
            return False
        from core.remix.analysis import parse_key

        try:
            if parse_key(song.key) not in keys:
                return False
        except ValueError:
            return False
    return True


def _duplicate_reason(qe: QueryEmbedding, song: SongRecord, m_vec: npt.NDArray[np.float32] | None,
                      threshold: float, floor: Callable[[], float],
                      song_fp: bytes | None = None) -> str | None:
    if qe.content_hash is not None and song.content_hash == qe.content_hash:
        return "same file"
    if qe.audio_key is not None and song.audio_key == qe.audio_key:
        return "same audio"
    verdict = same_recording(qe.fingerprint,
                             fp_from_blob(song_fp) if song_fp is not None else None)
    if verdict is not None:  # both fingerprinted: the fingerprints decide, not the embedding
        same, ber = verdict
        return f"another version (audio fingerprint, {100 * ber:.0f}% of bits differ)" if same else None
    if m_vec is not None:
        sim = float(np.dot(qe.embedding.M, m_vec))
        if sim >= threshold and sim >= floor():
            return f"another version (mix similarity {sim:.3f})"
    return None


def build_demo_library(
    songs_dir: str | Path,
    library_dir: str | Path,
    *,
    separator: Separator,
    encoders: EncoderPair,
    mode: str = "full",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ScanReport:
    """Index the demo songs into a library folder. Idempotent: a second call finds every
    song unchanged and only checks the files."""
    with Library.open(library_dir, separator=separator, encoders=encoders) as lib:
        lib.add_paths([songs_dir])
        return lib.scan(mode=mode, progress=progress, cancel=cancel)


__all__ = [
    "DEFAULT_SPACE", "DUPLICATE_MARGIN", "DUPLICATE_SIMILARITY", "SEARCH_SPACES", "Failure", "Library",
    "LibraryStatus", "Match", "QueryEmbedding", "ScanReport", "SearchResult", "SongRecord",
    "build_demo_library", "embedding_vectors", "is_catalogue", "opens_read_only",
    "resolve_space",
]
