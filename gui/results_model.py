"""The results table: one row per library match, sortable on every column by its value."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from core.api import MatchRow

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2

_Index = QModelIndex | QPersistentModelIndex


#: One row of the table: the engine's ranked match (its compatibility once analysed).
ResultRow = MatchRow


COLUMNS: tuple[tuple[str, str], ...] = (
    ("rank", "#"),
    ("title", "Title"),
    ("artist", "Artist"),
    ("similarity", "Similarity"),
    ("tempo", "Tempo"),
    ("key", "Key"),
    ("stretch_percent", "Stretch %"),
    ("semitone_shift", "Shift"),
    ("mashability", "Mashability"),
)


def _display(field: str, value: Any) -> str:
    if value is None:
        return "–"
    if field == "similarity":
        return f"{value:.3f}"
    if field == "tempo":
        return f"{value:.1f} BPM"
    if field == "stretch_percent":
        return f"{value:+.1f} %"
    if field == "semitone_shift":
        return f"{int(value):+d} st" if value else "0"
    if field == "mashability":
        return f"{value:.2f}"
    return str(value)


class ColumnsTableModel(QAbstractTableModel):
    """A table of ``self._rows`` under fixed ``columns`` (``(key, header)`` pairs): the row
    and column counts and the headers; subclasses give the cells."""

    columns: tuple[tuple[str, str], ...] = ()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[Any] = []

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008,N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008,N802
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section][1]
        return None


class ResultsModel(ColumnsTableModel):
    columns = COLUMNS
    _rows: list[ResultRow]

    def set_rows(self, rows: list[ResultRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def update_rows(self, rows: list[ResultRow]) -> None:
        """New values for the same matches (e.g. compatibility filled in): keeps the selection."""
        if [r.rank for r in rows] != [r.rank for r in self._rows]:
            self.set_rows(rows)
            return
        self._rows = list(rows)
        if rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(COLUMNS) - 1))

    def clear(self) -> None:
        self.set_rows([])

    def row(self, i: int) -> ResultRow:
        return self._rows[i]

    @property
    def rows(self) -> list[ResultRow]:
        return list(self._rows)

    def flags(self, index: _Index) -> Qt.ItemFlag:
        f = super().flags(index)  # a match can be dragged out (gui.drag_out)
        return f | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else f

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self._rows[index.row()]
        field = COLUMNS[index.column()][0]
        value = getattr(r, field)
        if role == Qt.ItemDataRole.DisplayRole:
            if field == "semitone_shift" and r.shift_out_of_range:
                return f"{r.shift_needed:+d} st > ±{r.shift_limit}"
            return _display(field, value)
        if role == SORT_ROLE:
            if value is None:
                return float("-inf")
            return value.lower() if isinstance(value, str) else float(value)
        if role == ROW_ROLE:
            return r
        if role == Qt.ItemDataRole.TextAlignmentRole and field not in ("title", "artist", "key"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if field == "semitone_shift" and r.shift_out_of_range:
                return (f"The keys need a {r.shift_needed:+d} semitone shift, beyond the "
                        f"{r.shift_limit}-semitone limit (Settings: largest key shift); "
                        "the accompaniment is not shifted.")
            return r.path
        return None


class ResultsProxy(QSortFilterProxyModel):
    """Sorts by each column's value (numbers as numbers), not its text."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
