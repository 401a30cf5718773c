"""Library tab, settings across restarts, the full window as ``crossmix`` builds it, and a
machine without a sound card."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from synth_songs import make_song

from core.audio.decode import Audio
from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator, StemCache, Stems
from gui.engine import Session
from gui.library_panel import LibraryPanel
from gui.main_window import MainWindow
from gui.playback import Player
from gui.settings import Settings
from gui.stall import StallMonitor
from gui.workers import TaskRunner

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(autouse=True, scope="module")
def _engine_imported():
    """As the app does before showing its window: heavy imports off the measured path."""
    from gui.engine import warm_up

    warm_up()


def _songs(folder: Path, n: int, *, seed: int = 0, seconds: float = 6.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        s = make_song(tempo=90.0 + 10 * i, key_root=i, seconds=seconds, seed=seed + i)
        p = folder / f"song{seed + i}.wav"
        sf.write(p, s.mix.samples.T, s.mix.sr)
        out.append(p)
    return out


def _session(tmp_path: Path) -> Session:
    return Session(separator_factory=lambda d: Separator.tiny(device=d),
                   encoders_factory=lambda d: EncoderPair.tiny(),
                   library_factory=lambda: Library.open(tmp_path / "lib"),
                   stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5)


def test_library_tab_adds_indexes_lists_failures_and_removes(qtbot, tmp_path):
    folder = tmp_path / "music"
    _songs(folder, 2)
    (folder / "broken.flac").write_bytes(b"fLaC" + b"\0" * 100)
    session = _session(tmp_path)
    panel = LibraryPanel(session, Settings(tmp_path / "s.ini"), TaskRunner())
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.refresh()
    assert panel.folders.rowCount() == 0

    mon = StallMonitor()
    mon.start()
    t_start = time.perf_counter()
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000) as sig:
        panel.add_folder(str(folder))
        qtbot.waitUntil(lambda: not panel.add_button.isEnabled(), timeout=10_000)
        assert panel.cancel_button.isEnabled()
    mon.stop()
    report = sig.args[0]
    assert report is not None and report.indexed == 2 and report.failed == 1
    # Indexing ran off the GUI thread: no stall near the length of the scan (the 100 ms
    # target is measured in bench/app.py, not in a timed unit test).
    busy_ms = 1000 * (time.perf_counter() - t_start)
    assert mon.max_stall_ms < 0.5 * busy_ms, f"the GUI stalled {mon.max_stall_ms:.0f} of {busy_ms:.0f} ms"
    qtbot.waitUntil(lambda: panel.overview is not None and panel.overview.status.songs == 2,
                    timeout=10_000)
    assert panel.folders.item(0, 0).text() == str(folder)
    assert (panel.folders.item(0, 1).text(), panel.folders.item(0, 2).text()) == ("2", "2")
    assert panel.failures.rowCount() == 1
    assert panel.failures.item(0, 0).text() == "broken.flac"
    assert "broken.flac" in panel.failures.item(0, 2).text()
    assert "2 songs" in panel.summary.text().replace("<b>", "").replace("</b>", "")
    assert panel.add_button.isEnabled() and not panel.cancel_button.isEnabled()

    panel.folders.selectRow(0)
    panel.remove_selected()
    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.confirm_box.button(QMessageBox.StandardButton.Cancel)  # asked first
        panel.confirm_box.buttons()[0].click()  # "Remove"
    assert panel.folders.rowCount() == 0 and panel.overview.status.songs == 0
    assert "Removed" in panel.message.text()


def test_cancelled_indexing_keeps_the_app_usable(qtbot, tmp_path):
    folder = tmp_path / "music"
    _songs(folder, 3)
    session = _session(tmp_path)
    session.add_folder(folder)
    panel = LibraryPanel(session, Settings(tmp_path / "s.ini"), TaskRunner())
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.scan_finished, timeout=60_000) as sig:
        panel.rescan()
        panel.cancel_scan()
    assert sig.args[0] is None and "cancelled" in panel.message.text()
    qtbot.waitUntil(lambda: panel.rescan_button.isEnabled(), timeout=10_000)
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000) as sig:
        panel.rescan()
    assert sig.args[0] is not None
    assert session.library().status().songs == 3


def test_settings_persist_across_a_restart(qtbot, tmp_path):
    path = tmp_path / "settings.ini"
    w = MainWindow(settings=Settings(path), session=_session(tmp_path))
    qtbot.addWidget(w)
    w.search_page.space_combo.setCurrentIndex(w.search_page.space_combo.findData("mix->mix"))
    w.search_page.k_spin.setValue(17)
    w.search_page.k_spin.editingFinished.emit()
    w.search_page.preview_panel.key_match.setChecked(True)
    w.search_page.preview_panel.set_gains_db(-3.0, 1.5)
    w.close()

    again = MainWindow(settings=Settings(path), session=_session(tmp_path))
    qtbot.addWidget(again)
    assert again.search_page.current_space() == "mix->mix"
    assert again.search_page.k_spin.value() == 17
    assert again.search_page.preview_panel.key_match.isChecked()
    assert again.search_page.preview_panel.gains_db() == (-3.0, 1.5)
    again.close()


def test_the_app_window_has_every_tab_and_a_first_run_hint(qtbot, tmp_path, monkeypatch):
    from gui.app import build_window

    monkeypatch.setenv("CROSSMIX_CONFIG_DIR", str(tmp_path / "config"))
    w = build_window([], settings_path=tmp_path / "config" / "settings.ini")
    qtbot.addWidget(w)
    w.show()
    tabs = [w.tabs.tabText(i) for i in range(w.tabs.count())]
    assert tabs == ["Search", "Library", "Retrain", "Settings"]
    assert w.search_page.hint.isVisible() and "Try the example song" in w.search_page.hint.text()
    assert w.search_page.example_button.isEnabled()
    # The window shows before the engine is imported; the three tabs say they load, then
    # are filled in, in place, with the Search tab still current.
    assert w.settings_panel is None and w.search_page.engine_loading
    assert "Loading" in w.tabs.widget(1).text()
    with qtbot.waitSignal(w.queries_ready, timeout=120_000):
        pass
    assert [w.tabs.tabText(i) for i in range(w.tabs.count())] == tabs
    assert w.tabs.widget(3) is w.settings_panel and w.tabs.currentIndex() == 0
    # the settings tab shows what compute device was found and edits the shared settings
    panel = w.settings_panel
    assert "CPU" in panel.device_found.text() or "CUDA" in panel.device_found.text()
    panel.editors["search/k"].setValue(33)
    assert w.search_page.k_spin.value() == 33
    # the stem cache of dropped songs: its limit is a setting, its use is shown, it can be cleared
    cache = w.session.stem_cache
    assert cache.max_bytes == 10 * 10**9
    cache.root = tmp_path / "query-stems"  # leave the test session's shared cache alone
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 44100)).astype(np.float32)
    stems = Stems(mix=Audio(x, 44100), vocals=Audio(x * 0.5, 44100),
                  accompaniment=Audio(x * 0.5, 44100))
    cache.put("a" * 64, "m" * 64, stems)
    cache.put("b" * 64, "m" * 64, stems)
    panel.update_cache_usage()
    assert "Holds 2 separated songs" in panel.cache_usage.text()
    panel.editors["cache/stem_cache_gb"].setValue(0.5)
    assert cache.max_bytes == 5 * 10**8 and cache.usage()[0] == 2  # both fit
    qtbot.mouseClick(panel.clear_cache_button, Qt.MouseButton.LeftButton)
    assert cache.usage() == (0, 0) and "Cleared" in panel.cache_usage.text()
    assert not panel.clear_cache_button.isEnabled()
    assert Settings(tmp_path / "config" / "settings.ini").get("cache/stem_cache_gb") == 0.5
    qtbot.waitUntil(lambda: w.library_panel.overview is not None
                    or w.library_panel.message.isVisible(), timeout=10_000)
    w.close()


def test_no_sound_card_disables_playback_with_a_reason(qtbot, tmp_path):
    w = MainWindow(settings=Settings(tmp_path / "s.ini"), session=_session(tmp_path),
                   player=Player(device="no-such-card"))
    qtbot.addWidget(w)
    w.show()
    reason = w.search_page.preview_panel.playback_reason
    assert reason.isVisible() and "Playback is off" in reason.text()
    assert not w.search_page.preview_panel.play_button.isEnabled()
    w.search_page.toggle_play()  # Space with no device: nothing happens, nothing raises
    w.close()


def test_closing_mid_indexing_cancels_and_keeps_what_was_indexed(qtbot, tmp_path):
    folder = tmp_path / "music"
    _songs(folder, 4)
    session = _session(tmp_path)
    session.add_folder(folder)
    w = MainWindow(settings=Settings(tmp_path / "s.ini"), session=session)
    qtbot.addWidget(w)
    panel = LibraryPanel(session, w.settings, w.runner)
    w.library_panel = panel
    w.tabs.addTab(panel, "Library")
    w.show()
    seen = []
    panel.rescan()
    panel.scan_task.signals.progress.connect(lambda p: seen.append(p.done))
    qtbot.waitUntil(lambda: any(d >= 1 for d in seen), timeout=60_000)
    w.close()  # cancels the scan and waits for the worker
    assert not w.runner.running
    with Library.open(tmp_path / "lib") as lib:  # the catalog is intact; indexed songs kept
        kept = lib.status().songs
        assert 1 <= kept <= 4
        report = lib.scan(mode="fast", encoders=EncoderPair.tiny())
        assert report.indexed == 4 - kept and lib.status().songs == 4


def test_closing_mid_query_cancels_cleanly(qtbot, tmp_path):
    song = _songs(tmp_path / "q", 1, seed=9, seconds=60.0)[0]  # long enough to be mid-way
    w = MainWindow(settings=Settings(tmp_path / "s.ini"), session=_session(tmp_path))
    qtbot.addWidget(w)
    w.show()
    w.enqueue([str(song), str(song)])
    qtbot.waitUntil(lambda: w.search_page.query_panel.stages.current is not None, timeout=30_000)
    running = [t for t in (w.search_page.query_task, w.search_page.analysis_task) if t is not None]
    assert running  # the query, or (on a slow machine) its follow-up analysis
    w.close()
    assert all(t.finished_event.is_set() and t.cancelled for t in running)
    assert not w.search_page.queue and not w.runner.running


def test_crossmix_song_opens_the_window_with_that_query(qtbot, tmp_path):
    """``crossmix SONG`` -> ``gui.app.main([SONG])`` -> ``build_window([SONG])``: the song is
    queried at once (a damaged one here, so the real models need not load)."""
    from gui.app import build_window

    bad = tmp_path / "damaged song.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + b"\x00" * 30)
    w = build_window([str(bad)], settings_path=tmp_path / "config" / "settings.ini")
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.search_page.query_finished, timeout=30_000) as sig:
        pass
    assert sig.args[0] is None
    assert "damaged song.wav" in w.errors[-1]
    assert w.search_page.banner.isVisibleTo(w) and w.search_page.banner.kind == "error"
    w.close()


def test_use_this_model_switches_encoders_and_reembeds_the_library(qtbot, tmp_path):
    folder = tmp_path / "music"
    _songs(folder, 2)
    settings = Settings(tmp_path / "s.ini")
    session = _session(tmp_path)
    w = MainWindow(settings=settings, session=session)
    qtbot.addWidget(w)
    panel = LibraryPanel(session, settings, w.runner)
    w.library_panel = panel
    w.tabs.addTab(panel, "Library")
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000) as sig:
        panel.add_folder(str(folder))
    assert sig.args[0].indexed == 2
    old_model = session.library().catalog.model_id

    new = EncoderPair.tiny(seed=5).save(tmp_path / "models" / "run" / "best.safetensors")
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000) as sig:
        w.use_model(str(new))  # what the Retrain tab's "Use this model" does
    assert sig.args[0] is not None and sig.args[0].reembedded == 2
    assert settings.get("model/encoder_checkpoint") == str(new)
    lib = session.library()
    assert lib.catalog.model_id == EncoderPair.load(new).model_id != old_model
    assert lib.status().current == 2 and w.tabs.currentWidget() is panel
    w.close()


def _click(box: QMessageBox, text: str) -> None:
    """Answer a confirmation box by its button's text ("Cancel" or the action)."""
    button = next(b for b in box.buttons() if b.text().replace("&", "") == text)
    button.click()


