"""Load the application style sheet from ``resources/style.qss``."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QApplication

from core.paths import resources_dir

log = logging.getLogger(__name__)


def apply_style(app: QApplication) -> None:
    """Apply Fusion plus ``resources/style.qss`` (a missing sheet only loses the colours)."""
    app.setStyle("Fusion")
    path = resources_dir() / "style.qss"
    try:
        app.setStyleSheet(path.read_text(encoding="utf-8"))
    except OSError as exc:
        log.warning("style sheet %s not loaded: %s", path, exc)
