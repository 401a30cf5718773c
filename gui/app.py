"""Start the desktop app: ``crossmix`` (or ``crossmix SONG...``) calls :func:`main`."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
#: The app's GUI-thread garbage collector (gui/gc_policy.py), kept alive with the process.
_GC_COLLECTORS: list[Any] = []


def session_from(settings: Any) -> Any:
    """The engine of the app, built once from the settings (the composition root: the window
    and its pages receive it; a setting changed later is applied to it, not rebuilt)."""
    from gui.engine import Session

    return Session(
        device=None,  # set by start_engine (choosing it imports torch)
        encoders_factory=settings.get("model/encoder_checkpoint"),
        library_factory=settings.get("library/location"),
        stem_cache=None,  # set by start_engine
        duplicate_threshold=settings.get("search/duplicate_threshold"),
    )


@dataclass
class EngineStart:
    """What :func:`start_engine` found: the device and a note for the user (or "")."""

    device: Any
    note: str


def start_engine(session: Any, device_name: str, stem_cache_gb: float, *,
                 progress: Any = None, cancel: Any = None) -> EngineStart:
    """Import the engine (torch, separation, search) and set the session's device and stem cache.

    Runs in a worker once the window shows, so the window appears within a second or two
    instead of after the imports (several seconds on a small machine)."""
    from core.progress import Progress, check_cancel
    from gui.settings import compute_device

    if progress is not None:
        progress(Progress("start", 0, 2, "steps", "loading PyTorch"))
    device, note = compute_device(device_name)
    check_cancel(cancel, "starting")
    if progress is not None:
        progress(Progress("start", 1, 2, "steps", "loading the separation and search"))
    # What a query needs before its analysis; librosa (the analysis: its beat tracker alone
    # takes about 2 s to import, compiling with numba) is imported next by Session.preload.
    import core.embedding.song  # noqa: F401
    import core.library.library  # noqa: F401
    from core.separation.separator import default_stem_cache
    from gui.settings import gigabytes

    session.set_device(device)
    if session.stem_cache is None:  # no query reads it yet: they wait for this to finish
        session.stem_cache = default_stem_cache(gigabytes(stem_cache_gb))
    if session.query_store is None:  # a query of the history reopens from its kept vectors
        from core.library.query_store import QueryStore

        session.query_store = QueryStore()
    if progress is not None:
        progress(Progress("start", 2, 2, "steps", "ready"))
    return EngineStart(device=device, note=note)


def build_window(files: list[str] | None = None, *, settings_path: str | Path | None = None,
                 splash: Any = None) -> Any:
    """The main window with the real engine (needs a QApplication).

    Only the light modules are imported here; the engine is imported and the models loaded in
    workers once the window shows (:func:`start_engine`, then ``Session.preload``), the status
    bar saying what loads. Songs given (or dropped meanwhile) are queried once it is imported,
    and the Library, Retrain and Settings tabs are filled in then."""
    from core.separation.assets import example_clip_path
    from gui.main_window import MainWindow
    from gui.settings import Settings
    from gui.tabs import add_placeholder_tabs

    def say(text: str) -> None:
        if splash is not None:
            splash.show_step(text)

    say("Reading the settings")
    settings = Settings(settings_path)
    session = session_from(settings)
    try:
        example = example_clip_path()
    except Exception as exc:  # noqa: BLE001 - the example is a convenience
        log.warning("%s", exc)
        example = None
    say("Building the window")
    window = MainWindow(settings=settings, session=session, example_path=example)
    add_placeholder_tabs(window)
    window.search_page.engine_loading = True
    if files:
        window.enqueue([str(Path(f).expanduser()) for f in files])

    _start_engine_in_background(window, session, settings)
    return window


def _start_engine_in_background(window: Any, session: Any, settings: Any) -> None:
    """Import the engine in a worker (:func:`start_engine`), then fill in the tabs and load the
    models in another; the window's status bar shows both."""
    from gui.workers import Task

    def progress(p: Any) -> None:
        window.show_start_progress(p)

    def started(res: EngineStart) -> None:
        if res.note:
            settings.set("compute/device", "auto")
        from gui.tabs import build_tabs

        build_tabs(window)
        if window.library_panel is not None:
            from training.demo import demo_songs_dir

            window.library_panel.add_demo_if_new(demo_songs_dir())
        window.engine_imported()
        if res.note:
            window.show_info(res.note)
        models = Task(session.preload, name="loading the models")
        models.signals.progress.connect(progress)
        models.signals.finished.connect(window.models_loaded)
        models.signals.failed.connect(lambda msg, _e: window.models_loaded(msg))
        window.runner.start(models)

    def failed(msg: str, _exc: object) -> None:
        window.engine_imported()
        window.show_error(f"Crossmix could not load its engine: {msg}")
        window.models_loaded(msg)

    task = Task(start_engine, session, settings.get("compute/device"),
                settings.get("cache/stem_cache_gb"), name="starting Crossmix")
    task.signals.progress.connect(progress)
    task.signals.finished.connect(started)
    task.signals.failed.connect(failed)
    window.runner.start(task)


def no_display_reason() -> str | None:
    """Why no window can open here (Linux without X11/Wayland), or ``None``."""
    import os

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        return ("crossmix: no graphical display was found (DISPLAY / WAYLAND_DISPLAY are unset), so the "
                "window cannot open. Run it in a desktop session, or on a headless machine under "
                "'xvfb-run crossmix'; every feature is also on the command line: 'crossmix --help'.")
    return None


def main(files: list[str], *, milestones: Any = None) -> int:
    """Open the window (querying ``files`` when given) and run the event loop.

    A splash shows at once; the main window follows as soon as its light modules are
    imported; the engine then loads in the background (see :func:`build_window`).
    ``milestones(name)``, when given, is called at ``"splash"``, ``"window"``, ``"imported"``
    (queries start, every tab is there) and ``"models"`` (bench/app.py times them)."""
    reason = no_display_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    from gui.refcount_guard import keep_none_alive

    keep_none_alive()  # before any repaint (a PySide6 6.12 bug; see the module)
    from PySide6.QtWidgets import QApplication

    mark = milestones if milestones is not None else (lambda _name: None)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Crossmix")
    app.setOrganizationName("Crossmix")
    from gui.gc_policy import GuiThreadCollector

    _GC_COLLECTORS.append(GuiThreadCollector(app))  # kept for the life of the process
    from gui.splash import Splash

    splash = Splash()
    splash.show_step("Loading the interface")
    mark("splash")
    from gui.style import apply_style

    apply_style(app)
    window = build_window(files, splash=splash)
    window.engine_ready.connect(lambda _note: mark("models"))
    window.queries_ready.connect(lambda: mark("imported"))
    window.show()
    splash.finish(window)
    app.processEvents()
    mark("window")
    return int(app.exec())
