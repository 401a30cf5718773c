"""The engine's one facade (core.api.Crossmix): one query pipeline for the GUI and the CLI.

- The GUI's Session and ``crossmix match`` rank the same file identically (they are the same
  object underneath).
- A library song dropped as a query is not separated again (its stems are the library's).
- The README's Python example works as written (tiny models).
- On the demo library with the shipped encoders, the facade ranks as the code before it did
  (``tests/data/demo_rankings.json``, made by ``crossmix match`` at commit 17e29fd).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from synth_songs import make_song
from test_voice_query import CountingSeparator, counting_separator

from cli import main
from core import Crossmix
from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator, StemCache
from gui.engine import Session

TINY = ["--encoders", "tiny", "--separator", "tiny"]
HERE = Path(__file__).resolve().parent


def write(path: Path, samples: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.T, sr)
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("facade-songs")
    for i, tempo in enumerate((92.0, 104.0, 116.0, 128.0)):
        s = make_song(tempo=tempo, key_root=i * 2, seconds=8.0, seed=60 + i)
        write(root / f"song{i}.wav", s.mix.samples, s.mix.sr)
    return root


@pytest.fixture(scope="module")
def full_library(songs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four songs scanned in full mode (every space) with the tiny models."""
    lib_dir = tmp_path_factory.mktemp("facade-lib") / "lib"
    with Library.open(lib_dir, separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="full").indexed == 4
    return lib_dir


@pytest.fixture(scope="module")
def query_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = make_song(tempo=110.0, key_root=9, key_mode="minor", seconds=10.0, seed=77)
    return write(tmp_path_factory.mktemp("facade-query") / "query.wav", s.mix.samples, s.mix.sr)


def session_for(lib_dir: Path, cache: Path, separator: Any = None) -> Session:
    sep = separator if separator is not None else Separator.tiny()
    return Session(separator_factory=lambda d: sep, encoders_factory=lambda d: EncoderPair.tiny(),
                   library_factory=lambda: Library.open(lib_dir), stem_cache=StemCache(cache))


