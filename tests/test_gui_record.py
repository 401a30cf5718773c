"""Recording in the Search tab, for real through ALSA, and the query history.

The microphone is ``crossmix_test_capture`` from tests/asound.conf (tests/microphone.py):
ALSA's ``file`` plugin reading raw float32 frames from ``$CROSSMIX_TEST_CAPTURE``, a real
capture device to PortAudio. It has no clock (the null device under it delivers as fast as it is read), so a
take of many seconds is recorded in a fraction of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from microphone import CAPTURE_ENV, DEVICE, NO_INPUT_CONF, SR, use_test_alsa, write_raw
from PySide6.QtCore import Qt
from synth_songs import make_song

from core.embedding.encoders import EncoderPair
from core.library.library import Library
from core.separation.separator import Separator, StemCache
from gui.engine import Session
from gui.main_window import MainWindow
from gui.recorder import CLOSE_WAIT_S
from gui.settings import Settings

pytestmark = [pytest.mark.gui, pytest.mark.filterwarnings("ignore::DeprecationWarning")]



@pytest.fixture(autouse=True, scope="module")
def _engine_imported():
    from gui.engine import warm_up

    warm_up()


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rec-lib")
    songs = root / "songs"
    songs.mkdir()
    for i, tempo in enumerate((96.0, 120.0)):
        song = make_song(tempo=tempo, key_root=i * 3, key_mode="major", seconds=6.0, seed=i)
        sf.write(songs / f"song{i}.flac", song.mix.samples.T, song.mix.sr)
    with Library.open(root / "lib", separator=Separator.tiny(), encoders=EncoderPair.tiny()) as lib:
        lib.add_paths([songs])
        assert lib.scan(mode="fast").indexed == 2
    return root / "lib"


def _session(tmp_path: Path, library: Path) -> Session:
    return Session(separator_factory=lambda d: Separator.tiny(device=d),
                   encoders_factory=lambda _d: EncoderPair.tiny(),
                   library_factory=lambda: Library.open(library),
                   stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("CROSSMIX_DATA_DIR", str(d))
    return d


def _window(qtbot, tmp_path, library, *, input_device: str = DEVICE, metronome=False,
            count_in=0) -> MainWindow:
    settings = Settings(tmp_path / "settings.ini")
    settings.set("audio/input_device", input_device)
    settings.set("record/metronome", metronome)
    settings.set("record/count_in_bars", count_in)
    settings.set("record/bpm", 120)
    w = MainWindow(settings=settings, session=_session(tmp_path, library))
    qtbot.addWidget(w)
    w.show()
    return w


def _voice(seconds: float, seed: int = 5) -> np.ndarray:
    """A sung-like line: a gliding harmonic tone with a syllable envelope and breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f0 = 220 * 2 ** (np.sin(2 * np.pi * 0.5 * t) / 6)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    env = np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.5 * 0.8 + 0.2
    x = env * (0.25 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.01 * rng.standard_normal(t.size))
    return x.astype(np.float32)


def _feed(tmp_path: Path, monkeypatch, *, before_s: float, voice_s: float,
          after_s: float = 8.0) -> tuple[np.ndarray, int]:
    """Make the test microphone play silence, a voice, silence; returns (voice, its frame)."""
    v = _voice(voice_s)
    x = np.concatenate([np.zeros(int(SR * before_s), np.float32), v,
                        np.zeros(int(SR * after_s), np.float32)])
    raw = write_raw(x, tmp_path / "mic.raw")
    monkeypatch.setenv(CAPTURE_ENV, str(raw))
    return v, len(x)


def _best_lag(take: np.ndarray, voice: np.ndarray) -> tuple[int, float]:
    """Lag of ``voice`` in ``take`` and the normalised correlation there (FFT)."""
    n = len(take) + len(voice)
    c = np.fft.irfft(np.fft.rfft(take, n) * np.conj(np.fft.rfft(voice, n)), n)[: len(take)]
    lag = int(np.argmax(c))
    seg = take[lag:lag + len(voice)]
    corr = float(np.dot(seg, voice[: len(seg)]) /
                 (np.linalg.norm(seg) * np.linalg.norm(voice[: len(seg)]) + 1e-12))
    return lag, corr


