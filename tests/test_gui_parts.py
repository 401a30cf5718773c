"""The app's parts on their own: settings, workers, stall monitor, waveform, playback, table,
drop zone, export dialog. Offscreen Qt, the null ALSA device from tests/asound.conf."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QThread, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from core.audio.decode import Audio
from core.errors import CorruptAudioError
from core.progress import Progress
from gui.settings import SCHEMA_VERSION, Settings

pytestmark = pytest.mark.gui


# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_types_and_persistence(qapp, tmp_path):
    path = tmp_path / "cfg" / "settings.ini"
    s = Settings(path)
    assert s.get("search/k") == 10 and isinstance(s.get("search/k"), int)
    assert s.get("remix/key_match") is False
    s.set("search/k", 25)
    s.set("remix/key_match", True)
    s.set("search/space", "[M,V]")
    s.set("search/duplicate_threshold", 0.9)
    del s
    again = Settings(path)
    assert again.get("search/k") == 25
    assert again.get("remix/key_match") is True
    assert again.get("search/space") == "[M,V]"
    assert again.get("search/duplicate_threshold") == pytest.approx(0.9)
    assert again.version == SCHEMA_VERSION


def test_settings_reject_bad_values_and_migrate_v1(qapp, tmp_path):
    path = tmp_path / "settings.ini"
    path.write_text("[meta]\nversion=1\n[search]\nspace_index=1\nk=not-a-number\n")
    s = Settings(path)
    assert s.get("search/space") == "mix->mix"  # the v1 index became a value
    assert s.get("search/k") == 10  # unreadable -> default
    s.set("compute/device", "tpu")  # not a choice -> default
    assert s.get("compute/device") == "auto"
    assert "space_index" not in path.read_text()


def test_settings_emit_changed_once(qapp, tmp_path):
    s = Settings(tmp_path / "s.ini")
    seen = []
    s.changed.connect(lambda k, v: seen.append((k, v)))
    s.set("search/k", 12)
    s.set("search/k", 12)
    assert seen == [("search/k", 12)]


# --- workers ------------------------------------------------------------------------------------


def test_task_reports_progress_and_result_on_the_gui_thread(qtbot):
    from gui.workers import Task, TaskRunner

    runner = TaskRunner()
    threads = []

    def work(n, *, progress, cancel):
        threads.append(QThread.currentThread())
        for i in range(n):
            progress(Progress("count", i + 1, n))
            time.sleep(0.06)
        return n * 2

    task = Task(work, 4, name="counting")
    got = []
    task.signals.progress.connect(lambda p: got.append((p.done, QThread.currentThread())))
    with qtbot.waitSignal(task.signals.finished, timeout=5000) as sig:
        runner.start(task)
    assert sig.args == [8]
    gui = QApplication.instance().thread()
    assert threads[0] is not gui
    assert got and all(t is gui for _, t in got)
    assert got[-1][0] == 4


def test_task_throttles_repeats_but_never_a_new_step(qtbot):
    """Reports in quick succession are thinned, except one that names a new step: dropped,
    the window would show the previous step's words for all of the next (a long stretch)."""
    from gui.workers import Task

    def work(*, progress, cancel):
        for i in range(50):  # a chatty loop, all within a few ms
            progress(Progress("preview", i / 100, 3, "steps", "separating the match"))
        progress(Progress("preview", 1, 3, "steps", "stretching the accompaniment"))
        progress(Progress("preview", 1, 3, "steps", "stretching the accompaniment"))
        return None

    task = Task(work)
    got = []
    task.signals.progress.connect(lambda p: got.append(p.message))
    with qtbot.waitSignal(task.signals.done, timeout=5000):
        task.run()  # on this thread: the reports arrive in one go, all of them quick
    assert got.count("separating the match") < 10
    assert got.count("stretching the accompaniment") == 1
    assert got[-1] == "stretching the accompaniment"


