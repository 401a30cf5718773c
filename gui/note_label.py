"""A word-wrapped note of a fixed number of lines that never shows a clipped line."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget

ELLIPSIS = " …"


class NoteLabel(QLabel):
    """A plain-text note ``lines`` lines high (a note appearing never moves what is under it).

    A text too long for them is cut after the last word that fits, with "…", and shown whole
    in the tooltip; it is fitted again when the label is resized. :meth:`text` is always the
    whole text.
    """

    def __init__(self, lines: int = 2, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self._full = ""
        self._lines = lines
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * lines + 4)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._full = text
        self._fit()

    def text(self) -> str:
        return self._full

    def shown_text(self) -> str:
        """What is painted (the whole text, or its start with "…")."""
        return super().text()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fits(self, text: str) -> bool:
        width = max(1, self.contentsRect().width())
        rect = self.fontMetrics().boundingRect(QRect(0, 0, width, 1 << 20), Qt.TextFlag.TextWordWrap, text)
        return rect.height() <= self.fontMetrics().lineSpacing() * self._lines

    def _fit(self) -> None:
        shown = self._full
        if not self._fits(shown):
            words = shown.split(" ")
            lo, hi = 0, len(words) - 1  # the most words that fit with the ellipsis
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._fits(" ".join(words[:mid]) + ELLIPSIS):
                    lo = mid
                else:
                    hi = mid - 1
            shown = " ".join(words[:lo]) + ELLIPSIS
        super().setText(shown)
        self.setToolTip("" if shown == self._full else self._full)