def _record(qtbot, w: MainWindow, frames_wanted: int) -> None:
    rp = w.search_page.record_panel
    assert rp.record_button.isEnabled(), rp.reason.text()
    qtbot.mouseClick(rp.record_button, Qt.MouseButton.LeftButton)
    assert rp.recorder.recording, w.errors
    assert rp.record_button.text() == "■ Stop"
    qtbot.waitUntil(lambda: rp.recorder.frames_recorded >= frames_wanted, timeout=20_000)


def test_a_take_recorded_from_the_microphone_becomes_the_vocal_only_query(
        qtbot, tmp_path, tiny_library, data_dir, monkeypatch):
    # 1 bar of count-in at 120 BPM (2 s) and the metronome on; the voice starts 6 s in
    voice, total = _feed(tmp_path, monkeypatch, before_s=6.0, voice_s=3.0)
    w = _window(qtbot, tmp_path, tiny_library, metronome=True, count_in=1)
    rp = w.search_page.record_panel
    levels: list[float] = []
    rp.recorder.level_changed.connect(levels.append)
    stats = []
    rp.recorder.stopped.connect(stats.append)
    _record(qtbot, w, total)
    qtbot.waitUntil(lambda: bool(levels), timeout=5000)  # the meter is polled every 50 ms
    with qtbot.waitSignal(w.search_page.query_finished, timeout=120_000) as sig:
        with qtbot.waitSignal(rp.take_finished, timeout=60_000) as fin:
            qtbot.mouseClick(rp.record_button,
                             Qt.MouseButton.LeftButton)
    take = fin.args[0]
    assert take is not None, w.errors
    assert rp.record_button.text() == "● Record"
    assert max(levels) > -20.0  # the meter saw the voice (peak about -10 dBFS)

    # the take on disk: a dated WAV in the data folder holding the fed voice, trimmed
    assert take.path.parent == data_dir / "takes"
    assert take.path.name.startswith("Take ") and take.state == "done"
    assert take.tempo_bpm == 120.0
    x, sr = sf.read(take.path, dtype="float32")
    assert sr == SR
    lag, corr = _best_lag(x, voice)
    assert corr > 0.999, corr  # the same samples, up to 24-bit rounding
    # Untrimmed, the voice came 6 s - 2 s of count-in - the latency into the take; trimming
    # cut whole 2-s bars of the silence before it (one), and all but 0.15 s after it.
    lat = 4.0 - 2.0 - lag / SR
    assert 0.0 <= lat < 0.5, lat
    # the metronome played (a bar of count-in, then on) and none of it is in the take
    assert stats[0].clicks >= 4
    assert np.abs(x[: lag - int(0.01 * SR)]).max() < 1e-4
    assert len(x) == pytest.approx(lag + len(voice) + 0.15 * SR, abs=0.03 * SR)
    assert rp.takes()[0].path == take.path  # listed first

    # ... and the query: that file, vocal-only, its tempo the metronome's
    r = sig.args[0]
    assert r is not None, w.errors
    assert Path(r.path) == take.path and r.vocal_only and r.tempo_bpm == 120.0
    assert w.search_page.results_model.rowCount() == 2
    with qtbot.waitSignal(w.search_page.analysis_finished, timeout=120_000) as sig:
        pass
    a = sig.args[0].analysis
    assert a.tempo == 120.0
    np.testing.assert_allclose(np.diff(a.beats), 0.5)
    assert a.beats[0] == 0.0
    assert w.search_page.query_panel.tempo_label.text() == "120.0 BPM"
    with qtbot.waitSignal(w.search_page.preview_finished, timeout=120_000) as sig:
        pass
    assert sig.args[0] is not None, w.errors
    assert sig.args[0].crossmix.report.query_tempo == pytest.approx(120.0)
    # the history lists it as a take, with its options
    e = w.search_page.history_panel.entries()[0]
    assert e.kind == "take" and e.options == {"vocal_only": True, "tempo": 120.0, "first_beat": 0.0}
    w.close()


def test_closing_the_window_mid_take_keeps_a_valid_trimmed_wav(
        qtbot, tmp_path, tiny_library, data_dir, monkeypatch):
    voice, total = _feed(tmp_path, monkeypatch, before_s=1.0, voice_s=2.0)
    w = _window(qtbot, tmp_path, tiny_library)
    _record(qtbot, w, total)
    # on disk as it is recorded: the header counts the frames written by the last flush (1 s)
    path = w.search_page.record_panel.recording_path
    assert path is not None
    qtbot.waitUntil(lambda: sf.info(str(path)).frames > 0, timeout=5000)
    w.close()  # still recording
    takes = sorted((data_dir / "takes").glob("*.wav"))
    assert len(takes) == 1
    side = json.loads(takes[0].with_suffix(".json").read_text())
    assert side["state"] == "done" and side["tempo_bpm"] is None
    x, _ = sf.read(takes[0], dtype="float32")
    lag, corr = _best_lag(x, voice)
    assert corr > 0.999
    assert lag == pytest.approx(0.15 * SR, abs=0.03 * SR)  # leading silence trimmed