def cli_ranking(capsys: pytest.CaptureFixture[str], song: Path, lib_dir: Path, space: str,
                *extra: str) -> dict[str, Any]:
    rc = main(["match", str(song), "--space", space, "-k", "3", "--library", str(lib_dir),
               "--json", *TINY, *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return dict(json.loads(out))


@pytest.mark.parametrize("space", ["vocal->mix", "mix->mix", "[M,V]"])
def test_the_gui_and_the_cli_rank_a_file_identically(
        space: str, full_library: Path, query_song: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    session = session_for(full_library, tmp_path / "stems")
    try:
        shown = session.query(query_song, space=space, k=3)
    finally:
        session.close()
    doc = cli_ranking(capsys, query_song, full_library, space, "--no-report")
    gui = [(r.path, round(r.similarity, 6)) for r in shown.rows]
    cli = [(m["path"], round(m["similarity"], 6)) for m in doc["matches"]]
    assert len(gui) == 3 and gui == cli
    assert doc["space"] == space


def test_the_cli_prints_the_compatibility_report_the_gui_shows(
        full_library: Path, query_song: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    session = session_for(full_library, tmp_path / "stems")
    try:
        shown = session.analyze(session.query(query_song, space="vocal->mix", k=3))
    finally:
        session.close()
    doc = cli_ranking(capsys, query_song, full_library, "vocal->mix")
    assert doc["query_analysis"]["tempo"] == pytest.approx(shown.analysis.tempo)
    for row, m in zip(shown.rows, doc["matches"], strict=True):
        assert m["mashability"] == pytest.approx(row.mashability)
        assert m["stretch_percent"] == pytest.approx(row.stretch_percent)
        assert m["semitone_shift"] == row.semitone_shift
    # and the table says it too
    rc = main(["match", str(query_song), "--space", "vocal->mix", "-k", "3", "--library",
               str(full_library), *TINY])
    text = capsys.readouterr().out
    assert rc == 0 and "mash" in text and "BPM" in text


def test_gui_filters_and_duplicates_are_the_clis(full_library: Path, songs: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A library song as the query: left out as a duplicate unless asked, in both."""
    song = songs / "song1.wav"
    session = session_for(full_library, tmp_path / "stems")
    try:
        without = session.query(song, space="mix->mix", k=4)
        with_dups = session.query(song, space="mix->mix", k=4, include_duplicates=True)
    finally:
        session.close()
    assert str(song) not in {r.path for r in without.rows}
    assert str(song) in {r.path for r in with_dups.rows}
    doc = cli_ranking(capsys, song, full_library, "mix->mix", "--no-report",
                      "--include-duplicates")
    assert str(song) in {m["path"] for m in doc["matches"]}


def test_a_library_song_is_never_separated_twice(songs: Path, tmp_path: Path) -> None:
    """Full mode: its stems are the library's (no separation). Fast mode: separated once as
    the query, and its preview as a match finds them."""
    full = tmp_path / "full"
    with Library.open(full, separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        lib.scan(mode="full")
    sep = counting_separator()
    session = session_for(full, tmp_path / "stems", separator=sep)
    try:
        r = session.query(songs / "song2.wav", space="vocal->mix", k=2)
        assert CountingSeparator.calls == 0 and r.stored_vectors and len(r.rows) == 2
    finally:
        session.close()

    fast = tmp_path / "fast"
    with Library.open(fast, separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        lib.scan(mode="fast")
    sep = counting_separator()
    session = session_for(fast, tmp_path / "stems2", separator=sep)
    try:
        r = session.query(songs / "song3.wav", space="vocal->mix", k=2)
        assert CountingSeparator.calls == 1 and not r.stored_vectors
        session.flush()  # the query's stems are written to the cache after its results
        lib = session.library()
        assert lib is not None
        sid = lib.catalog.song_id_by_hash(r.content_hash)
        lib.stems_for(sid, separator=sep)
        assert CountingSeparator.calls == 1  # the query's separation is the library's
    finally:
        session.close()


def test_embed_query_is_the_querys_own_pipeline(full_library: Path, songs: Path,
                                               query_song: Path, tmp_path: Path) -> None:
    """``Crossmix.embed_query`` (the one way to embed a song file for ``Library.search``) gives
    the vectors ``Crossmix.query`` searches with: a new song embedded, a library song's stored
    vectors (not separated), a region's; and ``Library.search`` of them ranks as the query."""
    sep = counting_separator()
    with Crossmix(library=full_library, separator=sep, encoders=EncoderPair.tiny(),
                  query_cache=StemCache(tmp_path / "stems")) as cx:
        lib = cx.library()
        for path, region in ((query_song, None), (songs / "song2.wav", None),
                             (query_song, (2.0, 8.0))):
            qe = cx.embed_query(path, region=region)
            cx.flush()  # its new stems are in the query cache: the query finds them
            r = cx.query(path, space="vocal->mix", k=3, region=region)
            for space in ("M", "V", "MV"):
                np.testing.assert_allclose(getattr(qe.embedding, space),
                                           getattr(r.embedding, space), atol=1e-6)
            assert (qe.region, qe.vocal_only, qe.content_hash) == (
                r.region, r.vocal_only, r.content_hash)
            assert qe.fingerprint is not None and np.array_equal(qe.fingerprint, r.fingerprint)
            ranked = lib.search(qe, space="vocal->mix", k=3,
                                duplicate_similarity=cx.duplicate_threshold)
            assert [m.path for m in ranked.matches] == [row.path for row in r.rows]
        known = cx.embed_query(songs / "song2.wav")
        assert known.embedding.n_segments == 0  # the catalog's vectors, not embedded again
        np.testing.assert_array_equal(known.embedding.MV,
                                      lib.stored_embedding(known.content_hash).MV)
    assert CountingSeparator.calls == 1  # the new song, once; the library song not at all


def test_the_readme_example(full_library: Path, query_song: Path, tmp_path: Path) -> None:
    out = tmp_path / "cross-mix.wav"
    with Crossmix(library=full_library, separator="tiny", encoders="tiny",
                  query_cache=StemCache(tmp_path / "stems")) as cx:
        q = cx.query(query_song, space="auto", k=2, tempo_range=(60, 200))
        cx.compatibility(q)
        assert [r.rank for r in q.rows] == [1, 2] or q.message
        if q.rows:
            written = cx.export(q, q.rows[0], path=out, full=False)
            assert written == out and sf.info(str(out)).duration > 1.0


# --- the demo library, shipped encoders -----------------------------------------------------


def _demo(monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The demo library the set-up built in the user's data folder (the tests' own data
    folder is a temporary one): opened read-only."""
    from core.paths import data_dir, default_library_dir

    monkeypatch.delenv("CROSSMIX_DATA_DIR")
    lib, songs = default_library_dir(), data_dir() / "demo" / "songs"
    monkeypatch.undo()
    if not (lib / "catalog.sqlite").is_file() or not songs.is_dir():
        pytest.skip("the demo library is not built (scripts/build_assets.py)")
    return lib, songs


def _same_ranking(got: list[tuple[str, float]], want: list[list[Any]], tol: float = 2e-3) -> None:
    """Equal up to float noise of another CPU: every match found again with its similarity
    within ``tol``, and the order equal except between matches closer than ``tol``."""
    g = dict(got)
    common = [name for name, _ in want if name in g]
    assert len(common) >= len(want) - 1, (got, want)
    for name, sim in want:
        if name in g:
            assert g[name] == pytest.approx(sim, abs=tol), (name, got, want)
    order = [name for name, _ in got if name in set(common)]
    ref = {name: sim for name, sim in want}
    for a, b in zip(order, order[1:], strict=False):
        assert ref[a] >= ref[b] - tol, (order, want)


@pytest.mark.slow
def test_the_demo_library_ranks_as_before_the_facade(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from core.separation.assets import example_clip_path

    lib, songs = _demo(monkeypatch)
    golden = json.loads((HERE / "data" / "demo_rankings.json").read_text())["queries"]
    files = {"example": Path(example_clip_path())}
    files.update({q: songs / q.split(":", 1)[1] for q in golden if q.startswith("demo:")})
    session = Session(library_factory=lambda: Library.open(lib, read_only=True),
                      stem_cache=StemCache(tmp_path / "stems"))
    try:
        for q, spaces in golden.items():
            for space, want in spaces.items():
                shown = session.query(files[q], space=space, k=10)
                got = [(os.path.basename(r.path), r.similarity) for r in shown.rows]
                _same_ranking(got, want["matches"])
                assert shown.search.space == want["space"]
                rc = main(["match", str(files[q]), "--space", space, "-k", "10", "--library",
                           str(lib), "--json", "--no-report"])
                doc = json.loads(capsys.readouterr().out)
                assert rc == 0
                cli = [(os.path.basename(m["path"]), m["similarity"]) for m in doc["matches"]]
                assert cli == [(n, pytest.approx(s, abs=1e-5)) for n, s in got]
    finally:
        session.close()


def test_the_app_and_crossmix_remix_tag_a_cross_mix_alike(
        full_library: Path, songs: Path, query_song: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The export of a match from the app and ``crossmix remix`` of the same two files write
    the same tags (title, artist, comment naming both sources)."""
    import mutagen

    session = session_for(full_library, tmp_path / "stems")
    try:
        q = session.analyze(session.query(query_song, space="mix->mix", k=1))
        row = q.rows[0]
        app_file = session.export(q, row, path=tmp_path / "app.flac", full=False)
    finally:
        session.close()
    cli_file = tmp_path / "cli.flac"
    rc = main(["remix", str(query_song), row.path, "-o", str(cli_file), "--separator", "tiny",
               "--no-cache"])
    capsys.readouterr()
    assert rc == 0

    def tags(p: Path) -> dict[str, list[str]]:
        f = mutagen.File(str(p), easy=True)
        return {k: list(f.tags[k]) for k in ("title", "artist", "comment") if k in f.tags}

    app, cli = tags(app_file), tags(cli_file)
    assert app == cli and app["title"] == [f"query x {Path(row.path).stem}"], (app, cli)


def test_the_best_match_can_be_analysed_first(full_library: Path, query_song: Path,
                                              tmp_path: Path) -> None:
    """The app previews the best match while the others are analysed: ``first=1`` fills the
    best row alone, and the full pass the rest (the same values for the best)."""
    session = session_for(full_library, tmp_path / "stems")
    try:
        q = session.query(query_song, space="mix->mix", k=3)
        session.compatibility(q, first=1)
        assert q.analysis is not None
        assert q.rows[0].mashability is not None
        assert all(r.mashability is None for r in q.rows[1:])
        best = q.rows[0]
        session.compatibility(q)
        assert all(r.mashability is not None for r in q.rows) and q.rows[0] == best
    finally:
        session.close()


def test_library_remove_on_the_command_line_is_the_apps(songs: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``crossmix library remove`` runs the facade's removal: the song leaves the library and
    its separated stems are freed, as the app frees them once its undo is gone."""
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        lib.scan(mode="full")
        song = next(s for s in lib.songs() if s.path.endswith("song0.wav"))
        assert song.audio_key and song.stems_model
        stems_file = lib.stem_cache.path_for(song.audio_key, song.stems_model)
    assert stems_file.is_file()
    rc = main(["library", "remove", str(songs / "song0.wav"), "--library", str(lib_dir)])
    out = capsys.readouterr().out
    assert rc == 0 and "removed 1 files and 1 songs" in out and "freed" in out, out
    assert not stems_file.exists()
    with Library.open(lib_dir) as lib:
        assert len(lib.songs()) == 3


# --- crossmix library status | index | repair: the facade's, as the Library tab's ------------


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``spy("status")``: the list of what each call of ``Crossmix.status`` returned (or
    raised), by anyone (the CLI, a Session in a worker thread); the real method still runs.
    A front end that reads the library past the facade leaves the list empty."""

    def install(name: str) -> list[Any]:
        real = getattr(Crossmix, name)
        seen: list[Any] = []

        def wrapper(self: Crossmix, *args: Any, **kw: Any) -> Any:
            try:
                result = real(self, *args, **kw)
            except Exception as exc:
                seen.append(exc)
                raise
            seen.append(result)
            return result

        monkeypatch.setattr(Crossmix, name, wrapper)
        return seen

    return install


@pytest.mark.gui
def test_library_status_on_the_command_line_is_the_library_tabs(
        songs: Path, tmp_path: Path, qtbot: Any, capsys: pytest.CaptureFixture[str],
        spy: Any) -> None:
    """``crossmix library status`` and the Library tab's summary, folders and failures are
    one facade call (``Crossmix.status``) on a real library with a file that failed."""
    import shutil

    from gui.library_panel import LibraryPanel
    from gui.settings import Settings
    from gui.workers import TaskRunner

    music = tmp_path / "music"
    shutil.copytree(songs, music)
    (music / "broken.flac").write_bytes(b"fLaC" + b"\0" * 100)
    lib_dir = tmp_path / "lib"
    with Library.open(lib_dir, separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([music])
        assert lib.scan(mode="fast").failed == 1
    reports = spy("status")

    assert main(["library", "status", "--library", str(lib_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(reports) == 1 and doc == json.loads(json.dumps(reports[0].to_json()))
    assert (doc["songs"], doc["current"], doc["failures"]) == (4, 4, 1)
    assert [Path(f["path"]).name for f in doc["failure_list"]] == ["broken.flac"]
    assert main(["library", "status", "--library", str(lib_dir)]) == 0
    text = capsys.readouterr().out
    st = reports[1].status
    assert len(reports) == 2
    assert f"songs     {st.songs} ({st.files} files; {st.current} searchable" in text
    assert f"failures  {st.failures}\n  {reports[1].failures[0].path}: [" in text

    session = Session(separator_factory=lambda d: Separator.tiny(),
                      encoders_factory=lambda d: EncoderPair.tiny(),
                      library_factory=lambda: Library.open(lib_dir),
                      stem_cache=StemCache(tmp_path / "stems"))
    panel = LibraryPanel(session, Settings(tmp_path / "s.ini"), TaskRunner())
    qtbot.addWidget(panel)
    try:
        with qtbot.waitSignal(panel.overview_updated, timeout=30_000):
            panel.refresh()
        assert len(reports) == 3  # the tab's figures came from the same facade method
        shown = panel.overview.status
        assert shown is reports[2].status and panel.overview.failures == reports[2].failures
        figures = ("songs", "files", "current", "stale", "full", "failures", "model_id", "roots")
        assert {k: getattr(shown, k) for k in figures} == {k: doc[k] for k in figures}
        summary = panel.summary.text().replace("<b>", "").replace("</b>", "")
        assert f"{doc['songs']} songs in {doc['files']} files" in summary
        assert f"{doc['failures']} failures" in summary
        assert [panel.failures.item(i, 0).text() for i in range(panel.failures.rowCount())] == \
            [Path(f["path"]).name for f in doc["failure_list"]]
    finally:
        session.close()


def test_library_index_on_the_command_line_is_the_facades(
        full_library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        spy: Any) -> None:
    """``crossmix library index`` prints what ``Crossmix.rebuild_indexes`` built: real faiss
    indexes of the kind asked for, the choice kept in the catalog; an empty library is said."""
    import shutil

    from core.errors import EmptyLibraryError
    from core.library.index import INDEX_KIND_META
    from core.library.spaces import INDEXED_SPACES

    lib_dir = tmp_path / "lib"
    shutil.copytree(full_library, lib_dir)
    for f in (lib_dir / "index").iterdir():
        f.unlink()
    built = spy("rebuild_indexes")
    assert main(["library", "index", "--kind", "flat", "--library", str(lib_dir)]) == 0
    out = capsys.readouterr().out
    assert len(built) == 1
    assert out.splitlines() == [f"{i.space}: {i.kind} index of {i.songs} songs"
                                for i in built[0]]
    assert [(i.space, i.kind, i.songs) for i in built[0]] == [(s, "flat", 4)
                                                              for s in INDEXED_SPACES]
    with Library.open(lib_dir) as lib:
        assert lib.catalog.get_meta(INDEX_KIND_META) == "flat"
        model = lib.catalog.model_id or ""
        for i in built[0]:
            assert lib.indexes.paths(i.space)[0].is_file()
            idx = lib.indexes.get(i.space, model)
            assert (idx.kind, idx.ntotal) == (i.kind, i.songs)

    empty = tmp_path / "empty"
    Library.open(empty).close()
    assert main(["library", "index", "--library", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"crossmix: the library {empty} is empty; add folders with" in err, err
    assert len(built) == 2 and isinstance(built[1], EmptyLibraryError)


def _bad_utf8_artist(lib_dir: Path) -> None:
    """Damage the catalog as a flipped byte in a tag does (a value SQLite cannot decode)."""
    import sqlite3

    conn = sqlite3.connect(lib_dir / "catalog.sqlite")
    conn.execute("UPDATE songs SET artist = CAST(x'41ff42' AS TEXT) WHERE id = "
                 "(SELECT MIN(id) FROM songs)")
    conn.commit()
    conn.close()


def test_library_repair_on_the_command_line_is_the_facades(
        full_library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        spy: Any) -> None:
    """``crossmix library repair [--check]`` prints what ``Crossmix.repair`` found and did."""
    import shutil

    lib_dir = tmp_path / "lib"
    shutil.copytree(full_library, lib_dir)
    repairs = spy("repair")
    assert main(["library", "repair", "--check", "--library", str(lib_dir)]) == 0
    assert "the catalog is sound" in capsys.readouterr().out
    assert len(repairs) == 1 and not repairs[0].report.problems
    _bad_utf8_artist(lib_dir)
    assert main(["library", "repair", "--check", "--library", str(lib_dir)]) == 1
    out = capsys.readouterr().out
    checked = repairs[1]
    assert checked.report.problems and not checked.report.repaired and checked.songs is None
    assert f"{checked.catalog}: the catalog is damaged:\n  {checked.report.problems[0]}" in out
    assert not list(lib_dir.glob("catalog.sqlite.damaged-*"))  # --check changes nothing
    assert main(["library", "repair", "--library", str(lib_dir)]) == 0
    out = capsys.readouterr().out
    fixed = repairs[2]
    assert fixed.catalog == lib_dir / "catalog.sqlite" and fixed.report.repaired
    assert f"kept as {fixed.report.damaged_copy}." in out and Path(fixed.report.damaged_copy).is_file()
    assert f"the library now holds {fixed.songs} songs" in out
    with Library.open(lib_dir) as lib:
        assert lib.status().songs == fixed.songs == 4


def test_repair_closes_and_reopens_the_facades_own_library(full_library: Path,
                                                           tmp_path: Path) -> None:
    """``Crossmix.repair()`` without a folder repairs the library it has open, which is
    opened again (repaired) on next use."""
    import shutil

    lib_dir = tmp_path / "lib"
    shutil.copytree(full_library, lib_dir)
    with Crossmix(library=lib_dir, separator="tiny", encoders="tiny") as cx:
        before = cx.status().status
        _bad_utf8_artist(lib_dir)
        fixed = cx.repair()
        assert fixed.catalog == lib_dir / "catalog.sqlite" and fixed.report.repaired
        after = cx.status().status  # the repaired catalog, opened again
        assert (after.songs, after.current, after.vectors) == (before.songs, before.current,
                                                               before.vectors)
        assert "\ufffd" in "".join(s.artist or "" for s in cx.library().songs())
