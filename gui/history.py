"""The Search tab's history: the last queries (songs and takes), newest first.

Double-click (or Open) runs a query again: the window shows it at once when its results are
still in memory (the last few), else queries the file again, whose separation then comes from
the stem cache. A file that was moved or deleted is shown as missing and says so when opened;
*Forget missing* clears those entries.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QPalette
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.errors import CrossmixError
from core.library.history import History, HistoryEntry

ENTRY_ROLE = Qt.ItemDataRole.UserRole + 2


def _when(iso: str) -> str:
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return ""
    return t.strftime("%H:%M") if t.date() == dt.date.today() else t.strftime("%d %b")


class HistoryPanel(QGroupBox):
    reopen_requested = Signal(object)  # HistoryEntry
    message = Signal(str, str)  # text, kind

    def __init__(self, history: History | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Recent queries", parent)
        self.history = history if history is not None else History()
        self.list = QListWidget()
        self.list.setToolTip("Your last queries: double-click to see their results again")
        self.list.itemDoubleClicked.connect(lambda item: self.reopen(item.data(ENTRY_ROLE)))
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self._open_clicked)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_clicked)
        self.forget_missing_button = QPushButton("Forget missing")
        self.forget_missing_button.setToolTip("Remove the entries whose file was moved or deleted")
        self.forget_missing_button.clicked.connect(self.forget_missing)
        buttons = QHBoxLayout()
        for b in (self.open_button, self.remove_button, self.forget_missing_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        grey = self.palette().brush(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        for e in self.history.entries:
            # "●" as on the Record button: an emoji would need a colour-emoji font many desktops lack.
            kind = "● " if e.kind == "take" else ""
            found = f" · {e.matches} match{'es' if e.matches != 1 else ''}" if e.matches else ""
            missing = "" if e.exists else " · missing"
            item = QListWidgetItem(f"{kind}{e.title} · {_when(e.when)}{found}{missing}")
            item.setData(ENTRY_ROLE, e)
            tip = e.path + (f"\nBest match: {e.best}" if e.best else "")
            if not e.exists:
                tip += "\nThe file is not there any more (moved, renamed or deleted)."
                item.setForeground(QBrush(grey))
            item.setToolTip(tip)
            self.list.addItem(item)
        self._update_buttons()

    def entries(self) -> list[HistoryEntry]:
        return list(self.history.entries)

    def item_text(self, i: int) -> str:
        return self.list.item(i).text()

    def selected(self) -> HistoryEntry | None:
        item = self.list.currentItem()
        return item.data(ENTRY_ROLE) if item is not None and item.isSelected() else None

    def _update_buttons(self) -> None:
        sel = self.selected() is not None
        self.open_button.setEnabled(sel)
        self.remove_button.setEnabled(sel)
        self.forget_missing_button.setEnabled(any(not e.exists for e in self.history.entries))

    def _save(self, fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except CrossmixError as exc:
            self.message.emit(str(exc), "warning")

    def record(self, entry: HistoryEntry) -> None:
        """A query finished: it goes first."""
        self._save(self.history.add, entry)
        self.refresh()

    def rename_path(self, old: str, new: str, title: str | None = None) -> None:
        self._save(lambda: self.history.rename_path(old, new, title=title))
        self.refresh()

    def reopen(self, entry: HistoryEntry | None) -> None:
        if entry is not None:
            self.reopen_requested.emit(entry)

    def _open_clicked(self) -> None:
        self.reopen(self.selected())

    def remove(self, entry: HistoryEntry) -> None:
        self._save(self.history.remove, entry)
        self.refresh()

    def _remove_clicked(self) -> None:
        e = self.selected()
        if e is not None:
            self.remove(e)

    def forget_missing(self) -> int:
        n = 0

        def run() -> None:
            nonlocal n
            n = self.history.remove_missing()

        self._save(run)
        self.refresh()
        return n