def test_task_cancel_and_failure_become_signals(qtbot):
    from gui.workers import Task, TaskRunner

    runner = TaskRunner()

    def slow(*, progress, cancel):
        for _ in range(200):
            cancel.check("slow work")
            time.sleep(0.01)

    task = Task(slow)
    with qtbot.waitSignal(task.signals.cancelled, timeout=5000):
        runner.start(task)
        task.cancel()

    def bad(*, progress, cancel):
        raise CorruptAudioError(Path("x.mp3"), "it is damaged.")

    task2 = Task(bad, name="decoding")
    with qtbot.waitSignal(task2.signals.failed, timeout=5000) as sig:
        runner.start(task2)
    assert "x.mp3" in sig.args[0] and "damaged" in sig.args[0]

    def crash(*, progress, cancel):
        return 1 / 0

    task3 = Task(crash, name="the sum")
    with qtbot.waitSignal(task3.signals.failed, timeout=5000) as sig:
        runner.start(task3)
    assert sig.args[0].startswith("the sum failed: ZeroDivisionError")
    assert runner.shutdown(timeout_s=5)


def test_shutdown_drops_a_task_still_queued_behind_a_busy_thread(qtbot):
    """Closing with a task waiting for a thread: it never runs and nothing stays "running"."""
    from gui.workers import Task, TaskRunner

    runner = TaskRunner(max_threads=1)
    ran = []

    def busy(*, progress, cancel):
        while not cancel.cancelled:
            time.sleep(0.01)

    def queued(*, progress, cancel):
        ran.append(True)

    first = runner.start(Task(busy))
    runner.start(Task(queued))
    qtbot.waitUntil(lambda: runner.pool.activeThreadCount() == 1, timeout=5000)
    assert len(runner.running) == 2
    assert runner.shutdown(timeout_s=5)
    assert runner.running == [] and first.finished_event.is_set() and ran == []


# --- stall monitor ------------------------------------------------------------------------------


def test_stall_monitor_sees_a_blocked_loop(qtbot):
    from gui.stall import StallMonitor

    mon = StallMonitor(interval_ms=10)
    mon.start()
    qtbot.wait(200)
    quiet = mon.max_stall_ms
    time.sleep(0.25)  # block the GUI thread
    qtbot.wait(50)
    mon.stop()
    assert quiet < 100
    assert mon.max_stall_ms >= 200
    assert mon.count_over(100) == 1


# --- waveform -----------------------------------------------------------------------------------


def test_envelope_matches_brute_force_and_clips_to_view(qtbot, rng):
    from gui.waveform import FINEST_BIN, MAX_DRAWN_BINS, WaveformView, envelope

    sr = 8000
    x = rng.standard_normal((2, sr * 600)).astype(np.float32) * 0.1  # 10 minutes
    x[:, 123_456] = 0.9
    env = envelope(Audio(x, sr))
    mono = x.mean(axis=0)
    lo0, hi0 = env.levels[0]
    np.testing.assert_allclose(hi0[:100], mono[: 100 * FINEST_BIN].reshape(100, -1).max(1))
    np.testing.assert_allclose(lo0[:100], mono[: 100 * FINEST_BIN].reshape(100, -1).min(1))
    for lo, hi in env.levels:  # every level keeps the global peak
        assert hi.max() == pytest.approx(mono.max())
        assert lo.min() == pytest.approx(mono.min())

    view = WaveformView("test")
    qtbot.addWidget(view)
    view.set_envelope(env)
    assert 0 < view.drawn_points <= 2 * (MAX_DRAWN_BINS + 2)
    view.setXRange(15.0, 16.0, padding=0)  # zoom in: finest level, only the visible bins
    xs, _ = view.curve.getData()
    assert xs.min() >= 15.0 - 0.01 and xs.max() <= 16.0 + 0.01
    assert len(xs) == pytest.approx(2 * sr / FINEST_BIN, rel=0.02)
    view.set_playhead(15.5)
    assert view.playhead.value() == pytest.approx(15.5)


