"""Labelled song folders, singer splits and the on-disk cache of log-mel segments.

A training (or evaluation) folder is a tree of songs labelled by singer, either by

- ``manifest.csv`` at its top: a header line then rows ``path,singer[,song][,vocals]``
  (``path`` and ``vocals`` relative to the folder, or absolute; ``vocals`` is an optional
  ground-truth vocal stem of the same length, used with ``--vocals stems``), or by
- the ``artist`` tag of each audio file (read with mutagen); files without one are skipped
  and counted. A folder holding ``mix.*`` beside ``vocals.*`` (and ``accompaniment.*``) is
  one song whose ``vocals`` file is its ground-truth stem.

The folder is only read, never written. Each song is separated once (the shared stem cache,
:func:`core.separation.separator.default_stem_cache`) and its mix and vocal log-mel segments, chosen
where the vocal is active (:func:`core.embedding.features.select_segments`), are stored as float16 in a
feature cache (default ``core.paths.cache_dir() / "features"``) keyed by the file's sha256,
the vocal source (separator ``model_id`` or the stem file's sha256), the front-end version
and the segment cap.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from core.atomic import atomic_write
from core.audio.decode import AUDIO_EXTENSIONS, Audio, file_hash, load_audio
from core.embedding.features import song_segments, stems_levels_db
from core.errors import AudioError, CrossmixError, TrainingError
from core.paths import cache_dir
from core.progress import CancelToken, EtaClock, Progress, ProgressFn, check_cancel

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
#: The columns of a manifest, in the order :func:`write_manifest` writes them (and a manifest
#: without a header line is read in).
MANIFEST_COLUMNS = ("path", "singer", "song", "vocals")
#: File stems that are a song's stems, not songs, when a ``mix.*`` sits beside them.
_STEM_NAMES = ("vocals", "accompaniment", "instrumental", "drums", "bass", "other")
#: Bumped whenever the front end or the segment rule changes (old cache entries are then unused).
FEATURE_VERSION = 2  # 2: accompaniment segments and per-segment levels for artificial mixtures


@dataclass(frozen=True)
class SongEntry:
    """One labelled song. ``song`` is a display name; ``vocals`` a ground-truth stem, if any."""

    path: Path
    singer: str
    song: str
    vocals: Path | None = None


@dataclass
class Dataset:
    """The songs of a folder, grouped by singer (singers and songs sorted, so runs repeat)."""

    root: Path
    songs: list[SongEntry]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def singers(self) -> list[str]:
        return sorted({s.singer for s in self.songs})

    def by_singer(self) -> dict[str, list[SongEntry]]:
        out: dict[str, list[SongEntry]] = {}
        for s in sorted(self.songs, key=lambda e: (e.singer, str(e.path))):
            out.setdefault(s.singer, []).append(s)
        return out

    def subset(self, singers: list[str] | set[str]) -> list[SongEntry]:
        keep = set(singers)
        return [s for s in sorted(self.songs, key=lambda e: (e.singer, str(e.path))) if s.singer in keep]


def refuse_evaluation_only(songs: list[SongEntry]) -> None:
    """Raise when any of ``songs`` belongs to an evaluation-only corpus (espeak-ng voices).

    Such a corpus carries :data:`training.corpus_singers.EVALUATION_MARKER` in its root
    folder, and each of its songs a ``truth.json`` naming the voice set; either one is enough.
    The songs may be listed by a manifest or a library anywhere else, so the folders above
    every song are checked, not only the training folder.

    Raises
    ------
    TrainingError
        Naming the first such song.
    """
    import json

    from training.corpus_singers import EVALUATION_MARKER, EVALUATION_VOICE_SETS

    @functools.cache
    def under_marker(folder: Path) -> bool:
        return (folder / EVALUATION_MARKER).is_file() or (
            folder.parent != folder and under_marker(folder.parent))

    for song in songs:
        folder = Path(song.path).resolve().parent
        voices = None
        truth = folder / "truth.json"
        if truth.is_file():
            try:
                voices = json.loads(truth.read_text(encoding="utf-8")).get("voices")
            except (OSError, ValueError, AttributeError):
                voices = None
        if voices in EVALUATION_VOICE_SETS or under_marker(folder):
            raise TrainingError(
                f"{song.path}: this song is from an evaluation-only corpus (espeak-ng voices, "
                "reserved for independent evaluation); remove it from the training data.")


#: Prefix of the pseudo-label of an untagged song in label-agnostic training.
UNLABELLED = "song:"


def load_dataset(root: str | Path, *, labels: bool = True) -> Dataset:
    """Read the songs and singer labels of a folder (``manifest.csv`` or ``artist`` tags), or
    of a manifest file of any name (its paths relative to its own folder).

    With ``labels=False`` (label-agnostic training) a song without an artist tag is kept,
    labelled by itself (``"song:<path>"``): the trainer then only pairs a song with itself.

    Raises
    ------
    TrainingError
        The folder does not exist, the manifest is malformed, or no labelled song was found.
    """
    r = Path(root).expanduser()
    if r.is_file():
        r, manifest = r.parent, r
    elif r.is_dir():
        manifest = r / MANIFEST
    else:
        raise TrainingError(f"{r}: no such folder; point --data at a folder of songs labelled by singer.")
    ds = _from_manifest(r, manifest) if manifest.is_file() else _from_tags(r, labels=labels)
    if not ds.songs:
        if not labels:
            raise TrainingError(f"{r}: no audio files found; point --data at a folder of songs.")
        raise TrainingError(
            f"{r}: no labelled songs found (for a folder without artist tags use --pairs agnostic). Add a {MANIFEST} with lines 'path,singer' or tag the "
            "files with their artist."
        )
    return ds


def _from_manifest(root: Path, manifest: Path) -> Dataset:
    songs: list[SongEntry] = []
    skipped: list[tuple[Path, str]] = []
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = [row for row in csv.reader(fh) if row and not row[0].startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{manifest}: cannot read it ({exc}).") from None
    if not rows:
        raise TrainingError(f"{manifest}: it is empty; write a header 'path,singer' and one line per song.")
    header = [h.strip().lower() for h in rows[0]]
    if "path" in header and "singer" in header:
        cols = {name: header.index(name) for name in header}
        rows = rows[1:]
    else:
        cols = {name: i for i, name in enumerate(MANIFEST_COLUMNS)}
    for i, row in enumerate(rows, start=2 if "path" in header else 1):
        def get(name: str, row: list[str] = row) -> str:
            j = cols.get(name)
            return row[j].strip() if j is not None and j < len(row) else ""
        rel, singer = get("path"), get("singer")
        if not rel or not singer:
            raise TrainingError(f"{manifest}, line {i}: needs at least 'path,singer'.")
        p = (root / rel).resolve()
        if not p.is_file():
            skipped.append((p, "listed in the manifest but missing"))
            continue
        voc = get("vocals")
        vp = (root / voc).resolve() if voc else None
        if vp is not None and not vp.is_file():
            skipped.append((vp, "vocal stem listed in the manifest but missing"))
            vp = None
        songs.append(SongEntry(path=p, singer=singer, song=get("song") or p.stem, vocals=vp))
    return Dataset(root=root, songs=songs, skipped=skipped)


def write_manifest(path: Path, songs: list[SongEntry]) -> Path:
    """Write ``songs`` as a manifest (absolute paths, a header line) at ``path``; returns it."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        for s in songs:
            w.writerow([str(Path(s.path).resolve()), s.singer, s.song,
                        str(Path(s.vocals).resolve()) if s.vocals else ""])
    return path