@pytest.fixture
def no_microphone():
    """PortAudio re-scanned with an ALSA set-up that has outputs but no input at all."""
    import sounddevice as sd

    old = os.environ["ALSA_CONFIG_PATH"]
    sd._terminate()
    use_test_alsa(NO_INPUT_CONF)
    sd._initialize()
    try:
        assert not any(d["max_input_channels"] for d in sd.query_devices())
        yield
    finally:
        sd._terminate()
        use_test_alsa(Path(old))
        sd._initialize()


def test_without_an_input_device_record_is_disabled_and_says_why(
        qtbot, tmp_path, tiny_library, data_dir, no_microphone):
    w = _window(qtbot, tmp_path, tiny_library, input_device="")
    rp = w.search_page.record_panel
    assert not rp.record_button.isEnabled()
    assert "no microphone" in rp.reason.text() and rp.reason.isVisibleTo(w)
    assert rp.record_button.toolTip() == rp.reason.text()
    assert not rp.start_recording()  # nothing starts even if asked
    assert "no microphone" in w.errors[-1]
    assert not (data_dir / "takes").exists() or not list((data_dir / "takes").glob("*.wav"))
    w.close()


def test_a_missing_chosen_input_device_is_named(qtbot, tmp_path, tiny_library, data_dir):
    w = _window(qtbot, tmp_path, tiny_library, input_device="USB Mic (unplugged)")
    rp = w.search_page.record_panel
    assert not rp.record_button.isEnabled()
    assert "'USB Mic (unplugged)' was not found" in rp.reason.text()
    # choosing an existing one in Settings enables it
    w.settings.set("audio/input_device", DEVICE)
    assert rp.record_button.isEnabled() and not rp.reason.isVisibleTo(w)
    w.close()


def test_a_take_is_renamed_and_deleted_and_the_history_follows(
        qtbot, tmp_path, tiny_library, data_dir, monkeypatch):
    voice, total = _feed(tmp_path, monkeypatch, before_s=0.5, voice_s=2.0)
    w = _window(qtbot, tmp_path, tiny_library)
    rp = w.search_page.record_panel
    _record(qtbot, w, total)
    with qtbot.waitSignal(w.search_page.query_finished, timeout=120_000):
        rp.stop_recording()
    take = rp.takes()[0]
    assert w.search_page.history_panel.entries()[0].path == str(take.path)

    new = rp.rename_take(take, "Chorus idea")
    assert new is not None and new.path.name == "Chorus idea.wav"
    assert new.path.is_file() and not take.path.exists()
    assert rp.takes_list.item(0).text().startswith("Chorus idea ·")
    e = w.search_page.history_panel.entries()[0]
    assert e.path == str(new.path) and e.title == "Chorus idea" and e.exists

    rp.takes_list.setCurrentRow(0)
    # played back on the output device (the null device of tests/asound.conf)
    assert rp.play_button.isEnabled()
    qtbot.mouseClick(rp.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: rp.player.frames_written > SR, timeout=10_000)
    assert rp.player.peak_written > 0.1
    assert rp.delete_button.isEnabled()
    assert rp.delete_take(new, confirm=False)
    assert not new.path.exists() and not new.path.with_suffix(".json").exists()
    assert rp.takes_list.count() == 0
    assert w.search_page.history_panel.item_text(0).endswith("· missing")
    w.close()