# --- playback -----------------------------------------------------------------------------------


def _tone(seconds=2.0, sr=44100, amp=0.25):
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return Audio(np.stack([x, x]), sr)


def test_player_sends_audio_to_the_null_device(qtbot):
    from gui.audio_views import playable
    from gui.playback import Player

    p = Player()
    assert p.available, p.reason
    a = _tone()
    p.set_source("a", [playable(a)], a.sr)
    p.select("a")
    states = []
    p.state_changed.connect(states.append)
    p.play()
    # The null device takes audio as fast as it is given, so the 2 s play out at once.
    qtbot.waitUntil(lambda: states[-1:] == ["stopped"], timeout=5000)
    assert states == ["playing", "stopped"]
    assert p.frames_written == a.n
    assert p.peak_written == pytest.approx(0.25, abs=0.01)
    assert p._stream is None  # the device is released after playing
    p.close()


def test_player_callback_mixes_layers_and_follows_transport(qapp):
    from gui.audio_views import playable
    from gui.playback import Player

    p = Player()
    a = _tone(1.0)
    p.set_source("one", [playable(a)], a.sr)
    p.set_source("two", [playable(a), playable(a)], a.sr, gains=[0.5, 0.0])
    p.select("one")
    out = np.ones((1024, 2), np.float32)
    p._callback(out, 1024, None, None)  # not playing: silence
    assert not out.any() and p.position == 0.0
    p._playing = True
    p.seek(0.5)
    start = p._pos
    p._callback(out, 1024, None, None)
    np.testing.assert_array_equal(out, playable(a)[start:start + 1024])
    assert p.position == pytest.approx((start + 1024) / a.sr)
    p.select("two")  # switching keeps the position
    assert p._pos == start + 1024
    p._callback(out, 1024, None, None)
    np.testing.assert_allclose(out, 0.5 * playable(a)[start + 1024:start + 2048], atol=1e-7)
    p.set_gains("two", [0.0, 2.0])
    p._callback(out, 1024, None, None)
    np.testing.assert_allclose(out, 2.0 * playable(a)[start + 2048:start + 3072], atol=1e-7)
    p.seek(1.0 - 100 / a.sr)  # the last block is short: the rest is zeros, then it stops
    with pytest.raises(RuntimeError):
        p._callback(out, 1024, None, None)
    assert not out[100:].any() and out[:100].any()
    assert not p.playing
    p.close()


def test_player_without_device_explains_why(qtbot):
    from gui.audio_views import playable
    from gui.playback import Player

    p = Player(device="no-such-sound-card-xyz")
    assert not p.available
    assert "no-such-sound-card-xyz" in p.reason and "Export still works" in p.reason
    a = _tone(0.5)
    p.set_source("a", [playable(a)], a.sr)
    p.select("a")
    p.play()  # a no-op, not an exception
    assert p.state == "stopped" and p.frames_written == 0


# --- results table ------------------------------------------------------------------------------


def test_results_sort_numbers_as_numbers(qapp):
    from gui.results_model import COLUMNS, ResultRow, ResultsModel, ResultsProxy

    rows = [ResultRow(rank=i + 1, title=t, artist="x", similarity=s, tempo=tp, key="C major",
                      stretch_percent=0.0, semitone_shift=0, mashability=s, path=f"/{t}.wav")
            for i, (t, s, tp) in enumerate([("b", 0.9, 95.0), ("a", 0.5, 120.0),
                                            ("c", 0.7, 100.0)])]
    model = ResultsModel()
    model.set_rows(rows)
    proxy = ResultsProxy()
    proxy.setSourceModel(model)
    col = [c for c, _ in COLUMNS].index("tempo")
    proxy.sort(col, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, 1).data() for r in range(3)] == ["b", "c", "a"]
    assert proxy.index(0, col).data() == "95.0 BPM"
    proxy.sort(1, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, 1).data() for r in range(3)] == ["a", "b", "c"]


