"""Add the Library, Retrain and Settings tabs to a :class:`MainWindow`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

if TYPE_CHECKING:
    from gui.main_window import MainWindow

TAB_TITLES = ("Library", "Retrain", "Settings")


def add_placeholder_tabs(window: MainWindow) -> None:
    """The three tabs, saying they load (they need the engine: :func:`build_tabs` fills them)."""
    for title in TAB_TITLES:
        label = QLabel("Loading the engine…")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setProperty("placeholder", True)
        window.tabs.addTab(label, title)


def _put_tab(window: MainWindow, widget: QWidget, title: str) -> None:
    """Replace the placeholder titled ``title`` (keeping its place and the current tab)."""
    tabs = window.tabs
    for i in range(tabs.count()):
        old = tabs.widget(i)
        if tabs.tabText(i) == title and old is not None and old.property("placeholder"):
            current = tabs.currentIndex()
            tabs.removeTab(i)
            tabs.insertTab(i, widget, title)
            tabs.setCurrentIndex(current)
            old.deleteLater()
            return
    tabs.addTab(widget, title)


def build_tabs(window: MainWindow) -> None:
    from core.device import describe_devices
    from gui.library_panel import LibraryPanel
    from gui.settings_panel import SettingsPanel

    lib = LibraryPanel(window.session, window.settings, window.runner)
    lib.error.connect(window.show_error)

    def use_as_query(paths: list[str]) -> None:  # a song of the Library tab's list
        window.tabs.setCurrentWidget(window.search_page)
        window.search_page.enqueue(paths)

    lib.query_requested.connect(use_as_query)
    window.library_panel = lib
    _put_tab(window, lib, "Library")
    lib.refresh()

    from gui.training_panel import TrainingPanel

    train = TrainingPanel(window.session, window.settings, window.runner)
    train.model_chosen.connect(window.use_model)
    window.training_panel = train
    _put_tab(window, train, "Retrain")

    panel = SettingsPanel(window.settings, device_description=describe_devices(),
                          stem_cache=window.session.stem_cache)
    window.settings_panel = panel
    _put_tab(window, panel, "Settings")