def test_the_history_survives_a_new_window_and_says_when_a_file_is_gone(
        qtbot, tmp_path, tiny_library, data_dir):
    songs = []
    for i in range(2):
        song = make_song(tempo=110.0, key_root=i, key_mode="minor", seconds=5.0, seed=20 + i)
        songs.append(tmp_path / f"query{i}.wav")
        sf.write(songs[-1], song.mix.samples.T, song.mix.sr)
    w = _window(qtbot, tmp_path, tiny_library)
    for s in songs:
        with qtbot.waitSignal(w.search_page.analysis_finished, timeout=120_000):
            w.enqueue([str(s)])
    first = w.search_page.result
    assert [e.title for e in w.search_page.history_panel.entries()] == ["query1", "query0"]
    # a query of the history is shown again at once, from memory
    with qtbot.waitSignal(w.search_page.result_reopened, timeout=5000) as sig:
        w.search_page.history_panel.reopen(w.search_page.history_panel.entries()[1])
    assert sig.args[0].title == "query0" and w.search_page.results_model.rowCount() == 2
    assert first.title == "query1"
    w.close()

    songs[1].unlink()
    w2 = _window(qtbot, tmp_path, tiny_library)  # a new start, same data folder
    hp = w2.search_page.history_panel
    assert [e.title for e in hp.entries()] == ["query1", "query0"]
    assert hp.item_text(0).endswith("· missing") and not hp.item_text(1).endswith("missing")
    # the one still there is queried again
    with qtbot.waitSignal(w2.search_page.query_finished, timeout=120_000) as sig:
        hp.reopen(hp.entries()[1])
    assert sig.args[0] is not None and sig.args[0].title == "query0"
    # the missing one says so, and the results shown stay
    hp.reopen(hp.entries()[1])  # (query0 moved up)
    assert "is not there any more" in w2.errors[-1] and "query1" in w2.errors[-1]
    assert w2.search_page.result is sig.args[0]
    assert hp.forget_missing() == 1
    assert [e.title for e in hp.entries()] == ["query0"]
    w2.close()


def test_an_older_query_of_the_history_reopens_without_separating_or_embedding(
        qtbot, tmp_path, tiny_library, data_dir):
    """Beyond the results kept in memory (RESULTS_KEPT), and after a restart, a query of the
    history comes back from the engine's query store and the stem cache: neither the
    separator nor the encoders run, and the ranking is the one shown the first time."""
    from test_query_store import CountingEncoders, counting_encoders
    from test_voice_query import CountingSeparator, counting_separator

    from core.library.query_store import QueryStore

    def window() -> MainWindow:
        sep, enc = counting_separator(), counting_encoders()
        session = Session(separator_factory=lambda d: sep, encoders_factory=lambda d: enc,
                          library_factory=lambda: Library.open(tiny_library),
                          stem_cache=StemCache(tmp_path / "stems"), duplicate_threshold=1.5,
                          query_store=QueryStore(tmp_path / "query-vectors"))
        w = MainWindow(settings=Settings(tmp_path / "settings.ini"), session=session)
        qtbot.addWidget(w)
        w.show()
        return w

    def reopen(w: MainWindow, title: str) -> object:
        page = w.search_page
        entry = next(e for e in page.history_panel.entries() if e.title == title)
        assert entry.key not in page._recent  # not in memory: the engine reopens it
        CountingSeparator.calls = CountingEncoders.calls = 0
        got: list[tuple[object, str]] = []
        page.query_finished.connect(lambda r: got.append((r, w.statusBar().currentMessage())))
        with qtbot.waitSignal(page.analysis_finished, timeout=60_000):
            page.history_panel.reopen(entry)
        assert CountingSeparator.calls == 0 and CountingEncoders.calls == 0
        ((r, said),) = got
        assert r is page.result and r.reopened and r.title == title
        assert "reopened from the history" in said
        assert page.results_model.rowCount() == len(r.rows) > 0
        assert page.query_panel.mix_wave.env is not None and r.analysis is not None
        return r

    w = window()
    page = w.search_page
    files = []
    shown = {}
    for i in range(page.RESULTS_KEPT + 1):
        song = make_song(tempo=100.0 + 6 * i, key_root=i, key_mode="minor", seconds=5.0,
                         seed=30 + i)
        files.append(tmp_path / f"query{i}.wav")
        sf.write(files[-1], song.mix.samples.T, song.mix.sr)
        with qtbot.waitSignal(page.analysis_finished, timeout=120_000):
            w.enqueue([str(files[-1])])
        shown[f"query{i}"] = [(row.path, row.similarity) for row in page.result.rows]
    assert page.history_panel.entries()[-1].title == "query0"
    r = reopen(w, "query0")
    assert [(row.path, row.similarity) for row in r.rows] == shown["query0"]
    w.close()

    w2 = window()  # a restart: a new engine, nothing in memory
    r = reopen(w2, "query1")
    assert [(row.path, row.similarity) for row in r.rows] == shown["query1"]
    w2.close()