def test_remove_asks_first_selects_nothing_after_can_be_undone_and_frees_stems(qtbot, tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    _songs(a, 2, seed=0)
    _songs(b, 1, seed=5)
    session = _session(tmp_path)
    session.add_folder(a)
    session.add_folder(b)
    settings = Settings(tmp_path / "s.ini")
    settings.set("library/scan_mode", "full")  # full mode: every song's stems are kept
    panel = LibraryPanel(session, settings, TaskRunner())
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000):
        panel.rescan()
    qtbot.waitUntil(lambda: panel.folders.rowCount() == 2, timeout=10_000)
    lib = session.library()
    stems_of = {s.path: lib.stem_cache.path_for(s.audio_key, s.stems_model)
                for s in lib.songs()}
    assert len(stems_of) == 3 and all(p.is_file() for p in stems_of.values())
    assert not panel.remove_button.isEnabled()  # nothing selected
    row_a = next(i for i in range(2) if panel.folders.item(i, 0).text() == str(a))
    panel.folders.selectRow(row_a)
    assert panel.remove_button.isEnabled()

    # asked first: Cancel removes nothing
    panel.remove_button.click()
    assert panel.confirm_box is not None and str(a) in panel.confirm_box.text()
    _click(panel.confirm_box, "Cancel")
    qtbot.wait(100)
    assert session.library().status().songs == 3 and panel.undo_removal is None

    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.remove_button.click()
        _click(panel.confirm_box, "Remove")
    assert [panel.folders.item(i, 0).text() for i in range(panel.folders.rowCount())] == [str(b)]
    # the next folder is not selected: a second click cannot remove it
    assert panel.selected_folder() is None and not panel.remove_button.isEnabled()
    assert panel.undo_button.isVisible() and "Removed" in panel.message.text()
    assert all(p.is_file() for p in stems_of.values())  # kept while undo is offered

    # Undo: the folder is back and indexed again, without separating again
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000) as sig:
        panel.undo_button.click()
    assert sig.args[0] is not None and sig.args[0].indexed == 2
    assert session.library().status().songs == 3 and not panel.undo_button.isVisible()

    # remove again and let the undo expire: A's stems are deleted, B's are not
    qtbot.waitUntil(lambda: panel.folders.rowCount() == 2, timeout=10_000)
    panel.folders.selectRow(next(i for i in range(2)
                                 if panel.folders.item(i, 0).text() == str(a)))
    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.remove_button.click()
        _click(panel.confirm_box, "Remove")
    task = panel.expire_undo()
    qtbot.waitUntil(lambda: task.finished_event.is_set(), timeout=10_000)
    assert not panel.undo_button.isVisible()
    for path, stem in stems_of.items():
        assert stem.is_file() == path.startswith(str(b)), path
    qtbot.waitUntil(lambda: "Freed" in panel.message.text(), timeout=5000)


