"""Library tab: the song list (sortable, filtered by words, a song used as the query, shown
in its folder or dragged out), folders with counts, failures with reasons, add / rescan /
remove, and the indexing progress with ETA and Cancel.

Removing a folder asks first and can be undone for :data:`UNDO_SECONDS`; the separated stems
of its songs are deleted when the undo is no longer offered (so an undo does not separate
again). Switching to full mode says what it will cost and starts the indexing in view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.progress import Progress
from gui import desktop
from gui.engine import LibraryOverview, Removal, Session, SongEntry
from gui.library_songs import ENTRY_ROLE, SongsModel, SongsProxy
from gui.settings import Settings
from gui.workers import Task, TaskRunner

#: How long a removal can be undone (its stems are kept that long).
UNDO_SECONDS = 60
#: Rough costs of full mode per song (a 3-minute song on a 2-core CPU), for the warning.
FULL_MODE_SECONDS_PER_SONG = 9.0
FULL_MODE_BYTES_PER_SONG = 50e6


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min left"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s left"
    return f"{s} s left"


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().hide()
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    t.setWordWrap(False)
    return t


class LibraryPanel(QWidget):
    scan_finished = Signal(object)  # ScanReport | None
    overview_updated = Signal(object)  # LibraryOverview | None
    error = Signal(str)
    query_requested = Signal(list)  # [path]: "Use as query" on a song of the list

    def __init__(self, session: Session, settings: Settings, runner: TaskRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings
        self.runner = runner
        self.scan_task: Task | None = None
        self._rescan_pending: str | None = None
        self._closing = False
        self.overview: LibraryOverview | None = None
        self.undo_removal: Removal | None = None
        self.confirm_box: QMessageBox | None = None
        self.undo_timer = QTimer(self)
        self.undo_timer.setSingleShot(True)
        self.undo_timer.timeout.connect(self.expire_undo)

        self.summary = QLabel("Opening the library…")
        self.summary.setWordWrap(True)
        message_row = self._build_message_row()
        self.folders = _table(["Folder", "Files", "Songs"])
        self.folders.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.folders.horizontalHeader().setStretchLastSection(False)
        self.failures = _table(["File", "Stage", "Reason"])
        buttons = self._build_buttons(settings)
        prog = self._build_progress_row()
        self._set_scanning(False)
        split = self._build_splitter()

        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addLayout(message_row)
        lay.addLayout(buttons)
        lay.addLayout(prog)
        lay.addWidget(split, 1)

    def _build_message_row(self) -> QHBoxLayout:
        """A message about the last action (hidden when none), with Undo after a removal."""
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Put the removed folder back (its songs are indexed again, "
                                    "without separating them again)")
        self.undo_button.clicked.connect(self.undo)
        self.undo_button.hide()
        message_row = QHBoxLayout()
        message_row.addWidget(self.message, 1)
        message_row.addWidget(self.undo_button)
        return message_row

    def _build_buttons(self, settings: Settings) -> QHBoxLayout:
        """Add folder, Rescan, Remove and the indexing mode (kept in the settings)."""
        self.add_button = QPushButton("Add folder…")
        self.add_button.clicked.connect(self.choose_folder)
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Index new and changed files; forget deleted ones")
        self.rescan_button.clicked.connect(lambda: self.rescan())
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected folder from the library "
                                      "(the files on disk are not touched)")
        self.remove_button.clicked.connect(self.remove_selected)
        self.mode = QComboBox()
        self.mode.addItem("Fast (mixes only)", "fast")
        self.mode.addItem("Full (also separate vocals)", "full")
        self.mode.setCurrentIndex(max(0, self.mode.findData(settings.get("library/scan_mode"))))
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.folders.itemSelectionChanged.connect(self._update_remove_button)
        settings.changed.connect(self._setting_changed)
        buttons = QHBoxLayout()
        for w in (self.add_button, self.rescan_button, self.remove_button):
            buttons.addWidget(w)
        buttons.addWidget(QLabel("Indexing mode"))
        buttons.addWidget(self.mode)
        buttons.addStretch(1)
        return buttons

    def _build_progress_row(self) -> QHBoxLayout:
        """The scan's progress bar, time left and Cancel."""
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.eta = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_scan)
        prog = QHBoxLayout()
        prog.addWidget(self.bar, 1)
        prog.addWidget(self.eta)
        prog.addWidget(self.cancel_button)
        return prog

    def _build_splitter(self) -> QSplitter:
        """The song list over the folders and the files that could not be indexed."""
        sbox = self._build_song_list()
        fbox = QGroupBox("Folders")
        QVBoxLayout(fbox).addWidget(self.folders)
        xbox = QGroupBox("Files that could not be indexed")
        QVBoxLayout(xbox).addWidget(self.failures)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(sbox)
        split.addWidget(fbox)
        split.addWidget(xbox)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 1)
        return split

    def _build_song_list(self) -> QGroupBox:
        """The library's files in a model/view table (no widget per row: thousands of songs
        stay quick), sortable by any column, filtered by the words typed above it."""
        self.songs_model = SongsModel(self)
        self.songs_proxy = SongsProxy(self)
        self.songs_proxy.setSourceModel(self.songs_model)
        self.songs_view = QTableView()
        self.songs_view.setModel(self.songs_proxy)
        self.songs_view.setSortingEnabled(True)
        self.songs_view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.songs_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.songs_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.songs_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.songs_view.setDragEnabled(True)  # the files themselves, to a file manager
        self.songs_view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.songs_view.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.songs_view.setWordWrap(False)
        self.songs_view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a path's both ends
        self.songs_view.verticalHeader().hide()
        header = self.songs_view.horizontalHeader()
        # Interactive widths (not ResizeToContents, which measures every row of a big list)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((220, 140, 180, 60, 80, 80, 240)):
            self.songs_view.setColumnWidth(col, width)
        self.songs_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.songs_view.customContextMenuRequested.connect(self._songs_menu_requested)
        self.songs_view.doubleClicked.connect(self._song_double_clicked)
        self.song_filter = QLineEdit()
        self.song_filter.setPlaceholderText("Filter: words of the title, artist, file, folder, "
                                            "key or status")
        self.song_filter.setClearButtonEnabled(True)
        self.song_filter.textChanged.connect(self._filter_songs)
        self.songs_count = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.song_filter, 1)
        row.addWidget(self.songs_count)
        box = QGroupBox("Songs")
        box.setToolTip("Double-click a song to search with it; right-click for more; drag "
                       "songs out to copy the files")
        lay = QVBoxLayout(box)
        lay.addLayout(row)
        lay.addWidget(self.songs_view, 1)
        return box

    # --- song list --------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        """Read the catalog again whenever the tab is shown: songs analysed since (by the
        previews of a query) show their tempo and key."""
        super().showEvent(event)
        if self.overview is not None and self.scan_task is None and not self._closing:
            self.refresh()

    def _filter_songs(self, text: str) -> None:
        self.songs_proxy.set_filter_text(text)
        self._update_songs_count()

    def _update_songs_count(self) -> None:
        total, shown = self.songs_model.rowCount(), self.songs_proxy.rowCount()
        words = self.song_filter.text().strip()
        if not total:
            self.songs_count.setText("No songs yet: add a folder")
        elif words and not shown:
            self.songs_count.setText(f"No file matches “{words}” ({total} in all)")
        elif shown < total:
            self.songs_count.setText(f"{shown} of {total} files")
        else:
            self.songs_count.setText(f"{total} files")

    def selected_songs(self) -> list[SongEntry]:
        """The songs selected in the list, in the order shown."""
        rows = sorted({i.row() for i in self.songs_view.selectionModel().selectedRows()})
        out = []
        for r in rows:
            e = self.songs_proxy.data(self.songs_proxy.index(r, 0), ENTRY_ROLE)
            if isinstance(e, SongEntry):
                out.append(e)
        return out

    def songs_menu(self, entries: list[SongEntry]) -> QMenu:
        """The right-click menu of the selected songs."""
        menu = QMenu(self)
        paths = [e.path for e in entries]
        many = len(paths) > 1
        menu.addAction(f"Use as queries ({len(paths)})" if many else "Use as query",
                       lambda: self.use_as_query(paths))
        show = menu.addAction("Show in folder", lambda: self.show_in_folder(paths[0]))
        show.setEnabled(not many)
        menu.addAction("Copy file paths" if many else "Copy file path",
                       lambda: QGuiApplication.clipboard().setText("\n".join(paths)))
        return menu

    def _songs_menu_requested(self, pos: QPoint) -> None:
        idx = self.songs_view.indexAt(pos)
        if not idx.isValid():
            return
        if not self.songs_view.selectionModel().isRowSelected(idx.row(), idx.parent()):
            self.songs_view.selectRow(idx.row())
        entries = self.selected_songs()
        if entries:
            self.songs_menu(entries).popup(self.songs_view.viewport().mapToGlobal(pos))

    def _song_double_clicked(self, idx: QModelIndex) -> None:
        e = self.songs_proxy.data(idx, ENTRY_ROLE)
        if isinstance(e, SongEntry):
            self.use_as_query([e.path])

    def use_as_query(self, paths: list[str]) -> None:
        """Search with these songs, as if they were dropped on the Search tab."""
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            self.show_message(f"{missing[0]}: the file is not there any more (moved, renamed "
                              "or on a disconnected drive?); Rescan to update the list.",
                              "error")
            paths = [p for p in paths if p not in missing]
        if paths:
            self.query_requested.emit(paths)

    def show_in_folder(self, path: str) -> bool:
        why = desktop.show_in_folder(path)
        if why is not None:
            self.show_message(why, "error")
        return why is None

    # --- state ------------------------------------------------------------------------------

    def _set_scanning(self, on: bool) -> None:
        self.cancel_button.setEnabled(on)
        for w in (self.add_button, self.rescan_button, self.remove_button, self.mode):
            w.setEnabled(not on)
        if not on:
            self.eta.setText("")
            self._update_remove_button()

    def _update_remove_button(self) -> None:
        self.remove_button.setEnabled(self.scan_task is None and self.selected_folder() is not None)

    def show_message(self, text: str, kind: str = "info") -> None:
        self.message.setProperty("kind", kind)
        self.message.style().unpolish(self.message)
        self.message.style().polish(self.message)
        self.message.setText(text)
        self.message.setVisible(bool(text))
        if kind == "error" and text:
            self.error.emit(text)

    # --- overview ---------------------------------------------------------------------------

    def refresh(self) -> Task:
        task = Task(self.session.library_overview, name="reading the library")
        task.signals.finished.connect(self._show_overview)
        task.signals.failed.connect(self._overview_failed)
        return self.runner.start(task)

    def _overview_failed(self, msg: str, _exc: object) -> None:
        self.summary.setText("The library could not be read.")
        self.show_message(msg, "error")
        self.overview_updated.emit(None)

    def _show_overview(self, ov: LibraryOverview) -> None:
        self.overview = ov
        st = ov.status
        model = st.model_id[:12] if st.model_id else "none yet"
        text = (f"<b>{st.songs}</b> songs in <b>{st.files}</b> files, "
                f"<b>{st.current}</b> searchable with encoders {model}")
        if st.stale:
            text += f", <b>{st.stale}</b> waiting to be re-embedded"
        if st.full:
            text += f"; {st.full} with separated vocals"
        text += f". {st.failures} failures. Stored in {st.root} ({st.size_bytes / 1e6:.1f} MB)."
        self.summary.setText(text)
        keep = self.selected_folder()
        self.folders.clearSelection()
        self.folders.setCurrentCell(-1, -1)  # never a folder the user did not choose
        self.folders.setRowCount(len(ov.folders))
        for i, (folder, files, songs) in enumerate(ov.folders):
            self.folders.setItem(i, 0, QTableWidgetItem(folder))
            for j, v in ((1, files), (2, songs)):
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.folders.setItem(i, j, item)
            if folder == keep:
                self.folders.selectRow(i)
        self._update_remove_button()
        self.failures.setRowCount(len(ov.failures))
        for i, f in enumerate(ov.failures):
            name = QTableWidgetItem(Path(f.path).name)
            name.setToolTip(f.path)
            self.failures.setItem(i, 0, name)
            self.failures.setItem(i, 1, QTableWidgetItem(f.stage))
            reason = QTableWidgetItem(f.reason)
            reason.setToolTip(f.reason)
            self.failures.setItem(i, 2, reason)
        self.songs_model.set_entries(ov.songs)
        self._update_songs_count()
        self.overview_updated.emit(ov)

    # --- actions ----------------------------------------------------------------------------

    def choose_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Add a folder of songs", str(Path.home()))
        if d:
            self.add_folder(d)

    def add_folder(self, path: str) -> Task:
        """Add ``path`` to the library, then index it."""
        task = Task(self.session.add_folder, path, name=f"adding {path}")
        task.signals.finished.connect(lambda _r: self.rescan())
        task.signals.failed.connect(lambda msg, _e: self.show_message(msg, "error"))
        return self.runner.start(task)

    def add_demo_if_new(self, songs_dir: Path) -> Task | None:
        """First launch with the default library: add the demo songs and index them."""
        if self.settings.get("library/demo_added") or self.settings.get("library/location"):
            return None
        task = Task(self.session.add_demo_if_empty, songs_dir, name="adding the demo songs")
        task.signals.finished.connect(self._demo_added)
        task.signals.failed.connect(lambda msg, _e: self.show_message(msg, "error"))
        return self.runner.start(task)

    def _demo_added(self, added: bool) -> None:
        self.settings.set("library/demo_added", True)
        if added:
            self.show_message("The demo songs were added to your library; they are being "
                              "indexed now.")
            self.rescan()
        else:
            self.refresh()

    def selected_folder(self) -> str | None:
        rows = {i.row() for i in self.folders.selectedIndexes()}
        if len(rows) != 1:
            return None
        item = self.folders.item(rows.pop(), 0)
        return item.text() if item is not None else None

    def _confirm(self, title: str, text: str, yes: str, on_yes: Any,
                 on_no: Any = None) -> QMessageBox:
        """A window-modal question (not a blocking one): ``on_yes`` / ``on_no`` follow."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=self)
        ok = box.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setWindowModality(Qt.WindowModality.WindowModal)

        def done(_result: int) -> None:
            self.confirm_box = None
            if box.clickedButton() is ok:
                on_yes()
            elif on_no is not None:
                on_no()

        box.finished.connect(done)
        self.confirm_box = box
        box.open()
        return box

    def remove_selected(self) -> None:
        """Ask, then remove the selected folder (Undo is offered afterwards)."""
        folder = self.selected_folder()
        if folder is None:
            return
        counts = next(((f, n) for name, f, n in (self.overview.folders if self.overview else [])
                       if name == folder), None)
        what = f"its {counts[0]} files ({counts[1]} songs)" if counts else "its songs"
        self._confirm(
            "Remove a folder",
            f"Remove {folder} from the library?\n\nSearches will no longer find {what}, and "
            "the separated stems kept for them are deleted to free disk space. The files on "
            f"disk are not touched. You can undo this for {UNDO_SECONDS} s.",
            "Remove", lambda: self.remove_folder(folder))

    def remove_folder(self, folder: str) -> Task:
        self.expire_undo()  # one undo at a time: the previous removal's stems go now
        self.remove_button.setEnabled(False)
        task = Task(self.session.remove_path, folder, name=f"removing {folder}")
        task.signals.finished.connect(self._removed)
        task.signals.failed.connect(lambda msg, _e: self.show_message(msg, "error"))
        return self.runner.start(task)

    def _removed(self, r: Removal) -> None:
        stems = (f" Its separated stems ({r.stem_bytes / 1e6:.1f} MB) are deleted in "
                 f"{UNDO_SECONDS} s unless you undo." if r.stems else "")
        self.show_message(f"Removed {r.path}: {r.files} files, {r.songs} songs.{stems}")
        self.undo_removal = r
        self.undo_button.show()
        self.undo_timer.start(UNDO_SECONDS * 1000)
        self.refresh()

    def undo(self) -> Task | None:
        """Put the last removed folder back and index it (its stems were kept)."""
        r = self.undo_removal
        if r is None:
            return None
        self.undo_removal = None
        self.undo_timer.stop()
        self.undo_button.hide()
        self.show_message(f"Putting {r.path} back…")
        return self.add_folder(r.path)

    def expire_undo(self) -> Task | None:
        """The undo is no longer offered: delete the removed songs' stems (in a worker)."""
        r = self.undo_removal
        self.undo_removal = None
        self.undo_timer.stop()
        self.undo_button.hide()
        if r is None or not r.stems:
            return None
        task = Task(self.session.free_stems, r.stems, name="deleting the removed songs' stems")
        task.signals.finished.connect(
            lambda freed: self.show_message(f"Freed {freed / 1e6:.1f} MB of separated stems "
                                            f"of {r.path}.") if freed else None)
        task.signals.failed.connect(lambda msg, _e: self.show_message(msg, "error"))
        return self.runner.start(task)

    def _mode_changed(self, _i: int) -> None:
        mode = str(self.mode.currentData())
        if mode != "full" or self.settings.get("library/scan_mode") == "full":
            self.settings.set("library/scan_mode", mode)
            return
        st = self.overview.status if self.overview is not None else None
        n = max(0, st.songs - st.full) if st is not None else None
        if n == 0:
            self.settings.set("library/scan_mode", "full")
            return
        cost = ("every song" if n is None else
                f"{n} songs: roughly {fmt_eta(n * FULL_MODE_SECONDS_PER_SONG).replace(' left', '')}"
                f" on a 2-core CPU (less with CUDA), and about "
                f"{n * FULL_MODE_BYTES_PER_SONG / 1e9:.1f} GB of stems on disk")
        self._confirm(
            "Full indexing mode",
            "Full mode separates the vocal of every song in the library, so that the vocal "
            f"search spaces work. This means separating {cost}.\n\nIndexing starts now, with "
            "its progress here; Cancel stops it at any time and keeps what is done.",
            "Switch and index", self._full_mode_accepted, self._full_mode_refused)

    def _setting_changed(self, key: str, value: Any) -> None:
        if key == "library/scan_mode" and value != self.mode.currentData():
            self.mode.blockSignals(True)  # changed on the Settings tab: show it here too
            self.mode.setCurrentIndex(max(0, self.mode.findData(value)))
            self.mode.blockSignals(False)

    def _full_mode_accepted(self) -> None:
        self.settings.set("library/scan_mode", "full")
        self.rescan("full")

    def _full_mode_refused(self) -> None:
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(self.mode.findData(self.settings.get("library/scan_mode")))
        self.mode.blockSignals(False)

    def rescan(self, mode: str | None = None) -> Task | None:
        """Index new/changed files (re-embedding with a new checkpoint). While a scan runs,
        another is queued to follow it (e.g. *Use this model* during indexing)."""
        if self.scan_task is not None:
            self._rescan_pending = mode or str(self.mode.currentData())
            return None
        mode = mode or str(self.mode.currentData())
        self._set_scanning(True)
        self.bar.setValue(0)
        self.bar.setFormat("Looking for songs…")
        self.show_message("")
        task = Task(self.session.scan, mode=mode, name="indexing the library")
        task.signals.progress.connect(self._scan_progress)
        task.signals.finished.connect(self._scan_done)
        task.signals.failed.connect(self._scan_failed)
        task.signals.cancelled.connect(self._scan_cancelled)
        task.signals.done.connect(self._scan_task_done)
        self.scan_task = task
        return self.runner.start(task)

    def cancel_scan(self) -> None:
        if self.scan_task is not None:
            self.scan_task.cancel()
            self.cancel_button.setEnabled(False)
            self.bar.setFormat("Cancelling (the song being indexed finishes first)…")

    def _scan_progress(self, p: Progress) -> None:
        if p.stage == "scan" and p.total > 0:
            self.bar.setValue(int(p.fraction * 1000))
            self.bar.setFormat(f"{int(p.done)} / {int(p.total)} songs – {p.message}")
            self.eta.setText(fmt_eta(p.eta_s))
        elif p.stage == "index":
            self.bar.setFormat("Building the search indexes…")
        elif p.message:
            self.bar.setFormat(p.message)

    def _scan_done(self, report: Any) -> None:
        self.bar.setValue(1000)
        self.bar.setFormat("Up to date")
        msg = (f"Indexed {report.indexed} new songs, re-embedded {report.reembedded}, "
               f"{report.unchanged} unchanged, {report.failed} failed, {report.removed} removed "
               f"in {report.elapsed_s:.1f} s.")
        if report.missing_roots:
            msg += " Missing folders: " + ", ".join(report.missing_roots) + "."
        self.show_message(msg, "warning" if report.failed else "info")
        self.scan_finished.emit(report)

    def _scan_failed(self, msg: str, _exc: object) -> None:
        self.bar.setFormat("Indexing stopped")
        self.show_message(f"The library could not be indexed: {msg}", "error")
        self.scan_finished.emit(None)

    def _scan_cancelled(self) -> None:
        self.bar.setFormat("Cancelled – what was indexed is kept; Rescan resumes")
        self.show_message("Indexing cancelled. Songs indexed so far are kept.", "info")
        self.scan_finished.emit(None)

    def _scan_task_done(self) -> None:
        self.scan_task = None
        self._set_scanning(False)
        pending, self._rescan_pending = self._rescan_pending, None
        if pending is not None and not self._closing:
            self.rescan(pending)
        else:
            self.refresh()

    def shutdown(self) -> None:
        self._closing = True
        self._rescan_pending = None
        r, self.undo_removal = self.undo_removal, None
        if r is not None and r.stems:  # no undo once the app closes: free the disk now
            self.session.free_stems(r.stems)
        if self.scan_task is not None:
            self.scan_task.cancel()
