"""Indexing: walk the library's folders and bring the catalog up to date.

One scan classifies every audio file under the roots against the catalog:

- **unchanged**: the path is known with the same size and mtime, and its song is embedded by
  the current checkpoint in the requested mode: nothing to do;
- **re-embed**: the path is unchanged but its song was embedded by another checkpoint (or
  only in fast mode and the scan is full): re-embedded from cached stems when they exist;
- **known failure**: it failed before with the same size and mtime: skipped (``retry_failed``
  tries again);
- **new or changed**: hashed (sha256 of the bytes); a hash already in the catalog is a moved,
  renamed or duplicate file and only gets a path row (it keeps its embeddings); otherwise it
  is decoded, (full mode) separated, embedded and optionally analysed.

Files are hashed, tagged and decoded by a small thread pool a few songs ahead of the main
thread, which separates, embeds and commits each song in its own transaction (so a killed
scan loses at most the song in flight and the next scan resumes after the last committed one).
At most ``workers + 1`` decoded songs are held in memory. A file that fails is recorded with
the stage and reason and the scan goes on. Paths that disappeared are removed at the end,
after new paths were linked, so moved files keep their songs. A root folder that is missing
altogether (an unplugged drive) is reported and its songs are kept.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from core.audio.decode import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_DURATION,
    Audio,
    audio_hash,
    check_regular_file,
    file_hash,
    load_audio,
)
from core.audio.fingerprints import fingerprint
from core.audio.fingerprints import to_blob as fp_to_blob
from core.embedding.encoders import EncoderPair
from core.embedding.song import SongEmbedding, embed_song
from core.errors import AudioError, Cancelled, CrossmixError, NotRegularFileError
from core.library.catalog import Catalog, Failure, SongInfo, SongRecord
from core.progress import CancelToken, EtaClock, Progress, ProgressFn, check_cancel
from core.separation.separator import Separator, StemCache, Stems, get_or_separate

log = logging.getLogger(__name__)

MODES = ("fast", "full")


@dataclass
class ScanReport:
    """What one scan did. Counts are of files (paths) unless named ``songs``."""

    total: int = 0              #: audio files found under the roots
    unchanged: int = 0
    indexed: int = 0            #: newly embedded songs (new or changed files)
    reembedded: int = 0         #: songs re-embedded (new checkpoint or fast -> full)
    linked: int = 0             #: moved / renamed / duplicate files pointed at a known song
    failed: int = 0             #: files that failed in this scan
    skipped_failed: int = 0     #: files that had failed before and did not change
    removed: int = 0            #: paths that disappeared from disk
    removed_songs: int = 0      #: songs deleted because none of their files is left
    missing_roots: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    audio_s: float = 0.0        #: seconds of audio decoded and embedded

    @property
    def processed(self) -> int:
        return self.indexed + self.reembedded

    @property
    def songs_per_minute(self) -> float:
        return 0.0 if self.elapsed_s <= 0 else 60.0 * self.processed / self.elapsed_s


def walk_audio_files(roots: Iterable[str], excludes: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Audio files under ``roots`` (files or folders, recursively; hidden entries skipped).

    Returns the sorted absolute paths and the roots that do not exist.
    """
    ex = {e.rstrip("/") for e in excludes}

    def excluded(p: str) -> bool:
        return any(p == e or p.startswith(e + "/") for e in ex)

    found: set[str] = set()
    missing: list[str] = []
    for root in roots:
        if not os.path.exists(root):
            missing.append(root)
            continue
        if not os.path.isdir(root):  # a file (or a pipe or device, refused when planned)
            if not excluded(root):
                found.add(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and not excluded(os.path.join(dirpath, d)))
            for name in filenames:
                if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                    continue
                p = os.path.join(dirpath, name)
                if not excluded(p):
                    found.add(p)
    return sorted(found), missing