def _from_tags(root: Path, *, labels: bool = True) -> Dataset:
    import mutagen

    songs: list[SongEntry] = []
    skipped: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        audio = [n for n in sorted(filenames) if not n.startswith(".") and Path(n).suffix.lower() in AUDIO_EXTENSIONS]
        # A song folder holding mix.* beside vocals.* / accompaniment.* (stems, e.g. the
        # synthetic corpus): the mix is the song, the vocal file its ground-truth stem.
        stems = {Path(n).stem.lower(): Path(dirpath) / n for n in audio}
        has_mix = "mix" in stems
        for name in audio:
            p = Path(dirpath) / name
            if has_mix and p.stem.lower() in _STEM_NAMES:
                continue
            try:
                tagged = mutagen.File(str(p), easy=True)
            except Exception as exc:  # mutagen raises many types on odd files
                skipped.append((p, f"tags unreadable ({exc})"))
                continue
            artist = None
            if tagged is not None and tagged.tags is not None:
                vals = tagged.tags.get("artist")
                if vals:
                    artist = str(vals[0]).strip()
            if not artist and not labels:
                artist = UNLABELLED + str(p.relative_to(root))
            if not artist:
                skipped.append((p, "no artist tag"))
                continue
            title = None
            if tagged is not None and tagged.tags is not None and tagged.tags.get("title"):
                title = str(tagged.tags.get("title")[0])
            vocal_stem = stems.get("vocals") if has_mix and p.stem.lower() == "mix" else None
            default_name = p.parent.name if p.stem.lower() == "mix" else p.stem
            songs.append(SongEntry(path=p.resolve(), singer=artist, song=title or default_name,
                                   vocals=vocal_stem.resolve() if vocal_stem is not None else None))
    return Dataset(root=root, songs=songs, skipped=skipped)


