"""DJ features of the Search tab: tempo/key filters, loop/A-B playback, stems and batch export.

The real window, engine and tiny random-weight models, on a library scanned with analysis (so
every song has a tempo and a key the filters can use); settings in ``tmp_path``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_gui_window import SONGS, _write_song, make_session

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator
from gui.main_window import MainWindow
from gui.settings import Settings

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(autouse=True, scope="module")
def _engine_imported():
    from gui.engine import warm_up

    warm_up()


@pytest.fixture(scope="module")
def analysed_library(tmp_path_factory) -> Path:
    """Three generated songs, scanned in fast mode with tempo/key analysis."""
    root = tmp_path_factory.mktemp("dj-lib")
    songs = root / "songs"
    songs.mkdir()
    for i, (title, tempo, key, mode) in enumerate(SONGS):
        _write_song(songs / f"{title}.flac", tempo=tempo, root=key, mode=mode, seconds=8.0,
                    seed=i, title=title)
    with Library.open(root / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="fast", analyze=True).indexed == 3
    return root / "lib"


@pytest.fixture(scope="module")
def query_song(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dj-query")
    return _write_song(d / "query song.flac", tempo=100.0, root=2, mode="major", seconds=10.0,
                       seed=7, title="The Query")


@pytest.fixture
def window(qtbot, tmp_path, analysed_library):
    w = MainWindow(settings=Settings(tmp_path / "settings.ini"),
                   session=make_session(tmp_path, analysed_library))
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def _catalog(library: Path) -> dict[str, tuple[float, str]]:
    with Library.open(library) as lib:
        return {s.title: (float(s.tempo), str(s.key))
                for s in lib.catalog.songs(with_analysis=False)}


def _titles(window) -> set[str]:
    m = window.search_page.results_model
    return {m.row(i).title for i in range(m.rowCount())}


def test_tempo_and_key_filters_narrow_the_matches_and_are_remembered(
        qtbot, window, query_song, analysed_library, tmp_path):
    known = _catalog(analysed_library)
    assert len(known) == 3
    with qtbot.waitSignal(window.search_page.analysis_finished, timeout=120_000):
        window.enqueue([str(query_song)])
    assert _titles(window) == set(known), window.errors

    # a tempo range holding the slowest song only (the estimates, whatever they are)
    slowest = min(known, key=lambda t: known[t][0])
    lo, hi = math.floor(known[slowest][0]), math.ceil(known[slowest][0])
    window.search_page.tempo_min.setValue(lo)
    window.search_page.tempo_max.setValue(hi)
    with qtbot.waitSignal(window.search_page.search_finished, timeout=120_000):
        window.search_page.tempo_check.setChecked(True)
    expected = {t for t, (b, _) in known.items() if lo <= b <= hi}
    assert _titles(window) == expected and len(expected) < 3, (known, window.errors)

    # tempo off, a key: only the songs in that key
    with qtbot.waitSignal(window.search_page.search_finished, timeout=120_000):
        window.search_page.tempo_check.setChecked(False)
    assert _titles(window) == set(known)
    key = known[slowest][1]
    with qtbot.waitSignal(window.search_page.search_finished, timeout=120_000):
        window.search_page.key_combo.setCurrentIndex(window.search_page.key_combo.findData(key))
    assert _titles(window) == {t for t, (_, k) in known.items() if k == key}

    # a key no song has: no rows, and the note says why
    combo = window.search_page.key_combo
    other = next(combo.itemData(i) for i in range(1, combo.count())
                 if combo.itemData(i) not in {k for _, k in known.values()})
    with qtbot.waitSignal(window.search_page.search_finished, timeout=120_000):
        window.search_page.key_combo.setCurrentIndex(window.search_page.key_combo.findData(other))
    assert window.search_page.results_model.rowCount() == 0
    assert "filters" in window.search_page.results_note.text()

    # remembered: a new window starts with the same filters, and its queries use them
    window.search_page.tempo_check.setChecked(True)
    s = Settings(tmp_path / "settings.ini")
    assert s.get("search/key") == other and s.get("search/tempo_filter") is True
    assert (s.get("search/tempo_min"), s.get("search/tempo_max")) == (lo, hi)
    w2 = MainWindow(settings=s, session=make_session(tmp_path, analysed_library))
    qtbot.addWidget(w2)
    assert w2.search_page.search_filters() == {"tempo_range": (lo, hi), "key": other,
                                   "include_duplicates": False}
    w2.close()


def test_a_library_song_as_the_query_and_the_near_duplicates_switch(
        qtbot, window, analysed_library, tmp_path):
    """As ``crossmix match --include-duplicates``: the query's own song is left out of its
    matches unless the switch is on (remembered)."""
    with Library.open(analysed_library) as lib:
        song = lib.catalog.songs(with_analysis=False)[0]
    with qtbot.waitSignal(window.search_page.analysis_finished, timeout=120_000):
        window.enqueue([song.paths[0]])
    assert song.title not in _titles(window), window.errors
    assert "near-duplicate" in window.search_page.results_note.text()
    with qtbot.waitSignal(window.search_page.search_finished, timeout=120_000):
        window.search_page.duplicates_check.setChecked(True)
    assert song.title in _titles(window)
    assert Settings(tmp_path / "settings.ini").get("search/include_duplicates") is True


def test_player_loops_between_a_and_b_without_allocating(qapp):
    import tracemalloc

    import numpy as np

    from gui.playback import Player

    p = Player()
    sr, n = 10_000, 10_000
    ramp = np.ascontiguousarray(np.repeat(np.arange(n, dtype=np.float32)[:, None], 2, axis=1))
    p.set_source("a", [ramp, np.zeros_like(ramp)], sr)
    p.select("a")
    p.set_loop(0.15, 0.10)  # either order
    assert p.loop == (0.10, 0.15)
    p._playing = True
    p.seek(0.12)
    out = np.zeros((1024, 2), np.float32)
    p._callback(out, 1024, None, None)  # warm-up (first calls allocate caches)
    p.seek(0.12)
    tracemalloc.start()
    p._callback(out, 1024, None, None)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    want = np.concatenate([np.arange(1200, 1500), np.arange(1000, 1500), np.arange(1000, 1224)])
    np.testing.assert_array_equal(out[:, 0], want)
    assert p._pos == 1224 and p.playing
    assert peak < 4096, f"the callback allocated {peak} bytes (a block is {out.nbytes})"
    # a loop past the end of a shorter source is clipped; off: it plays on to the end
    p.clear_loop()
    p.seek(0.99)
    with pytest.raises(RuntimeError):
        p._callback(out, 1024, None, None)
    np.testing.assert_array_equal(out[:100, 0], np.arange(9900, 10_000))
    with pytest.raises(ValueError):
        p.set_loop(0.5, 0.52)
    p.close()


def test_preview_a_b_loop_repeats_until_switched_off(qtbot, window, query_song):
    with qtbot.waitSignal(window.search_page.preview_finished, timeout=120_000) as sig:
        window.enqueue([str(query_song)])
    assert sig.args[0] is not None, window.errors
    panel, player = window.search_page.preview_panel, window.player
    assert not panel.loop_button.isEnabled()  # A and B first
    player.seek(1.0)
    panel.set_a_button.click()
    player.seek(2.0)
    panel.set_b_button.click()
    assert panel.loop_button.isEnabled() and "A 1.0 s" in panel.loop_label.text()
    panel.loop_button.click()
    assert player.loop == pytest.approx((1.0, 2.0), abs=1e-3)
    # the null device takes audio as fast as it comes: far more than the song, still looping
    player.seek(1.5)
    window.search_page.toggle_play()
    sr = player._src.sr
    qtbot.waitUntil(lambda: player.frames_written > 3 * player.duration * sr, timeout=10_000)
    assert player.playing and 1.0 <= player.position <= 2.0
    panel.loop_button.click()  # off: it plays on to the end and stops
    assert player.loop is None
    qtbot.waitUntil(lambda: player.state == "stopped", timeout=10_000)
    # another match: no A, no B, no loop
    panel.loop_button.click()
    assert player.loop is not None
    other = next(r for r in range(window.search_page.results_proxy.rowCount())
                 if window.search_page.results_proxy.index(r, 0).row()
                 != window.search_page.table.currentIndex().row())
    with qtbot.waitSignal(window.search_page.preview_finished, timeout=120_000):
        window.search_page.table.selectRow(other)
    assert player.loop is None and panel.loop_a is None and not panel.loop_button.isChecked()


def test_export_with_stems_writes_the_mix_and_its_parts(qtbot, window, query_song, tmp_path):
    from core.audio.decode import load_audio
    from gui.export_dialog import ExportChoice, ExportDialog

    with qtbot.waitSignal(window.search_page.preview_finished, timeout=120_000) as sig:
        window.enqueue([str(query_song)])
    p = sig.args[0]
    assert p is not None, window.errors
    # the dialog's checkbox, remembered like its other choices
    dlg = ExportDialog(window.settings, suggested_name="Q x M")
    qtbot.addWidget(dlg)
    assert not dlg.stems.isChecked()
    dlg.folder.setText(str(tmp_path / "exports"))
    dlg.stems.setChecked(True)
    choice = dlg.choice()
    assert choice.stems and [t.name for t in choice.targets()] == [
        "Q x M.wav", "Q x M_vocals.wav", "Q x M_accompaniment.wav"]
    dlg.remember()
    assert ExportDialog(window.settings, suggested_name="x").stems.isChecked()

    out = tmp_path / "exports" / "cross.flac"
    with qtbot.waitSignal(window.search_page.export_finished, timeout=60_000) as sig:
        window.search_page.export_to(ExportChoice(path=out, format="flac", bitrate="192k",
                                                  full=False, stems=True))
    assert sig.args[0] == out, window.errors
    assert "stems" in window.statusBar().currentMessage()
    files = [out, out.with_name("cross_vocals.flac"), out.with_name("cross_accompaniment.flac")]
    assert all(f.exists() for f in files), sorted(x.name for x in out.parent.iterdir())
    mix, voc, acc = (load_audio(f) for f in files)
    assert voc.duration == pytest.approx(mix.duration, abs=0.05)
    assert acc.duration == pytest.approx(mix.duration, abs=0.05)
    assert voc.samples.std() > 1e-4 and acc.samples.std() > 1e-4
    # without stems: the mix only
    plain = tmp_path / "exports" / "plain.flac"
    with qtbot.waitSignal(window.search_page.export_finished, timeout=60_000) as sig:
        window.search_page.export_to(ExportChoice(path=plain, format="flac", bitrate="192k",
                                                  full=False))
    assert sig.args[0] == plain and not plain.with_name("plain_vocals.flac").exists()
