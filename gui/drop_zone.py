"""The drop zone: accepts song files and folders dragged from a file manager (several at once
queue; a folder queues its songs)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget


def local_files(mime: QMimeData) -> list[str]:
    """Local file and folder paths carried by a drag, in order."""
    if not mime.hasUrls():
        return []
    out = []
    for url in mime.urls():
        if url.isLocalFile():
            p = url.toLocalFile()
            if p:
                out.append(str(Path(p)))
    return out


class DropZone(QFrame):
    """Emits ``files_dropped(paths)`` when local files or folders are dropped on it."""

    files_dropped = Signal(list)

    IDLE_TEXT = "Drop a song here to find accompaniments for its voice\n" \
                "(or File ▸ Open…, Ctrl+O; several songs, or a folder of songs, queue)"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DropZone")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumHeight(64)
        self.label = QLabel(self.IDLE_TEXT, self)
        self.label.setObjectName("drop_text")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(4, 4, 4, 4)
        self._lay.addWidget(self.label)
        self._set_hover(False)

    def set_body(self, body: QWidget) -> None:
        """Show ``body`` in the box where its text was (the Search page's messages, which show
        the text again when they have nothing to say): drops on it still land here, as its
        widgets accept none of their own."""
        self._lay.addWidget(body)

    def _set_hover(self, on: bool) -> None:
        self.setProperty("hover", on)
        self.style().unpolish(self)
        self.style().polish(self)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if local_files(event.mimeData()):
            event.acceptProposedAction()
            self._set_hover(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        if local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
        self._set_hover(False)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self._set_hover(False)
        files = local_files(event.mimeData())
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(files)
