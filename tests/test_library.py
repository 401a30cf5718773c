"""The song library: scanning, failures, incremental re-scans, checkpoints, search, CLI.

Real components throughout (decoding, the separator and encoder classes, SQLite, faiss), with
tiny random-weight models and a few seconds of generated audio per song.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from core.api import Crossmix
from core.embedding.encoders import EncoderPair
from core.embedding.song import SongEmbedding
from core.errors import Cancelled, LibraryError
from core.library.catalog import SongInfo
from core.library.library import Library, build_demo_library
from core.progress import CancelToken, Progress
from core.separation.separator import Separator

SR = 22050


def write_song(path: Path, seed: int, seconds: float = 3.0) -> Path:
    """A distinct little 'song': a melody of harmonic tones over noise bursts, stereo."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = np.zeros(n)
    notes = 110.0 * 2 ** (rng.integers(0, 24, 8) / 12)
    step = n // len(notes)
    for i, f in enumerate(notes):
        seg = slice(i * step, (i + 1) * step)
        for h in range(1, 4):
            x[seg] += 0.15 / h * np.sin(2 * np.pi * f * h * t[seg])
    x += 0.03 * rng.standard_normal(n) * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([x, 0.8 * x], axis=1).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def encoders() -> EncoderPair:
    return EncoderPair.tiny(seed=0)


@pytest.fixture(scope="module")
def separator() -> Separator:
    return Separator.tiny(seed=0)


class CountingSeparator(Separator):
    """The tiny separator, counting how often it really separates."""

    calls = 0

    def separate(self, audio: Any, **kw: Any) -> Any:  # type: ignore[override]
        type(self).calls += 1
        return super().separate(audio, **kw)


def counting_separator() -> CountingSeparator:
    base = Separator.tiny(seed=0)
    sep = CountingSeparator(base._nets, model_id=base.model_id, name=base.name)
    CountingSeparator.calls = 0
    return sep


@pytest.fixture
def songs(tmp_path: Path) -> Path:
    d = tmp_path / "music"
    for i in range(5):
        write_song(d / ("sub" if i % 2 else "") / f"song{i}.wav", seed=i)
    return d


def _lib(tmp_path: Path, encoders: EncoderPair, separator: Separator | None = None,
         name: str = "lib") -> Library:
    return Library.open(tmp_path / name, encoders=encoders, separator=separator)


def _query(lib: Library, rng: np.random.Generator) -> SongEmbedding:
    def unit(d: int) -> np.ndarray:
        v = rng.standard_normal(d).astype(np.float32)
        return v / np.linalg.norm(v)

    m, v = unit(256), unit(256)
    mv = (np.concatenate([m, v]) / np.sqrt(2)).astype(np.float32)
    return SongEmbedding(M=m, V=v, MplusV=unit(256), MV=mv, model_id=lib.catalog.model_id or "")


# --- scanning ------------------------------------------------------------------------------


def test_fast_and_full_scan_and_search_match_brute_force(
        tmp_path: Path, songs: Path, encoders: EncoderPair, separator: Separator,
        rng: np.random.Generator) -> None:
    lib = _lib(tmp_path, encoders, separator)
    lib.add_paths([songs])
    seen: list[Progress] = []
    rep = lib.scan(mode="fast", analyze=False, progress=seen.append)
    assert (rep.total, rep.indexed, rep.failed) == (5, 5, 0)
    scan_prog = [p for p in seen if p.stage == "scan" and p.total]
    assert [p.done for p in scan_prog] == [1, 2, 3, 4, 5] and scan_prog[-1].eta_s == 0
    st = lib.status()
    assert (st.songs, st.current, st.full, st.vectors) == (5, 5, 0, {"M": 5})
    assert st.model_id == encoders.model_id and st.catalog_bytes > 0 and st.index_bytes > 0

    q = _query(lib, rng)
    for space, qv, lv in (("vocal->mix", q.V, "M"), ("mix->mix", q.M, "M")):
        ids, mat = lib.catalog.vectors(lv, encoders.model_id)
        truth = mat @ qv
        res = lib.search(q, space=space, k=3)
        assert [m.song_id for m in res.matches] == ids[np.argsort(-truth)[:3]].tolist()
        np.testing.assert_allclose([m.similarity for m in res.matches],
                                   np.sort(truth)[::-1][:3], atol=1e-5)
        assert [m.rank for m in res.matches] == [1, 2, 3]
    with pytest.raises(LibraryError, match="Unknown search space"):
        lib.search(q, space="nonsense")

    rep = lib.scan(mode="full", analyze=False)  # upgrades every song: separates, embeds V
    assert (rep.reembedded, rep.indexed) == (5, 0)
    st = lib.status()
    assert (st.full, st.vectors["V"], st.vectors["[M,V]"]) == (5, 5, 5)
    assert st.stems_bytes > 0
    for space, qv, lv in (("vocal->vocal", q.V, "V"), ("[M,V]", q.MV, "[M,V]")):
        ids, mat = lib.catalog.vectors(lv, encoders.model_id)
        res = lib.search(q, space=space, k=5)
        assert [m.song_id for m in res.matches] == ids[np.argsort(-(mat @ qv))].tolist()
    assert lib.scan(mode="full").unchanged == 5  # nothing left to do
    lib.close()


