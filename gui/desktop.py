"""Handing files to the desktop: a file's folder in the file manager, files dragged out."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QDesktopServices


def show_in_folder(path: str | Path) -> str | None:
    """Open the file manager on the folder holding ``path``; why not, or ``None`` when done."""
    folder = Path(path).parent
    if not folder.is_dir():
        return (f"{folder}: the folder is not there any more (moved or on a disconnected "
                "drive?).")
    if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
        return f"{folder}: no file manager could be opened here."
    return None


def files_mime_data(paths: Iterable[str | Path]) -> QMimeData:
    """What a drag of ``paths`` carries: their ``file://`` URLs (``text/uri-list``), which file
    managers, players and DAWs take as the files themselves."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(Path(p).resolve())) for p in paths])
    return mime
