"""A query of the history reopens from its kept vectors (issue 15, item 5): after a restart
(a fresh Session), neither the separator nor the encoders run, and the ranking is the first
one's, searched again on the library as it is now. Another file at the same path, other
encoders or other options are never served from the store; a damaged store file is set aside
and the query runs in full.

Real components: a library folder scanned with tiny random-weight encoders (a real faiss
index), generated songs written to disk, a real stem cache and a real query store folder; the
separator and the encoders count their calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from synth_songs import make_song
from test_voice_query import CountingSeparator, counting_separator

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.library.query_store import QueryStore
from core.separation.separator import Separator, StemCache
from gui.engine import Session


class CountingEncoders:
    """Counts the forward passes of tiny random-weight encoders (hooks on ``f_m`` and ``f_v``,
    which every embedding goes through)."""

    calls = 0

    @classmethod
    def count(cls, *_: Any) -> None:
        cls.calls += 1


def counting_encoders(seed: int = 0) -> EncoderPair:
    pair = EncoderPair.tiny(seed=seed)
    pair.f_m.register_forward_hook(CountingEncoders.count)
    pair.f_v.register_forward_hook(CountingEncoders.count)
    CountingEncoders.calls = 0
    return pair


def write(path: Path, seed: int, *, tempo: float = 108.0, seconds: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = make_song(tempo=tempo, key_root=seed % 12, key_mode="minor", seconds=seconds, seed=seed)
    sf.write(path, s.mix.samples.T, s.mix.sr)
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store-songs")
    for i, tempo in enumerate((92.0, 104.0, 116.0, 128.0)):
        write(root / f"song{i}.wav", 60 + i, tempo=tempo, seconds=8.0)
    return root


@pytest.fixture
def library(songs: Path, tmp_path: Path) -> Path:
    """The four songs scanned in full mode (every space) with the tiny models."""
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="full").indexed == 4
    return lib_dir


def session(tmp_path: Path, lib_dir: Path, *, encoders: EncoderPair | None = None,
            store: QueryStore | None = None) -> Session:
    """A fresh engine (a restart): new models, the same folders."""
    sep = counting_separator()
    enc = encoders if encoders is not None else counting_encoders()
    return Session(separator_factory=lambda d: sep, encoders_factory=lambda d: enc,
                   library_factory=lambda: Library.open(lib_dir),
                   stem_cache=StemCache(tmp_path / "stems"),
                   query_store=store if store is not None else QueryStore(tmp_path / "qs"))


def ranking(r: Any) -> list[tuple[str, float]]:
    return [(row.path, row.similarity) for row in r.rows]


def close_ranking(a: Any, b: Any) -> bool:
    """The same matches with the same similarities to 1e-6: a query run again in full reads
    its stems from the stem cache (24-bit), where the first one had them from the separator."""
    return ([p for p, _ in ranking(a)] == [p for p, _ in ranking(b)]
            and [v for _, v in ranking(a)] == pytest.approx([v for _, v in ranking(b)], abs=1e-6))


def first_query(tmp_path: Path, lib_dir: Path, song: Path, **kw: Any) -> Any:
    """Query ``song`` and analyse it (as the window does), then close the engine."""
    s = session(tmp_path, lib_dir)
    try:
        r = s.analyze(s.query(song, space="vocal->mix", k=3, **kw))
        assert CountingSeparator.calls >= 1 and CountingEncoders.calls >= 1 and not r.reopened
        return r
    finally:
        s.close()


def test_a_query_reopens_after_a_restart_without_separating_or_embedding(
        tmp_path: Path, library: Path) -> None:
    song = write(tmp_path / "query.wav", 77)
    before = first_query(tmp_path, library, song)
    assert len(QueryStore(tmp_path / "qs").keys()) == 1

    s = session(tmp_path, library)  # a restart: new engine, new models, same folders
    try:
        CountingSeparator.calls = CountingEncoders.calls = 0
        r: Any = s.query(song, space="vocal->mix", k=3)
        assert r.reopened and CountingSeparator.calls == 0 and CountingEncoders.calls == 0
        assert "embed" not in r.timings
        assert ranking(r) == ranking(before) and len(r.rows) == 3
        np.testing.assert_array_equal(r.embedding.MV, before.embedding.MV)
        assert r.audio_key == before.audio_key and r.duration == before.duration
        # the window's waveforms and the query's analysis come with it (nothing analysed again)
        assert r.mix_env is not None and r.vocal_env is not None
        assert r.analysis is not None and r.analysis.tempo == pytest.approx(before.analysis.tempo)
        np.testing.assert_allclose(r.analysis.beats, before.analysis.beats, atol=1e-5)
        assert r.pending_analysis is None
        s.analyze(r)
        assert [row.mashability for row in r.rows] == pytest.approx(
            [row.mashability for row in before.rows])
        assert CountingSeparator.calls == 0 and CountingEncoders.calls == 0

        # the search runs again: a song added to the library since is found
        new = write(tmp_path / "added" / "added.wav", 90, tempo=110.0, seconds=8.0)
        s.add_folder(new.parent)
        assert s.scan(mode="full").indexed == 1
        CountingSeparator.calls = CountingEncoders.calls = 0
        again = s.query(song, space="vocal->mix", k=5)
        assert again.reopened and str(new) in {row.path for row in again.rows}
        assert CountingSeparator.calls == 0 and CountingEncoders.calls == 0
    finally:
        s.close()


def test_a_take_reopens_from_the_file_itself_with_its_tempo(tmp_path: Path,
                                                            library: Path) -> None:
    take = write(tmp_path / "take.wav", 31, tempo=100.0)
    opts = {"vocal_only": True, "tempo": 100.0, "first_beat": 0.5}
    s = session(tmp_path, library)
    try:
        before = s.analyze(s.query(take, space="mix->mix", k=3, **opts))
        assert CountingSeparator.calls == 0 and CountingEncoders.calls >= 1
    finally:
        s.close()
    s = session(tmp_path, library)
    try:
        CountingEncoders.calls = 0
        r: Any = s.query(take, space="mix->mix", k=3, **opts)
        assert r.reopened and r.vocal_only and CountingEncoders.calls == 0
        assert ranking(r) == ranking(before)
        assert r.tempo_bpm == 100.0 and r.analysis.tempo == pytest.approx(100.0)
        assert r.tempo_source == before.tempo_source
        # other options are another query: the detection runs (it separates)
        auto = s.query(take, space="mix->mix", k=3)
        assert not auto.reopened and CountingEncoders.calls >= 1
    finally:
        s.close()


def test_another_file_at_the_same_path_or_other_encoders_are_not_served(
        tmp_path: Path, library: Path) -> None:
    song = write(tmp_path / "query.wav", 77)
    before = first_query(tmp_path, library, song)

    write(song, 78)  # other content, same path
    s = session(tmp_path, library)
    try:
        CountingSeparator.calls = CountingEncoders.calls = 0
        r: Any = s.query(song, space="vocal->mix", k=3)
        assert not r.reopened and CountingSeparator.calls == 1 and CountingEncoders.calls >= 1
        assert r.audio_key != before.audio_key
        assert not np.array_equal(r.embedding.MV, before.embedding.MV)
    finally:
        s.close()
    assert len(QueryStore(tmp_path / "qs").keys()) == 2

    # other encoders (another model_id): embedded again, never the other model's vectors
    s = session(tmp_path, library, encoders=counting_encoders(seed=1))
    try:
        CountingEncoders.calls = 0
        r = s.query(song, space="vocal->mix", k=3)
        assert not r.reopened and CountingEncoders.calls >= 1
        assert r.embedding.model_id != before.embedding.model_id
        # (the library holds the first encoders' vectors: it says so rather than mixing them)
        assert "checkpoint" in r.error and not r.rows
    finally:
        s.close()


def test_a_damaged_store_file_is_set_aside_and_the_query_runs_in_full(
        tmp_path: Path, library: Path) -> None:
    song = write(tmp_path / "query.wav", 77)
    before = first_query(tmp_path, library, song)
    store = QueryStore(tmp_path / "qs")
    (key,) = store.keys()
    store.path_for(key).write_bytes(b"PK\x03\x04 not a zip at all")

    s = session(tmp_path, library, store=store)
    try:
        CountingEncoders.calls = 0
        r: Any = s.query(song, space="vocal->mix", k=3)
        assert not r.reopened and CountingEncoders.calls >= 1
        assert close_ranking(r, before)
        assert store.path_for(key).with_name(f"{key}.npz.bad").is_file()
        assert "could not be read" in store.note
        # kept again, whole: the next time it reopens
        CountingEncoders.calls = 0
        assert s.query(song, space="vocal->mix", k=3).reopened and CountingEncoders.calls == 0
    finally:
        s.close()


def test_the_store_keeps_as_many_queries_as_the_history(tmp_path: Path, library: Path) -> None:
    store = QueryStore(tmp_path / "qs", limit=2)
    files = [write(tmp_path / f"q{i}.wav", 40 + i, seconds=6.0) for i in range(3)]
    s = session(tmp_path, library, store=store)
    try:
        results = [s.query(f, space="mix->mix", k=2) for f in files]
        assert len(store.keys()) == 2 and store.keys()[0] == results[2].store_key
        assert results[0].store_key not in store.keys()
        CountingSeparator.calls = CountingEncoders.calls = 0
        assert s.query(files[0], space="mix->mix", k=2).reopened is False
        assert CountingEncoders.calls >= 1
    finally:
        s.close()


def test_stems_gone_from_the_cache_mean_a_full_query(tmp_path: Path, library: Path) -> None:
    song = write(tmp_path / "query.wav", 77)
    before = first_query(tmp_path, library, song)
    assert StemCache(tmp_path / "stems").clear() >= 1
    s = session(tmp_path, library)
    try:
        CountingSeparator.calls = 0
        r: Any = s.query(song, space="vocal->mix", k=3)
        assert not r.reopened and CountingSeparator.calls == 1 and ranking(r) == ranking(before)
    finally:
        s.close()


def test_a_store_that_cannot_be_written_or_holds_a_misfiled_entry_stops_nothing(
        tmp_path: Path, library: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    store = QueryStore(blocked)
    s = session(tmp_path, library, store=store)
    try:
        r = s.query(write(tmp_path / "elsewhere.wav", 81), space="vocal->mix", k=3)
        assert len(r.rows) == 3 and not r.reopened and "could not be kept" in store.note
    finally:
        s.close()

    # an entry renamed to another query's key is not served as that query
    store = QueryStore(tmp_path / "qs")
    song = write(tmp_path / "query.wav", 77)
    before = first_query(tmp_path, library, song)
    other = write(tmp_path / "other.wav", 79)
    first_query(tmp_path, library, other)
    store.path_for(before.store_key).unlink()
    (key_other,) = store.keys()
    store.path_for(key_other).rename(store.path_for(before.store_key))
    s = session(tmp_path, library, store=store)
    try:
        r = s.query(song, space="vocal->mix", k=3)
        assert not r.reopened and CountingEncoders.calls >= 1 and close_ranking(r, before)
        assert store.path_for(before.store_key).with_name(f"{before.store_key}.npz.bad").is_file()
    finally:
        s.close()