# --- drop zone ----------------------------------------------------------------------------------


def _drag(widget, mime, qtbot):
    pos = QPointF(widget.rect().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    return enter, pos


def test_drop_zone_accepts_files_and_queues_them(qtbot, tmp_path):
    from gui.drop_zone import DropZone

    zone = DropZone()
    qtbot.addWidget(zone)
    files = [tmp_path / "one.wav", tmp_path / "two.mp3"]
    for f in files:
        f.write_bytes(b"x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    enter, pos = _drag(zone, mime, qtbot)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(zone.files_dropped) as sig:
        QApplication.sendEvent(zone, drop)
    assert sig.args == [[str(f) for f in files]]

    text = QMimeData()
    text.setText("hello")
    enter2, _ = _drag(zone, text, qtbot)
    assert not enter2.isAccepted()
    web = QMimeData()
    web.setUrls([QUrl("https://example.com/song.mp3")])
    enter3, _ = _drag(zone, web, qtbot)
    assert not enter3.isAccepted()


# --- the Search page on its own -----------------------------------------------------------------


def test_the_search_page_needs_no_window(qtbot, tmp_path):
    """The Search page is given what it needs: its messages go through the callables it was
    given, its queue waits for the engine, and it shuts down on its own."""
    from gui.engine import Session
    from gui.playback import Player
    from gui.search_page import SearchPage
    from gui.workers import TaskRunner

    errors: list[str] = []
    lines: list[tuple[str, int]] = []
    page = SearchPage(settings=Settings(tmp_path / "s.ini"), session=Session(),
                      runner=TaskRunner(), player=Player(device="no-such-card"),
                      show_error=errors.append, show_info=errors.append,
                      status=lambda text, ms: lines.append((text, ms)))
    qtbot.addWidget(page)
    assert not page.example_button.isEnabled()  # no example song was given
    (tmp_path / "empty").mkdir()
    page.enqueue([str(tmp_path / "empty")])
    assert len(errors) == 1 and "no songs in this folder" in errors[0]
    assert page.queue_label.text() == "Queue empty" and not page.querying
    page.engine_loading = True
    page.enqueue([str(tmp_path / "song.wav")])
    assert lines[-1] == ("The query starts as soon as the engine is loaded…", 0)
    assert list(page.queue) == [str(tmp_path / "song.wav")] and page.query_task is None
    assert page.queue_label.text() == "1 more queued"
    page.shutdown()
    assert not page.queue
    page.engine_loading = False
    page.enqueue([str(tmp_path / "song.wav")])
    assert page.query_task is None  # closing: no query starts any more


# --- export dialog ------------------------------------------------------------------------------


def test_export_dialog_remembers_choices(qtbot, tmp_path):
    from gui.export_dialog import ExportDialog

    s = Settings(tmp_path / "s.ini")
    d = ExportDialog(s, suggested_name="Song: A / B")
    qtbot.addWidget(d)
    assert d.choice().path.name == "Song_ A _ B.wav"
    assert not d.bitrate.isEnabled()
    d.format.setCurrentText("mp3")
    assert d.bitrate.isEnabled()
    d.bitrate.setCurrentText("320k")
    d.full.setChecked(True)
    d.folder.setText(str(tmp_path / "out"))
    d._accept()
    again = ExportDialog(Settings(tmp_path / "s.ini"), suggested_name="x")
    qtbot.addWidget(again)
    c = again.choice()
    assert (c.format, c.bitrate, c.full) == ("mp3", "320k", True)
    assert c.path == tmp_path / "out" / "x.mp3"


@pytest.mark.parametrize("name, fmt, expected", [
    ("Slow Motion Dream (ft. CSoul…) x Nese", "mp3", "Slow Motion Dream (ft. CSoul_) x Nese.mp3"),
    ("my mix v1.0", "wav", "my mix v1.0.wav"),
    ("take.2.flac", "ogg", "take.2.ogg"),
])
def test_export_dialog_keeps_dots_in_names(qtbot, tmp_path, name, fmt, expected):
    from gui.export_dialog import ExportDialog

    d = ExportDialog(Settings(tmp_path / "s.ini"), suggested_name=name)
    qtbot.addWidget(d)
    d.format.setCurrentText(fmt)
    assert d.choice().path.name == expected


def test_no_display_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from gui.app import no_display_reason

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("the check is for Linux desktops")
    reason = no_display_reason()
    assert reason is not None and "xvfb-run" in reason and "crossmix --help" in reason
    monkeypatch.setenv("DISPLAY", ":0")
    assert no_display_reason() is None


def test_results_model_shows_a_key_shift_beyond_the_limit(qtbot):
    from gui.results_model import COLUMNS, ResultRow, ResultsModel

    col = [f for f, _ in COLUMNS].index("semitone_shift")
    base = dict(title="t", artist="a", similarity=0.5, tempo=120.0, key="F major",
                stretch_percent=0.0, mashability=0.1, path="/m.wav")
    model = ResultsModel()
    model.set_rows([
        ResultRow(rank=1, semitone_shift=0, shift_needed=4, shift_limit=3, **base),
        ResultRow(rank=2, semitone_shift=0, shift_needed=0, shift_limit=3, **base),
        ResultRow(rank=3, semitone_shift=2, shift_needed=2, shift_limit=3, **base),
    ])
    shown = [model.index(r, col).data() for r in range(3)]
    assert shown == ["+4 st > ±3", "0", "+2 st"]
    assert "beyond the 3-semitone limit" in model.index(0, col).data(Qt.ItemDataRole.ToolTipRole)


def test_none_outlives_pyside_paint_overrides(qtbot):
    """PySide6 6.12 takes a reference from None in QGraphicsItem.paint overrides; on Python
    3.11 the guard (applied in conftest, as the app does) keeps None from ever reaching zero."""
    import sys

    from PySide6.QtCore import QRectF
    from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene, QGraphicsView

    from gui.refcount_guard import keep_none_alive

    class Item(QGraphicsItem):
        def boundingRect(self):  # noqa: N802
            return QRectF(0, 0, 10, 10)

        def paint(self, p, opt, widget=None):
            pass

    guarded = keep_none_alive()
    if guarded:
        assert sys.getrefcount(None) > 1 << 39
    scene = QGraphicsScene()
    for _ in range(10):
        scene.addItem(Item())
    view = QGraphicsView(scene)
    qtbot.addWidget(view)
    view.show()
    before = sys.getrefcount(None)
    for _ in range(50):
        view.viewport().repaint()
    lost = before - sys.getrefcount(None)
    # Whatever PySide takes, it is a vanishing share of what the guard added.
    assert not guarded or sys.getrefcount(None) - lost * 10**6 > 0


def test_true_outlives_pyside_signal_emits(qtbot):
    """PySide6 6.12 takes a reference from True at each Python slot a signal calls (the
    recorder's level meter: 60 a second); the guard keeps True from ever reaching zero."""
    import sys

    from PySide6.QtCore import QObject, Signal

    from gui.refcount_guard import keep_none_alive

    class Emitter(QObject):
        level = Signal(float)

    e = Emitter()
    got: list[float] = []
    e.level.connect(got.append)
    guarded = keep_none_alive()
    before = sys.getrefcount(True)
    for _ in range(1000):
        e.level.emit(-12.0)
    lost = before - sys.getrefcount(True)
    assert len(got) == 1000
    if guarded:
        assert sys.getrefcount(True) > 1 << 39 and sys.getrefcount(False) > 1 << 39
        assert sys.getrefcount(True) - lost * 10**6 > 0