def test_switching_to_full_mode_says_what_it_costs_and_indexes_in_view(qtbot, tmp_path):
    folder = tmp_path / "music"
    _songs(folder, 2)
    session = _session(tmp_path)
    settings = Settings(tmp_path / "s.ini")
    panel = LibraryPanel(session, settings, TaskRunner())
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000):
        panel.add_folder(str(folder))
    qtbot.waitUntil(lambda: panel.overview is not None and panel.overview.status.songs == 2,
                    timeout=10_000)
    panel.mode.setCurrentIndex(panel.mode.findData("full"))
    box = panel.confirm_box
    assert box is not None and "2 songs" in box.text() and "GB" in box.text()
    assert settings.get("library/scan_mode") == "fast" and panel.scan_task is None
    _click(box, "Cancel")
    assert panel.mode.currentData() == "fast" and settings.get("library/scan_mode") == "fast"

    panel.mode.setCurrentIndex(panel.mode.findData("full"))
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000) as sig:
        _click(panel.confirm_box, "Switch and index")
        assert panel.scan_task is not None  # started at once, with its progress shown
    assert sig.args[0] is not None and settings.get("library/scan_mode") == "full"
    assert session.library().status().full == 2


def test_song_list_sorts_filters_and_acts_on_a_song(qtbot, tmp_path, monkeypatch):
    from PySide6.QtGui import QDesktopServices
    from PySide6.QtWidgets import QApplication

    from gui.library_songs import COLUMNS, ENTRY_ROLE

    folder = tmp_path / "music"
    songs = _songs(folder, 3, seconds=6.0)
    (folder / "broken.flac").write_bytes(b"fLaC" + b"\0" * 100)
    session = _session(tmp_path)
    panel = LibraryPanel(session, Settings(tmp_path / "s.ini"), TaskRunner())
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000):
        panel.add_folder(str(folder))
    qtbot.waitUntil(lambda: panel.songs_model.rowCount() == 4, timeout=10_000)
    # one song analysed (as a preview does): its tempo and key show after a refresh
    lib = session.library()
    first = lib.catalog.song_by_path(str(songs[0]))
    analysis = lib.analysis_for(first.id)
    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.refresh()
    view, proxy = panel.songs_view, panel.songs_proxy
    col = {field: i for i, (field, _) in enumerate(COLUMNS)}

    def shown(field: str) -> list[str]:
        return [proxy.index(r, col[field]).data() for r in range(proxy.rowCount())]

    assert sorted(shown("file_name")) == ["broken.flac", "song0.wav", "song1.wav", "song2.wav"]
    by_file = {proxy.index(r, col["file_name"]).data(): proxy.index(r, 0).data(ENTRY_ROLE)
               for r in range(proxy.rowCount())}
    assert by_file["song1.wav"].status == "Searchable"
    assert by_file["song1.wav"].folder == str(folder)
    assert by_file["broken.flac"].failed
    assert by_file["broken.flac"].status.startswith("Not indexed (")
    assert "broken.flac" in by_file["broken.flac"].status  # the reason names the file
    r0 = next(r for r in range(proxy.rowCount())
              if proxy.index(r, col["file_name"]).data() == "song0.wav")
    assert proxy.index(r0, col["duration"]).data() == "0:06"
    assert proxy.index(r0, col["tempo"]).data() == f"{analysis.tempo:.1f} BPM"
    assert proxy.index(r0, col["key"]).data() == analysis.key
    assert panel.songs_count.text() == "4 files"

    # sorted by value: the analysed song first by tempo, descending
    view.sortByColumn(col["tempo"], Qt.SortOrder.DescendingOrder)
    assert shown("file_name")[0] == "song0.wav"
    view.sortByColumn(col["file_name"], Qt.SortOrder.DescendingOrder)
    assert shown("file_name") == ["song2.wav", "song1.wav", "song0.wav", "broken.flac"]

    # the filter keeps the rows holding every word, in any column and case
    qtbot.keyClicks(panel.song_filter, "SONG1 searchable")
    assert shown("file_name") == ["song1.wav"] and panel.songs_count.text() == "1 of 4 files"
    panel.song_filter.setText("decode broken")
    assert shown("file_name") == ["broken.flac"]
    panel.song_filter.setText("nothing like this")
    assert proxy.rowCount() == 0 and "No file matches" in panel.songs_count.text()
    panel.song_filter.clear()
    assert proxy.rowCount() == 4

    # use as query (double-click and menu), show in folder, copy, drag the files out
    asked = []
    panel.query_requested.connect(asked.append)
    row1 = shown("file_name").index("song1.wav")
    view.doubleClicked.emit(proxy.index(row1, 0))
    assert asked == [[str(songs[1])]]
    view.selectRow(row1)
    menu = panel.songs_menu(panel.selected_songs())
    assert [a.text() for a in menu.actions()] == ["Use as query", "Show in folder",
                                                  "Copy file path"]
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    menu.actions()[1].trigger()
    assert [u.toLocalFile() for u in opened] == [str(folder)]
    menu.actions()[2].trigger()
    assert QApplication.clipboard().text() == str(songs[1])
    mime = proxy.mimeData([proxy.index(row1, 0), proxy.index(row1, 3)])
    assert [u.toLocalFile() for u in mime.urls()] == [str(songs[1])]
    # two songs selected: one query each; a song moved away says so and is not queried
    songs[2].rename(tmp_path / "moved.wav")
    view.selectAll()
    entries = panel.selected_songs()
    assert len(entries) == 4
    menu = panel.songs_menu(entries[1:3])
    assert menu.actions()[0].text() == "Use as queries (2)" and not menu.actions()[1].isEnabled()
    asked.clear()
    panel.use_as_query([str(songs[1]), str(songs[2])])
    assert asked == [[str(songs[1])]]
    assert "song2.wav: the file is not there any more" in panel.message.text()

    # removing the folder empties the list (refreshed after the removal)
    panel.folders.selectRow(0)
    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.remove_button.click()
        _click(panel.confirm_box, "Remove")
    assert panel.songs_model.rowCount() == 0
    assert panel.songs_count.text() == "No songs yet: add a folder"


