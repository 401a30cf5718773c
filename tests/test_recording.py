"""Takes on disk (core.audio.recording, core.audio.takes) and the query history (core.library.history): the ring
buffer, the writer thread, a take killed mid-recording and repaired, trimming, the metronome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio.recording import (
    Metronome,
    RecordingError,
    RingBuffer,
    TakeWriter,
    find_voice,
    repair_wav_header,
    trim_take,
)
from core.audio.takes import TakeStore
from core.library.history import History, HistoryEntry

ROOT = Path(__file__).resolve().parent.parent


# --- ring buffer ------------------------------------------------------------------------------


def test_ring_buffer_keeps_order_across_wraps(rng):
    ring = RingBuffer(100, channels=2)
    src = rng.standard_normal((1000, 2)).astype(np.float32)
    out = np.zeros((1000, 2), np.float32)
    got = 0
    i = 0
    while i < len(src):
        n = int(rng.integers(1, 40))
        assert ring.write(src[i:i + n]) == min(n, len(src) - i)  # never full here
        i += n
        got += ring.read_into(out[got:got + int(rng.integers(0, 60)) + n])
    buf = np.zeros((100, 2), np.float32)
    while (k := ring.read_into(buf)):
        out[got:got + k] = buf[:k]
        got += k
    assert got == len(src)
    np.testing.assert_array_equal(out, src)
    assert ring.overflows == 0


def test_ring_buffer_drops_what_does_not_fit_and_counts_it():
    ring = RingBuffer(10)
    assert ring.write(np.ones((7, 1), np.float32)) == 7
    assert ring.write(np.full((5, 1), 2.0, np.float32)) == 3  # 2 frames dropped
    assert (ring.overflows, ring.overflow_frames) == (1, 2)
    out = np.zeros((20, 1), np.float32)
    assert ring.read_into(out) == 10
    assert out[:10, 0].tolist() == [1.0] * 7 + [2.0] * 3


def test_ring_buffer_between_two_threads_loses_nothing(rng):
    """A producer writing blocks as a callback would, a consumer draining: every frame once,
    in order."""
    ring = RingBuffer(4096)
    total = 200_000
    src = np.arange(total, dtype=np.float32).reshape(-1, 1)
    out = np.zeros_like(src)
    done = threading.Event()

    def produce() -> None:
        i = 0
        while i < total:
            n = min(256, total - i)
            if ring.capacity - ring.available >= n:
                ring.write(src[i:i + n])
                i += n
            else:
                time.sleep(0)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    got = 0
    chunk = np.zeros((1000, 1), np.float32)
    while got < total:
        k = ring.read_into(chunk)
        out[got:got + k] = chunk[:k]
        got += k
    t.join()
    np.testing.assert_array_equal(out, src)
    assert ring.overflows == 0


# --- the writer -------------------------------------------------------------------------------


def test_writer_puts_every_frame_on_disk_with_a_valid_header_while_running(tmp_path, rng):
    ring = RingBuffer(44100)
    w = TakeWriter(tmp_path / "take.wav", ring, samplerate=44100, flush_s=0.05, poll_s=0.01)
    w.start()
    src = (0.5 * rng.standard_normal((44100 * 2, 1))).clip(-1, 1).astype(np.float32)
    for i in range(0, len(src), 4410):
        ring.write(src[i:i + 4410])
        time.sleep(0.005)
    time.sleep(0.2)
    # still open: the header already counts what was flushed
    assert sf.info(str(tmp_path / "take.wav")).frames == len(src)
    w.stop()
    assert w.error is None
    x, sr = sf.read(tmp_path / "take.wav", dtype="float32", always_2d=True)
    assert sr == 44100 and x.shape == src.shape
    assert np.max(np.abs(x - src)) < 2e-6  # 24-bit PCM


def test_writer_refuses_a_folder_it_cannot_write(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(RecordingError, match="cannot be written"):
        TakeWriter(blocker / "take.wav", RingBuffer(10), samplerate=8000)


_WRITER_SCRIPT = textwrap.dedent("""
    import resource, signal, sys, time
    import numpy as np
    from core.audio.recording import RingBuffer, TakeWriter
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "limit":  # a file-size limit: writing fails as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
    ring = RingBuffer(8000 * 10)
    w = TakeWriter(path, ring, samplerate=8000, flush_s=0.1, poll_s=0.01)
    w.start()
    t = np.arange(8000) / 8000
    block = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32).reshape(-1, 1)
    for i in range(6):
        ring.write(block)
        time.sleep(0.15)
    print("written", flush=True)
    if mode == "limit":
        w.stop()
        print("error:", w.error, flush=True)
        sys.exit(0)
    time.sleep(60)  # killed here, mid-take
