"""Dragging matches out of the window: a file manager (or a DAW) gets real audio files.

A drag carries ``file://`` URLs of files that exist when the drag starts. A match the user
exported already carries its exported file; any other match is written first, with the same
export code as *Export* (format, bitrate and length as last chosen in the export dialog),
into a folder of the user's cache (``<cache>/drag``), named as an export would be. Writing
runs in a worker: a match whose cross-mix is already rendered is only encoded (well under a
second), one that is not is rendered first. The drag starts as soon as the files are there
if the mouse button is still held; otherwise the window says they are ready and the next
drag of those rows starts at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QDrag, QGuiApplication
from PySide6.QtWidgets import QAbstractItemView, QTableView, QWidget

from gui.desktop import files_mime_data
from gui.results_model import ROW_ROLE, ResultRow
from gui.workers import Task

if TYPE_CHECKING:
    from PySide6.QtCore import QMimeData

    from gui.search_page import SearchPage

log = logging.getLogger(__name__)

#: Prepared drag files older than this are deleted when the window opens.
DRAG_FILES_MAX_AGE_S = 24 * 3600


def drag_folder() -> Path:
    from core.paths import cache_dir

    return cache_dir() / "drag"


class ResultsTable(QTableView):
    """The results table; a drag of its selected rows asks :class:`DragOut` for the files."""

    drag_started = Signal(list)  # [ResultRow]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)

    def selected_result_rows(self) -> list[ResultRow]:
        """The selected matches, in the order shown."""
        model = self.model()
        out = []
        for r in sorted({i.row() for i in self.selectionModel().selectedRows()}):
            row = model.data(model.index(r, 0), ROW_ROLE)
            if isinstance(row, ResultRow):
                out.append(row)
        return out

    def startDrag(self, _actions: Qt.DropAction) -> None:  # noqa: N802
        rows = self.selected_result_rows()
        if rows:
            self.drag_started.emit(rows)


class DragOut(QObject):
    """Prepares the files a drag of matches carries, and starts the drag."""

    prepared = Signal(object)  # list[Path] | None (failed or cancelled)

    def __init__(self, page: SearchPage) -> None:
        super().__init__(page)
        self.page = page
        self.task: Task | None = None
        #: files exported by the user, by (query audio, song id): a drag carries those
        self.exported: dict[tuple[str, int], Path] = {}
        self._prune()

    # --- which file a match drags as ---------------------------------------------------------

    def _query_key(self) -> str:
        r = self.page.result
        assert r is not None
        return str(r.audio_key or r.path)

    def export_settings(self) -> tuple[str, str, bool]:
        """Format, bitrate and length (full song or not) of the last export."""
        s = self.page.settings
        return str(s.get("export/format")), str(s.get("export/bitrate")), bool(s.get("export/full"))

    def remember_song_export(self, song_id: int | None, path: Path) -> None:
        """The user exported the current query's cross-mix with song ``song_id`` to ``path``:
        a drag of that match carries this file from now on."""
        if self.page.result is not None and song_id is not None:
            self.exported[(self._query_key(), int(song_id))] = Path(path)

    def file_for(self, row: ResultRow) -> Path:
        """Where ``row``'s cross-mix is, or will be, for a drag (it may not exist yet)."""
        from core.audio.export import export_file_name

        r = self.page.result
        assert r is not None
        sid = getattr(row.match, "song_id", None)
        done = self.exported.get((self._query_key(), int(sid))) if sid is not None else None
        if done is not None and done.is_file():
            return done
        fmt, bitrate, full = self.export_settings()
        opts = self.page.remix_options(full=full)
        key = repr((self._query_key(), sid, row.path, dataclasses.astuple(opts), fmt,
                    bitrate if fmt in ("mp3", "ogg") else "", full))
        sub = hashlib.sha256(key.encode()).hexdigest()[:16]
        return drag_folder() / sub / export_file_name(f"{r.title} x {row.title}", fmt)

    def mime_data(self, rows: list[ResultRow]) -> QMimeData | None:
        """What a drag of ``rows`` carries: their files' URLs, once every file exists."""
        if self.page.result is None:
            return None
        files = [self.file_for(row) for row in rows]
        return files_mime_data(files) if all(f.is_file() for f in files) else None

    # --- preparing and dragging --------------------------------------------------------------

    def start(self, rows: list[ResultRow]) -> None:
        """A drag of ``rows`` begins: drag now when the files exist, else write them first."""
        mime = self.mime_data(rows)
        if mime is not None:
            self.exec_drag(mime)
            return
        self.prepare(rows, drag_when_ready=True)

    def prepare(self, rows: list[ResultRow], *, drag_when_ready: bool = False) -> Task | None:
        """Write the files of ``rows`` that do not exist yet (in a worker)."""
        w = self.page
        r = w.result
        if not rows:
            return None
        if r is None or r.analysis is None or w.querying:
            w.show_info("The matches can be dragged out once the query and its analysis are "
                        "done (their cross-mixes are aligned to its tempo).")
            self.prepared.emit(None)
            return None
        if self.task is not None:
            w.say("Still preparing the previous drag…", 5000)
            return None
        fmt, bitrate, full = self.export_settings()
        todo = [(row, self.file_for(row)) for row in rows]
        todo = [(row, f) for row, f in todo if not f.is_file()]
        previews = w.rendered_previews()
        options = w.remix_options(full=full)
        session = w.session

        def write(*, progress: Any = None, cancel: Any = None) -> list[Path]:
            for row, path in todo:
                sid = getattr(row.match, "song_id", None)
                session.export(r, row, path=path, fmt=fmt, bitrate=bitrate, full=full,
                               options=options, overwrite=True,
                               preview=previews.get(sid) if sid is not None else None,
                               progress=progress, cancel=cancel)
            return [path for _, path in todo]

        names = ", ".join(row.title for row, _ in todo)
        w.say(f"Preparing {names} for the drag…")
        task = Task(write, name="preparing the files to drag")
        task.signals.finished.connect(lambda _p: self._ready(rows, drag_when_ready))
        task.signals.failed.connect(self._failed)
        task.signals.cancelled.connect(self._cancelled)
        task.signals.done.connect(self._done)
        self.task = task
        w.runner.start(task)
        return task

    def _done(self) -> None:
        self.task = None

    def _cancelled(self) -> None:
        self._done()
        self.prepared.emit(None)

    def _ready(self, rows: list[ResultRow], drag_when_ready: bool) -> None:
        self._done()  # before anything else: a drag may start from here
        mime = self.mime_data(rows)
        files = [Path(u.toLocalFile()) for u in mime.urls()] if mime is not None else None
        self.prepared.emit(files)
        if mime is None:  # another query came meanwhile
            return
        held = bool(QGuiApplication.mouseButtons() & Qt.MouseButton.LeftButton)
        if drag_when_ready and held:
            self.exec_drag(mime)
        else:
            what = rows[0].title if len(rows) == 1 else f"{len(rows)} matches"
            self.page.say(
                f"Ready to drag: {what} (drag the row again to drop the file).", 15000)

    def _failed(self, msg: str, _exc: object) -> None:
        self._done()
        self.page.show_error(f"The file to drag could not be written: {msg}")
        self.prepared.emit(None)

    def exec_drag(self, mime: QMimeData) -> Qt.DropAction:
        drag = QDrag(self.page.table)
        drag.setMimeData(mime)
        n = len(mime.urls())
        self.page.say(
            f"Dragging {n} file{'s' if n > 1 else ''}: drop on a folder or an app.", 5000)
        return drag.exec(Qt.DropAction.CopyAction, Qt.DropAction.CopyAction)

    def _prune(self) -> None:
        """Delete drag files from earlier sessions (a day old): the drops copied them."""
        root = drag_folder()
        if not root.is_dir():
            return
        now = time.time()
        for d in root.iterdir():
            try:
                if now - d.stat().st_mtime > DRAG_FILES_MAX_AGE_S:
                    shutil.rmtree(d) if d.is_dir() else d.unlink()
            except OSError as exc:
                log.info("could not delete the old drag file %s: %s", d, exc)