def test_song_list_stays_quick_with_twenty_thousand_songs(qtbot, tmp_path):
    from gui.engine import LibraryOverview, SongEntry
    from gui.library_songs import COLUMNS, ENTRY_ROLE

    n = 20_000
    entries = [SongEntry(path=f"/music/artist{i % 300}/album{i % 37}/track {i}.flac",
                         title=f"Track {i}", artist=f"Artist {i % 300}", duration=120.0 + i % 200,
                         tempo=60.0 + i % 120, key="A minor" if i % 2 else "C major",
                         status="Searchable", song_id=i) for i in range(n)]
    status = Library.open(tmp_path / "lib").status()
    panel = LibraryPanel(_session(tmp_path), Settings(tmp_path / "s.ini"), TaskRunner())
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    t = time.perf_counter()
    panel._show_overview(LibraryOverview(status=status, folders=[], failures=[], songs=entries))
    qtbot.wait(1)  # painted
    panel.songs_view.sortByColumn([f for f, _ in COLUMNS].index("tempo"),
                                  Qt.SortOrder.DescendingOrder)
    panel.song_filter.setText("ALBUM36 minor")  # a folder's word and a key's
    elapsed = time.perf_counter() - t
    proxy = panel.songs_proxy
    expected = sum(1 for i in range(n) if i % 37 == 36 and i % 2)
    assert proxy.rowCount() == expected > 0
    tempos = [proxy.index(r, 0).data(ENTRY_ROLE).tempo for r in range(proxy.rowCount())]
    assert tempos == sorted(tempos, reverse=True)
    # a model over the entries, not a widget per row: filling, sorting and filtering
    # twenty thousand songs takes a moment, not the seconds a QTableWidget would
    assert elapsed < 3.0, f"{elapsed:.2f} s for {n} songs"