def test_failures_are_recorded_and_skipped(tmp_path: Path, encoders: EncoderPair) -> None:
    d = tmp_path / "music"
    for i in range(4):
        write_song(d / f"a{i}.wav", seed=i)
    good = write_song(tmp_path / "x.wav", seed=9).read_bytes()
    (d / "b_corrupt.wav").write_bytes(good[: len(good) // 3])  # header promises more
    (d / "c_text.mp3").write_text("not a song at all, just some text\n" * 20)
    (d / "d_empty.flac").write_bytes(b"")
    doomed = write_song(d / "e_removed.wav", seed=7)
    write_song(d / "f_last.wav", seed=8)

    lib = _lib(tmp_path, encoders)
    lib.add_paths([d])

    def remove_doomed(p: Progress) -> None:  # deleted after planning, before it is read
        if p.stage == "scan" and p.done == 1:
            doomed.unlink()

    rep = lib.scan(mode="fast", analyze=False, workers=1, progress=remove_doomed)
    assert (rep.total, rep.indexed, rep.failed) == (9, 5, 4)
    fails = {Path(f.path).name: f for f in lib.failures()}
    assert set(fails) == {"b_corrupt.wav", "c_text.mp3", "d_empty.flac", "e_removed.wav"}
    assert fails["b_corrupt.wav"].error == "CorruptAudioError"
    assert "truncated" in fails["b_corrupt.wav"].reason
    assert fails["c_text.mp3"].error == "NotAudioError" and "text" in fails["c_text.mp3"].reason
    assert fails["d_empty.flac"].error == "EmptyAudioError"
    assert fails["e_removed.wav"].error == "UnreadableFileError"
    assert "no such file" in fails["e_removed.wav"].reason.lower()
    assert {f.stage for f in fails.values()} <= {"hash", "decode"}

    rep = lib.scan(mode="fast", analyze=False)  # unchanged failures are not retried
    assert (rep.skipped_failed, rep.failed, rep.indexed, rep.removed) == (3, 0, 0, 1)
    assert len(lib.failures()) == 3  # the vanished file's failure is forgotten
    write_song(d / "c_text.mp3", seed=11)  # fixed by the user (a wav named .mp3 decodes)
    rep = lib.scan(mode="fast", analyze=False)
    assert (rep.indexed, rep.skipped_failed) == (1, 2)
    lib.close()


def test_incremental_rescan_moves_duplicates_changes_removals(
        tmp_path: Path, songs: Path, encoders: EncoderPair) -> None:
    lib = _lib(tmp_path, encoders)
    lib.add_paths([songs])
    lib.scan(mode="fast", analyze=False)
    before = {s.content_hash: s for s in lib.songs()}
    vec_before = lib.catalog.song_vectors(before[next(iter(before))].id, encoders.model_id)

    moved_from = songs / "song0.wav"
    moved_to = songs / "elsewhere" / "renamed.wav"
    moved_to.parent.mkdir()
    moved_from.rename(moved_to)
    shutil.copy(songs / "sub" / "song1.wav", songs / "copy_of_1.wav")
    write_song(songs / "new.wav", seed=42)
    write_song(songs / "song2.wav", seed=43)  # changed content, same path
    (songs / "sub" / "song3.wav").unlink()

    rep = lib.scan(mode="fast", analyze=False)
    assert (rep.linked, rep.indexed, rep.removed, rep.unchanged) == (2, 2, 2, 2)
    assert rep.removed_songs == 1  # song3 (song2's old content was replaced in place)
    after = {s.content_hash: s for s in lib.songs()}
    assert len(after) == 5
    h0 = next(h for h, s in before.items() if s.path == str(moved_from))
    assert after[h0].id == before[h0].id and after[h0].paths == (str(moved_to),)
    h1 = next(h for h, s in before.items() if s.path.endswith("song1.wav"))
    assert len(after[h1].paths) == 2  # a duplicate is stored once
    first = next(iter(before))
    if first in after:
        got = lib.catalog.song_vectors(after[first].id, encoders.model_id)
        for k in vec_before:
            np.testing.assert_array_equal(got[k], vec_before[k])
    assert lib.status().vectors["M"] == 5
    lib.close()


def test_cancel_then_resume_equals_uninterrupted(tmp_path: Path, songs: Path,
                                                 encoders: EncoderPair) -> None:
    ref = _lib(tmp_path, encoders, name="ref")
    ref.add_paths([songs])
    ref.scan(mode="fast", analyze=False)

    lib = _lib(tmp_path, encoders)
    lib.add_paths([songs])
    token = CancelToken()

    def stop_after_two(p: Progress) -> None:
        if p.stage == "scan" and p.done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        lib.scan(mode="fast", analyze=False, progress=stop_after_two, cancel=token)
    assert len(lib.songs()) == 2
    rep = lib.scan(mode="fast", analyze=False)
    assert (rep.unchanged, rep.indexed) == (2, 3)
    assert lib.catalog.dump() == ref.catalog.dump()


def test_checkpoint_change_reembeds_from_cached_stems(tmp_path: Path, songs: Path,
                                                      encoders: EncoderPair,
                                                      rng: np.random.Generator) -> None:
    sep = counting_separator()
    lib = _lib(tmp_path, encoders, sep)
    lib.add_paths([songs])
    lib.scan(mode="full", analyze=False)
    assert CountingSeparator.calls == 5
    old = lib.catalog.vectors("M", encoders.model_id)[1]
    old_query = _query(lib, rng)

    new_enc = EncoderPair.tiny(seed=1)
    assert new_enc.model_id != encoders.model_id
    token = CancelToken()

    def stop_after_two(p: Progress) -> None:
        if p.stage == "scan" and p.done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        lib.scan(mode="full", encoders=new_enc, analyze=False, progress=stop_after_two,
                 cancel=token)
    # half re-embedded: a search uses the new checkpoint's songs only, never a mix
    st = lib.status()
    assert (st.model_id, st.current, st.stale) == (new_enc.model_id, 2, 3)
    new_query = SongEmbedding(M=old_query.M, V=old_query.V, MplusV=old_query.MplusV,
                              MV=old_query.MV, model_id=new_enc.model_id)
    res = lib.search(new_query, space="vocal->mix", k=10)
    assert len(res.matches) == 2 and res.model == new_enc.model_id
    with pytest.raises(LibraryError, match="checkpoint"):
        lib.search(old_query, space="vocal->mix")

    lib.close()
    # a fast scan with no separator at all: full songs stay full, from their cached stems
    lib = Library.open(tmp_path / "lib", encoders=new_enc)
    rep = lib.scan(mode="fast", analyze=False)
    assert (rep.reembedded, rep.unchanged) == (3, 2)
    assert CountingSeparator.calls == 5  # every re-embedding came from the stem cache
    st = lib.status()
    assert (st.current, st.stale, st.full) == (5, 0, 5)
    new = lib.catalog.vectors("M", new_enc.model_id)[1]
    assert new.shape == old.shape and not np.allclose(new, old)
    assert lib.catalog.vectors("M", encoders.model_id)[0].size == 0
    assert len(lib.search(new_query, k=10).matches) == 5
    lib.close()


# --- search details -------------------------------------------------------------------------


def test_query_by_path_excludes_itself_and_near_duplicates(
        tmp_path: Path, songs: Path, encoders: EncoderPair, separator: Separator) -> None:
    lib = _lib(tmp_path, encoders, separator)
    lib.add_paths([songs])
    lib.scan(mode="full", analyze=False)
    cx = Crossmix(library=lib, separator=separator, encoders=encoders)  # the query pipeline
    query = songs / "song0.wav"
    qid = lib.catalog.song_by_path(str(query)).id  # type: ignore[union-attr]
    res = lib.search(cx.embed_query(query), k=10, duplicate_similarity=1.5)
    assert [d.song_id for d in res.excluded_duplicates] == [qid]
    assert res.excluded_duplicates[0].duplicate == "same file"
    assert qid not in [m.song_id for m in res.matches] and len(res.matches) == 4
    assert res.query == str(query)

    both = lib.search(cx.embed_query(query), k=10, include_duplicates=True,
                      duplicate_similarity=1.5)
    assert qid in [m.song_id for m in both.matches] and both.excluded_duplicates == []

    # a query from outside the library (separated and embedded on the fly) whose audio is
    # the same recording in another container: recognised by its decoded audio
    outside = tmp_path / "outside.wav"
    data, sr = sf.read(query, dtype="float32")
    sf.write(outside, data, sr, subtype="FLOAT")
    res = lib.search(cx.embed_query(outside), k=10, duplicate_similarity=1.5)
    assert qid in [d.song_id for d in res.excluded_duplicates]

    # "another version": a threshold between the two best mix similarities splits them
    emb = cx.embed_query(songs / "sub" / "song1.wav")
    ids, mat = lib.catalog.vectors("M", encoders.model_id)
    sims = sorted(((float(mat[i] @ emb.embedding.M), int(ids[i])) for i in range(len(ids))),
                  reverse=True)
    thr = (sims[1][0] + sims[2][0]) / 2  # [0] is the song itself
    res = lib.search(emb, k=10, duplicate_similarity=thr, duplicate_margin=0.0)
    assert {d.song_id for d in res.excluded_duplicates} == {sims[0][1], sims[1][1]}
    assert "another version" in next(d.duplicate for d in res.excluded_duplicates
                                     if d.song_id == sims[1][1])
    assert len(res.matches) == 3
    # the tiny random encoders map every song close to every other (all M similarities are
    # near 1): with the default margin, none of them counts as a version of the query
    assert min(sim for sim, _ in sims) > 0.9
    res = lib.search(emb, k=10, duplicate_similarity=thr)
    assert [d.duplicate for d in res.excluded_duplicates] == ["same file"]
    assert len(res.matches) == 4
    cx.close()  # and the library


def test_tempo_and_key_filters(tmp_path: Path, songs: Path, encoders: EncoderPair,
                               rng: np.random.Generator) -> None:
    lib = _lib(tmp_path, encoders)
    lib.add_paths([songs])
    lib.scan(mode="fast", analyze=False)
    ids = [s.id for s in lib.songs()]
    table = {ids[0]: (90.0, "A minor"), ids[1]: (120.0, "A minor"), ids[2]: (125.0, "C major"),
             ids[3]: (128.0, "A minor")}  # ids[4] not analysed
    for sid, (tempo, key) in table.items():
        lib.catalog.set_analysis(sid, {"tempo": tempo, "key": key})
    q = _query(lib, rng)
    got = {m.song_id for m in lib.search(q, k=10, tempo_range=(110, 130)).matches}
    assert got == {ids[1], ids[2], ids[3]}
    got = {m.song_id for m in lib.search(q, k=10, key="A minor").matches}
    assert got == {ids[0], ids[1], ids[3]}
    got = {m.song_id for m in lib.search(q, k=10, tempo_range=(110, 130),
                                         key=["a minor", "C major"]).matches}
    assert got == {ids[1], ids[2], ids[3]}
    assert len(lib.search(q, k=1, key="A minor").matches) == 1
    with pytest.raises(LibraryError, match="Unknown key"):
        lib.search(q, key="H dorian")
    lib.close()


def test_stems_and_analysis_come_from_the_library(tmp_path: Path, songs: Path,
                                                  encoders: EncoderPair) -> None:
    sep = counting_separator()
    lib = _lib(tmp_path, encoders, sep)
    lib.add_paths([songs / "song0.wav"])
    rep = lib.scan(mode="fast", analyze=True)
    assert rep.indexed == 1 and CountingSeparator.calls == 0
    (song,) = lib.songs()
    assert song.tempo is not None and song.key is not None  # analysed during the scan
    a = lib.analysis_for(song.id)
    assert (a.tempo, a.key) == (song.tempo, song.key)
    stems = lib.stems_for(song.id)
    assert CountingSeparator.calls == 1
    again = lib.stems_for(song.id)
    assert CountingSeparator.calls == 1  # from the stem cache
    np.testing.assert_allclose(again.vocals.samples, stems.vocals.samples, atol=1e-5)
    lib.catalog.forget_paths(song.paths)
    with pytest.raises(LibraryError, match="not in the library"):
        lib.stems_for(song.id)
    lib.close()


def test_add_remove_and_errors(tmp_path: Path, songs: Path, encoders: EncoderPair) -> None:
    lib = _lib(tmp_path, encoders)
    with pytest.raises(LibraryError, match="empty"):
        lib.search(_query(lib, np.random.default_rng(0)))
    with pytest.raises(LibraryError, match="no such file"):
        lib.add_paths([tmp_path / "nope"])
    lib.add_paths([songs])
    lib.scan(mode="fast", analyze=False)
    files, n_songs = lib.remove(songs / "sub")
    assert (files, n_songs) == (2, 2)
    assert lib.scan(mode="fast", analyze=False).total == 3  # the folder stays excluded
    assert lib.remove(songs) == (3, 3)
    assert lib.roots() == [] and lib.songs() == []
    with pytest.raises(LibraryError, match="not in this library"):
        lib.remove(songs)
    lib.close()


def test_missing_root_keeps_its_songs(tmp_path: Path, songs: Path, encoders: EncoderPair) -> None:
    lib = _lib(tmp_path, encoders)
    lib.add_paths([songs])
    lib.scan(mode="fast", analyze=False)
    songs.rename(tmp_path / "unplugged")
    rep = lib.scan(mode="fast", analyze=False)
    assert rep.missing_roots == [str(songs)] and rep.removed == 0
    assert len(lib.songs()) == 5
    lib.close()


def test_duplicate_rows_via_catalog_are_one_song(tmp_path: Path, encoders: EncoderPair) -> None:
    # put_song twice with the same content hash at two paths keeps one song row
    lib = _lib(tmp_path, encoders)
    v = {"M": np.ones(256, np.float32) / 16}
    for p in ("/x/a.wav", "/y/b.wav"):
        lib.catalog.put_song(path=p, size=1, mtime_ns=1, info=SongInfo("same", 1), vectors=v,
                             model_id="m", mode="fast")
    assert len(lib.songs()) == 1 and lib.songs()[0].paths == ("/x/a.wav", "/y/b.wav")
    lib.close()


def test_build_demo_library_is_idempotent(tmp_path: Path, songs: Path, encoders: EncoderPair,
                                          separator: Separator) -> None:
    r1 = build_demo_library(songs, tmp_path / "demo", separator=separator, encoders=encoders)
    r2 = build_demo_library(songs, tmp_path / "demo", separator=separator, encoders=encoders)
    assert (r1.indexed, r2.indexed, r2.unchanged) == (5, 0, 5)


# --- CLI ------------------------------------------------------------------------------------


def test_cli_library_and_match(tmp_path: Path, songs: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import main

    torch.manual_seed(0)
    lib_dir = str(tmp_path / "cli-lib")
    models = ["--encoders", "tiny", "--separator", "tiny", "--device", "cpu"]
    (songs / "junk.ogg").write_text("junk")
    assert main(["library", "add", str(songs), "--library", lib_dir, "--mode", "full",
                 "--no-analyze", *models]) == 0
    out = capsys.readouterr().out
    assert "6 audio files: 5 indexed" in out and "1 failed" in out

    assert main(["library", "status", "--library", lib_dir, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["songs"], st["full"], st["failures"]) == (5, 5, 1)
    assert st["model_id"] == EncoderPair.tiny().model_id and st["size_bytes"] > 0
    assert st["failure_list"][0]["error"] == "NotAudioError"
    assert main(["library", "status", "--library", lib_dir]) == 0
    assert "junk.ogg" in capsys.readouterr().out

    assert main(["match", str(songs / "song0.wav"), "--library", lib_dir, "-k", "3", "--json",
                 *models]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["space"] == "vocal->mix" and doc["query"] == str(songs / "song0.wav")
    assert doc["model"] == st["model_id"]
    assert all({"rank", "path", "title", "artist", "similarity", "tempo", "key"} <= set(m)
               for m in doc["matches"])
    assert str(songs / "song0.wav") in [d["path"] for d in doc["excluded_duplicates"]]
    sims = [m["similarity"] for m in doc["matches"]]
    assert sims == sorted(sims, reverse=True)

    assert main(["match", str(songs / "song0.wav"), "--library", lib_dir, "--space", "[M,V]",
                 "--include-duplicates", *models]) == 0
    assert "song0" in capsys.readouterr().out

    assert main(["library", "remove", str(songs / "sub"), "--library", lib_dir]) == 0
    assert "removed 2 files and 2 songs" in capsys.readouterr().out
    assert main(["library", "scan", "--library", lib_dir, "--no-analyze", *models]) == 0
    assert "3 unchanged" in capsys.readouterr().out
    assert main(["library", "remove", str(tmp_path / "elsewhere"), "--library", lib_dir]) == 1


def test_a_library_inside_a_music_folder_ignores_its_own_stems(
        tmp_path: Path, songs: Path, encoders: EncoderPair, separator: Separator) -> None:
    with Library.open(songs / "my-library", encoders=encoders, separator=separator) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="full", analyze=False).indexed == 5
        assert any((songs / "my-library" / "stems").rglob("*.flac"))
        rep = lib.scan(mode="full", analyze=False)
        assert (rep.total, rep.unchanged) == (5, 5)


def test_a_deleted_single_file_root_is_forgotten(tmp_path: Path, songs: Path,
                                                 encoders: EncoderPair) -> None:
    with _lib(tmp_path, encoders) as lib:
        lib.add_paths([songs / "song0.wav", songs / "sub"])
        assert lib.scan(mode="fast", analyze=False).indexed == 3
        (songs / "song0.wav").unlink()
        rep = lib.scan(mode="fast", analyze=False)
        assert (rep.removed, rep.missing_roots) == (1, [])
        assert len(lib.songs()) == 2


def test_old_temporary_files_are_swept(tmp_path: Path, encoders: EncoderPair) -> None:
    import os
    import time

    with _lib(tmp_path, encoders) as lib:
        old = lib.root / "stems" / "abc" / ".x.part.flac"
        young = lib.root / "index" / ".M.faiss.tmp.part"
        for p in (old, young):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"half")
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        assert lib.sweep_temporary_files() == 1
        assert not old.exists() and young.exists()


def test_search_through_an_approximate_index(tmp_path: Path, encoders: EncoderPair,
                                             rng: np.random.Generator) -> None:
    # a catalog of synthetic songs, with the flat limit lowered so an IVF-PQ index is built
    with _lib(tmp_path, encoders) as lib:
        lib.catalog.set_model_id(encoders.model_id)
        vecs = rng.standard_normal((300, 256)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i, v in enumerate(vecs):
            lib.catalog.put_song(path=f"/m/{i}.wav", size=1, mtime_ns=1,
                                 info=SongInfo(f"h{i}", 1), vectors={"M": v},
                                 model_id=encoders.model_id, mode="fast")
            if i % 3 == 0:
                lib.catalog.set_analysis(i + 1, {"tempo": 100.0 + i % 7, "key": "D major"})
        lib.indexes.flat_limit = 100
        assert lib.indexes.get("M", encoders.model_id).kind == "ivfpq"
        q = _query(lib, rng)
        ids, mat = lib.catalog.vectors("M", encoders.model_id)
        res = lib.search(q, space="mix->mix", k=5)
        # the probes cover every list of this small index and the candidates are re-ranked
        # by their stored vectors: the result is the exact one
        assert [m.song_id for m in res.matches] == ids[np.argsort(-(mat @ q.M))[:5]].tolist()
        got = lib.search(q, space="mix->mix", k=50, tempo_range=(100, 101))
        assert {m.song_id for m in got.matches} == {
            s.id for s in lib.songs() if s.tempo is not None and 100 <= s.tempo <= 101}
