"""Start the desktop app: ``crossmix`` (or ``crossmix SONG...``) calls :func:`main`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def choose_device(name: str) -> tuple[object, str]:
    """``(torch.device, note)``: the setting's device, or the CPU with a note when CUDA is absent."""
    from core.device import resolve_device
    from core.errors import DeviceError

    try:
        return resolve_device(name), ""
    except DeviceError:
        import torch

        # Said in the app's terms (not the CLI's --device): where to change it.
        return torch.device("cpu"), (
            f"The compute device “{name}” cannot be used: no usable NVIDIA GPU was found, so "
            "the CPU is used. Settings ▸ Compute device is set back to “Automatic”.")


def build_window(files: list[str] | None = None, *, settings_path: str | Path | None = None):  # type: ignore[no-untyped-def]
    """The main window with the real engine (needs a QApplication)."""
    from core.separation import default_stem_cache
    from core.spleeter_assets import example_clip_path
    from gui.engine import Session, encoders_factory_for, library_factory_for
    from gui.main_window import MainWindow
    from gui.settings import Settings, gigabytes
    from gui.tabs import build_tabs

    settings = Settings(settings_path)
    device, note = choose_device(settings.get("compute/device"))
    if note:
        settings.set("compute/device", "auto")
    session = Session(
        device=device,  # type: ignore[arg-type]
        encoders_factory=encoders_factory_for(settings.get("model/encoder_checkpoint")),
        library_factory=library_factory_for(settings.get("library/location")),
        stem_cache=default_stem_cache(gigabytes(settings.get("cache/stem_cache_gb"))),
        duplicate_threshold=settings.get("search/duplicate_threshold"),
    )
    session.encoders_choice = settings.get("model/encoder_checkpoint")
    try:
        example = example_clip_path()
    except Exception as exc:  # noqa: BLE001 - the example is a convenience
        log.warning("%s", exc)
        example = None
    window = MainWindow(settings=settings, session=session, example_path=example)
    build_tabs(window)
    if window.library_panel is not None:
        from training.demo import demo_songs_dir

        window.library_panel.add_demo_if_new(demo_songs_dir())
    window.runner.submit(session.preload, name="loading the models")
    if note:
        window.show_info(note)
    if files:
        window.enqueue([str(Path(f).expanduser()) for f in files])
    return window


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


def main(files: list[str]) -> int:
    """Open the window (querying ``files`` when given) and run the event loop."""
    reason = no_display_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    from PySide6.QtWidgets import QApplication

    from gui.style import apply_style

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Crossmix")
    app.setOrganizationName("Crossmix")
    apply_style(app)
    from gui.engine import warm_up

    warm_up()
    window = build_window(files)
    window.show()
    return int(app.exec())