# --- splits --------------------------------------------------------------------------------


@dataclass
class Split:
    """Disjoint singer lists. Singers with fewer than two songs only ever go to ``train``."""

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "train": self.train, "val": self.val, "test": self.test}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Split:
        return cls(train=list(d["train"]), val=list(d["val"]), test=list(d["test"]), seed=int(d.get("seed", 0)))


def split_singers(ds: Dataset, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0, labels: bool = True) -> Split:
    """Split singers (not songs) into train / validation / test, reproducibly from ``seed``.

    Validation and test each get ``round(fraction * singers)`` singers (at least 2 when the
    fraction is positive and there are enough singers with two or more songs). With
    ``labels=False`` (label-agnostic training) singers with one song are held out too: an
    untagged song is a "singer" of its own.
    """
    groups = ds.by_singer()
    eligible = sorted(s for s, songs in groups.items() if len(songs) >= 2 or not labels)
    rng = np.random.default_rng(seed)
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    n = len(groups)

    def count(frac: float) -> int:
        return 0 if frac <= 0 else max(2, int(round(frac * n)))

    n_test, n_val = count(test_fraction), count(val_fraction)
    if n_test + n_val > len(order) - 2:
        raise TrainingError(
            f"{ds.root}: {n} singers ({len(eligible)} with two or more songs) are too few for "
            f"{n_val} validation and {n_test} test singers plus training singers; add singers or "
            "lower --val-fraction / --test-fraction."
        )
    test = sorted(order[:n_test])
    val = sorted(order[n_test:n_test + n_val])
    held = set(test) | set(val)
    train = sorted(s for s in groups if s not in held)
    return Split(train=train, val=val, test=test, seed=seed)


# --- feature cache -------------------------------------------------------------------------


@dataclass
class SongFeatures:
    """Cached segments of one song: ``mix``, ``vocal`` and ``acc`` are float16 ``(count, ...)``.

    The shape is ``(count, 128, 129)`` log-mel for the ``"logmel"`` front end and
    ``(count, 40, 298)`` level-normalised mel power for ``"ge2e"`` (:mod:`core.embedding.ge2e`).
    ``acc`` is the accompaniment at the same positions and ``levels`` ``(count, 3)`` the RMS
    level (dBFS) of the mix, vocal and accompaniment segments: artificial mixtures are built
    from them (:mod:`training.mixtures`).
    """

    mix: npt.NDArray[np.float16]
    vocal: npt.NDArray[np.float16]
    vocal_found: bool
    acc: npt.NDArray[np.float16] | None = None
    levels: npt.NDArray[np.float32] | None = None


#: Gives the separated stems of a song file: ``(path) -> Stems``.
StemsFn = Callable[[Path], Any]


