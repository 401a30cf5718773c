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
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.audio import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_DURATION,
    Audio,
    audio_hash,
    check_regular_file,
    file_hash,
    load_audio,
)
from core.catalog import Catalog, Failure, SongInfo, SongRecord
from core.embedding import SongEmbedding, embed_song
from core.encoders import EncoderPair
from core.errors import AudioError, Cancelled, CrossmixError, NotRegularFileError
from core.fingerprint import fingerprint
from core.fingerprint import to_blob as fp_to_blob
from core.progress import CancelToken, EtaClock, Progress, ProgressFn, check_cancel
from core.separation import Separator, StemCache, Stems

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
class _Item:
    path: str
    kind: str                       # "new" | "reembed"
    size: int
    mtime_ns: int
    song: SongRecord | None = None  # for "reembed"


@dataclass
class _Prepared:
    item: _Item
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
        if mode == "full" and separator is None:
            raise CrossmixError("A full scan separates vocals and needs a separator.")
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

    def _complete(self, song: SongRecord | None) -> bool:
        return (song is not None and song.model_id == self.model_id
                and (self.mode == "fast" or song.mode == "full"))

    def plan(self, report: ScanReport) -> tuple[list[_Item], list[str]]:
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
        items: list[_Item] = []
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
                if self._complete(song) and row.song_id not in self._damaged:
                    report.unchanged += 1
                else:
                    items.append(_Item(p, "reembed", st.st_size, st.st_mtime_ns, song))
                continue
            f = failed.get(p)
            if (f is not None and not self.retry_failed and f.size == st.st_size
                    and f.mtime_ns == st.st_mtime_ns):
                report.skipped_failed += 1
                continue
            items.append(_Item(p, "new", st.st_size, st.st_mtime_ns))
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

    def _needs_audio(self, item: _Item) -> bool:
        """A re-embed whose stems are cached needs no decoding (full mode songs)."""
        s = item.song
        if item.kind != "reembed" or s is None or s.mode != "full" or not s.audio_key:
            return True
        key = s.audio_key
        return not any(self.cache.path_for(key, i).is_file() for i in self._stem_ids(s))

    def _prepare(self, item: _Item, known_hashes: dict[str, int]) -> _Prepared:
        prep = _Prepared(item)
        stage = "hash"
        try:
            if item.kind == "reembed" and item.song is not None:
                prep.content_hash = item.song.content_hash
            else:
                prep.content_hash = file_hash(item.path)
                if prep.content_hash in known_hashes:
                    return prep  # moved / duplicate: the main thread links it
            stage = "decode"
            if self._needs_audio(item):
                prep.tags = read_tags(item.path)
                prep.audio = load_audio(item.path, max_duration=self.max_duration)
                prep.audio_key = audio_hash(prep.audio)
                if self._needs_fingerprint(item):
                    prep.fingerprint = _fingerprint(prep.audio, item.path)
                stage = "analyse"
                prep.analysis = self._analysis(prep)
            elif item.song is not None:
                prep.tags = {k: v for k, v in (("artist", item.song.artist),
                                               ("title", item.song.title),
                                               ("album", item.song.album)) if v}
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # any failure of one file is recorded, never fatal
            prep.error = _failure(item.path, stage, exc, item.size, item.mtime_ns)
        return prep

    def _needs_fingerprint(self, item: _Item) -> bool:
        """Whether to make a fingerprint: a fingerprint depends on the content alone, so a
        song re-embedded with one stored keeps it."""
        return not (item.kind == "reembed" and item.song is not None
                    and item.song.id in self._fingerprinted)

    # --- the run ----------------------------------------------------------------------------

    def run(self, *, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> ScanReport:
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
                    if self._complete(s) and s.id not in self._damaged}
        total = len(items)
        clock = EtaClock()
        pending: deque[Future[_Prepared]] = deque()
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

    def _process(self, prep: _Prepared, complete: dict[str, int], report: ScanReport,
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
        stage = "separate"
        try:
            stems, audio_key, stems_model = self._stems(prep, cancel)
            stage = "embed"
            if stems is not None:
                emb = embed_song(mix=stems.mix, vocals=stems.vocals, encoders=self.encoders,
                                 device=self.device, cancel=cancel)
                mode = "full"
            else:
                assert prep.audio is not None
                emb = embed_song(mix=prep.audio, vocals=None, encoders=self.encoders,
                                 device=self.device, cancel=cancel)
                mode = "fast"
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._fail(_failure(item.path, stage, exc, item.size, item.mtime_ns), report)
            return
        audio = prep.audio if prep.audio is not None else (stems.mix if stems else None)
        if prep.audio is None and stems is not None and self._needs_fingerprint(item):
            prep.fingerprint = _fingerprint(stems.mix, item.path)  # re-embedded from the stems
        info = SongInfo(
            content_hash=prep.content_hash, size=item.size,
            duration=audio.duration if audio is not None else None,
            artist=prep.tags.get("artist"), title=prep.tags.get("title"),
            album=prep.tags.get("album"), audio_key=audio_key,
            stems_model=stems_model,
        )
        sid = self.catalog.put_song(path=item.path, size=item.size, mtime_ns=item.mtime_ns,
                                    info=info, vectors=embedding_vectors(emb),
                                    model_id=self.model_id, mode=mode, analysis=prep.analysis,
                                    fingerprint=prep.fingerprint)
        complete[prep.content_hash] = sid
        if item.kind == "reembed":
            report.reembedded += 1
        else:
            report.indexed += 1
        if audio is not None:
            report.audio_s += audio.duration

    def _stems(self, prep: _Prepared,
               cancel: CancelToken | None) -> tuple[Stems | None, str | None, str | None]:
        """Stems to embed from (``None``: mix only), the decoded-audio key and the id of the
        separator that made the stems.

        Full-mode songs (and songs embedded in full mode before) use cached stems when they
        exist; only a full scan separates.
        """
        song = prep.item.song
        audio_key = prep.audio_key or (song.audio_key if song is not None else None)
        want_full = self.mode == "full" or (song is not None and song.mode == "full")
        if want_full and audio_key is not None:
            for sid in self._stem_ids(song):
                stems = self.cache.get(audio_key, sid)
                if stems is not None:
                    return stems, audio_key, sid
        if prep.audio is None:  # cached stems vanished after planning: decode after all
            prep.audio = load_audio(prep.item.path, max_duration=self.max_duration)
            audio_key = prep.audio_key = audio_hash(prep.audio)
        if self.mode != "full" or self.separator is None or audio_key is None:
            return None, audio_key, None
        stems = self.separator.separate(prep.audio, cancel=cancel)
        self.cache.put(audio_key, self.separator.model_id, stems)
        return stems, audio_key, self.separator.model_id

    def _analysis(self, prep: _Prepared) -> dict[str, Any] | None:
        """Tempo/beats/key of the decoded mix (run in the worker thread, overlapping the main
        thread's separation and embedding); ``None`` when not wanted or not possible."""
        song = prep.item.song
        if not self.analyze or prep.audio is None:
            return None
        if song is not None and song.analysis is not None and prep.item.kind == "reembed":
            return None  # keep the stored one
        from core.analysis import analyze

        try:
            return analyze(prep.audio).to_dict()
        except Exception as exc:  # e.g. too short for a tempo: still searchable without one
            log.info("%s: not analysed (%s)", prep.item.path, exc)
            return None

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
