"""Crossmix as one object: the engine's public Python API, used by the desktop app and the CLI.

    from core import Crossmix

    with Crossmix(library="~/Music/crossmix-library") as cx:
        q = cx.query("song.mp3", space="auto", k=5, tempo_range=(90, 130))
        cx.compatibility(q)                   # tempo/key of the query, each match's fit
        for row in q.rows:
            print(row.rank, row.title, f"{row.similarity:.3f}", row.mashability)
        cx.export(q, q.rows[0], path="cross-mix.mp3", full=True)

:class:`Crossmix` holds the models (built lazily, by name, path or factory), the library and
the query stem cache, and runs **the one query pipeline**: decode; file hash, audio hash and
fingerprint; the query's stems (one :func:`core.separation.separator.get_or_separate` over
the library's stem cache, then the query cache, so a library song is never separated
twice; a voice alone is used as it is); the library's stored vectors when the file is an
indexed song (else the encoders); the search (spaces, tempo/key filters, near-duplicates);
then the compatibility of each match (stretch, key shift, mashability). Its steps up to the
search are :meth:`Crossmix.embed_query` on their own (a song file's vectors for
:meth:`core.library.library.Library.search`, which takes vectors only). The GUI adds only
what a window needs (:mod:`gui.engine`: waveform envelopes and playback arrays); the
``crossmix`` commands print what it returns.

Every method is blocking; long ones take ``progress`` and ``cancel``. The query pipeline
reports the stages ``decode``, ``separate``, ``analyze``, ``embed`` and ``search``. When no
encoders are available (the shipped weights missing) a query still decodes, separates and
analyses, and the result says why there are no matches.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import core.registry as registry
from core.audio.decode import DEFAULT_MAX_DURATION, Audio, audio_hash, file_hash, load_audio
from core.audio.fingerprints import fingerprint
from core.errors import Cancelled, CrossmixError, ModelError
from core.library.spaces import DEFAULT_SPACE, DUPLICATE_SIMILARITY
from core.progress import CancelToken, Progress, ProgressFn, check_cancel

if TYPE_CHECKING:  # torch is imported when the engine first runs, not with the window
    import torch

    from core.library.library import QueryEmbedding

log = logging.getLogger(__name__)

QUERY_STAGES = ("decode", "separate", "analyze", "embed", "search")



def warm_up() -> None:
    """Import the heavy engine modules now.

    Importing numba/librosa/torch submodules holds the GIL for hundreds of milliseconds at a
    time (module execution, numba's eager compilation of its ufuncs): the app does it in the
    start-up preload (a worker, right after the window shows) rather than during the first
    query; tests call it before their windows show.
    """
    import librosa  # noqa: F401  (numba, scipy.signal...)
    import librosa.beat  # noqa: F401
    import librosa.feature  # noqa: F401
    import librosa.onset  # noqa: F401
    import mutagen  # noqa: F401
    import pyloudnorm  # noqa: F401

    import core.audio.export  # noqa: F401
    import core.embedding.song  # noqa: F401
    import core.library.library  # noqa: F401
    import core.remix.analysis  # noqa: F401
    import core.remix.render  # noqa: F401
    import core.separation.separator  # noqa: F401


def read_tags(path: Path) -> tuple[str, str]:
    """``(title, artist)`` from the file's tags; the file name when there is no title."""
    title, artist = "", ""
    try:
        import mutagen

        f = mutagen.File(str(path), easy=True)
        if f is not None and f.tags is not None:
            title = str((f.tags.get("title") or [""])[0])
            artist = str((f.tags.get("artist") or [""])[0])
    except Exception as exc:  # noqa: BLE001 - unreadable tags are not an error
        log.debug("tags of %s: %s", path, exc)
    return title or path.stem, artist


def _relabel(progress: ProgressFn | None, stage: str) -> ProgressFn | None:
    """Forward an engine's reports under our stage name (keeping its fraction and message)."""
    if progress is None:
        return None

    def fn(p: Progress) -> None:
        msg = p.message or ("" if p.stage == stage else p.stage)
        progress(Progress(stage, p.done, p.total, p.unit, msg, p.eta_s))

    return fn


@dataclass(frozen=True)
class MatchRow:
    """One ranked match: the search's ``match`` (a :class:`core.library.library.Match`) and,
    once :meth:`Crossmix.compatibility` ran, how its accompaniment fits the query."""

    rank: int
    title: str
    artist: str
    similarity: float
    tempo: float | None
    key: str
    stretch_percent: float | None
    semitone_shift: int | None
    mashability: float | None
    path: str
    match: Any = None
    #: the shift the keys would need, and the largest allowed (``semitone_shift`` is 0 when
    #: the need is beyond the limit)
    shift_needed: int | None = None
    shift_limit: int | None = None

    @property
    def shift_out_of_range(self) -> bool:
        return (self.shift_needed is not None and self.shift_limit is not None
                and abs(self.shift_needed) > self.shift_limit)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (``crossmix match --json``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "match"}
        out["song_id"] = getattr(self.match, "song_id", None)
        return out


@dataclass
class QueryResult:
    """Everything known about a query: its stems, analysis, embedding and ranked matches."""

    path: Path
    title: str
    artist: str
    duration: float
    stems: Any  # core.separation.separator.Stems
    analysis: Any | None  # core.remix.analysis.Analysis
    embedding: Any | None  # core.embedding.song.SongEmbedding
    rows: list[MatchRow]
    search: Any | None = None  # the library's SearchResult
    content_hash: str | None = None  # sha256 of the file (to leave the query out of matches)
    audio_key: str | None = None  # hash of the decoded audio
    fingerprint: Any | None = None  # core.audio.fingerprints of the audio (to leave out other versions)
    message: str = ""  # why there are no results (no encoders, empty library...)
    space_note: str = ""  # which space "Best measured (auto)" searched, and why
    timings: dict[str, float] = field(default_factory=dict)
    #: the query's tempo/key analysis, started beside its separation (see :meth:`Crossmix.query`)
    pending_analysis: BackgroundAnalysis | None = field(default=None, repr=False)
    #: the file is a voice alone: its stems are the file itself (nothing was separated)
    vocal_only: bool = False
    #: what the a-cappella detector found (``None`` when the caller decided)
    vocal_check: Any | None = None  # core.separation.vocal_only.VocalOnlyCheck
    #: where the tempo of ``analysis`` came from: "mix" (tracked beats), "onsets" (a voice's
    #: onsets), "given" (the caller: a metronome), "typed" or "tapped" (the user)
    tempo_source: str = "mix"
    #: the analysis as first estimated, to go back to after a typed or tapped tempo
    auto_analysis: Any | None = None
    #: ``(start, end)`` seconds when only that region of the song was embedded and searched
    region: tuple[float, float] | None = None
    #: the whole song's embedding, kept while a region's is searched
    song_embedding: Any | None = None
    #: the query's exact tempo when the caller gave it with its first beat (a take recorded to
    #: the metronome), else ``None``
    tempo_bpm: float | None = None
    #: the fingerprint being computed (collected into ``fingerprint`` before the search)
    pending_fingerprint: Any | None = field(default=None, repr=False)
    #: the vectors came from the library (the file is an indexed song), not the encoders
    stored_vectors: bool = False
    #: why the query could not be searched at all (no encoders, no library, another
    #: checkpoint, a vocal space on a fast-mode library); ``message`` says it to the user
    error: str = ""
    #: the query's key in the facade's query store (:mod:`core.library.query_store`), if any
    store_key: str | None = None
    #: its vectors (and analysis, when known) came from the query store and its stems from the
    #: stem cache: nothing was separated or embedded (a query of the history reopened)
    reopened: bool = False

    def to_json(self) -> dict[str, Any]:
        """The query and its ranking as JSON-ready values (``crossmix match --json``)."""
        doc: dict[str, Any] = self.search.to_json() if self.search is not None else {
            "query": str(self.path), "matches": []}
        doc["matches"] = [r.to_dict() for r in self.rows]
        if self.analysis is not None:
            doc["query_analysis"] = self.analysis.to_dict()
            doc["tempo_source"] = self.tempo_source
        if self.space_note:
            doc["space_reason"] = self.space_note
        if self.message:
            doc["message"] = self.message
        return doc


def _lower_this_threads_priority(niceness: int = 10) -> None:
    """Make the calling thread yield the CPU to the query's separation (Linux: a thread's
    nice value is its own). The results wait on the separation, not on the analysis: at equal
    priority on two cores the analysis slowed the separation by a quarter. The analysis still
    runs on whatever the separation leaves idle and at full speed once it is done."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not permitted: equal priority, as before
        pass


class BackgroundAnalysis:
    """The analysis of a query's mix, run on its own thread while the query separates.

    The analysis needs only the mix, so it does not wait for the separation: by the time the
    matches are shown, the query's tempo and key are (nearly) known and the first preview can
    start at once. It has its own cancel token, set when the query fails or is cancelled.
    """

    def __init__(self, audio: Audio, *, voice: bool = False, bpm: float | None = None,
                 first_beat: float | None = None) -> None:
        self.cancel = CancelToken()
        self.latest: Progress | None = None
        self.result: Any = None
        self.source = "mix"  # where the tempo came from (core.remix.vocal_tempo.analyze_query)
        #: what to analyse: (a voice alone?, given BPM, given first beat)
        self.how = (voice, bpm, first_beat)
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.seconds = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(audio,),
                                        name="crossmix-query-analysis", daemon=True)
        self._thread.start()

    def _run(self, audio: Audio) -> None:
        _lower_this_threads_priority()
        try:
            from core.remix.vocal_tempo import analyze_query

            voice, bpm, first_beat = self.how
            self.result, self.source = analyze_query(audio, voice=voice, bpm=bpm,
                                                     first_beat=first_beat,
                                                     progress=self._progress, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for it
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - self.started
            self._done.set()

    def _progress(self, p: Progress) -> None:
        self.latest = p

    def wait(self, timeout: float) -> bool:
        """``True`` once the analysis has finished (or failed)."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel it and wait for its thread (a thread left running as the interpreter exits
        can crash it inside numba or numpy)."""
        self.cancel.cancel()
        self._thread.join(timeout)


@dataclass
class Rendered:
    """A rendered cross-mix of one match (:meth:`Crossmix.render`)."""

    row: MatchRow
    crossmix: Any  # core.remix.render.CrossMix
    match_stems: Any  # core.separation.separator.Stems
    options: Any  # core.remix.render.RemixOptions
    #: a "remove / keep a sound like this" choice applied to the accompaniment, and the result
    choice: Any = None  # core.separation.source_choice.SourceChoice
    accompaniment: Any = None  # core.audio.decode.Audio: the accompaniment under the cross-mix


@dataclass
class Removal:
    """What :meth:`Crossmix.remove_path` removed, and the stems it leaves to free."""

    path: str
    files: int
    songs: int
    stems: list[Path]
    stem_bytes: int


@dataclass(frozen=True)
class SongEntry:
    """One file of the library as the Library tab's song list shows it: an indexed song's
    file (``song_id`` set) or a file that could not be indexed (``failed`` set)."""

    path: str
    title: str
    artist: str
    duration: float | None
    tempo: float | None
    key: str
    status: str
    song_id: int | None = None
    failed: bool = False

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)


@dataclass
class LibraryOverview:
    """What the Library tab shows: status, per-folder counts, failures, the song list."""

    status: Any  # core.library.library.LibraryStatus
    folders: list[tuple[str, int, int]]  # (folder, files, songs)
    failures: list[Any]  # core.library.catalog.Failure
    songs: list[SongEntry] = field(default_factory=list)


def song_entries(lib: Any, *, damaged: set[int] | None = None) -> list[SongEntry]:
    """Every file of ``lib`` (a :class:`core.library.library.Library`) with its song's tags, length,
    tempo/key (when analysed) and status, then every file that could not be indexed."""
    model = lib.catalog.model_id
    damaged = damaged if damaged is not None else set()
    out = []
    for s in lib.catalog.songs(with_analysis=False):
        if s.id in damaged:
            status = "Damaged embedding: re-embedded by the next Rescan"
        elif model is not None and s.model_id == model:
            status = "Searchable" + (", vocal separated" if s.mode == "full" else "")
        else:
            status = "Waiting to be re-embedded (Rescan)"
        for path in s.paths:
            out.append(SongEntry(path=path, title=s.title or Path(path).stem,
                                 artist=s.artist or "", duration=s.duration, tempo=s.tempo,
                                 key=s.key or "", status=status, song_id=s.id))
    for f in lib.failures():
        out.append(SongEntry(path=f.path, title=Path(f.path).stem, artist="", duration=None,
                             tempo=None, key="", status=f"Not indexed ({f.stage}): {f.reason}",
                             failed=True))
    return out


@dataclass
class BatchExport:
    """What :meth:`Crossmix.export_batch` did: files written, matches that failed and why."""

    folder: Path
    total: int
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    cancelled: bool = False
    exported: dict[int, Path] = field(default_factory=dict)  # song id -> its file written


def _model_factory(spec: Any, load: Callable[..., Any], model_attr: str
                   ) -> Callable[[torch.device], Any]:
    """A factory ``(device) -> model`` from what a caller gave: a name or path (resolved by
    ``load``, one of :mod:`core.registry`'s loaders; empty or ``None``: the default), a model
    already built (it has ``model_attr``), or a factory."""
    if spec is None or isinstance(spec, (str, Path)):
        name = str(spec) if spec else None
        return lambda device: load(name, device=device)
    if hasattr(spec, model_attr):
        return lambda device: spec
    return spec  # type: ignore[no-any-return]


def _library_factory(spec: Any) -> Callable[[], Any] | None:
    """A factory opening the library ``spec`` names (a folder; empty: the default one), the
    library itself, a factory, or ``None`` (no library)."""
    if spec is None or callable(spec) and not hasattr(spec, "search"):
        return spec  # type: ignore[no-any-return]
    if not isinstance(spec, (str, Path)):
        return lambda: spec

    def make() -> Any:
        from core.library.library import Library

        # a catalogue built on a cluster (or a folder that may not be written) opens read-only
        return Library.open(Path(spec) if spec else None, read_only=None)

    return make


class Crossmix:
    """The engine: models, library and query cache, and every operation on them.

    Parameters
    ----------
    device : torch.device or str, optional
        Where separation and embedding run (``"auto"``, ``"cpu"``, ``"cuda"``; default: the CPU).
    separator : str, Separator or callable(device) -> Separator
        The 2-stems separator: ``"spleeter-2stems"`` (default) or ``"tiny"`` (random weights,
        for tests), an instance, or a factory (built on first use).
    encoders : str, EncoderPair or callable(device) -> EncoderPair
        ``""``/``"shipped"`` (default), ``"resemblyzer"``, a ``.safetensors`` checkpoint, an
        instance or a factory. A factory may raise :class:`ModelError` (no weights): queries
        then stop after the analysis and say why.
    library : path, Library or callable() -> Library, optional
        The song library (``""``: the default folder); ``None``: no library (no matches).
    query_cache : StemCache, optional
        Where separated query stems are kept (a dropped song is separated once). The
        library's own stem cache is looked in first.
    max_duration : float
        Longest song accepted, seconds.
    duplicate_threshold : float
        Mix-space cosine at or above which a library song counts as another version of the
        query and is left out of the matches.
    query_separator : str or callable(device)
        The query-based separator ("remove / keep a sound like this one").
    query_store : QueryStore, optional
        Where finished queries' vectors and analyses are kept
        (:class:`core.library.query_store.QueryStore`): a query made before (the same file
        bytes, options, encoders and separator; after a restart too) is then reopened from it
        and the stem cache, with no separation and no embedding, and searched again.
        ``None`` (default): every query runs in full.
    """

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        separator: Any = "spleeter-2stems",
        encoders: Any = "",
        library: Any = None,
        query_cache: Any | None = None,
        max_duration: float = DEFAULT_MAX_DURATION,
        duplicate_threshold: float = DUPLICATE_SIMILARITY,
        query_separator: Any = "shipped",
        query_store: Any | None = None,
    ) -> None:
        if isinstance(device, str):
            from core.device import resolve_device

            device = resolve_device(device)
        self._device = device  # None: the CPU, decided on first use (importing torch then)
        self._separator_factory = _model_factory(separator, registry.load_separator, "separate")
        self._encoders_factory = _model_factory(encoders, registry.load_encoders, "model_id")
        self._library_factory = _library_factory(library)
        self.stem_cache = query_cache
        self.query_store = query_store
        self.max_duration = max_duration
        self.duplicate_threshold = duplicate_threshold
        self._lock = threading.RLock()
        self._separator: Any = None
        self._encoders: Any = None
        #: What the user chose ("" shipped, "resemblyzer", or a checkpoint path).
        self.encoders_choice = encoders if isinstance(encoders, str) else ""
        self._encoders_error: str | None = None
        self._library: Any = None
        self._analyses: list[BackgroundAnalysis] = []  # stopped by close()
        self._stores: list[Any] = []  # stem-cache writes under way (waited for by close())
        self._query_separator_factory = _model_factory(query_separator,
                                                      registry.load_query_separator, "separate")
        self._query_separator: Any = None

    def __enter__(self) -> Crossmix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    #: the class of the results :meth:`query` makes (the GUI's adds display data)
    result_type: type[QueryResult] = QueryResult

    @property
    def device(self) -> torch.device:
        if self._device is None:
            import torch

            self._device = torch.device("cpu")
        return self._device

    # --- models -----------------------------------------------------------------------------

    def separator(self) -> Any:
        with self._lock:
            if self._separator is None:
                self._separator = self._separator_factory(self.device)
            return self._separator

    def query_separator(self) -> Any:
        """The query-based separator ("remove / keep a sound like this one")."""
        with self._lock:
            if self._query_separator is None:
                self._query_separator = self._query_separator_factory(self.device)
            return self._query_separator

    def encoders(self) -> Any:
        """The encoder pair; raises :class:`ModelError` (remembered) when there is none."""
        with self._lock:
            if self._encoders is None:
                if self._encoders_error is not None:
                    raise ModelError(self._encoders_error)
                try:
                    self._encoders = self._encoders_factory(self.device)
                except ModelError as exc:
                    self._encoders_error = str(exc)
                    raise
            return self._encoders

    def preload(self, *, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> str | None:
        """Import the engine and load the separator and the encoders now (in a worker, at
        start-up), so the first query does not wait for them, and run the analysis once on
        4 s of noise so librosa's numba functions are compiled (compiling holds the GIL: better
        before any query than during one). Reports each step as stage ``"start"``. Returns why
        there are no encoders, if so."""
        steps = ("the audio libraries", "the separator", "the tempo analysis", "the encoders")

        def step(i: int) -> None:
            check_cancel(cancel, "loading the models")
            if progress is not None:
                progress(Progress("start", i, len(steps), "steps",
                                  f"loading {steps[i]}" if i < len(steps) else "ready"))

        step(0)
        warm_up()
        step(1)
        self.separator()
        step(2)
        from core.remix.analysis import analyze

        rng = np.random.default_rng(0)
        analyze(Audio((rng.standard_normal((1, 4 * 22050)) * 0.1).astype(np.float32), 22050))
        step(3)
        try:
            self.encoders()
        except ModelError as exc:
            return str(exc)
        finally:
            step(4)
        return None

    @property
    def encoders_error(self) -> str | None:
        return self._encoders_error

    def set_encoders(self, encoders: Any) -> None:
        """Use other encoders from now on (a name, path, pair or factory, as the constructor)."""
        with self._lock:
            self._encoders_factory = _model_factory(encoders, registry.load_encoders, "model_id")
            self._encoders = None
            self._encoders_error = None
            if isinstance(encoders, str):
                self.encoders_choice = encoders

    def set_device(self, device: torch.device) -> None:
        """Run on ``device`` from now on (models are rebuilt there on next use)."""
        with self._lock:
            if device != self.device:
                self._device = device
                self._separator = None
                self._encoders = None
                self._encoders_error = None

    def set_library(self, library: Any) -> None:
        """Use another library (a folder, a Library or a factory; ``None``: none)."""
        self.close()
        with self._lock:
            self._library_factory = _library_factory(library)

    def library(self) -> Any | None:
        with self._lock:
            if self._library is None and self._library_factory is not None:
                self._library = self._library_factory()
            return self._library

    def close(self) -> None:
        self.flush(timeout=30.0)  # a query's stems, being written, are kept
        with self._lock:
            lib = self._library
            self._library = None
            analyses, self._analyses = self._analyses, []
        for a in analyses:
            a.stop()
        close = getattr(lib, "close", None)
        if callable(close):
            close()

    # --- query ------------------------------------------------------------------------------

    def query(self, path: str | Path, *, space: str = "auto", k: int = 10,
              tempo_range: tuple[float, float] | None = None, key: str | Sequence[str] | None = None,
              include_duplicates: bool = False,
              vocal_only: bool | None = None, tempo: float | None = None,
              first_beat: float | None = None, region: tuple[float, float] | None = None,
              progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> QueryResult:
        """Decode, separate, embed and search one song file: the ranked matches.

        The rows carry the similarity (and the tempo/key the catalog already knows); the
        compatibility columns and the query's own tempo and key come from
        :meth:`compatibility`, run next, so the matches can be shown as soon as the search is
        done. ``space`` is a search space or ``"auto"`` (the best measured one the library can
        serve); ``tempo_range`` (BPM) and ``key`` filter the matches, and near-duplicates of
        the query are left out unless ``include_duplicates``.

        ``vocal_only``: ``True`` when the file is known to be a voice alone (a recorded take,
        the user's choice): it is not separated and its vocal embedding comes from the file
        itself; ``False`` always separates; ``None`` (default) lets
        :func:`core.separation.vocal_only.detect_vocal_only` decide. ``tempo`` (BPM) and
        ``first_beat`` (s) give the query's beat grid when it is known (a metronome):
        cross-mixes align to it instead of an estimate. ``region`` (s) embeds and searches
        only that part.

        With a :attr:`query_store`, a query made before (the same file bytes, options, encoders
        and separator) is reopened instead: its vectors and analysis from the store, its stems
        from the stem cache, nothing separated or embedded (``result.reopened``); only the
        search runs, on the library as it is now. A finished query is put in the store.

        Raises
        ------
        core.errors.AudioError
            The file is not usable audio (the message names it).
        core.errors.Cancelled
        """
        p = Path(path)
        opts = {"vocal_only": vocal_only, "region": region, "tempo": tempo,
                "first_beat": first_beat}
        search: dict[str, Any] = {"space": space, "k": k, "tempo_range": tempo_range,
                                  "key": key, "include_duplicates": include_duplicates}
        store_key, content_hash = self._store_key(p, opts)
        kept = (self._reopen(p, store_key, content_hash, opts, progress=progress, cancel=cancel)
                if store_key is not None and content_hash is not None else None)
        if kept is not None:
            self._search_timed(kept, search, progress=progress, cancel=cancel)
            return kept
        audio, result = self._decoded(p, progress, content_hash=content_hash)
        result.store_key = store_key
        check_cancel(cancel, "the query")
        self._run_query(result, audio, opts, search, progress=progress, cancel=cancel)
        self._keep(result)
        return result

    def _run_query(self, result: QueryResult, audio: Audio, opts: dict[str, Any],
                   search: dict[str, Any], *, progress: ProgressFn | None,
                   cancel: CancelToken | None) -> None:
        """Separate (or not), embed and search a decoded query (see :meth:`query`)."""
        tempo, first_beat = opts["tempo"], opts["first_beat"]
        if tempo is not None:
            from core.remix.vocal_tempo import check_bpm

            tempo = check_bpm(tempo)
        try:
            self._embedded(result, audio, vocal_only=opts["vocal_only"], region=opts["region"],
                           analyse=(tempo, first_beat), progress=progress, cancel=cancel)
            if result.embedding is not None:
                check_cancel(cancel, "the query")
                self._search_timed(result, search, progress=progress, cancel=cancel)
        except BaseException:
            if result.pending_analysis is not None:
                result.pending_analysis.cancel.cancel()
            raise
        result.tempo_bpm = tempo if (tempo is not None and first_beat is not None) else None

    def embed_query(self, path: str | Path, *, vocal_only: bool | None = None,
                    region: tuple[float | None, float | None] | None = None,
                    progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> QueryEmbedding:
        """The query's vectors and identity, ready for
        :meth:`core.library.library.Library.search`: the steps of :meth:`query` before its
        search (decode, hashes and fingerprint, the cached separation, the library's stored
        vectors or the encoders), without the tempo/key analysis and the query store.

        A song the library indexed in full mode with these encoders is not embedded again: its
        stored vectors are used (unless ``vocal_only`` or a ``region`` is given).
        ``vocal_only`` and ``region`` (seconds; ``None`` for the song's start or end) are those
        of :meth:`query`.

        Raises
        ------
        core.errors.AudioError
            The file is not usable audio.
        core.audio.region.RegionError
            The region is reversed, outside the song or shorter than one segment.
        core.errors.ModelError
            There are no encoders.
        core.errors.Cancelled
        """
        self.encoders()  # no encoders: said before the file is decoded and separated
        audio, result = self._decoded(Path(path), progress)
        check_cancel(cancel, "the query")
        self._embedded(result, audio, vocal_only=vocal_only, region=region, analyse=None,
                       progress=progress, cancel=cancel)
        if result.embedding is None:
            raise ModelError(result.error)
        return self._query_embedding(result)

    def _embedded(self, result: QueryResult, audio: Audio, *, vocal_only: bool | None,
                  region: tuple[float | None, float | None] | None,
                  analyse: tuple[float | None, float | None] | None,
                  progress: ProgressFn | None, cancel: CancelToken | None) -> None:
        """The one query pipeline up to the search, into ``result``: the stems (or the file
        itself for a voice alone), then the embedding (or the library's stored vectors), of
        ``region`` only when given. ``analyse``: ``(tempo, first_beat)`` to start the query's
        tempo/key analysis beside the separation (:meth:`query`); ``None``: no analysis
        (:meth:`embed_query`)."""
        span = None
        if region is not None:
            from core.audio.region import check_region

            span = check_region(region[0], region[1], audio.duration, name=result.path.name)
        tempo, first_beat = analyse if analyse is not None else (None, None)
        if analyse is not None:
            # Tempo and key need the file only: analysed beside the separation, on its own
            # thread; when it is not known whether the file is a voice alone, as a mix.
            result.pending_analysis = self._analyse(audio, bool(vocal_only), tempo, first_beat)
        self._query_stems(result, audio, vocal_only=vocal_only, tempo=tempo,
                          first_beat=first_beat, progress=progress, cancel=cancel)
        self._query_vectors(result, region=span, vocal_only=vocal_only, progress=progress,
                            cancel=cancel)

    # --- the query store: a query made before, reopened without separation or embedding ------

    def _store_key(self, p: Path, opts: dict[str, Any]) -> tuple[str | None, str | None]:
        """The query's key in the query store and the file's sha256 (``None, None`` without a
        store; no key without encoders: there are no vectors to keep)."""
        if self.query_store is None:
            return None, None
        from core.library.query_store import query_key

        try:
            content_hash = file_hash(p)
        except CrossmixError:
            return None, None  # the decode says what is wrong with the file
        try:
            encoders_id = str(self.encoders().model_id)
            separator_id = None if opts["vocal_only"] else str(self.separator().model_id)
        except ModelError:
            return None, content_hash  # the query says what is missing
        return query_key(content_hash, encoders_id=encoders_id, separator_id=separator_id,
                         **opts), content_hash

    def _reopen(self, p: Path, store_key: str, content_hash: str, opts: dict[str, Any], *,
                progress: ProgressFn | None, cancel: CancelToken | None) -> QueryResult | None:
        """The stored query of ``store_key`` with its stems from the stem cache (a voice alone:
        the file itself), ready to search; ``None`` when either is missing."""
        from core.remix.analysis import ANALYSIS_VERSION, Analysis
        from core.separation.vocal_only import VocalOnlyCheck

        assert self.query_store is not None
        t = time.perf_counter()
        kept = self.query_store.get(store_key)
        if kept is None:
            return None
        if progress is not None:  # only now: a new query must not read "from the history"
            progress(Progress("decode", 0, 1, "steps", f"{p.name} (from the history)"))
        stems = self._kept_stems(p, kept.meta)
        if stems is None:
            return None
        check_cancel(cancel, "the query")
        m = kept.meta
        try:
            analysis = Analysis.from_dict(kept.analysis) if kept.analysis is not None else None
        except CrossmixError:
            analysis = None
        if analysis is not None and analysis.version != ANALYSIS_VERSION:
            analysis = None  # made by an older analysis: analysed again
        check = m.get("vocal_check")
        result = self.result_type(
            path=p, title=str(m["title"]), artist=str(m["artist"]),
            duration=float(m["duration"]), stems=stems, analysis=analysis,
            embedding=kept.embedding, rows=[], content_hash=content_hash,
            audio_key=str(m["audio_key"]), fingerprint=kept.fingerprint,
            vocal_only=bool(m["vocal_only"]),
            vocal_check=VocalOnlyCheck(**check) if isinstance(check, dict) else None,
            tempo_source=str(m.get("tempo_source", "mix")), auto_analysis=analysis,
            region=tuple(m["region"]) if m.get("region") else None,
            song_embedding=kept.song_embedding, tempo_bpm=m.get("tempo_bpm"),
            stored_vectors=bool(m.get("stored_vectors")), store_key=store_key, reopened=True)
        if analysis is None:  # kept before its analysis finished: analysed now, as then
            result.pending_analysis = self._analyse(stems.mix, result.vocal_only,
                                                    opts["tempo"], opts["first_beat"])
        result.timings["decode"] = time.perf_counter() - t
        if progress is not None:
            progress(Progress("decode", 1, 1, "steps", p.name))
        return result

    def _kept_stems(self, p: Path, meta: dict[str, Any]) -> Any | None:
        """A stored query's stems: the file itself for a voice alone, else its separation from
        the stem cache (the library's first); ``None`` when the cache no longer has them."""
        if meta["vocal_only"]:
            from core.separation.vocal_only import vocal_only_stems

            return vocal_only_stems(load_audio(p, max_duration=self.max_duration))
        self.flush()  # its stems may still be being written
        model_id = self.separator().model_id
        lib = self.library()
        for cache in (getattr(lib, "stem_cache", None), self.stem_cache):
            stems = cache.get(str(meta["audio_key"]), model_id) if cache is not None else None
            if stems is not None:
                return stems
        return None

    def _keep(self, result: QueryResult) -> None:
        """Put a finished query's vectors in the query store (when there is one)."""
        from core.library.query_store import StoredQuery

        store = self.query_store
        if store is None or result.store_key is None or result.embedding is None:
            return
        check = result.vocal_check
        meta = {"audio_key": result.audio_key, "duration": float(result.duration),
                "title": result.title, "artist": result.artist,
                "vocal_only": bool(result.vocal_only),
                "vocal_check": dataclasses.asdict(check) if check is not None else None,
                "region": list(result.region) if result.region is not None else None,
                "tempo_source": result.tempo_source, "tempo_bpm": result.tempo_bpm,
                "stored_vectors": bool(result.stored_vectors)}
        an = result.auto_analysis
        store.put(StoredQuery(key=result.store_key, embedding=result.embedding,
                              song_embedding=result.song_embedding,
                              fingerprint=result.fingerprint, meta=meta,
                              analysis=an.to_dict() if an is not None else None))

    def _keep_analysis(self, result: QueryResult) -> None:
        """The query's analysis, known after its results: added to its stored entry."""
        store = self.query_store
        if store is not None and result.store_key is not None and result.auto_analysis is not None:
            store.set_analysis(result.store_key, result.auto_analysis.to_dict(),
                               result.tempo_source)

    def _search_timed(self, result: QueryResult, search: dict[str, Any], *,
                      progress: ProgressFn | None, cancel: CancelToken | None) -> None:
        t = time.perf_counter()
        if progress is not None:
            progress(Progress("search", 0, 1))
        self._search_into(result, **search, cancel=cancel)
        result.timings["search"] = time.perf_counter() - t
        if progress is not None:
            progress(Progress("search", 1, 1))

    def _decoded(self, p: Path, progress: ProgressFn | None, *, fingerprinted: bool = True,
                 content_hash: str | None = None) -> tuple[Audio, QueryResult]:
        """The decoded file and a result holding its tags and hashes; its fingerprint (only
        the search's near-duplicate rule needs it) is computed on a thread meanwhile and
        collected by :meth:`_search_into`."""
        t = time.perf_counter()
        if progress is not None:
            progress(Progress("decode", 0, 1, "steps", p.name))
        audio = load_audio(p, max_duration=self.max_duration)
        title, artist = read_tags(p)
        result = self.result_type(
            path=p, title=title, artist=artist, duration=audio.duration, stems=None,
            analysis=None, embedding=None, rows=[], content_hash=content_hash or file_hash(p),
            audio_key=audio_hash(audio))
        if fingerprinted:
            result.pending_fingerprint = _background().submit(fingerprint, audio)
        result.timings["decode"] = time.perf_counter() - t
        return audio, result

    def _store_later(self, cache: Any, audio_key: str, model_id: str, stems: Any) -> None:
        """Write a query's new stems to the stem cache on the side thread (1-2 s of FLAC
        encoding that the results need not wait for); :meth:`flush` waits for them."""
        job = _background().submit(_store, cache, audio_key, model_id, stems)
        with self._lock:
            self._stores = [f for f in self._stores if not f.done()] + [job]

    def flush(self, timeout: float | None = None) -> None:
        """Wait until the stems of earlier queries are in the stem cache."""
        from concurrent.futures import wait

        with self._lock:
            stores, self._stores = self._stores, []
        wait(stores, timeout=timeout)

    def _analyse(self, audio: Audio, voice: bool, bpm: float | None,
                 first_beat: float | None) -> BackgroundAnalysis:
        pending = BackgroundAnalysis(audio, voice=voice, bpm=bpm, first_beat=first_beat)
        with self._lock:
            self._analyses = [a for a in self._analyses if not a.done] + [pending]
        return pending

    def _query_stems(self, result: QueryResult, audio: Audio, *, vocal_only: bool | None,
                     tempo: float | None, first_beat: float | None,
                     progress: ProgressFn | None, cancel: CancelToken | None) -> None:
        """The query's stems: the file itself for a voice alone, else one cached separation
        (the library's stem cache first: a library song is never separated twice)."""
        from core.separation.vocal_only import query_stems

        t = time.perf_counter()
        if progress is not None:
            progress(Progress("separate", 0, max(audio.duration, 1e-6), "steps",
                              "reading the voice" if vocal_only else "loading the separator"))
        lib = self.library() if not vocal_only else None
        lib_cache = getattr(lib, "stem_cache", None)
        song_id = (lib.catalog.song_id_by_hash(result.content_hash)
                   if lib is not None and result.content_hash else None)
        # a library song's stems belong with the library's (a later preview of it finds them)
        store = (lib_cache if lib is not None and song_id is not None and not lib.read_only
                 else self.stem_cache)
        sep = None if vocal_only else self.separator()
        qs = query_stems(audio, str(result.audio_key), separator=sep,  # type: ignore[arg-type]
                         caches=[lib_cache, self.stem_cache], store=store,
                         put=self._store_later, vocal_only=vocal_only,
                         progress=_relabel(progress, "separate"), cancel=cancel)
        if (lib is not None and song_id is not None and store is lib_cache
                and not qs.vocal_only and sep is not None):
            rec = lib.song(song_id)
            if (rec.audio_key, rec.stems_model) != (result.audio_key, sep.model_id):
                lib.catalog.set_stems(song_id, audio_key=result.audio_key,
                                      stems_model=sep.model_id)
        if vocal_only is None and qs.vocal_only and result.pending_analysis is not None:
            result.pending_analysis.cancel.cancel()  # started as a mix's; it is a voice alone
            result.pending_analysis = self._analyse(audio, True, tempo, first_beat)
        result.stems, result.vocal_only, result.vocal_check = qs.stems, qs.vocal_only, qs.check
        result.timings["separate"] = time.perf_counter() - t
        check_cancel(cancel, "the query")

    def _query_vectors(self, result: QueryResult, *, region: tuple[float, float] | None,
                       vocal_only: bool | None, progress: ProgressFn | None,
                       cancel: CancelToken | None) -> None:
        """Embed the query (or take the library's stored vectors); without encoders,
        ``result.error`` and ``result.message`` say why there is no embedding."""
        t = time.perf_counter()
        if progress is not None:
            progress(Progress("embed", 0, 2))
        try:
            encoders = self.encoders()
        except ModelError as exc:
            result.error = str(exc)
            result.message = (f"No trained encoders are installed, so the library cannot be "
                              f"searched ({exc}) The query's vocal and analysis are shown; train a "
                              f"model on the Retrain tab or choose a checkpoint in Settings.")
            if progress is not None:
                progress(Progress("search", 1, 1, "steps", "no encoders"))
            return
        stored = (self._stored_embedding(result, encoders)
                  if region is None and vocal_only is None else None)
        if stored is not None:
            result.embedding = result.song_embedding = stored
            result.stored_vectors = True
        else:
            result.embedding = self._embed(result, region, encoders=encoders,
                                           progress=progress, cancel=cancel)
        result.timings["embed"] = time.perf_counter() - t
        check_cancel(cancel, "the query")

    def _stored_embedding(self, result: QueryResult, encoders: Any) -> Any | None:
        """The library's vectors of the query when the file is one of its songs, indexed in
        full mode by these encoders (nothing to embed again)."""
        lib = self.library()
        if lib is None or result.content_hash is None:
            return None
        if lib.catalog.model_id != getattr(encoders, "model_id", None):
            return None
        return lib.stored_embedding(result.content_hash)

    def _embed(self, result: QueryResult, region: tuple[float, float] | None, *,
               encoders: Any, progress: ProgressFn | None,
               cancel: CancelToken | None) -> Any:
        """Embed the query (or only ``region`` of it); the whole song's embedding is kept in
        ``result.song_embedding`` for going back from a region."""
        from core.audio.region import crop_stems
        from core.embedding.song import embed_song

        stems = result.stems
        if region is None:
            emb = embed_song(mix=stems.mix, vocals=stems.vocals, encoders=encoders,
                             progress=_relabel(progress, "embed"), cancel=cancel)
            result.song_embedding = emb
        else:
            part = crop_stems(stems, *region)
            emb = embed_song(mix=part.mix, vocals=part.vocals, encoders=encoders,
                             progress=_relabel(progress, "embed"), cancel=cancel)
        result.region = region
        return emb

    def search_region(self, result: QueryResult, region: tuple[float, float] | None, *,
                      space: str, k: int, tempo_range: tuple[float, float] | None = None,
                      key: str | Sequence[str] | None = None, include_duplicates: bool = False,
                      progress: ProgressFn | None = None,
                      cancel: CancelToken | None = None) -> QueryResult:
        """Search again with only ``region`` (start, end seconds) of the query embedded; the
        cross-mix previews then start at the region. ``None`` goes back to the whole song.

        Raises
        ------
        core.audio.region.RegionError
            The region is reversed, outside the song or shorter than one segment.
        """
        from core.audio.region import check_region

        if region is not None:
            region = check_region(region[0], region[1], result.duration,
                                  name=Path(result.path).name)
        encoders = self.encoders()
        if progress is not None:
            progress(Progress("embed", 0, 2))
        if region is None and result.song_embedding is not None:
            result.embedding, result.region = result.song_embedding, None
        else:
            result.embedding = self._embed(result, region, encoders=encoders,
                                           progress=progress, cancel=cancel)
        check_cancel(cancel, "the search")
        if progress is not None:
            progress(Progress("search", 0, 1))
        self._search_into(result, space=space, k=k, tempo_range=tempo_range, key=key,
                          include_duplicates=include_duplicates, cancel=cancel)
        return result

    def set_tempo(self, result: QueryResult, bpm: float | None, *, source: str = "typed",
                  first_beat: float | None = None, key_match: bool = True, max_shift: int = 3,
                  progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> QueryResult:
        """Put the query on a beat grid at ``bpm`` (typed, tapped: ``source``), its phase
        fitted to the query's onsets unless ``first_beat`` is given; ``None`` goes back to the
        estimated tempo. The matches' compatibility is computed again (:meth:`analyze`).

        Raises
        ------
        core.errors.RemixError
            ``bpm`` is out of range (30-300), or the query has no analysis yet.
        """
        from core.errors import RemixError
        from core.remix.vocal_tempo import given_grid

        if result.auto_analysis is None:
            raise RemixError(f"{Path(result.path).name}: its tempo is still being analysed; "
                             "set the tempo once the analysis is done.")
        if bpm is None:
            result.analysis = result.auto_analysis
            result.tempo_source = "onsets" if result.vocal_only else "mix"
        else:
            result.analysis = given_grid(result.auto_analysis, result.stems.mix, bpm=bpm,
                                         first_beat=first_beat)
            result.tempo_source = source
        check_cancel(cancel, "the tempo")
        return self.compatibility(result, key_match=key_match, max_shift=max_shift,
                                  progress=progress, cancel=cancel)

    def compatibility(self, result: QueryResult, *, key_match: bool = True, max_shift: int = 3,
                      first: int | None = None, progress: ProgressFn | None = None,
                      cancel: CancelToken | None = None) -> QueryResult:
        """Tempo, beats and key of the query, then each match's compatibility (stretch, shift,
        mashability, with or without key matching). Fills ``result.analysis`` and replaces
        ``result.rows``. ``first``: only the matches ranked 1 to ``first`` (the app shows the
        best match's cross-mix before the others' columns are known)."""
        t = time.perf_counter()
        n = len(result.rows) if first is None else min(first, len(result.rows))
        if result.analysis is None:
            result.analysis = self._query_analysis(result, n, progress=progress, cancel=cancel)
        check_cancel(cancel, "the analysis")
        rows = []
        lib = self.library()
        from core.remix.render import compatibility as fit

        for i, row in enumerate(result.rows):
            if lib is None or (first is not None and row.rank > first):
                rows.append(row)
                continue
            if progress is not None:
                progress(Progress("analyze", min(i + 1, n), n + 1, "steps", row.title))
            check_cancel(cancel, "the analysis")
            try:
                rep = fit(result.analysis, lib.analysis_for(row.match.song_id),
                                    similarity=row.similarity, max_shift=max_shift,
                                    key_match=key_match)
            except CrossmixError as exc:
                log.warning("analysis of %s: %s", row.path, exc)
                rows.append(row)
                continue
            rows.append(dataclasses.replace(
                row, tempo=float(rep.match_tempo), key=str(rep.match_key),
                stretch_percent=float(rep.stretch_percent),
                semitone_shift=int(rep.semitone_shift), mashability=float(rep.mashability),
                shift_needed=int(rep.needed_shift), shift_limit=int(rep.max_shift)))
        result.rows = rows
        result.timings["analyze"] = result.timings.get("analyze", 0.0) + time.perf_counter() - t
        if progress is not None:
            progress(Progress("analyze", n + 1, n + 1, "steps"))
        return result

    def _query_analysis(self, result: QueryResult, n: int, *, progress: ProgressFn | None,
                        cancel: CancelToken | None) -> Any:
        """The query's analysis: the one started beside the separation when it is there (its
        progress forwarded at least every 0.5 s while waiting), else computed now."""
        pending, result.pending_analysis = result.pending_analysis, None
        if pending is not None:
            while not pending.wait(0.5):
                if cancel is not None and cancel.cancelled:
                    pending.cancel.cancel()
                    check_cancel(cancel, "the analysis")
                if progress is not None:
                    q = pending.latest
                    frac = q.done / q.total if q is not None and q.total else 0.0
                    progress(Progress("analyze", frac, n + 1, "steps",
                                      f"tempo and key of the query "
                                      f"({time.perf_counter() - pending.started:.0f} s)"))
            if pending.error is None:
                result.timings["analyze_query"] = pending.seconds
                result.tempo_source = pending.source
                result.auto_analysis = pending.result
                self._keep_analysis(result)
                return pending.result
            if not isinstance(pending.error, Cancelled):
                raise pending.error
            # cancelled (an earlier analysis step was): analyse again below
        if progress is not None:
            progress(Progress("analyze", 0, n + 1, "steps", "tempo and key of the query"))
        from core.remix.vocal_tempo import analyze_query

        voice, bpm, first_beat = (pending.how if pending is not None
                                  else (result.vocal_only, None, None))
        an, result.tempo_source = analyze_query(result.stems.mix, voice=voice, bpm=bpm,
                                                first_beat=first_beat, cancel=cancel)
        result.auto_analysis = an
        self._keep_analysis(result)
        return an

    def search(self, result: QueryResult, *, space: str, k: int,
               tempo_range: tuple[float, float] | None = None, key: str | Sequence[str] | None = None,
               include_duplicates: bool = False, progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> QueryResult:
        """Search again with another space, k or filters (the embedding is reused)."""
        if result.embedding is None:
            return result
        if progress is not None:
            progress(Progress("search", 0, 1))
        self._search_into(result, space=space, k=k, tempo_range=tempo_range, key=key,
                          include_duplicates=include_duplicates, cancel=cancel)
        return result

    def _search_into(self, result: QueryResult, *, space: str, k: int,
                     tempo_range: tuple[float, float] | None = None, key: str | Sequence[str] | None = None,
                     include_duplicates: bool = False,
                     cancel: CancelToken | None) -> None:
        from core.errors import LibraryError

        lib = self.library()
        result.rows = []
        result.search = None
        result.error = ""
        _collect_fingerprint(result)  # kept with the query (the store) even without a library
        if lib is None:
            result.message = "No library is open: add a folder of songs on the Library tab."
            result.error = "no library is open"
            return
        if lib.catalog.model_id is None:
            result.message = ("The library has no indexed songs yet: add a folder on the "
                              "Library tab and let it index.")
            result.error = (f"{lib.root}: the library is empty; add folders with "
                            "'crossmix library add DIR'.")
            return
        if result.embedding is None:
            return
        qe = self._query_embedding(result)
        why = ""
        result.space_note = ""
        if space == "auto":
            space, why = self.auto_space(lib)
        try:
            sr = lib.search(qe, space=space, k=k, duplicate_similarity=self.duplicate_threshold,
                            include_duplicates=include_duplicates,
                            tempo_range=tempo_range, key=key or None, cancel=cancel)
        except LibraryError as exc:
            # Another checkpoint, or a vocal space on a library scanned in fast mode.
            result.message = result.error = str(exc)
            return
        result.search = sr
        rows = [MatchRow(rank=int(m.rank), title=str(m.title), artist=str(m.artist or ""),
                          similarity=float(m.similarity), tempo=m.tempo, key=str(m.key or ""),
                          stretch_percent=None, semitone_shift=None, mashability=None,
                          path=str(m.path), match=m) for m in sr.matches]
        result.rows = rows
        result.message = _search_message(bool(rows), tempo_range is not None or bool(key),
                                         len(sr.excluded_duplicates))
        if why:
            result.space_note = f"Search space: {why}."

    @staticmethod
    def _query_embedding(result: QueryResult) -> QueryEmbedding:
        """What the library's search needs of an embedded query: its vectors, and its identity
        to leave itself and its other versions out (the fingerprint, collected from its thread).
        A region's duration is the region's."""
        from core.library.library import QueryEmbedding

        assert result.embedding is not None, "the query has not been embedded"
        _collect_fingerprint(result)
        duration = (result.region[1] - result.region[0] if result.region is not None
                    else result.duration)
        return QueryEmbedding(result.embedding, path=str(result.path),
                              content_hash=result.content_hash, audio_key=result.audio_key,
                              fingerprint=result.fingerprint, duration=duration,
                              vocal_only=result.vocal_only, vocal_check=result.vocal_check,
                              region=result.region)

    def auto_space(self, lib: Any | None = None) -> tuple[str, str]:
        """The best measured search space for the current encoders that the library can serve."""
        from core.embedding.quality import auto_space

        lib = lib if lib is not None else self.library()
        if lib is None or lib.catalog.model_id is None:
            return DEFAULT_SPACE, "the paper's default (no indexed library yet)"
        return auto_space(lib.status(), model_id=lib.catalog.model_id, choice=self.encoders_choice)

    # --- library ----------------------------------------------------------------------------

    def _require_library(self) -> Any:
        from core.errors import LibraryError

        lib = self.library()
        if lib is None:
            raise LibraryError("No library is configured; choose its folder in Settings.")
        return lib

    def library_overview(self, *, progress: ProgressFn | None = None,
                         cancel: CancelToken | None = None) -> LibraryOverview:
        """Status, per-folder file/song counts, failures and the song list (reads the catalog
        only)."""
        lib = self._require_library()
        report = self.status()  # the figures `crossmix library status` prints
        status = report.status
        rows = lib.catalog.file_rows()
        folders = []
        for root in status.roots:
            prefix = root.rstrip("/") + "/"
            under = [r for p, r in rows.items() if p == root or p.startswith(prefix)]
            folders.append((root, len(under), len({r.song_id for r in under})))
        return LibraryOverview(status=status, folders=folders, failures=report.failures,
                               songs=song_entries(lib,
                                                  damaged=lib.catalog.damaged_vector_songs()
                                                  if status.damaged else set()))

    def add_demo_if_empty(self, songs_dir: str | Path, *, progress: ProgressFn | None = None,
                          cancel: CancelToken | None = None) -> bool:
        """Add the demo songs folder when the library has no folders yet; ``True`` if added."""
        from core.audio.decode import AUDIO_EXTENSIONS

        lib = self._require_library()
        d = Path(songs_dir)
        if lib.roots() or not d.is_dir():
            return False
        if not any(p.suffix.lower() in AUDIO_EXTENSIONS for p in d.iterdir()):
            return False
        lib.add_paths([d])
        return True

    def add_folder(self, path: str | Path, *, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> list[str]:
        return list(self._require_library().add_paths([path]))

    def remove_path(self, path: str | Path, *, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> Removal:
        """Remove a file or folder from the library (the files on disk are not touched).

        The separated stems of the songs it drops are *not* deleted yet: they are listed in
        the returned :class:`Removal` so an undo can re-add the folder without separating
        again; :meth:`free_stems` deletes them once the undo is no longer offered."""
        lib = self._require_library()
        before = lib.songs()
        files, songs = lib.remove(path)
        left = lib.songs()
        ids = {s.id for s in left}
        kept = {(s.audio_key, s.stems_model) for s in left}
        stems: list[Path] = []
        for s in before:
            if s.id in ids or not s.audio_key or not s.stems_model:
                continue
            if (s.audio_key, s.stems_model) in kept:
                continue
            try:
                f = lib.stem_cache.path_for(s.audio_key, s.stems_model)
            except ValueError:
                continue
            if f.is_file():
                stems.append(f)
        return Removal(path=str(path), files=int(files), songs=int(songs), stems=stems,
                       stem_bytes=sum(f.stat().st_size for f in stems if f.is_file()))

    def free_stems(self, stems: list[Path], *, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> int:
        """Delete stem files of removed songs (those no song uses again); bytes freed."""
        lib = self.library()
        kept = ({str(lib.stem_cache.path_for(s.audio_key, s.stems_model)) for s in lib.songs()
                 if s.audio_key and s.stems_model} if lib is not None else set())
        freed = 0
        for f in stems:
            if str(f) in kept:  # the folder was added again meanwhile
                continue
            try:
                size = f.stat().st_size
                f.unlink()
                freed += size
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete the stems %s: %s", f, exc)
        return freed

    def scan(self, *, mode: str = "fast", analyze: bool | None = None, workers: int = 2,
             retry_failed: bool = False, progress: ProgressFn | None = None,
             cancel: CancelToken | None = None) -> Any:
        """Index new and changed files (and re-embed with a new checkpoint); a ScanReport.
        ``analyze``, ``workers`` and ``retry_failed`` as :meth:`core.library.library.Library.scan`.

        Raises
        ------
        ModelError
            No encoders are installed (indexing needs ``f_m``).
        """
        lib = self._require_library()
        encoders = self.encoders()
        # Full songs are re-embedded from their cached stems, which needs the separator's id.
        separator = self.separator() if mode == "full" or lib.status().full else None
        return lib.scan(mode=mode, encoders=encoders, separator=separator, analyze=analyze,
                        workers=workers, retry_failed=retry_failed,
                        max_duration=self.max_duration, progress=progress, cancel=cancel)

    # --- preview / export --------------------------------------------------------------------

    def render(self, query: QueryResult, row: MatchRow, *, options: Any, choice: Any = None,
               progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> Rendered:
        """Render the cross-mix of ``query``'s vocal over ``row``'s accompaniment, tempo- and
        beat-aligned; with ``choice`` (a :class:`core.separation.source_choice.SourceChoice`)
        over the accompaniment without (or with only) the sound it points at."""
        cm, stems, acc = self._render(query, row, options=options, choice=choice,
                                      progress=progress, cancel=cancel)
        return Rendered(row=row, crossmix=cm, match_stems=stems, options=options, choice=choice,
                        accompaniment=acc)

    def _render(self, query: QueryResult, row: MatchRow, *, options: Any, choice: Any = None,
                progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> tuple[Any, Any, Audio]:
        """The match's stems (separated first if needed), the accompaniment the cross-mix is
        made over (``choice`` applied) and the rendered cross-mix: ``(crossmix, stems, acc)``."""
        from core.remix.render import render_cross_mix

        lib = self.library()
        if lib is None:
            raise CrossmixError("No library is open.")
        if query.analysis is None:
            raise CrossmixError(f"{query.path}: the query has no tempo analysis to align to.")
        if progress is not None:
            progress(Progress("preview", 0, 3, "steps", "stems of the match"))

        def separating(p: Progress) -> None:  # a match not separated yet (fast-mode library)
            if progress is not None and p.total:
                progress(Progress("preview", min(p.done / p.total, 1.0), 3, "steps",
                                  f"separating the match, {100 * p.done / p.total:.0f} %"))

        render_opts = region_options(query, options)
        stems = lib.stems_for(row.match.song_id, separator=self.separator(), progress=separating,
                              cancel=cancel)
        check_cancel(cancel, "the preview")
        match_analysis = lib.analysis_for(row.match.song_id, cancel=cancel)
        acc = stems.full_band_accompaniment
        if choice is not None:
            acc = self._apply_choice(stems, choice, progress=progress, cancel=cancel)
        if progress is not None:
            progress(Progress("preview", 1, 3, "steps", "stretching the accompaniment"))
        def rendering(p: Progress) -> None:  # the render says when its stretch is done
            if progress is not None and p.stage == "stretch":
                progress(Progress("preview", 1.5, 3, "steps", "stretched; mixing"))

        cm = render_cross_mix(query_vocals=query.stems.vocals, query_analysis=query.analysis,
                              match_accompaniment=acc,
                              match_analysis=match_analysis, options=render_opts,
                              similarity=row.similarity, progress=rendering, cancel=cancel)
        check_cancel(cancel, "the preview")
        return cm, stems, acc

    def _apply_choice(self, stems: Any, choice: Any, *, progress: ProgressFn | None,
                      cancel: CancelToken | None) -> Audio:
        from core.separation.by_example import apply_source_choice, crop

        origin = {"mix": stems.mix, "accompaniment": stems.full_band_accompaniment}.get(choice.origin)
        if origin is None:
            origin = load_audio(choice.path, max_duration=self.max_duration)
        model = self.query_separator()

        def separating(p: Progress) -> None:
            if progress is not None and p.total:
                progress(Progress("preview", 0.2 + 0.8 * p.done / p.total, 3, "steps",
                                  f"{'removing' if choice.mode == 'remove' else 'keeping'} the sound, "
                                  f"{100 * p.done / p.total:.0f} %"))

        return apply_source_choice(model, stems.full_band_accompaniment, crop(origin, choice.start, choice.end),
                                   mode=choice.mode, progress=separating, cancel=cancel)

    def export(self, query: QueryResult, row: MatchRow, *, path: str | Path,
               fmt: str | None = None, bitrate: str = "192k", full: bool = True,
               options: Any = None, preview: Rendered | None = None,
               overwrite: bool = False, stems: bool = False,
               progress: ProgressFn | None = None,
               cancel: CancelToken | None = None) -> Path:
        """Write the cross-mix of ``row`` to ``path``: the rendered ``preview`` when its
        options are the export's, else rendered now (from its stems when there is a preview,
        separating the match first when it has none yet). Cancel is checked up to the
        encoding; the files are written together or not at all (:func:`export_cross_mix`)."""
        from core.audio.export import export_format
        from core.remix.render import RemixOptions, render_cross_mix

        fmt = fmt or export_format(Path(path))
        if options is None:
            options = RemixOptions()
        opts = region_options(query, dataclasses.replace(options, preview=not full))
        if query.analysis is None:
            raise CrossmixError(f"{query.path}: the query has no tempo analysis to align to.")
        if progress is not None:
            progress(Progress("export", 0, 2, "steps", "rendering"))
        if preview is not None and opts == region_options(query, preview.options):
            cm = preview.crossmix
        elif preview is not None:
            lib = self.library()
            assert lib is not None
            cm = render_cross_mix(
                query_vocals=query.stems.vocals, query_analysis=query.analysis,
                match_accompaniment=(preview.accompaniment if preview.accompaniment is not None
                                     else preview.match_stems.full_band_accompaniment),
                match_analysis=lib.analysis_for(row.match.song_id), options=opts,
                similarity=row.similarity, cancel=cancel)
        else:
            cm, _stems, _acc = self._render(query, row, options=opts, progress=progress,
                                            cancel=cancel)
        check_cancel(cancel, "the export")
        if progress is not None:
            progress(Progress("export", 1, 2, "steps", "encoding"))
        written = write_cross_mix(cm, path, tags=cross_mix_tags_of(query, row.title, row.artist,
                                                                   row.path),
                                  fmt=fmt, bitrate=bitrate, stems=stems, overwrite=overwrite)
        if progress is not None:
            progress(Progress("export", 2, 2, "steps"))
        return written[0]

    def separate(self, audio: Audio, *, put: Callable[..., object] | None = None,
                 progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> Any:
        """The stems of ``audio`` (``crossmix separate``): from the library's or the query
        cache, else separated and kept in the query cache (by ``put`` when given, see
        :func:`core.separation.separator.get_or_separate`)."""
        from core.separation.separator import get_or_separate

        return get_or_separate(audio, audio_hash(audio), separator=self.separator(),
                               caches=[getattr(self.library(), "stem_cache", None),
                                       self.stem_cache],
                               store=self.stem_cache, put=put, progress=progress,
                               cancel=cancel)

    def remix(self, query: str | Path, match: str | Path, *, options: Any,
              vocal_only: bool | None = None, tempo: float | None = None,
              first_beat: float | None = None, band_limited: bool = False,
              similarity: bool = False, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> FileRemix:
        """The cross-mix of two song files, ``query``'s vocal over ``match``'s accompaniment
        (``crossmix remix``): the query is decoded, separated and analysed as :meth:`query`
        does (a voice alone, a given ``tempo`` and ``first_beat``), the match is separated
        through the same stem caches and analysed, and the two are rendered with ``options``.
        ``band_limited``: Spleeter's accompaniment instead of mix minus vocal. ``similarity``:
        also embed both (V -> M cosine; ``None`` when no encoders are installed)."""
        from core.remix.analysis import analyze
        from core.remix.render import render_cross_mix
        from core.separation.separator import get_or_separate

        if tempo is not None:
            from core.remix.vocal_tempo import check_bpm

            tempo = check_bpm(tempo)
        audio, q = self._decoded(Path(query), progress, fingerprinted=False)
        q.pending_analysis = self._analyse(audio, bool(vocal_only), tempo, first_beat)
        self._query_stems(q, audio, vocal_only=vocal_only, tempo=tempo, first_beat=first_beat,
                          progress=progress, cancel=cancel)
        m_audio = load_audio(match, max_duration=self.max_duration)
        m_stems = get_or_separate(m_audio, audio_hash(m_audio), separator=self.separator(),
                                  caches=[getattr(self.library(), "stem_cache", None),
                                          self.stem_cache],
                                  store=self.stem_cache, cancel=cancel)
        q.analysis = self._query_analysis(q, 0, progress=None, cancel=cancel)
        m_an = analyze(m_stems.mix, cancel=cancel)
        sim = self._similarity(q.stems, m_stems, cancel) if similarity else None
        cm = render_cross_mix(
            query_vocals=q.stems.vocals, query_analysis=q.analysis,
            match_accompaniment=(m_stems.accompaniment if band_limited
                                 else m_stems.full_band_accompaniment),
            match_analysis=m_an, options=options, similarity=sim or 0.0, cancel=cancel)
        m_title, m_artist = read_tags(Path(match))
        return FileRemix(crossmix=cm, query=q, match_path=Path(match), match_title=m_title,
                         match_artist=m_artist, match_stems=m_stems, match_analysis=m_an,
                         similarity=sim)

    def _similarity(self, q_stems: Any, m_stems: Any, cancel: CancelToken | None) -> float | None:
        """Cosine of the query's vocal embedding and the match's mix embedding (V -> M)."""
        from core.embedding.song import embed_song

        try:
            encoders = self.encoders()
        except ModelError:
            return None
        q = embed_song(mix=q_stems.mix, vocals=q_stems.vocals, encoders=encoders, cancel=cancel)
        m = embed_song(mix=m_stems.mix, vocals=m_stems.vocals, encoders=encoders, cancel=cancel)
        if q.V is None:
            return None
        return float(np.dot(q.V, m.M))

    def export_batch(self, query: QueryResult, rows: list[MatchRow], *, folder: Path, fmt: str,
                     bitrate: str, full: bool, options: Any, stems: bool = False,
                     previews: dict[int, Rendered] | None = None,
                     progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> BatchExport:
        """Export the cross-mix of every row of ``rows`` into ``folder``, one after another.

        Files are named as a single export names them (``"<query> x <match>.<fmt>"``, dots
        kept), numbered when a name is taken, so nothing is replaced. A match that fails
        (a moved file, a full disk) is recorded with its reason and the others go on; after
        Cancel the match being rendered is not written and the files already written stay.
        ``previews`` (rendered cross-mixes by song id) are used instead of rendering again.

        Raises
        ------
        core.errors.ExportError
            The folder cannot be written or the format is unknown: checked before any work.
        """
        from core.audio.export import check_export_folder, export_format, unique_export_paths

        fmt = export_format(f"x.{fmt}")
        folder = check_export_folder(folder)
        names = [f"{query.title} x {row.title}" for row in rows]
        paths = unique_export_paths(names, folder, fmt, stems=stems)
        report = BatchExport(folder=folder, total=len(rows))
        n = len(rows)
        for i, (row, path) in enumerate(zip(rows, paths, strict=True)):
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                break
            if progress is not None:
                progress(Progress("export", i, n, "matches", f"{i + 1} of {n}: {path.name}"))

            def step(p: Progress, i: int = i, name: str = path.name) -> None:
                if progress is not None and p.total:
                    progress(Progress("export", i + min(p.done / p.total, 1.0) * 0.99, n,
                                      "matches", f"{i + 1} of {n}: {name}"))

            sid = getattr(row.match, "song_id", None)
            try:
                self.export(query, row, path=path, fmt=fmt, bitrate=bitrate, full=full,
                            options=options, stems=stems,
                            preview=(previews or {}).get(sid) if sid is not None else None,
                            progress=step, cancel=cancel)
            except Cancelled:
                report.cancelled = True
                break
            except CrossmixError as exc:
                report.failed.append((path.name, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one match must not lose the others
                log.exception("exporting %s", path)
                report.failed.append((path.name, f"unexpected error ({type(exc).__name__}: "
                                                  f"{exc})"))
            else:
                report.written.append(path)
                if sid is not None:
                    report.exported[int(sid)] = path
        if progress is not None and not report.cancelled:
            progress(Progress("export", n, n, "matches"))
        return report

    # --- library upkeep (crossmix library status | index | repair, --engine ray) ------------

    def status(self) -> LibraryReport:
        """The library's counts and sizes, the files that could not be indexed, and the
        measured quality of its encoders with the search space it serves best: what
        ``crossmix library status`` prints and the Library tab's summary shows (reads the
        catalog only; a read-only catalogue stays untouched)."""
        from core.embedding.quality import library_has_vocals, quality_for

        lib = self._require_library()
        st = lib.status()
        q = quality_for(model_id=st.model_id) if st.model_id else None
        space, why = q.best_space(has_vocals=library_has_vocals(st)) if q is not None else ("", "")
        return LibraryReport(status=st, failures=list(lib.failures()), quality=q,
                             default_space=space, default_space_reason=why)

    def rebuild_indexes(self, *, kind: str | None = None) -> list[IndexInfo]:
        """Build every search index of the library again from its catalog
        (``crossmix library index``). ``kind``: ``"auto"`` (exact up to
        :data:`core.library.index.FLAT_LIMIT` songs, IVF-PQ above), ``"flat"``, ``"ivf"`` or
        ``"ivfpq"``, kept in the catalog for later scans; ``None`` keeps the library's choice.

        Raises
        ------
        EmptyLibraryError
            The library has no indexed songs yet.
        LibraryError
            ``kind`` is unknown, or the library may not be written.
        """
        from core.errors import EmptyLibraryError, LibraryError
        from core.library.index import INDEX_KIND_META, KINDS
        from core.library.spaces import INDEXED_SPACES

        if kind is not None and kind not in ("auto", *KINDS):
            raise LibraryError(f"index kind {kind!r}: choose auto, {', '.join(KINDS)}.")
        lib = self._require_library()
        model = lib.catalog.model_id
        if model is None:
            raise EmptyLibraryError(f"{lib.root}: the library is empty; add folders with "
                                    "'crossmix library add DIR'.")
        if kind is not None:
            lib.catalog.set_meta(INDEX_KIND_META, kind)
        lib.indexes.rebuild_all(list(INDEXED_SPACES), model, force=True)
        built = [(space, lib.indexes.get(space, model)) for space in INDEXED_SPACES]
        return [IndexInfo(space=s, kind=str(idx.kind), songs=int(idx.ntotal)) for s, idx in built]

    def repair(self, folder: str | Path | None = None, *,
               check_only: bool = False) -> CatalogRepair:
        """Check a library's catalog and salvage a damaged one (``crossmix library repair``,
        :func:`core.library.catalog.repair_catalog`): every row that can still be read goes
        into a new catalog, the damaged file stays beside it, and the next :meth:`scan`
        indexes the lost songs again. ``folder``: the library's folder (default: the one this
        object has open, else the user's library); the catalog is checked without opening
        the library, which a damaged one may not allow. ``check_only``: change nothing.

        This object's library, when it is that folder, is closed first (its catalog file is
        replaced) and opened again on next use (when it was given as a folder or factory).
        """
        from core.library.catalog import repair_catalog
        from core.library.library import CATALOG_NAME, Library
        from core.paths import default_library_dir

        with self._lock:
            open_lib = self._library
        if folder is None:
            folder = open_lib.root if open_lib is not None else default_library_dir()
        catalog = Path(folder).expanduser() / CATALOG_NAME
        if (not check_only and open_lib is not None
                and Path(open_lib.root).resolve() == catalog.parent.resolve()):
            self.close()
        report = repair_catalog(catalog, dry_run=check_only)
        songs = None
        if report.repaired:
            with Library.open(catalog.parent) as lib:
                songs = lib.status().songs
        return CatalogRepair(catalog=catalog, report=report, songs=songs)

    def scan_on_ray(self, *, models: Any, options: Any = None, mode: str = "fast",
                    analyze: bool | None = None, retry_failed: bool = False,
                    progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> Any:
        """:meth:`scan` as a Ray Data job (``crossmix library add|scan --engine ray``, see
        :mod:`core.library.cluster`): a ScanReport, the same as a local scan's. ``models``
        (a :class:`core.library.cluster.ModelSpec`) names the models each actor loads on its
        own node; this object's encoders give the catalog's model id. ``options``: a
        :class:`core.library.cluster.RayOptions` (default: a local cluster for the job).
        ``analyze``: default in full mode only.

        Raises
        ------
        ClusterError
            Ray missing, the cluster unreachable, the shard folder unusable, or the job failed.
        ModelError
            No encoders are installed.
        """
        from core.library.cluster import RayOptions, run_scan

        lib = self._require_library()
        encoders = self.encoders()
        return run_scan(lib, mode=mode, spec=models, encoders=encoders,
                        analyze=analyze if analyze is not None else mode == "full",
                        options=options if options is not None else RayOptions(),
                        retry_failed=retry_failed, max_duration=self.max_duration,
                        progress=progress, cancel=cancel)


@dataclass
class FileRemix:
    """The cross-mix of two song files (:meth:`Crossmix.remix`) and what it was made from."""

    crossmix: Any  # core.remix.render.CrossMix
    query: QueryResult  # decoded, separated and analysed (not searched)
    match_path: Path
    match_title: str
    match_artist: str
    match_stems: Any
    match_analysis: Any
    similarity: float | None

    @property
    def tags(self) -> dict[str, str]:
        return cross_mix_tags_of(self.query, self.match_title, self.match_artist,
                                 self.match_path)


def cross_mix_tags_of(query: QueryResult, match_title: str, match_artist: str,
                      match_path: str | Path) -> dict[str, str]:
    """The tags of a cross-mix file, the same from the app and from ``crossmix remix``: both
    titles, both artists, and the two source file names."""
    from core.audio.export import cross_mix_tags

    artists = ", ".join(a for a in (query.artist, match_artist) if a)
    return dict(cross_mix_tags(query_title=query.title, match_title=match_title,
                               artist=artists or "Crossmix", query_source=Path(query.path).name,
                               match_source=Path(match_path).name))


def write_cross_mix(cm: Any, path: str | Path, *, tags: dict[str, str], fmt: str | None = None,
                    bitrate: str = "192k", stems: bool = False,
                    overwrite: bool = False) -> list[Path]:
    """Write a rendered cross-mix (with ``stems``, its vocal and accompaniment beside it); the
    files are written together or not at all. Returns the paths written."""
    from core.audio.export import export_cross_mix

    written = export_cross_mix(path, cm.mix, vocals=cm.vocals if stems else None,
                               accompaniment=cm.accompaniment if stems else None,
                               format=fmt, bitrate=bitrate, tags=tags, overwrite=overwrite)
    return [Path(w) for w in written]


def _search_message(found: bool, filtered: bool, dups: int) -> str:
    """What the results note says: why there are no matches, and near-duplicates left out."""
    message = "" if found else "No library song passed the search."
    if not found and filtered:
        # Songs never analysed have no tempo or key, so any filter leaves them out.
        message = ("No library song passed the tempo/key filters (songs not yet analysed are "
                   "left out: scan the library in full mode to analyse them all).")
    if dups:
        message = (message + " " if message else "") + (
            f"{dups} near-duplicate{'s' if dups > 1 else ''} of the query left out.")
    return message


@functools.cache
def _background() -> Any:
    """The thread that does a query's side work off the path to its results: its fingerprint
    (beside the separation) and writing its stems to the stem cache (after it), at a lower
    priority than the query itself. One for the process."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossmix-side",
                              initializer=_lower_this_threads_priority)


def _collect_fingerprint(result: QueryResult) -> None:
    """The query's fingerprint, from the side thread computing it (:meth:`Crossmix._decoded`)."""
    if result.pending_fingerprint is not None:
        result.fingerprint = result.pending_fingerprint.result()
        result.pending_fingerprint = None


def _store(cache: Any, audio_key: str, model_id: str, stems: Any) -> None:
    try:
        cache.put(audio_key, model_id, stems)
    except CrossmixError as exc:  # a full disk or a read-only folder must not lose the query
        log.warning("%s", exc)


def region_options(query: QueryResult, options: Any) -> Any:
    """``options`` for a query searched by a region: a preview starts at the region and lasts
    as long as it (at most the preview length asked for)."""
    if query.region is None or not options.preview or options.preview_start is not None:
        return options
    start, end = query.region
    return dataclasses.replace(options, preview_start=start,
                               preview_seconds=min(options.preview_seconds, end - start))


@dataclass
class LibraryReport:
    """What :meth:`Crossmix.status` reads: ``crossmix library status`` and the Library tab."""

    status: Any  # core.library.library.LibraryStatus
    failures: list[Any]  # core.library.catalog.Failure
    quality: Any | None  # core.embedding.quality.Quality (None: not measured)
    default_space: str  # the space "auto" searches ("" when not measured)
    default_space_reason: str

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready values (``crossmix library status --json``)."""
        d: dict[str, Any] = self.status.to_dict()
        q = self.quality
        if q is not None:
            d["quality"] = {"protocol": q.protocol, "name": q.name,
                            "spaces": {k: {"top1": v.top1, "top5": v.top5}
                                       for k, v in q.spaces.items()},
                            "default_space": self.default_space,
                            "default_space_reason": self.default_space_reason}
        d["failure_list"] = [{"path": f.path, "stage": f.stage, "error": f.error,
                              "reason": f.reason} for f in self.failures]
        return d


@dataclass(frozen=True)
class IndexInfo:
    """One search index built by :meth:`Crossmix.rebuild_indexes`."""

    space: str  # the library's space ("M", "V", "[M+V]", "[M,V]")
    kind: str  # "flat", "ivf" or "ivfpq"
    songs: int  # vectors in it


@dataclass
class CatalogRepair:
    """What :meth:`Crossmix.repair` found and did."""

    catalog: Path
    report: Any  # core.library.catalog.RepairReport
    #: the songs the library holds after a repair (``None`` when nothing was repaired)
    songs: int | None = None
