"""The demo song folder: a few dozen synthetic songs generated on set-up, not committed.

``build_demo_songs()`` generates them with the corpus generator (fixed seed, singers that no
training corpus of that seed uses) under ``core.paths.data_dir() / "demo"``:

- ``demo/songs/``: one tagged FLAC per song, ``"Singer 900 - 01 Title.flac"`` (what a library
  indexes; no stems here, so a scan sees songs only);
- ``demo/corpus/``: the generator's full output (stems and ``truth.json`` per song).

It is idempotent: a second call checks the files and returns at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import TrainingError
from core.paths import data_dir
from core.progress import CancelToken, ProgressFn
from training.corpus import MIX_NAME, TRUTH_NAME, generate_corpus, song_dir

#: Seed and singers of the demo songs: singers 900+ are never in a training run of seed 1,
#: which uses singers below 300 (training, validation and test).
DEMO_SEED = 1
DEMO_FIRST_SINGER = 900
DEMO_SINGERS = 12
DEMO_SONGS_PER_SINGER = 3
DEMO_SECONDS = 30.0


@dataclass(frozen=True)
class DemoReport:
    songs_dir: Path
    songs: int
    generated: int


def demo_dir() -> Path:
    return data_dir() / "demo"


def demo_songs_dir() -> Path:
    """The folder of demo songs to index (one FLAC per song)."""
    return demo_dir() / "songs"


def _safe(name: str) -> str:
    return re.sub(r"[^\w\- ]+", "", name).strip() or "untitled"


def build_demo_songs(
    *,
    root: Path | None = None,
    singers: int = DEMO_SINGERS,
    songs_per_singer: int = DEMO_SONGS_PER_SINGER,
    seconds: float = DEMO_SECONDS,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> DemoReport:
    """Generate (or check) the demo songs; returns where they are.

    Parameters
    ----------
    root : Path, optional
        The demo folder; :func:`demo_dir` when ``None``.
    singers, songs_per_singer, seconds : int, int, float
        Size of the demo (the defaults are what the app ships; tests use less).
    jobs : int, optional
        Worker processes (default: the CPU count).
    """
    root = Path(root) if root is not None else demo_dir()
    corpus = root / "corpus"
    songs = root / "songs"
    rep = generate_corpus(
        out_dir=corpus, seed=DEMO_SEED, singers=singers, songs=songs_per_singer,
        seconds=seconds, first_singer=DEMO_FIRST_SINGER, jobs=jobs or (os.cpu_count() or 1),
        progress=progress, cancel=cancel,
    )
    try:
        songs.mkdir(parents=True, exist_ok=True)
        wanted: set[str] = set()
        for i in range(DEMO_FIRST_SINGER, DEMO_FIRST_SINGER + singers):
            for j in range(songs_per_singer):
                folder = song_dir(corpus, i, j)
                truth = json.loads((folder / TRUTH_NAME).read_text(encoding="utf-8"))
                name = f"{_safe(truth['artist'])} - {j + 1:02d} {_safe(truth['title'])}.flac"
                wanted.add(name)
                target, src = songs / name, folder / MIX_NAME
                if not target.is_file() or target.stat().st_size != src.stat().st_size:
                    tmp = songs / f".{name}.part"
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, target)
        for stale in songs.glob("*.flac"):
            if stale.name not in wanted:
                stale.unlink()
    except OSError as exc:
        raise TrainingError(f"{songs}: cannot write the demo songs ({exc.strerror or exc}).") from None
    return DemoReport(songs_dir=songs, songs=len(wanted), generated=rep.songs_written)
