"""The SQLite catalog: songs by content hash, paths, vectors, failures, durability."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from core.errors import LibraryError
from core.library.catalog import Catalog, Failure, SongInfo


def _vecs(rng: np.random.Generator, full: bool = True) -> dict[str, np.ndarray]:
    m = rng.standard_normal(8).astype(np.float32)
    out = {"M": m / np.linalg.norm(m)}
    if full:
        v = rng.standard_normal(8).astype(np.float32)
        out["V"] = v / np.linalg.norm(v)
        out["[M,V]"] = (np.concatenate([out["M"], out["V"]]) / np.sqrt(2)).astype(np.float32)
    return out


def _put(cat: Catalog, path: str, chash: str, rng: np.random.Generator, model: str = "m1",
         mode: str = "full") -> int:
    return cat.put_song(path=path, size=10, mtime_ns=1, info=SongInfo(chash, 10, duration=3.0,
                        title=Path(path).stem), vectors=_vecs(rng, mode == "full"),
                        model_id=model, mode=mode)


def test_put_song_round_trip_and_vectors(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    vecs = _vecs(rng)
    sid = cat.put_song(path="/a/x.wav", size=10, mtime_ns=5,
                       info=SongInfo("h1", 10, duration=3.0, artist="Ann", title="X", album="Al"),
                       vectors=vecs, model_id="m1", mode="full",
                       analysis={"tempo": 120.0, "key": "A minor", "beats": [0.5, 1.0]})
    song = cat.song(sid)
    assert song is not None
    assert (song.path, song.artist, song.title, song.album) == ("/a/x.wav", "Ann", "X", "Al")
    assert (song.tempo, song.key, song.mode, song.model_id) == (120.0, "A minor", "full", "m1")
    assert song.analysis is not None and song.analysis["beats"] == [0.5, 1.0]
    got = cat.song_vectors(sid, "m1")
    assert set(got) == {"M", "V", "[M,V]"}
    for k in vecs:
        np.testing.assert_array_equal(got[k], vecs[k])
    ids, mat = cat.vectors("[M,V]", "m1")
    assert ids.tolist() == [sid] and mat.shape == (1, 16)
    assert cat.vectors("M", "other")[0].size == 0
    lib_id = cat.library_id
    cat.close()
    # durable: a new connection sees the same
    cat2 = Catalog.open(tmp_path / "c.sqlite")
    assert cat2.song(sid) == song
    assert cat2.library_id == lib_id != ""


def test_duplicates_are_one_song_and_orphans_are_dropped(tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    sid = _put(cat, "/a/x.wav", "h1", rng)
    cat.link_file(path="/b/copy.wav", song_id=sid, size=10, mtime_ns=2)
    assert len(cat.songs()) == 1
    assert cat.songs()[0].paths == ("/a/x.wav", "/b/copy.wav")
    gen = cat.generation
    assert cat.forget_paths(["/a/x.wav"]) == 0  # still held by the copy
    assert cat.generation == gen
    assert cat.forget_paths(["/b/copy.wav"]) == 1
    assert cat.songs() == [] and cat.vectors("M", "m1")[0].size == 0
    assert cat.generation > gen


def test_changed_file_replaces_its_song(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    _put(cat, "/a/x.wav", "old", rng)
    _put(cat, "/a/x.wav", "new", rng)
    assert [s.content_hash for s in cat.songs()] == ["new"]


def test_reembedding_replaces_vectors_of_the_old_checkpoint(tmp_path: Path,
                                                             rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    sid = _put(cat, "/a/x.wav", "h", rng, model="m1")
    cat.set_model_id("m2")
    c = cat.counts("m2")
    assert (c["current"], c["stale"]) == (0, 1)
    assert _put(cat, "/a/x.wav", "h", rng, model="m2", mode="fast") == sid
    assert cat.song_vectors(sid, "m1") == {}
    assert set(cat.song_vectors(sid, "m2")) == {"M"}
    c = cat.counts("m2")
    assert (c["current"], c["stale"], c["full"], c["space:M"]) == (1, 0, 0, 1)


def test_failures_are_recorded_and_cleared_by_success(tmp_path: Path,
                                                      rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    cat.record_failure(Failure("/a/bad.mp3", "decode", "NotAudioError", "a text file", 5, 1))
    (f,) = cat.failures()
    assert (f.path, f.stage, f.error, f.reason, f.size) == ("/a/bad.mp3", "decode",
                                                           "NotAudioError", "a text file", 5)
    _put(cat, "/a/bad.mp3", "h", rng)
    assert cat.failures() == []
    # a path that held a song and now fails loses the song
    cat.record_failure(Failure("/a/bad.mp3", "decode", "CorruptAudioError", "truncated"))
    assert cat.songs() == []


def test_remove_tree_and_excludes(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    cat.add_root("/music")
    _put(cat, "/music/a/1.wav", "h1", rng)
    _put(cat, "/music/a/2.wav", "h2", rng)
    _put(cat, "/music/a_b/3.wav", "h3", rng)  # a sibling whose name starts the same
    files, songs = cat.remove_tree("/music/a")
    assert (files, songs) == (2, 2)
    assert [s.content_hash for s in cat.songs()] == ["h3"]
    assert cat.excludes() == ["/music/a"] and cat.roots() == ["/music"]
    cat.add_root("/music/a")  # adding it again lifts the exclusion
    assert cat.excludes() == []
    cat.remove_tree("/music")
    assert cat.roots() == [] and cat.songs() == [] and cat.excludes() == []


def test_failed_transaction_leaves_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    cat = Catalog.open(tmp_path / "c.sqlite")
    with pytest.raises(RuntimeError), cat.transaction() as c:
        c.execute("INSERT INTO roots VALUES ('/x', 0)")
        raise RuntimeError("boom")
    assert cat.roots() == []


def test_damaged_catalog_is_a_library_error(tmp_path: Path) -> None:
    p = tmp_path / "c.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LibraryError, match="damaged"):
        Catalog.open(p)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.sqlite"
    Catalog.open(p).close()
    con = sqlite3.connect(p)
    con.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(LibraryError, match="newer Crossmix"):
        Catalog.open(p)
