"""Library tab: folders with counts, failures with reasons, add / rescan / remove, and the
indexing progress with ETA and Cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.progress import Progress
from gui.engine import LibraryOverview, Session
from gui.settings import Settings
from gui.workers import Task, TaskRunner


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

        self.summary = QLabel("Opening the library…")
        self.summary.setWordWrap(True)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.hide()

        self.folders = _table(["Folder", "Files", "Songs"])
        self.folders.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.folders.horizontalHeader().setStretchLastSection(False)
        self.failures = _table(["File", "Stage", "Reason"])

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
        self.mode.currentIndexChanged.connect(
            lambda _i: settings.set("library/scan_mode", self.mode.currentData()))
        buttons = QHBoxLayout()
        for w in (self.add_button, self.rescan_button, self.remove_button):
            buttons.addWidget(w)
        buttons.addWidget(QLabel("Indexing mode"))
        buttons.addWidget(self.mode)
        buttons.addStretch(1)

        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.eta = QLabel("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_scan)
        prog = QHBoxLayout()
        prog.addWidget(self.bar, 1)
        prog.addWidget(self.eta)
        prog.addWidget(self.cancel_button)
        self._set_scanning(False)

        fbox = QGroupBox("Folders")
        QVBoxLayout(fbox).addWidget(self.folders)
        xbox = QGroupBox("Files that could not be indexed")
        QVBoxLayout(xbox).addWidget(self.failures)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(fbox)
        split.addWidget(xbox)

        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.message)
        lay.addLayout(buttons)
        lay.addLayout(prog)
        lay.addWidget(split, 1)

    # --- state ------------------------------------------------------------------------------

    def _set_scanning(self, on: bool) -> None:
        self.cancel_button.setEnabled(on)
        for w in (self.add_button, self.rescan_button, self.remove_button, self.mode):
            w.setEnabled(not on)
        if not on:
            self.eta.setText("")

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
        self.folders.setRowCount(len(ov.folders))
        for i, (folder, files, songs) in enumerate(ov.folders):
            self.folders.setItem(i, 0, QTableWidgetItem(folder))
            for j, v in ((1, files), (2, songs)):
                item = QTableWidgetItem(str(v))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.folders.setItem(i, j, item)
        self.failures.setRowCount(len(ov.failures))
        for i, f in enumerate(ov.failures):
            name = QTableWidgetItem(Path(f.path).name)
            name.setToolTip(f.path)
            self.failures.setItem(i, 0, name)
            self.failures.setItem(i, 1, QTableWidgetItem(f.stage))
            reason = QTableWidgetItem(f.reason)
            reason.setToolTip(f.reason)
            self.failures.setItem(i, 2, reason)
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
        row = self.folders.currentRow()
        item = self.folders.item(row, 0) if row >= 0 else None
        return item.text() if item is not None else None

    def remove_selected(self) -> None:
        folder = self.selected_folder()
        if folder is not None:
            self.remove_folder(folder)

    def remove_folder(self, folder: str) -> Task:
        task = Task(self.session.remove_path, folder, name=f"removing {folder}")
        task.signals.finished.connect(lambda r: self._removed(folder, r))
        task.signals.failed.connect(lambda msg, _e: self.show_message(msg, "error"))
        return self.runner.start(task)

    def _removed(self, folder: str, counts: tuple[int, int]) -> None:
        self.show_message(f"Removed {folder}: {counts[0]} files, {counts[1]} songs.")
        self.refresh()

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
        if self.scan_task is not None:
            self.scan_task.cancel()
