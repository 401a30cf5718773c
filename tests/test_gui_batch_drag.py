"""Batch export of several matches and dragging matches out of the window as files.

The real window, engine and tiny random-weight models on a library of four generated songs
(two of them titled "Alpha", so two exports want the same name); settings in ``tmp_path``;
the drag folder is in the test session's cache (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QPushButton
from test_gui_window import SONGS, _write_song, make_session

from core.audio.decode import load_audio
from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator
from gui.drag_out import drag_folder
from gui.export_dialog import ExportChoice, ExportDialog
from gui.main_window import MainWindow
from gui.settings import Settings

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

QUERY_TITLE = "The Query v1.0 (ft. Someone)"  # dots: kept in every file name


@pytest.fixture(autouse=True, scope="module")
def _engine_imported():
    from gui.engine import warm_up

    warm_up()


def _library(root: Path) -> tuple[Path, Path]:
    """Four songs (two titled "Alpha"), scanned in fast mode: (library, songs folder)."""
    songs = root / "songs"
    songs.mkdir(parents=True)
    for i, (title, tempo, key, mode) in enumerate([*SONGS, ("Alpha", 112.0, 4, "minor")]):
        _write_song(songs / f"{title}{i}.flac", tempo=tempo, root=key, mode=mode, seconds=8.0,
                    seed=i, title=title)
    with Library.open(root / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="fast").indexed == 4
    return root / "lib", songs


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return _library(tmp_path_factory.mktemp("batch-lib"))[0]


@pytest.fixture(scope="module")
def query_song(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch-query")
    return _write_song(d / "query song.flac", tempo=100.0, root=2, mode="major", seconds=10.0,
                       seed=7, title=QUERY_TITLE)


def _window(qtbot, tmp_path: Path, library: Path) -> MainWindow:
    w = MainWindow(settings=Settings(tmp_path / "settings.ini"),
                   session=make_session(tmp_path, library))
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture
def window(qtbot, tmp_path, library):
    w = _window(qtbot, tmp_path, library)
    yield w
    w.close()


def _query(qtbot, w: MainWindow, song: Path) -> None:
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        w.enqueue([str(song)])
    assert sig.args[0] is not None, w.errors
    assert w.search_page.results_model.rowCount() == 4, w.errors
    # the best match is previewed before the others are analysed, and a batch export waits
    # for that analysis (it is refused with a message before): on a busy machine it comes later
    qtbot.waitUntil(lambda: not w.search_page.querying, timeout=120_000)


def _no_partial_files(folder: Path) -> list[str]:
    """Hidden staging/temporary files left in ``folder`` (there must be none)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_batch_export_writes_every_match_once_with_unique_names(qtbot, window, query_song,
                                                                tmp_path):
    w = window
    out = tmp_path / "exports"
    out.mkdir()
    # nothing selected, and before any query: each says what to do
    w.search_page.export_selected_dialog()
    assert "no matches to export" in w.errors[-1].lower()
    _query(qtbot, w, query_song)
    w.search_page.table.clearSelection()
    w.search_page.export_selected_dialog()
    assert "No match is selected" in w.errors[-1]

    # the dialog in batch mode: no file name, the naming said; folder etc. remembered
    w.search_page.table.selectAll()
    rows = w.search_page.table.selected_result_rows()
    assert len(rows) == 4
    dlg = w.search_page.batch_export.dialog(rows)
    assert dlg is not None and dlg.windowTitle() == "Export 4 cross-mixes"
    assert dlg.name.parent() is None or not dlg.name.isVisibleTo(dlg)
    assert "a name already taken gets a number" in dlg.names_note.text()
    dlg.folder.setText(str(out))
    choice = dlg.choice()
    dlg.reject()

    # a file of the user already has the first name: kept, and the export gets "(2)"
    mine = out / f"{QUERY_TITLE} x Bravo.wav"
    mine.write_bytes(b"the user's own file")
    seen = []
    with qtbot.waitSignal(w.search_page.batch_export.finished, timeout=180_000) as sig:
        task = w.search_page.batch_export.start(rows, choice)
        task.signals.progress.connect(lambda p: seen.append((p.done, p.total, p.message)))
        # one progress window, with Cancel
        assert w.search_page.batch_export.progress_dialog is not None
    report = sig.args[0]
    assert report is not None and not report.failed and not report.cancelled, w.errors
    names = sorted(p.name for p in report.written)
    assert names == sorted([f"{QUERY_TITLE} x Alpha.wav", f"{QUERY_TITLE} x Alpha (2).wav",
                            f"{QUERY_TITLE} x Bravo (2).wav", f"{QUERY_TITLE} x Charlie.wav"])
    assert mine.read_bytes() == b"the user's own file"
    assert _no_partial_files(out) == []
    preview_len = w.search_page.preview.crossmix.mix.duration
    for p in report.written:
        a = load_audio(p)
        assert a.duration == pytest.approx(preview_len, abs=0.05) and a.samples.std() > 1e-4
    # the two "Alpha" files are the two different songs' cross-mixes
    a1, a2 = (load_audio(out / f"{QUERY_TITLE} x Alpha{s}.wav") for s in ("", " (2)"))
    assert not np.allclose(a1.samples, a2.samples, atol=1e-3)
    assert seen and seen[-1][0] == seen[-1][1] == 4
    assert any("2 of 4" in m for _d, _t, m in seen)
    assert "Exported 4 cross-mixes" in w.search_page.banner.text()
    assert not w.search_page.batch_export.progress_dialog.isVisible()

    # "Export all shown": every row, in the order shown, whatever is selected
    w.search_page.table.selectRow(0)
    dlg = w.search_page.export_all_dialog()
    assert dlg is not None and dlg.windowTitle() == "Export 4 cross-mixes"
    dlg.reject()
    assert [r.title for r in w.search_page.shown_rows()] == [
        w.search_page.results_proxy.index(i, 1).data() for i in range(4)]
    # names stay unique against the files of the first batch
    again = w.session.export_batch(w.search_page.result, rows[:2], folder=out, fmt="wav",
                                   bitrate="192k", full=False,
                                   options=w.search_page.remix_options(),
                                   previews=w.search_page.rendered_previews())
    assert all(" (2)" in p.name or " (3)" in p.name for p in again.written), again.written
    assert len(list(out.glob("*.wav"))) == 7  # 4 + 2 + the user's own


