"""The Library tab's song list: one row per file, sortable by value, filtered by words.

A :class:`QAbstractTableModel` over :class:`gui.engine.SongEntry` rows (no widget per row, so
tens of thousands of songs stay quick) and a :class:`QSortFilterProxyModel` that keeps the
rows holding every word typed in the filter box, in any column.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from gui.desktop import files_mime_data
from gui.engine import SongEntry
from gui.results_model import SORT_ROLE, ColumnsTableModel

ENTRY_ROLE = Qt.ItemDataRole.UserRole + 3

_Index = QModelIndex | QPersistentModelIndex

COLUMNS: tuple[tuple[str, str], ...] = (
    ("title", "Title"),
    ("artist", "Artist"),
    ("file_name", "File"),
    ("duration", "Length"),
    ("tempo", "Tempo"),
    ("key", "Key"),
    ("folder", "Folder"),
    ("status", "Status"),
)
_NUMERIC = ("duration", "tempo")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _display(field: str, value: Any) -> str:
    if field == "duration":
        return fmt_duration(value)
    if field == "tempo":
        return "–" if value is None else f"{value:.1f} BPM"
    return str(value) if value else ("–" if field == "key" else "")


class SongsModel(ColumnsTableModel):
    columns = COLUMNS
    _rows: list[SongEntry]

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._haystacks: list[str] = []  # each row's text, case-folded, for the filter
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)

    def set_entries(self, entries: list[SongEntry]) -> None:
        self.beginResetModel()
        self._rows = self._sorted(list(entries))
        self._haystacks = ["\t".join(_display(f, getattr(e, f)) for f, _ in COLUMNS).casefold()
                           for e in self._rows]
        self.endResetModel()

    def _sorted(self, rows: list[SongEntry]) -> list[SongEntry]:
        column, order = self._sort
        if column < 0:
            return rows
        field = COLUMNS[column][0]
        if field in _NUMERIC:  # unknown values (not analysed) first, as the smallest
            def key(e: SongEntry) -> Any:
                v = getattr(e, field)
                return (v is not None, v or 0.0, e.path)
        else:
            def key(e: SongEntry) -> Any:
                return (str(getattr(e, field) or "").casefold(), e.path)
        return sorted(rows, key=key, reverse=order == Qt.SortOrder.DescendingOrder)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort the entries themselves (one Python sort by a key per row: a proxy comparing
        through ``data()`` takes seconds for tens of thousands of rows)."""
        self._sort = (column, order)
        self.layoutAboutToBeChanged.emit()
        old = {id(e): i for i, e in enumerate(self._rows)}
        self._rows = self._sorted(self._rows)
        moved = [old[id(e)] for e in self._rows]  # new row -> old row
        hay = self._haystacks
        self._haystacks = [hay[i] for i in moved]
        new_of_old = {o: n for n, o in enumerate(moved)}
        before = self.persistentIndexList()
        after = [self.index(new_of_old[i.row()], i.column()) for i in before]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    def entry(self, i: int) -> SongEntry:
        return self._rows[i]

    def haystack(self, i: int) -> str:
        return self._haystacks[i]

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self._rows[index.row()]
        field = COLUMNS[index.column()][0]
        value = getattr(e, field)
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(field, value)
        if role == SORT_ROLE:
            if field in _NUMERIC:
                return float("-inf") if value is None else float(value)
            return str(value or "").casefold()
        if role == ENTRY_ROLE:
            return e
        if role == Qt.ItemDataRole.ToolTipRole:
            return e.status if field == "status" else e.path
        if role == Qt.ItemDataRole.TextAlignmentRole and field in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and e.failed:
            from PySide6.QtGui import QColor

            return QColor("#b3261e")
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        f = super().flags(index)
        return f | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else f

    def mimeTypes(self) -> list[str]:  # noqa: N802
        return ["text/uri-list"]

    def mimeData(self, indexes: Any) -> QMimeData:  # noqa: N802
        """The files themselves (dragged to a file manager or a player: a copy of the song)."""
        rows = sorted({i.row() for i in indexes if i.isValid()})
        return files_mime_data(self._rows[r].path for r in rows)


class SongsProxy(QSortFilterProxyModel):
    """Keeps the rows holding every filter word; sorting is the source model's own (by
    value: numbers as numbers), in the order it keeps its rows."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._words: list[str] = []

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        model = self.sourceModel()
        if model is not None:
            model.sort(column, order)

    def set_filter_text(self, text: str) -> None:
        words = text.casefold().split()
        if words == self._words:
            return
        if hasattr(self, "beginFilterChange"):  # Qt 6.9+ (invalidateFilter is deprecated)
            self.beginFilterChange()
            self._words = words
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._words = words
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        if not self._words:
            return True
        model = self.sourceModel()
        assert isinstance(model, SongsModel)
        hay = model.haystack(source_row)
        return all(w in hay for w in self._words)
