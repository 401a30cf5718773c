"""Add the Library, Retrain and Settings tabs to a :class:`MainWindow`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gui.main_window import MainWindow


def build_tabs(window: MainWindow) -> None:
    from core.device import describe_devices
    from gui.library_panel import LibraryPanel
    from gui.settings_panel import SettingsPanel

    lib = LibraryPanel(window.session, window.settings, window.runner)
    lib.error.connect(window.show_error)
    window.library_panel = lib
    window.tabs.addTab(lib, "Library")
    lib.refresh()

    from gui.training_panel import TrainingPanel

    train = TrainingPanel(window.session, window.settings, window.runner)
    train.model_chosen.connect(window.use_model)
    window.training_panel = train
    window.tabs.addTab(train, "Retrain")

    panel = SettingsPanel(window.settings, device_description=describe_devices(),
                          stem_cache=window.session.stem_cache)
    window.settings_panel = panel
    window.tabs.addTab(panel, "Settings")