def test_batch_export_failures_are_reported_and_lose_nothing(qtbot, tmp_path, query_song):
    lib, songs = _library(tmp_path / "own")
    w = _window(qtbot, tmp_path, lib)
    w.search_page.RENDER_AHEAD = 0  # only the best match is rendered (its stems cached)
    try:
        _query(qtbot, w, query_song)
        best = w.search_page.preview.row
        # a match whose file was moved away (and never separated): it cannot be rendered
        gone = next(r for r in w.search_page.results_model.rows if r.path != best.path)
        Path(gone.path).rename(tmp_path / "moved.flac")
        out = tmp_path / "exports"
        with qtbot.waitSignal(w.search_page.batch_export.finished, timeout=180_000) as sig:
            started = w.search_page.batch_export.start(w.search_page.shown_rows(), ExportChoice(
                path=out / "x.flac", format="flac", bitrate="192k", full=False))
            assert started is not None, w.errors  # refused: said at once, not after the timeout
        report = sig.args[0]
        assert len(report.written) == 3 and len(report.failed) == 1, report
        name, reason = report.failed[0]
        assert gone.title in name and "none of its files can be read" in reason
        assert all(load_audio(p).samples.std() > 1e-4 for p in report.written)
        assert _no_partial_files(out) == []
        text = w.errors[-1]
        assert "Exported 3 of 4 cross-mixes" in text and "none of its files can be read" in text
        box = w.search_page.batch_export.report_box
        assert box is not None and box.isVisible() and reason in box.detailedText()
        box.close()

        # a folder that cannot be written: said before any work, nothing exported
        blocker = tmp_path / "a file"
        blocker.write_text("not a folder")
        with qtbot.waitSignal(w.search_page.batch_export.finished, timeout=60_000) as sig:
            w.search_page.batch_export.start(w.search_page.shown_rows(), ExportChoice(
                path=blocker / "x.wav", format="wav", bitrate="192k", full=False))
        assert sig.args[0] is None
        assert "Nothing was exported" in w.errors[-1] and "not a folder" in w.errors[-1]
    finally:
        w.close()


@pytest.fixture
def tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``mount(size_kb)`` -> a fresh small tmpfs folder (root only); unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mounted: list[Path] = []

    def mount(size_kb: int) -> Path:
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(d)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_batch_export_on_a_disk_that_fills_keeps_the_files_written(qtbot, window, query_song,
                                                                   tmp_path, tmpfs):
    w = window
    _query(qtbot, w, query_song)
    rows = w.search_page.shown_rows()
    one = w.session.export(w.search_page.result, w.search_page.preview.row,
                           preview=w.search_page.preview, path=tmp_path / "one.wav", fmt="wav",
                           bitrate="192k", full=False, options=w.search_page.remix_options())
    size = one.stat().st_size
    disk = tmpfs(int(1.6 * size / 1024))  # room for one file, not two
    with qtbot.waitSignal(w.search_page.batch_export.finished, timeout=180_000) as sig:
        started = w.search_page.batch_export.start(rows[:3], ExportChoice(path=disk / "x.wav", format="wav",
                                                              bitrate="192k", full=False))
        assert started is not None, w.errors
    report = sig.args[0]
    assert len(report.written) == 1 and len(report.failed) == 2, report
    assert all("disk full" in reason for _n, reason in report.failed)
    assert load_audio(report.written[0]).duration == pytest.approx(load_audio(one).duration)
    assert sorted(p.name for p in disk.iterdir()) == [report.written[0].name]  # nothing half
    assert "Exported 1 of 3" in w.errors[-1] and "disk full" in w.errors[-1]
    w.search_page.batch_export.report_box.close()


