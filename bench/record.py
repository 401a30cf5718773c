"""Dropouts and event-loop stalls while the app records a long microphone take.

    .venv/bin/python bench/record.py [--seconds 300] [--pace realtime|free] [--metronome]
                                     [--idle-seconds 60] [--json FILE]

Runs the real main window offscreen and records from the test microphone of
``tests/asound.conf`` (ALSA's ``file`` plugin: a real capture device to PortAudio) fed with a
generated sung-like line:

- ``--pace realtime`` (the default): the microphone reads a named pipe that a separate feeder
  process fills at the audio rate, in 1024-frame writes, so the take arrives in real time, as
  from a sound card (a 5-minute take takes 5 minutes).
- ``--pace free``: the microphone reads a file; ALSA's null device under it has no clock, so
  PortAudio delivers as fast as the callback returns (many times real time). The writer then
  cannot keep up and the ring overflows by design: this shows the recorder's throughput, not
  real-time behaviour.

Prints (and writes with ``--json``) the recorder's counts (PortAudio callbacks and those with a
status flag, input overflows, ring-buffer overflows, the writer's longest backlog), the event
loop's stalls (:class:`gui.stall.StallMonitor`, a 10 ms timer's lateness) during the take, the
process's CPU time, the time to stop and to trim, and whether the take on disk is the fed audio
(the correlation at the best lag). Before the take the window sits idle for ``--idle-seconds``
with the same stall monitor: on a shared machine that baseline tells the stalls its load causes
from those the recording adds.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from microphone import DEVICE, SR, RealtimeFeed, feed_file, use_test_alsa  # noqa: E402 (tests/)

use_test_alsa()  # before sounddevice: the file-fed test microphone of tests/asound.conf


def _voice(seconds: float, seed: int = 3) -> np.ndarray:
    """A sung-like line: a gliding harmonic tone in 2-Hz syllables with breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f0 = 220 * 2 ** (np.sin(2 * np.pi * 0.13 * t) / 4)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    env = np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.5 * 0.8 + 0.2
    x = env * (0.25 * np.sin(phase) + 0.1 * np.sin(2 * phase) + 0.01 * rng.standard_normal(t.size))
    return x.astype(np.float32)


