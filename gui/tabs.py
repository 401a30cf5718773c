"""Add the Library, Retrain and Settings tabs to a :class:`MainWindow`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gui.main_window import MainWindow


def build_tabs(window: MainWindow) -> None:
    from core.device import describe_devices
    from gui.settings_panel import SettingsPanel

    window.settings_panel = SettingsPanel(window.settings, device_description=describe_devices())
    window.tabs.addTab(window.settings_panel, "Settings")