def read_tags(path: str) -> dict[str, str]:
    """``artist``, ``title``, ``album`` from the file's tags (mutagen); missing keys absent."""
    try:
        import mutagen

        f = mutagen.File(path, easy=True)
    except Exception:  # mutagen raises many things on odd files; tags are optional
        return {}
    if f is None or getattr(f, "tags", None) is None:
        return {}
    out: dict[str, str] = {}
    for key in ("artist", "title", "album"):
        try:
            val = f.tags.get(key)
        except Exception:
            val = None
        if val:
            text = str(val[0] if isinstance(val, list) else val).strip()
            if text:
                out[key] = text
    return out


@dataclass
class ScanItem:
    """One file to index: its path, size and mtime as planned."""

    path: str
    kind: str                       # "new" | "reembed"
    size: int
    mtime_ns: int
    song: SongRecord | None = None  # for "reembed"


@dataclass
class PreparedSong:
    """A file hashed, tagged, decoded, fingerprinted and analysed (:func:`prepare_song`)."""

    item: ScanItem
    content_hash: str = ""
    audio: Audio | None = None
    audio_key: str | None = None
    analysis: dict[str, Any] | None = None
    fingerprint: bytes | None = None
    tags: dict[str, str] = field(default_factory=dict)
    error: Failure | None = None


def _fingerprint(audio: Audio, path: str) -> bytes | None:
    """The song's audio fingerprint (to recognise other versions of it), or ``None``: a
    fingerprint that cannot be made costs only that check, never the song."""
    try:
        return fp_to_blob(fingerprint(audio))
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("%s: no audio fingerprint (%s)", path, exc)
        return None


def _failure(path: str, stage: str, exc: BaseException, size: int | None = None,
             mtime_ns: int | None = None) -> Failure:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, AudioError):
        reason = exc.cause + (f" {exc.hint}" if exc.hint else "")
    return Failure(path=path, stage=stage, error=type(exc).__name__, reason=reason, size=size,
                   mtime_ns=mtime_ns, at=time.time())


@dataclass
class IndexedSong:
    """Everything indexing one file produced: what :func:`commit_song` writes to a catalog
    (and a Parquet shard row holds). ``status`` is ``indexed`` (embedded), ``linked`` (its
    content is already a complete song of the catalog: only the path is recorded) or
    ``failed`` (``failure`` says at which stage and why)."""

    item: ScanItem
    status: str
    content_hash: str = ""
    info: SongInfo | None = None
    vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    mode: str | None = None
    analysis: dict[str, Any] | None = None
    fingerprint: bytes | None = None
    failure: Failure | None = None
    audio_s: float = 0.0


def prepare_song(
    item: ScanItem,
    *,
    known_hashes: Container[str],
    max_duration: float | None = DEFAULT_MAX_DURATION,
    analyze: bool = False,
    needs_audio: bool = True,
    needs_fingerprint: bool = True,
) -> PreparedSong:
    """Hash, tag, decode, fingerprint and (``analyze``) analyse one file; the CPU half of
    indexing a song, shared by the local scan (worker threads) and the Ray job (actors).

    A content hash in ``known_hashes`` (a complete song of the catalog) stops after hashing:
    the file is only linked. A failure is returned in ``PreparedSong.error``, never raised
    (except :class:`Cancelled`).
    """
    prep = PreparedSong(item)
    stage = "hash"
    try:
        if item.kind == "reembed" and item.song is not None:
            prep.content_hash = item.song.content_hash
        else:
            prep.content_hash = file_hash(item.path)
            if prep.content_hash in known_hashes:
                return prep  # moved / duplicate: only linked
        stage = "decode"
        if needs_audio:
            prep.tags = read_tags(item.path)
            prep.audio = load_audio(item.path, max_duration=max_duration)
            prep.audio_key = audio_hash(prep.audio)
            if needs_fingerprint:
                prep.fingerprint = _fingerprint(prep.audio, item.path)
            stage = "analyse"
            if analyze:
                prep.analysis = _analysis(prep.audio, item.path)
        elif item.song is not None:
            prep.tags = {k: v for k, v in (("artist", item.song.artist),
                                           ("title", item.song.title),
                                           ("album", item.song.album)) if v}
    except (Cancelled, KeyboardInterrupt):
        raise
    except Exception as exc:  # any failure of one file is recorded, never fatal
        prep.error = _failure(item.path, stage, exc, item.size, item.mtime_ns)
    return prep