def test_use_as_query_on_the_library_tab_queries_on_the_search_tab(qtbot, tmp_path):
    from gui.tabs import build_tabs

    folder = tmp_path / "music"
    songs = _songs(folder, 2)
    session = _session(tmp_path)
    w = MainWindow(settings=Settings(tmp_path / "s.ini"), session=session)
    qtbot.addWidget(w)
    build_tabs(w)  # as the app does once the engine is imported
    panel = w.library_panel
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000):
        panel.add_folder(str(folder))
    w.tabs.setCurrentWidget(panel)
    with qtbot.waitSignal(w.search_page.query_finished, timeout=120_000) as sig:
        panel.use_as_query([str(songs[1])])
    assert w.tabs.currentIndex() == 0
    assert sig.args[0] is not None and str(sig.args[0].path) == str(songs[1]), w.errors
    w.close()


def test_song_list_shows_tempo_and_key_learned_since_when_the_tab_is_shown(qtbot, tmp_path):
    from gui.library_songs import COLUMNS, ENTRY_ROLE

    folder = tmp_path / "music"
    songs = _songs(folder, 2)
    session = _session(tmp_path)
    panel = LibraryPanel(session, Settings(tmp_path / "s.ini"), TaskRunner())
    qtbot.addWidget(panel)
    panel.show()
    with qtbot.waitSignal(panel.scan_finished, timeout=120_000):
        panel.add_folder(str(folder))
    qtbot.waitUntil(lambda: panel.songs_model.rowCount() == 2, timeout=10_000)
    assert all(panel.songs_model.entry(i).tempo is None for i in range(2))
    panel.hide()
    lib = session.library()
    analysis = lib.analysis_for(lib.catalog.song_by_path(str(songs[1])).id)  # as a preview does
    with qtbot.waitSignal(panel.overview_updated, timeout=10_000):
        panel.show()  # the user comes back to the tab
    proxy = panel.songs_proxy
    col = [f for f, _ in COLUMNS]
    row = next(r for r in range(proxy.rowCount())
               if proxy.index(r, 0).data(ENTRY_ROLE).path == str(songs[1]))
    assert proxy.index(row, col.index("tempo")).data() == f"{analysis.tempo:.1f} BPM"
    assert proxy.index(row, col.index("key")).data() == analysis.key