""")


def _run_writer(path: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(path), mode], env=env,
                            stdout=subprocess.PIPE, text=True)


def test_a_take_killed_mid_recording_is_readable_and_repaired_in_full(tmp_path):
    wav = tmp_path / "killed.wav"
    proc = _run_writer(wav, "kill")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "written"
    time.sleep(0.3)  # the writer has flushed once more
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # valid as it is (the header of the last flush) ...
    before = sf.info(str(wav)).frames
    assert before > 0
    # ... and repaired to every frame the file holds
    frames = repair_wav_header(wav)
    assert frames == 6 * 8000
    x, sr = sf.read(wav, dtype="float32")
    assert len(x) == 6 * 8000 and sr == 8000
    assert abs(np.max(np.abs(x)) - 0.3) < 1e-3


def test_a_write_failing_mid_take_keeps_what_was_written(tmp_path):
    wav = tmp_path / "full.wav"
    proc = _run_writer(wav, "limit")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "error: " in out and "what was recorded until then is kept" in out, out
    x, sr = sf.read(wav, dtype="float32")  # a valid WAV, up to the limit
    assert 0 < len(x) < 6 * 8000
    assert abs(np.max(np.abs(x)) - 0.3) < 1e-3


def test_repair_refuses_what_is_not_a_wav(tmp_path):
    f = tmp_path / "x.wav"
    f.write_bytes(b"hello, not riff at all")
    with pytest.raises(RecordingError, match="not a WAV"):
        repair_wav_header(f)


# --- trimming ---------------------------------------------------------------------------------


def _voice(sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size))
    return x.astype(np.float32)


def test_trim_cuts_leading_and_trailing_silence(tmp_path, rng):
    sr = 16000
    v = _voice(sr, 2.0, rng)
    noise = lambda n: (1e-4 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    x = np.concatenate([noise(sr * 3), v, noise(sr * 2)])
    f = tmp_path / "t.wav"
    sf.write(f, x, sr, subtype="PCM_24")
    trim = trim_take(f)
    assert trim.start == pytest.approx(3 * sr - 0.15 * sr, abs=0.03 * sr)
    assert trim.end == pytest.approx(5 * sr + 0.15 * sr, abs=0.03 * sr)
    y, _ = sf.read(f, dtype="float32")
    assert len(y) == trim.end - trim.start
    np.testing.assert_allclose(y, x[trim.start:trim.end], atol=1e-5)


def test_trim_on_a_grid_keeps_whole_bars_at_the_start(tmp_path, rng):
    sr = 16000
    x = np.concatenate([np.zeros(int(sr * 4.7), np.float32), _voice(sr, 1.0, rng),
                        np.zeros(sr, np.float32)])
    f = tmp_path / "t.wav"
    sf.write(f, x, sr)
    trim = find_voice(f, grid_s=2.0)  # a bar at 120 BPM
    assert trim.start == 4 * sr  # 4.55 s back to the bar line at 4 s


def test_a_silent_take_is_kept_whole(tmp_path):
    f = tmp_path / "s.wav"
    sf.write(f, np.zeros(8000, np.float32), 8000)
    trim = trim_take(f)
    assert trim.silent and sf.info(str(f)).frames == 8000


# --- metronome --------------------------------------------------------------------------------


def test_metronome_clicks_on_the_beat_in_any_block_size():
    sr, bpm = 8000, 150.0  # 3200 frames a beat
    m = Metronome(sr, bpm, count_in_beats=4, keep_going=True)
    out = np.zeros((sr * 4, 2), np.float32)
    i = 0
    for n in [7, 100, 333, 1024, 4000] * 100:
        if i >= len(out):
            break
        m.fill(out[i:i + n])
        i += n
    onsets = np.flatnonzero((np.abs(out[1:, 0]) > 1e-6) & (np.abs(out[:-1, 0]) <= 1e-6)) + 1
    starts = [o for o in onsets if not (np.abs(out[max(0, o - 40):o, 0]) > 1e-6).any()]
    assert starts == [3200 * k + 1 for k in range(10)]  # sin(0) = 0: audible from frame 1
    assert np.array_equal(out[:, 0], out[:, 1])
    # accent on each bar's first beat: the higher click
    first = out[0:200, 0]
    second = out[3200:3400, 0]
    zc = lambda a: int(np.sum(np.diff(np.sign(a)) != 0))  # noqa: E731
    assert zc(first) > 1.5 * zc(second)


def test_metronome_stops_after_the_count_in_unless_kept_going():
    m = Metronome(8000, 120.0, count_in_beats=4, keep_going=False)
    out = np.zeros((8000 * 4, 1), np.float32)
    m.fill(out)
    assert m.clicks == 4
    assert not np.abs(out[16000:]).any()


# --- the take store ---------------------------------------------------------------------------


def _record(store: TakeStore, seconds: float, *, tempo: float | None = None,
            finish: bool = True):
    take = store.new_take(tempo_bpm=tempo)
    sr = 8000
    x = np.concatenate([np.zeros(sr, np.float32),
                        (0.3 * np.sin(2 * np.pi * 200 * np.arange(int(sr * seconds)) / sr)
                         ).astype(np.float32), np.zeros(sr, np.float32)])
    sf.write(take.path, x, sr, subtype="PCM_24")
    return store.finish(take) if finish else take


def test_takes_are_listed_newest_first_renamed_and_deleted(tmp_path):
    import datetime as dt

    store = TakeStore(tmp_path / "takes")
    a = store.new_take(now=dt.datetime(2026, 1, 1, 10, 0, 0))
    sf.write(a.path, np.zeros(800, np.float32), 8000)
    store.finish(a)
    b = _record(store, 1.0, tempo=96.0)
    assert [t.name for t in store.takes()] == [b.name, a.name]
    assert b.duration == pytest.approx(1.3, abs=0.05)  # trimmed, 0.15 s either side
    assert b.state == "done" and b.tempo_bpm == 96.0

    r = store.rename(b, "Verse: take/2")
    assert r.name == "Verse: take/2" and r.path.name == "Verse_ take_2.wav"
    assert r.path.is_file() and r.sidecar.is_file() and not b.path.exists()
    assert store.takes()[0].name == "Verse: take/2"
    with pytest.raises(RecordingError, match="needs a name"):
        store.rename(r, "  ")
    store.delete(r)
    assert not r.path.exists() and not r.sidecar.exists()
    assert [t.name for t in store.takes()] == [a.name]


def test_a_take_left_recording_is_recovered_at_the_next_start(tmp_path):
    store = TakeStore(tmp_path / "takes")
    take = _record(store, 1.0, tempo=120.0, finish=False)
    # as a killed writer leaves it: the header counts no data
    with open(take.path, "r+b") as fh:
        data = fh.read()
        pos = data.index(b"data")
        fh.seek(pos + 4)
        fh.write((0).to_bytes(4, "little"))
    assert json.loads(take.sidecar.read_text())["state"] == "recording"
    fixed = TakeStore(tmp_path / "takes").recover()
    assert [t.name for t in fixed] == [take.name]
    t = store.takes()[0]
    assert t.state == "recovered" and "recovered" in t.note
    # trimmed on the 2-s bar grid of 120 BPM: the 1 s of silence before stays (whole bar)
    assert t.duration == pytest.approx(2.15, abs=0.05)


# --- history ----------------------------------------------------------------------------------


def test_history_persists_dedupes_and_marks_missing_files(tmp_path):
    song = tmp_path / "song.wav"
    song.write_bytes(b"x")
    h = History(tmp_path / "history.json", limit=3)
    h.add(HistoryEntry(path=str(song), title="Song", matches=4, best="B"))
    h.add(HistoryEntry(path=str(tmp_path / "take.wav"), title="Take", kind="take",
                       options={"vocal_only": True, "tempo_bpm": 100.0}))
    h.add(HistoryEntry(path=str(song), title="Song", matches=5))  # the same query: moves up
    again = History(tmp_path / "history.json")
    assert [e.title for e in again.entries] == ["Song", "Take"]
    assert again.entries[0].matches == 5
    assert again.entries[1].options == {"vocal_only": True, "tempo_bpm": 100.0}
    assert again.entries[0].exists and not again.entries[1].exists
    assert again.remove_missing() == 1
    assert [e.title for e in History(tmp_path / "history.json").entries] == ["Song"]


def test_an_unreadable_history_is_set_aside_and_starts_empty(tmp_path):
    p = tmp_path / "history.json"
    p.write_text("{not json")
    h = History(p)
    assert h.entries == [] and "could not be read" in h.note
    assert (tmp_path / "history.json.bad").read_text() == "{not json"