def song_stems(
    prep: PreparedSong,
    *,
    mode: str,
    separator: Separator | None,
    cache: StemCache | None,
    stem_ids: Sequence[str] = (),
    max_duration: float | None = DEFAULT_MAX_DURATION,
    cancel: CancelToken | None = None,
) -> tuple[Stems | None, str | None, str | None]:
    """Stems to embed from (``None``: mix only), the decoded-audio key and the id of the
    separator that made the stems.

    Full-mode songs (and songs embedded in full mode before) use cached stems (``stem_ids``
    in ``cache``) when they exist; only a full scan separates, and caches what it separated
    when there is a ``cache``.
    """
    song = prep.item.song
    audio_key = prep.audio_key or (song.audio_key if song is not None else None)
    want_full = mode == "full" or (song is not None and song.mode == "full")
    if want_full and audio_key is not None and cache is not None:
        for sid in stem_ids:
            stems = cache.get(audio_key, sid)
            if stems is not None:
                return stems, audio_key, sid
    if prep.audio is None:  # cached stems vanished after planning: decode after all
        prep.audio = load_audio(prep.item.path, max_duration=max_duration)
        audio_key = prep.audio_key = audio_hash(prep.audio)
    if mode != "full" or separator is None or audio_key is None:
        return None, audio_key, None
    stems = get_or_separate(prep.audio, audio_key, separator=separator, caches=[cache],
                            cancel=cancel)
    # not kept without a cache: stems_for separates again when needed
    return stems, audio_key, separator.model_id if cache is not None else None


def embed_prepared(
    prep: PreparedSong,
    *,
    mode: str,
    encoders: EncoderPair,
    separator: Separator | None,
    cache: StemCache | None,
    stem_ids: Sequence[str] = (),
    device: torch.device | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    needs_fingerprint: bool = True,
    cancel: CancelToken | None = None,
) -> IndexedSong:
    """Separate (full mode) and embed a prepared song: the model half of indexing a song,
    shared by the local scan and the Ray job. A failure is returned, never raised (except
    :class:`Cancelled`)."""
    item = prep.item
    if prep.error is not None:
        return IndexedSong(item, "failed", prep.content_hash, failure=prep.error)
    stage = "separate"
    try:
        stems, audio_key, stems_model = song_stems(
            prep, mode=mode, separator=separator, cache=cache, stem_ids=stem_ids,
            max_duration=max_duration, cancel=cancel)
        stage = "embed"
        if stems is not None:
            emb = embed_song(mix=stems.mix, vocals=stems.vocals, encoders=encoders,
                             device=device, cancel=cancel)
            done_mode = "full"
        else:
            assert prep.audio is not None
            emb = embed_song(mix=prep.audio, vocals=None, encoders=encoders,
                             device=device, cancel=cancel)
            done_mode = "fast"
    except (Cancelled, KeyboardInterrupt):
        raise
    except Exception as exc:
        return IndexedSong(item, "failed", prep.content_hash,
                           failure=_failure(item.path, stage, exc, item.size, item.mtime_ns))
    audio = prep.audio if prep.audio is not None else (stems.mix if stems else None)
    if prep.audio is None and stems is not None and needs_fingerprint:
        prep.fingerprint = _fingerprint(stems.mix, item.path)  # re-embedded from the stems
    info = SongInfo(
        content_hash=prep.content_hash, size=item.size,
        duration=audio.duration if audio is not None else None,
        artist=prep.tags.get("artist"), title=prep.tags.get("title"),
        album=prep.tags.get("album"), audio_key=audio_key, stems_model=stems_model,
    )
    return IndexedSong(item, "indexed", prep.content_hash, info=info,
                       vectors=embedding_vectors(emb), mode=done_mode, analysis=prep.analysis,
                       fingerprint=prep.fingerprint,
                       audio_s=audio.duration if audio is not None else 0.0)