class FeatureStore:
    """Log-mel segments of songs, computed once and kept on disk.

    Parameters
    ----------
    root : Path, optional
        The cache folder (default ``core.paths.cache_dir() / "features"``).
    vocals : {"separated", "stems"}
        Where the vocal comes from: the separator (through the stem cache) or the
        ground-truth stem named in the manifest.
    separator : core.separation.separator.Separator, optional
        Needed for ``"separated"``.
    stem_cache : core.separation.separator.StemCache, optional
        Default :func:`core.separation.separator.default_stem_cache`.
    max_segments : int
        Cap on segments per song, spread over the song.
    frontend : {"logmel", "ge2e"}
        The encoders' features (:attr:`core.embedding.encoders.EncoderPair.frontend`).
    """

    def __init__(self, root: Path | None = None, *, vocals: str = "separated", separator: Any = None,
                 stem_cache: Any = None, max_segments: int = 16, frontend: str = "logmel") -> None:
        if frontend not in ("logmel", "ge2e"):
            raise TrainingError(f"Unknown front end {frontend!r}: use 'logmel' or 'ge2e'.")
        self.frontend = frontend
        if vocals not in ("separated", "stems"):
            raise TrainingError(f"Unknown vocal source {vocals!r}: use 'separated' or 'stems'.")
        if vocals == "separated" and separator is None:
            raise TrainingError("Separated vocals need a separator.")
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self.vocals = vocals
        self.separator = separator
        self.stem_cache = stem_cache
        self.max_segments = int(max_segments)

    def _source_id(self, song: SongEntry) -> str:
        if self.vocals == "stems":
            if song.vocals is None:
                raise TrainingError(
                    f"{song.path}: --vocals stems needs a 'vocals' column in {MANIFEST} naming its vocal stem."
                )
            return "gt-" + file_hash(song.vocals)[:16]
        return "sep-" + str(self.separator.model_id)[:16]

    def path_for(self, song: SongEntry) -> Path:
        key = hashlib.sha256(
            f"{file_hash(song.path)}|{self._source_id(song)}|v{FEATURE_VERSION}|c{self.max_segments}|{self.frontend}".encode()
        ).hexdigest()
        return self.root / key[:2] / f"{key}.npz"

    def get(self, song: SongEntry, *, cancel: CancelToken | None = None) -> SongFeatures:
        """The song's segments, from the cache or computed (and cached)."""
        p = self.path_for(song)
        if p.is_file():
            try:
                with np.load(p) as z:
                    return SongFeatures(mix=z["mix"], vocal=z["vocal"], vocal_found=bool(z["found"]),
                                        acc=z["acc"], levels=z["levels"])
            except (OSError, ValueError, KeyError) as exc:
                log.warning("Feature cache entry %s is damaged (%s); recomputing.", p, exc)
                p.unlink(missing_ok=True)
        feats = self._compute(song, cancel)
        assert feats.acc is not None and feats.levels is not None  # _compute always gives both
        try:
            with atomic_write(p, suffix=".npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, mix=feats.mix, vocal=feats.vocal, found=np.array(feats.vocal_found),
                         acc=feats.acc, levels=feats.levels)
        except OSError as exc:
            raise CrossmixError(f"{p}: could not write the feature cache ({exc}); is the disk full?") from None
        return feats

    def _compute(self, song: SongEntry, cancel: CancelToken | None) -> SongFeatures:
        if self.vocals == "stems":
            assert song.vocals is not None
            mix = load_audio(song.path)
            voc = load_audio(song.vocals)
            n = min(mix.samples.shape[1], voc.samples.shape[1])
            # The ground-truth stems sum to the mix, so the accompaniment is the difference.
            acc = Audio(mix.mono().samples[:, :n] - voc.mono().samples[:, :n], mix.sr)
        else:
            from core.separation.separator import default_stem_cache, separate_file

            cache = self.stem_cache if self.stem_cache is not None else default_stem_cache()
            stems = separate_file(song.path, separator=self.separator, cache=cache, cancel=cancel)
            mix, voc, acc = stems.mix, stems.vocals, stems.accompaniment
        with torch.no_grad():
            m, v, found = song_segments(mix=mix, vocals=voc, max_segments=self.max_segments,
                                        frontend=self.frontend)
            a, _, _ = song_segments(mix=acc, vocals=voc, max_segments=self.max_segments,
                                    frontend=self.frontend)
        assert v is not None
        levels = stems_levels_db([mix, voc, acc], voc, max_segments=self.max_segments).astype(np.float32)
        return SongFeatures(mix=_f16(m), vocal=_f16(v), vocal_found=found, acc=_f16(a), levels=levels)

    def load_many(self, songs: list[SongEntry], *, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> tuple[list[SongEntry], list[SongFeatures], list[tuple[Path, str]]]:
        """Features of many songs. Songs that cannot be decoded are skipped and reported.

        Returns ``(songs_kept, features, failures)``.
        """
        kept: list[SongEntry] = []
        feats: list[SongFeatures] = []
        failures: list[tuple[Path, str]] = []
        clock = EtaClock()
        for i, song in enumerate(songs):
            check_cancel(cancel, "preparing the training data")
            try:
                feats.append(self.get(song, cancel=cancel))
                kept.append(song)
            except AudioError as exc:
                failures.append((song.path, str(exc)))
                log.warning("Skipping %s: %s", song.path, exc)
            if progress is not None:
                progress(Progress("features", i + 1, len(songs), "songs", song.path.name,
                                  eta_s=clock.eta(i + 1, len(songs))))
        return kept, feats, failures


def _f16(x: torch.Tensor) -> npt.NDArray[np.float16]:
    """float16 for the cache, clipped to its range (mel power of a loud segment may exceed it)."""
    out: npt.NDArray[np.float16] = np.clip(x.numpy(), -6.0e4, 6.0e4).astype(np.float16)
    return out
