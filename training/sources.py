"""Where a training run's songs come from: a folder, a manifest file, or the library.

Whatever the source, the run trains on one manifest of absolute paths in its own folder,
``OUT/data/manifest.csv`` (:func:`write_run_data`): the library's artist tags, a folder of
tagged songs and a manifest all train the same way, a stopped run resumes on the songs it
started with, and the current model can be evaluated on exactly the run's test singers
(:func:`comparison_data`). ``crossmix train --from-library`` and the app's Retrain tab both
call :func:`data_from_library`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from core.errors import LibraryError, TrainingError
from training.dataset import MANIFEST, UNLABELLED, SongEntry, load_dataset, write_manifest

#: The run's training data, ``OUT/data`` (its ``manifest.csv``).
DATA_DIR = "data"
#: The run's test singers only, ``OUT/compare`` (for evaluating another model on them).
COMPARE_DIR = "compare"


class LibrarySong(Protocol):
    """What training reads of a library song (:class:`core.library.catalog.SongRecord`)."""

    @property
    def path(self) -> str: ...

    @property
    def artist(self) -> str | None: ...

    @property
    def title(self) -> str | None: ...


class SongLibrary(Protocol):
    """What training reads of a library (:class:`core.library.library.Library`)."""

    @property
    def root(self) -> Path: ...

    def songs(self) -> Sequence[LibrarySong]: ...


def library_songs(lib: SongLibrary, *, labels: bool = True) -> list[SongEntry]:
    """One song per library song with an artist tag, labelled by it.

    ``labels=False`` (label-agnostic training): every song, an untagged one labelled by
    itself (``"song:<path>"``) as :func:`training.dataset.load_dataset` does.

    Raises
    ------
    TrainingError
        No song to train with (none at all, or none tagged when ``labels``).
    """
    out = []
    for song in lib.songs():
        if not song.path:
            continue
        path = Path(song.path).resolve()
        singer = song.artist or ("" if labels else f"{UNLABELLED}{path}")
        if singer:
            out.append(SongEntry(path=path, singer=singer, song=song.title or path.stem))
    if not out:
        if not labels:
            raise TrainingError(f"{lib.root}: the library has no songs to train with; add a "
                                "folder on the Library tab first.")
        raise TrainingError(
            f"{lib.root}: no library song has an artist tag, so there are no singer labels to "
            "train with. Tag the files with their artist, train from a folder with a "
            "manifest.csv, or choose the InfoNCE loss with label-agnostic pairs (no tags needed).")
    return out


def source_songs(source: str | Path, *, labels: bool = True) -> list[SongEntry]:
    """The songs of a folder (its manifest.csv or the files' artist tags) or a manifest file."""
    return load_dataset(source, labels=labels).songs


def write_run_data(out: Path, songs: list[SongEntry]) -> Path:
    """Write ``OUT/data/manifest.csv``; returns the data folder (``--data`` of the run)."""
    return write_manifest(Path(out) / DATA_DIR / MANIFEST, songs).parent


def data_from_library(lib: SongLibrary, out: Path, *, labels: bool = True) -> Path:
    """The run's data folder holding the library's songs (see :func:`library_songs`)."""
    return write_run_data(out, library_songs(lib, labels=labels))


def data_from_source(source: str | Path, out: Path, *, labels: bool = True) -> Path:
    """The run's data folder holding the songs of a folder or a manifest file."""
    return write_run_data(out, source_songs(source, labels=labels))


def open_library(root: str | Path | None = None) -> Any:
    """The library at ``root`` (default: the user's library), opened read-only.

    Raises
    ------
    LibraryError
        No library there (a mistyped folder is not made into a new, empty library).
    """
    from core.library.library import CATALOG_NAME, Library
    from core.paths import default_library_dir

    folder = Path(root if root is not None else default_library_dir()).expanduser()
    if not (folder / CATALOG_NAME).is_file():
        raise LibraryError(f"{folder}: there is no library here (no {CATALOG_NAME}); give its "
                           "folder with --library, or add songs with 'crossmix library add'.")
    return Library.open(folder, read_only=True)


def comparison_data(out: Path) -> Path:
    """``OUT/compare/manifest.csv``: the run's test singers only (from ``OUT/split.json``)."""
    out = Path(out)
    split = json.loads((out / "split.json").read_text())
    test = set(split.get("test") or [])
    songs = [s for s in load_dataset(out / DATA_DIR, labels=False).songs if s.singer in test]
    if not songs:
        raise TrainingError(f"{out}: the run recorded no test singers to compare on.")
    return write_manifest(out / COMPARE_DIR / MANIFEST, songs).parent