def index_song(
    item: ScanItem,
    *,
    mode: str,
    encoders: EncoderPair,
    separator: Separator | None,
    known_hashes: Container[str] = (),
    analyze: bool = False,
    cache: StemCache | None = None,
    device: torch.device | None = None,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    cancel: CancelToken | None = None,
) -> IndexedSong:
    """Index one new file from start to end: :func:`prepare_song` then
    :func:`embed_prepared` (what each Ray actor runs per row)."""
    prep = prepare_song(item, known_hashes=known_hashes, max_duration=max_duration,
                        analyze=analyze)
    if prep.error is None and prep.content_hash in known_hashes:
        return IndexedSong(item, "linked", prep.content_hash)
    stem_ids = [separator.model_id] if separator is not None else []
    return embed_prepared(prep, mode=mode, encoders=encoders, separator=separator, cache=cache,
                          stem_ids=stem_ids, device=device, max_duration=max_duration,
                          cancel=cancel)


def commit_song(catalog: Catalog, song: IndexedSong, *, model_id: str,
                link_to: int | None = None) -> int | None:
    """Write one :class:`IndexedSong` to ``catalog`` (one transaction, or part of the
    caller's): the song with its vectors, a link of the path to song ``link_to`` (or to the
    song of its content hash), or the failure. Returns the song id (``None`` for a failure)."""
    item = song.item
    if song.status == "failed":
        assert song.failure is not None
        log.info("%s: skipped (%s: %s)", song.failure.path, song.failure.stage,
                 song.failure.reason)
        catalog.record_failure(song.failure)
        return None
    if song.status == "linked":
        sid = link_to if link_to is not None else catalog.song_id_by_hash(song.content_hash)
        if sid is None:
            raise CrossmixError(f"{item.path}: no song with its content to link it to.")
        catalog.link_file(path=item.path, song_id=sid, size=item.size, mtime_ns=item.mtime_ns)
        return sid
    assert song.info is not None and song.mode is not None
    return catalog.put_song(path=item.path, size=item.size, mtime_ns=item.mtime_ns,
                            info=song.info, vectors=song.vectors, model_id=model_id,
                            mode=song.mode, analysis=song.analysis,
                            fingerprint=song.fingerprint)


def _analysis(audio: Audio, path: str) -> dict[str, Any] | None:
    """Tempo/beats/key of the decoded mix, or ``None`` when it cannot be analysed."""
    from core.remix.analysis import analyze

    try:
        return analyze(audio).to_dict()
    except Exception as exc:  # e.g. too short for a tempo: still searchable without one
        log.info("%s: not analysed (%s)", path, exc)
        return None


