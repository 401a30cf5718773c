"""Batch export: the cross-mixes of several matches (or of every match shown) in one go.

The export dialog (without a file name: each file is named as a single export names it,
numbered when a name is taken) chooses the folder, format and length; one progress window
with Cancel follows the whole batch. Each match goes through the single export's code
(:meth:`gui.engine.Session.export_match`), so each file is written completely or not at all.
A match that fails is reported with its reason at the end and the others are written;
Cancel keeps the files already written and writes nothing of the match being rendered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QProgressDialog

from core.progress import Progress
from gui.engine import BatchExport
from gui.export_dialog import ExportChoice, ExportDialog, export_progress_window
from gui.results_model import ResultRow
from gui.workers import Task

if TYPE_CHECKING:
    from gui.search_page import SearchPage


class BatchExporter(QObject):
    finished = Signal(object)  # BatchExport | None (nothing could start, or nothing written)

    def __init__(self, page: SearchPage) -> None:
        super().__init__(page)
        self.page = page
        self.task: Task | None = None
        self.progress_dialog: QProgressDialog | None = None
        self.report_box: QMessageBox | None = None

    def _why_not(self, rows: list[ResultRow]) -> str | None:
        w = self.page
        if w.result is None or not w.results_model.rowCount():
            return "There are no matches to export: drop a song first."
        if not rows:
            return ("No match is selected: select the matches to export (Ctrl+click, "
                    "Shift+click) or use Export all shown matches.")
        if w.result.analysis is None or w.querying:
            return ("The matches can be exported once the query's analysis is done (their "
                    "cross-mixes are aligned to its tempo).")
        if self.task is not None:
            return "A batch export is running already; wait for it or cancel it."
        return None

    def dialog(self, rows: list[ResultRow]) -> ExportDialog | None:
        """Ask where and how to export ``rows`` (the dialog is returned, shown modally)."""
        why = self._why_not(rows)
        if why is not None:
            self.page.show_error(why)
            return None
        r = self.page.result
        assert r is not None
        dlg = ExportDialog(self.page.settings, parent=self.page, batch=len(rows),
                           suggested_name=f"{r.title} x {rows[0].title}")
        dlg.accepted.connect(lambda: self.start(rows, dlg.choice()))
        dlg.open()
        return dlg

    def start(self, rows: list[ResultRow], choice: ExportChoice) -> Task | None:
        """Export ``rows`` into ``choice.path.parent`` as ``choice`` says."""
        w = self.page
        why = self._why_not(rows)
        if why is not None:
            w.show_error(why)
            return None
        r = w.result
        assert r is not None
        n = len(rows)
        task = Task(w.session.export_batch, r, list(rows), folder=choice.path.parent,
                    fmt=choice.format, bitrate=choice.bitrate, full=choice.full,
                    stems=choice.stems, options=w.remix_options(full=choice.full),
                    previews=w.rendered_previews(), name="the batch export")
        dlg = export_progress_window(f"Exporting {n} cross-mixes…", 1000, w)
        dlg.canceled.connect(lambda: self.cancel())
        self.progress_dialog = dlg

        def progress(p: Progress) -> None:
            if p.total:
                dlg.setValue(int(1000 * min(p.done / p.total, 1.0)))
            if p.message and not task.cancelled:
                dlg.setLabelText(f"Exporting {p.message}…")
                w.say(f"Exporting {p.message}")

        task.signals.progress.connect(progress)
        task.signals.finished.connect(self._finished)
        task.signals.failed.connect(self._failed)
        task.signals.cancelled.connect(lambda t=task: self._cancelled(t))
        task.signals.done.connect(self._done)
        self.task = task
        w.runner.start(task)
        return task

    def cancel(self) -> None:
        if self.task is not None and not self.task.cancelled:
            self.task.cancel()
            if self.progress_dialog is not None:
                self.progress_dialog.setLabelText(
                    "Cancelling: the file being encoded is finished, nothing more is "
                    "written…")

    def _done(self) -> None:
        """The batch is over (said before ``finished``, so a new batch can start from it)."""
        self.task = None
        if self.progress_dialog is not None:
            self.progress_dialog.close()

    def _finished(self, report: BatchExport) -> None:
        self._done()
        w = self.page
        for sid, path in report.exported.items():
            w.drag_out.remember_song_export(sid, path)
        written = len(report.written)
        if not report.failed:
            w.show_info(f"Exported {written} cross-mix{'es' if written != 1 else ''} to "
                        f"{report.folder}.")
        else:
            failed = len(report.failed)
            name, reason = report.failed[0]
            w.show_error(f"Exported {written} of {report.total} cross-mixes to {report.folder}; "
                         f"{failed} could not be written. {name}: {reason}"
                         + (" (the others: see the details)" if failed > 1 else ""))
            self._show_details(report)
        self.finished.emit(report)

    def _show_details(self, report: BatchExport) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Batch export",
                          f"{len(report.written)} of {report.total} cross-mixes were written "
                          f"to {report.folder}; {len(report.failed)} could not be.",
                          QMessageBox.StandardButton.Close, self.page)
        box.setInformativeText("The files written are complete; nothing was written for the "
                               "others. The reasons:")
        box.setDetailedText("\n\n".join(f"{name}: {reason}" for name, reason in report.failed))
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.report_box = box

    def _failed(self, msg: str, _exc: Any) -> None:
        self._done()
        self.page.show_error(f"Nothing was exported: {msg}")
        self.finished.emit(None)

    def _cancelled(self, task: Task) -> None:
        self._done()
        report = task.result if isinstance(task.result, BatchExport) else None
        w = self.page
        if report is None or not report.written:
            w.show_info("Batch export cancelled: nothing was written.")
        else:
            for sid, path in report.exported.items():
                w.drag_out.remember_song_export(sid, path)
            w.show_info(f"Batch export cancelled: {len(report.written)} of {report.total} "
                        f"cross-mixes were written to {report.folder} (complete files); the "
                        "others were not.")
        self.finished.emit(report)