def test_cancelling_a_batch_export_keeps_whole_files_only(qtbot, window, query_song, tmp_path):
    w = window
    _query(qtbot, w, query_song)
    out = tmp_path / "exports"
    with qtbot.waitSignal(w.search_page.batch_export.finished, timeout=180_000) as sig:
        task = w.search_page.batch_export.start(w.search_page.shown_rows(), ExportChoice(
            path=out / "x.wav", format="wav", bitrate="192k", full=True))

        def first_file_done(p) -> None:  # the second match begins: press Cancel
            if "2 of 4" in p.message and not task.cancelled:
                w.search_page.batch_export.progress_dialog.findChild(QPushButton).click()  # Cancel

        task.signals.progress.connect(first_file_done)
    report = sig.args[0]
    assert report is not None and report.cancelled
    assert 1 <= len(report.written) < 4
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in report.written)
    assert all(load_audio(p).samples.std() > 1e-4 for p in report.written)
    banner = w.search_page.banner.text()
    assert "Batch export cancelled" in banner and "complete files" in banner


def test_dragging_matches_out_carries_real_files_of_their_cross_mixes(qtbot, window,
                                                                      query_song, tmp_path,
                                                                      monkeypatch):
    w = window
    dragged: list[list[str]] = []

    def fake_exec(self, *_args):  # what the file manager would receive
        dragged.append([u.toLocalFile() for u in self.mimeData().urls()])
        return Qt.DropAction.CopyAction

    monkeypatch.setattr(QDrag, "exec", fake_exec)
    _query(qtbot, w, query_song)
    qtbot.waitUntil(lambda: w.search_page.analysis_task is None, timeout=60_000)
    p = w.search_page.preview
    w.search_page.table.selectRow(w.search_page.table.currentIndex().row())

    # the previewed match: its file is written first (the mouse is not held here: no drag
    # yet, the window says it is ready), then the drag carries it
    with qtbot.waitSignal(w.search_page.drag_out.prepared, timeout=60_000) as sig:
        w.search_page.table.startDrag(Qt.DropAction.CopyAction)
    files = sig.args[0]
    assert files is not None and len(files) == 1, w.errors
    f = files[0]
    assert f.is_file() and f.parent.parent == drag_folder()
    assert f.name == f"{QUERY_TITLE} x {p.row.title}.wav"
    assert "Ready to drag" in w.statusBar().currentMessage() and not dragged
    a = load_audio(f)
    want = p.crossmix.mix
    assert a.sr == want.sr and a.n == want.n
    np.testing.assert_allclose(a.samples, want.samples, atol=1e-4)  # 24-bit wav of the mix
    w.search_page.table.startDrag(Qt.DropAction.CopyAction)
    assert dragged == [[str(f)]]

    # two matches, one of them not rendered yet: rendered, then both files dragged
    w.search_page.table.selectAll()
    rows = w.search_page.table.selected_result_rows()
    assert w.search_page.drag_out.mime_data(rows) is None  # not all written yet
    with qtbot.waitSignal(w.search_page.drag_out.prepared, timeout=120_000) as sig:
        w.search_page.drag_out.prepare(rows)
    files = sig.args[0]
    assert len(files) == 4 and len({x.name for x in files}) == 3  # two "Alpha" titles
    for x in files:
        assert load_audio(x).duration == pytest.approx(want.duration, abs=0.05)
    mime = w.search_page.drag_out.mime_data(rows)
    assert [u.toLocalFile() for u in mime.urls()] == [str(x) for x in files]

    # a match the user exported drags as that exported file
    out = tmp_path / "exports" / "mine.flac"
    with qtbot.waitSignal(w.search_page.export_finished, timeout=60_000):
        w.search_page.export_to(ExportChoice(path=out, format="flac", bitrate="192k", full=False))
    w.search_page.table.selectRow(w.search_page.table.currentIndex().row())
    assert [u.toLocalFile() for u in w.search_page.drag_out.mime_data([p.row]).urls()] == [str(out)]

    # a new query: nothing to drag until its analysis is done, and it says so
    w.enqueue([str(query_song)])
    qtbot.waitUntil(lambda: w.search_page.query_task is not None, timeout=10_000)
    w.search_page.drag_out.prepare(rows)
    assert "once the query and its analysis are done" in w.search_page.banner.text()
    with qtbot.waitSignal(w.search_page.analysis_finished, timeout=120_000):
        pass


def test_export_dialog_in_batch_mode_needs_a_folder(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    dlg = ExportDialog(Settings(tmp_path / "s.ini"), suggested_name="Q v1.0 x M", batch=3)
    qtbot.addWidget(dlg)
    assert "Q v1.0 x M" in dlg.names_note.text()
    dlg.folder.setText("")
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    dlg._accept()
    assert warned == ["Choose the folder to export to."] and dlg.result() == 0