class Scanner:
    """Runs one scan of ``catalog`` (see the module docstring). Used by :class:`Library`."""

    def __init__(
        self,
        catalog: Catalog,
        stem_cache: StemCache,
        *,
        encoders: EncoderPair,
        separator: Separator | None,
        mode: str = "fast",
        device: torch.device | None = None,
        analyze: bool = True,
        workers: int = 2,
        retry_failed: bool = False,
        max_duration: float | None = DEFAULT_MAX_DURATION,
        on_song_done: Callable[[str], None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise CrossmixError(f"Unknown scan mode {mode!r}: use fast or full.")
        self.catalog = catalog
        self.cache = stem_cache
        self.encoders = encoders
        self.separator = separator
        self.mode = mode
        self.device = device
        self.analyze = analyze
        self.workers = max(1, int(workers))
        self.retry_failed = retry_failed
        self.max_duration = max_duration
        self.on_song_done = on_song_done
        self.model_id = encoders.model_id
        self._fingerprinted: set[int] = set()  # songs with a stored fingerprint (set by run)
        self._damaged: set[int] = set()  # songs with a vector failing its checksum (set by plan)

    # --- planning ---------------------------------------------------------------------------

    def complete(self, song: SongRecord | None) -> bool:
        """Whether ``song`` is embedded by this scan's checkpoint in (at least) its mode."""
        return (song is not None and song.model_id == self.model_id
                and (self.mode == "fast" or song.mode == "full"))

    def plan(self, report: ScanReport) -> tuple[list[ScanItem], list[str]]:
        """Work items (in path order) and paths to forget at the end."""
        # never index the library's own files (its stem cache is FLAC)
        own = os.path.abspath(Path(self.catalog.path).parent)
        paths, missing = walk_audio_files(self.catalog.roots(), [*self.catalog.excludes(), own])
        report.total = len(paths)
        known = self.catalog.file_rows()
        songs = {s.id: s for s in self.catalog.songs()}
        failed = {f.path: f for f in self.catalog.failures()}
        self._damaged = self.catalog.damaged_vector_songs()
        if self._damaged:
            log.warning("%d songs have a stored vector that fails its checksum: re-embedding them",
                        len(self._damaged))
        # a single file added as a root and deleted since is gone; a missing folder may be
        # an unplugged drive, so its songs are kept
        missing = [m for m in missing
                   if not ((m in known or m in failed) and os.path.isdir(os.path.dirname(m)))]
        report.missing_roots = missing
        items: list[ScanItem] = []
        for p in paths:
            try:
                st = os.stat(p)
            except OSError as exc:
                self.catalog.record_failure(_failure(p, "stat", exc))
                report.failed += 1
                continue
            if not stat.S_ISREG(st.st_mode):  # a named pipe would block the reader for good
                before = failed.get(p)
                if (before is not None and before.error == NotRegularFileError.__name__
                        and not self.retry_failed):
                    report.skipped_failed += 1
                    continue
                try:
                    check_regular_file(p)
                except AudioError as exc:
                    self.catalog.record_failure(
                        _failure(p, "stat", exc, st.st_size, st.st_mtime_ns))
                    report.failed += 1
                continue
            row = known.get(p)
            if row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
                song = songs.get(row.song_id)
                if self.complete(song) and row.song_id not in self._damaged:
                    report.unchanged += 1
                else:
                    items.append(ScanItem(p, "reembed", st.st_size, st.st_mtime_ns, song))
                continue
            f = failed.get(p)
            if (f is not None and not self.retry_failed and f.size == st.st_size
                    and f.mtime_ns == st.st_mtime_ns):
                report.skipped_failed += 1
                continue
            items.append(ScanItem(p, "new", st.st_size, st.st_mtime_ns))
        present = set(paths)
        under_missing = tuple(m.rstrip("/") + "/" for m in missing)
        gone = [p for p in list(known) + list(failed)
                if p not in present and not p.startswith(under_missing) and p not in missing]
        return items, sorted(set(gone))

    # --- preparing (worker threads) -----------------------------------------------------

    def _stem_ids(self, song: SongRecord | None) -> list[str]:
        """Separator ids whose cached stems may serve ``song``: this scan's separator, then
        the one that made its stems (no separator object is needed to read a cache entry)."""
        ids = [self.separator.model_id] if self.separator is not None else []
        if song is not None and song.stems_model and song.stems_model not in ids:
            ids.append(song.stems_model)
        return ids

    def _needs_audio(self, item: ScanItem) -> bool:
        """A re-embed whose stems are cached needs no decoding (full mode songs)."""
        s = item.song
        if item.kind != "reembed" or s is None or s.mode != "full" or not s.audio_key:
            return True
        key = s.audio_key
        return not any(self.cache.path_for(key, i).is_file() for i in self._stem_ids(s))

    def _prepare(self, item: ScanItem, known_hashes: dict[str, int]) -> PreparedSong:
        song = item.song
        keep_analysis = (item.kind == "reembed" and song is not None
                         and song.analysis is not None)  # keep the stored one
        return prepare_song(item, known_hashes=known_hashes, max_duration=self.max_duration,
                            analyze=self.analyze and not keep_analysis,
                            needs_audio=self._needs_audio(item),
                            needs_fingerprint=self._needs_fingerprint(item))

    def _needs_fingerprint(self, item: ScanItem) -> bool:
        """Whether to make a fingerprint: a fingerprint depends on the content alone, so a
        song re-embedded with one stored keeps it."""
        return not (item.kind == "reembed" and item.song is not None
                    and item.song.id in self._fingerprinted)

    # --- the run ----------------------------------------------------------------------------

    def run(self, *, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> ScanReport:
        if self.mode == "full" and self.separator is None:
            raise CrossmixError("A full scan separates vocals and needs a separator.")
        t0 = time.monotonic()
        report = ScanReport()
        if self.catalog.model_id != self.model_id:
            if self.catalog.model_id is not None:
                log.info("encoder checkpoint changed (%s -> %s): songs will be re-embedded",
                         self.catalog.model_id[:12], self.model_id[:12])
            self.catalog.set_model_id(self.model_id)
        if progress:
            progress(Progress("scan", 0, 0, "songs", "looking for audio files"))
        items, gone = self.plan(report)
        self._fingerprinted = self.catalog.fingerprinted_ids()
        check_cancel(cancel, "the library scan")
        # hashes of songs already complete: a new path with one of these is only linked
        complete = {s.content_hash: s.id for s in self.catalog.songs()
                    if self.complete(s) and s.id not in self._damaged}
        total = len(items)
        clock = EtaClock()
        pending: deque[Future[PreparedSong]] = deque()
        it = iter(items)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="crossmix-scan")
        try:
            def refill() -> None:
                while len(pending) < self.workers + 1:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    pending.append(pool.submit(self._prepare, nxt, complete))

            refill()
            done = 0
            while pending:
                check_cancel(cancel, "the library scan")
                prep = pending.popleft().result()
                refill()
                self._process(prep, complete, report, cancel)
                done += 1
                if self.on_song_done is not None:
                    self.on_song_done(prep.item.path)
                if progress:
                    progress(Progress("scan", done, total, "songs", Path(prep.item.path).name,
                                      eta_s=clock.eta(done, total)))
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        if gone:
            report.removed = len(gone)
            report.removed_songs = self.catalog.forget_paths(gone)
        report.elapsed_s = time.monotonic() - t0
        return report

    def _process(self, prep: PreparedSong, complete: dict[str, int], report: ScanReport,
                 cancel: CancelToken | None) -> None:
        item = prep.item
        if prep.error is not None:
            self._fail(prep.error, report)
            return
        sid = complete.get(prep.content_hash)
        if sid is not None:
            if item.kind == "new":
                self.catalog.link_file(path=item.path, song_id=sid, size=item.size,
                                       mtime_ns=item.mtime_ns)
                report.linked += 1
            else:  # another path of the same song was re-embedded earlier in this scan
                report.unchanged += 1
            return
        done = embed_prepared(prep, mode=self.mode, encoders=self.encoders,
                              separator=self.separator, cache=self.cache,
                              stem_ids=self._stem_ids(item.song), device=self.device,
                              max_duration=self.max_duration,
                              needs_fingerprint=self._needs_fingerprint(item), cancel=cancel)
        if done.status == "failed":
            assert done.failure is not None
            self._fail(done.failure, report)
            return
        sid = commit_song(self.catalog, done, model_id=self.model_id)
        assert sid is not None
        complete[prep.content_hash] = sid
        if item.kind == "reembed":
            report.reembedded += 1
        else:
            report.indexed += 1
        report.audio_s += done.audio_s

    def _fail(self, failure: Failure, report: ScanReport) -> None:
        log.info("%s: skipped (%s: %s)", failure.path, failure.stage, failure.reason)
        self.catalog.record_failure(failure)
        report.failed += 1


def embedding_vectors(emb: SongEmbedding) -> dict[str, Any]:
    """The stored vectors of a song embedding, by space name (vocal spaces only when present)."""
    out: dict[str, Any] = {"M": emb.M}
    for name, v in (("V", emb.V), ("[M+V]", emb.MplusV), ("[M,V]", emb.MV)):
        if v is not None:
            out[name] = v
    return out
