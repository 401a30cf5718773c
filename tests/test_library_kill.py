"""A scan killed with SIGKILL at random points, then resumed, ends with the same catalog as an
uninterrupted scan (each song is committed in its own transaction)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_library import write_song

from core.library.library import Library
from core.separation.separator import Separator

# Scans the library in full mode with the tiny models, printing "done N TODO" after each song.
# The tiny separator takes milliseconds a song, so the scanned process makes each separation
# last at least PACE_S (a real song takes seconds): two commits that need a separation are
# then at least PACE_S apart on any machine, and a kill sent less than 2 * PACE_S after a
# "done" line has let at most one more song commit. Within that window the kill lands at a
# random moment: while the next song is separated, embedded or committed, or while the
# prefetch threads hash and decode the songs after it.
PACE_S = 0.4
_SCRIPT = r"""
import sys, time, torch
torch.set_num_threads(1)
from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator
sep = Separator.tiny()
pace, separate = float(sys.argv[3]), sep.separate
def paced(*args, **kwargs):
    time.sleep(pace)
    return separate(*args, **kwargs)
sep.separate = paced
lib = Library.open(sys.argv[1], encoders=EncoderPair.tiny(), separator=sep)
lib.add_paths([sys.argv[2]])
print("ready", flush=True)
def progress(p):
    if p.stage == "scan" and p.total and p.done:
        print(f"done {int(p.done)} {int(p.total)}", flush=True)
lib.scan(mode="full", analyze=False, workers=2, progress=progress)
print("finished", flush=True)
"""

N_SONGS = 10


def _start(lib_dir: Path, songs: Path, pace_s: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, str(lib_dir), str(songs), str(pace_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _run_to_end(lib_dir: Path, songs: Path) -> None:
    proc = _start(lib_dir, songs)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "finished" in out


def _dump(lib_dir: Path) -> dict[str, object]:
    with Library.open(lib_dir) as lib:
        d = lib.catalog.dump()
        # the catalog must be consistent, not just equal
        con = sqlite3.connect(lib.catalog.path)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        con.close()
        # every song's stems are in the cache and readable (a temporary file left by a kill
        # during a cache write is ignored, and swept by a later scan once it is old)
        sep_id = Separator.tiny().model_id
        for s in lib.songs():
            assert s.audio_key and lib.stem_cache.get(s.audio_key, sep_id) is not None
        return d


@pytest.mark.slow
def test_sigkilled_scans_resume_to_the_same_catalog(tmp_path: Path) -> None:
    songs = tmp_path / "music"
    for i in range(N_SONGS):
        write_song(songs / f"{i:02d}.wav", seed=100 + i, seconds=3.0)

    _run_to_end(tmp_path / "reference", songs)
    want = _dump(tmp_path / "reference")
    assert len(want["songs"]) == N_SONGS  # type: ignore[arg-type]

    rng = np.random.default_rng(2026)  # kills: at start-up, then after a few songs of each run
    lib_dir = tmp_path / "killed"
    kills = 0
    committed: list[int] = []
    for _ in range(4):
        at_start = rng.uniform() < 0.25  # kill during planning / the first song
        u = float(rng.uniform())  # else after a random number of songs of this run
        extra = float(rng.uniform(0.0, 2 * PACE_S))  # then a random moment
        proc = _start(lib_dir, songs, PACE_S)
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        finished = False
        for line in proc.stdout:
            if line.startswith("finished"):
                finished = True
                break
            word, *nums = line.split()
            if word == "ready" and at_start:
                break
            if word == "done":
                done, todo = int(nums[0]), int(nums[1])
                # leave at least two songs of this run (the first song of a run may find its
                # stems cached by the run killed before; the others need a paced separation),
                # so the kill lands before the last commit
                if done <= todo - 2 and done >= 1 + int(u * max(1, todo - 3)):
                    break
            if time.monotonic() > deadline:
                pytest.fail("the scan subprocess stalled")
        if finished:
            proc.wait(timeout=30)
            break
        time.sleep(extra)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
        kills += 1 if proc.returncode == -signal.SIGKILL else 0
        with Library.open(lib_dir) as lib:
            committed.append(len(lib.songs()))
    assert kills >= 3
    print("songs committed after each kill:", committed)
    assert committed == sorted(committed) and committed[-1] < N_SONGS, committed

    _run_to_end(lib_dir, songs)
    got = _dump(lib_dir)
    # identical rows, hashes, paths, tags and modes; vectors equal to float precision
    def strip(d: dict[str, object]) -> str:
        songs_ = {h: {k: v for k, v in s.items() if k != "vectors"}
                  for h, s in d["songs"].items()}  # type: ignore[attr-defined]
        return json.dumps({**d, "songs": songs_}, sort_keys=True)

    assert strip(got) == strip(want)
    for h, s in want["songs"].items():  # type: ignore[attr-defined]
        for space, vec in s["vectors"].items():
            np.testing.assert_allclose(got["songs"][h]["vectors"][space], vec, atol=1e-6)  # type: ignore[index]