def _best_lag(take: np.ndarray, src: np.ndarray, search: int) -> tuple[int, float]:
    """Lag of ``src`` in ``take`` within ``search`` frames and the correlation there (FFT on
    the first 20 s, then checked over the whole overlap)."""
    head = src[: 20 * SR]
    n = search + len(head)
    c = np.fft.irfft(np.fft.rfft(take[:n], 2 * n) * np.conj(np.fft.rfft(head, 2 * n)), 2 * n)
    lag = int(np.argmax(c[:search]))
    seg = take[lag:lag + len(src)]
    ref = src[: len(seg)]
    return lag, float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0, help="length of the take")
    ap.add_argument("--pace", choices=("realtime", "free"), default="realtime")
    ap.add_argument("--metronome", action="store_true",
                    help="clicks on the output (ALSA's null device: it too has no clock, so its "
                         "callback spins a core)")
    ap.add_argument("--idle-seconds", type=float, default=60.0,
                    help="the window idle, not recording, before the take: the stalls the "
                         "machine's own load causes")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crossmix-bench-record-"))
    atexit.register(shutil.rmtree, work, True)  # songs, stems and libraries: 0.5 GB a run
    os.environ["CROSSMIX_DATA_DIR"] = str(work / "data")
    os.environ["CROSSMIX_CACHE_DIR"] = str(work / "cache")
    src = _voice(args.seconds)
    lead = np.zeros(SR // 2, np.float32)
    fed = np.concatenate([lead, src, np.zeros(8 * SR, np.float32)])
    feeder = None
    if args.pace == "realtime":
        feeder = RealtimeFeed(fed, folder=work).start()
    else:
        feed_file(fed, work / "mic.raw")

    from PySide6.QtWidgets import QApplication

    from gui.refcount_guard import keep_none_alive

    keep_none_alive()
    app = QApplication.instance() or QApplication([])
    from core.embedding.encoders import EncoderPair
    from core.separation.separator import Separator
    from gui.engine import Session, warm_up
    from gui.main_window import MainWindow
    from gui.settings import Settings
    from gui.stall import StallMonitor

    warm_up()
    settings = Settings(work / "settings.ini")
    settings.set("audio/input_device", DEVICE)
    settings.set("record/metronome", bool(args.metronome))
    settings.set("record/count_in_bars", 0)
    settings.set("record/bpm", 120)
    session = Session(separator_factory=lambda d: Separator.tiny(device=d),
                      encoders_factory=lambda _d: EncoderPair.tiny(), library_factory=None)
    w = MainWindow(settings=settings, session=session)
    w.show()
    rp = w.search_page.record_panel
    rec = rp.recorder
    if not rp.record_button.isEnabled():
        print(f"cannot record: {rp.reason.text()}", file=sys.stderr)
        return 1

    def pump_until(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        end = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > end:
                return False
            app.processEvents()
            time.sleep(0.002)
        return True

    idle = StallMonitor()
    idle.start()
    load_idle = os.getloadavg()[0]
    pump_until(lambda: False, args.idle_seconds)
    idle.stop()

    wanted = int((args.seconds + 0.5 + 1.0) * SR)  # the lead, the take, 1 s of silence
    mon = StallMonitor()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    mon.start()
    assert rp.start_recording(), w.errors
    last_print = t0
    while rec.frames_recorded < wanted and rec.recording:
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() - last_print > 30:
            last_print = time.perf_counter()
            print(f"  {rec.frames_recorded / SR:.0f} s recorded, longest stall so far "
                  f"{mon.max_stall_ms:.0f} ms", flush=True)
    mon.stop()
    take_wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    finished: list = []
    rp.take_finished.connect(finished.append)
    t = time.perf_counter()
    stats = rp.stop_recording()
    stop_s = time.perf_counter() - t
    pump_until(lambda: bool(finished), 600)
    trim_s = time.perf_counter() - t - stop_s
    if feeder is not None:
        feeder.stop()
    take = finished[0]
    import soundfile as sf

    x, sr = sf.read(take.path, dtype="float32")
    lag, corr = _best_lag(x, src, search=2 * SR)
    w.close()
    app.processEvents()

    assert stats is not None
    out = {
        "command": "bench/record.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "load_average_1min": round(os.getloadavg()[0], 1),
        "pace": args.pace,
        "metronome": bool(args.metronome),
        "take_audio_s": round(stats.seconds, 1),
        "take_wall_s": round(take_wall, 1),
        "speed_x_realtime": round(stats.seconds / take_wall, 2),
        "process_cpu_s": round(cpu, 1),
        "cpu_share_of_one_core": round(cpu / take_wall, 3),
        "callbacks": stats.callbacks,
        "callbacks_with_status_flags": stats.status_flags,
        "input_overflows": stats.input_overflows,
        "ring_overflows": stats.ring_overflows,
        "ring_overflow_frames": stats.ring_overflow_frames,
        "output_underflows": stats.output_underflows,
        "writer_max_backlog_s": round(stats.max_backlog_s, 3),
        "stall_max_ms": round(mon.max_stall_ms, 1),
        "stall_p99_ms": round(mon.percentile(99), 1),
        "stalls_over_50ms": mon.count_over(50),
        "stalls_over_100ms": mon.count_over(100),
        "writer_throughput_x_realtime": round((stats.frames / SR) / take_wall, 1),
        "idle_seconds": args.idle_seconds,
        "idle_load_average_1min": round(load_idle, 1),
        "idle_stall_max_ms": round(idle.max_stall_ms, 1),
        "idle_stall_p99_ms": round(idle.percentile(99), 1),
        "idle_stalls_over_50ms": idle.count_over(50),
        "idle_stalls_over_100ms": idle.count_over(100),
        "stop_s": round(stop_s, 3),
        "trim_s": round(trim_s, 2),
        "trimmed_take_s": round(len(x) / sr, 2),
        "take_vs_fed_audio_correlation": round(corr, 6),
        "take_lag_s": round(lag / SR, 3),
        "wav_bytes": take.path.stat().st_size,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