def test_a_microphone_that_stops_delivering_ends_the_take_and_keeps_it(
        qtbot, tmp_path, tiny_library, data_dir, monkeypatch):
    """The microphone reads a named pipe fed at the audio rate for 1.5 s, then starved (as a
    device that hangs or was unplugged): the take stops itself, says why, keeps what came in,
    and the window is not held up by the stuck device."""
    import signal
    import threading
    import time

    from gui.stall import StallMonitor

    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv(CAPTURE_ENV, str(fifo))
    voice = _voice(1.5)
    release = threading.Event()
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def feed() -> None:
        while not release.is_set():
            fd = os.open(fifo, os.O_WRONLY)  # PortAudio may open it to probe it first
            try:
                t0 = time.perf_counter()
                for i in range(0, len(voice), 1024):
                    os.write(fd, voice[i:i + 1024].astype("<f4").tobytes().ljust(4096, b"\0"))
                    time.sleep(max(0.0, t0 + (i + 1024) / SR - time.perf_counter()))
                release.wait(30)  # open, silent: reads block
            except BrokenPipeError:
                continue
            finally:
                os.close(fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        w = _window(qtbot, tmp_path, tiny_library)
        rp = w.search_page.record_panel
        mon = StallMonitor()
        mon.start()
        with qtbot.waitSignal(rp.take_finished, timeout=30_000) as fin:
            assert rp.start_recording(), w.errors
        mon.stop()
        take = fin.args[0]
        assert not rp.recorder.recording
        assert "stopped delivering audio" in w.errors[-1] and "kept" in w.errors[-1]
        assert take is not None and take.path.is_file()
        assert "stopped delivering audio" in take.note
        x, _ = sf.read(take.path, dtype="float32")
        lag, corr = _best_lag(x, voice)
        assert corr > 0.999 and len(x) < len(voice) + 0.5 * SR
        # not queried: the user decides
        assert w.search_page.query_task is None and not w.search_page.queue
        # closing the stuck stream waits at most CLOSE_WAIT_S on the GUI thread
        assert mon.max_stall_ms < 1000 * CLOSE_WAIT_S + 500
        w.close()
    finally:
        release.set()
        signal.signal(signal.SIGPIPE, old)
        try:  # unblock the feeder's open() if no reader came
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass
        feeder.join(5)


def test_a_data_folder_that_cannot_be_written_refuses_the_take_with_a_reason(
        qtbot, tmp_path, tiny_library, monkeypatch):
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    monkeypatch.setenv("CROSSMIX_DATA_DIR", str(blocker))
    w = _window(qtbot, tmp_path, tiny_library)
    assert not w.search_page.record_panel.start_recording()
    assert "cannot be written" in w.errors[-1] and str(blocker) in w.errors[-1]
    assert not w.search_page.record_panel.recorder.recording
    w.close()


def test_a_take_cut_short_by_a_crash_is_recovered_when_the_app_starts(
        qtbot, tmp_path, tiny_library, data_dir):
    """As a kill leaves it: the sidecar says "recording" and the WAV header counts no data."""
    from core.audio.takes import TakeStore

    store = TakeStore()
    take = store.new_take(tempo_bpm=None)
    voice = _voice(2.0)
    sf.write(take.path, np.concatenate([np.zeros(SR, np.float32), voice]), SR,
             subtype="PCM_24")
    with open(take.path, "r+b") as fh:
        head = fh.read(200)
        fh.seek(head.index(b"data") + 4)
        fh.write(bytes(4))
    assert sf.info(str(take.path)).frames == 0  # as it is, the voice cannot be read
    settings = Settings(tmp_path / "settings.ini")
    settings.set("audio/input_device", DEVICE)
    w = MainWindow(settings=settings, session=_session(tmp_path, tiny_library))
    qtbot.addWidget(w)
    rp = w.search_page.record_panel
    qtbot.waitUntil(lambda: rp.takes_list.count() == 1, timeout=20_000)
    t = rp.takes()[0]
    assert t.state == "recovered" and t.path == take.path
    assert "Recovered" in w.search_page.banner.text() and take.name in w.search_page.banner.text()
    x, _ = sf.read(t.path, dtype="float32")
    lag, corr = _best_lag(x, voice)
    assert corr > 0.999 and lag == pytest.approx(0.15 * SR, abs=0.03 * SR)  # and trimmed
    w.close()
