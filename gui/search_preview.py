"""The preview half of the Search page: the selected match's cross-mix, its playback, export.

:class:`SearchPreview` is the base class of :class:`gui.search_page.SearchPage` (which builds
the widgets and sets the state declared here in its constructor): it renders the selected
match's cross-mix (and the top matches ahead, in the background), applies a remove / keep
choice (:mod:`gui.source_choice`), drives the player (sources, gains, offsets, A-B loop,
seeking) and exports the cross-mix shown.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QTimer, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from core.progress import Progress
from gui.engine import PreviewResult, QueryResult, Session
from gui.export_dialog import ExportChoice, ExportDialog, export_progress_window
from gui.playback import Player
from gui.results_model import ROW_ROLE, ResultRow
from gui.settings import Settings
from gui.workers import Task, TaskRunner

if TYPE_CHECKING:
    from gui.batch_export import BatchExporter
    from gui.drag_out import DragOut, ResultsTable
    from gui.preview_panel import PreviewPanel
    from gui.results_model import ResultsProxy

log = logging.getLogger(__name__)


class SearchPreview(QWidget):
    # Set by SearchPage.__init__ (and gui.search_widgets.build_search_widgets).
    settings: Settings
    session: Session
    runner: TaskRunner
    player: Player
    _show_error: Callable[[str], None]
    _show_info: Callable[[str], None]
    _status: Callable[[str, int], None]
    batch_export: BatchExporter
    drag_out: DragOut
    preview_panel: PreviewPanel
    results_proxy: ResultsProxy
    table: ResultsTable
    result: QueryResult | None
    preview: PreviewResult | None
    query_task: Task | None
    analysis_task: Task | None
    preview_task: Task | None
    ahead_task: Task | None
    #: rendered previews of self.result by song id, for the options in _previews_options
    _previews: OrderedDict[int, PreviewResult]
    _previews_options: Any
    _ahead_failed: set[int]
    _loop_song: int | None
    #: remove / keep choices by (query path, song id), and the one a Cancel restores
    _source_choices: dict[tuple[Path, int | None], Any]
    _choice_undo: tuple[tuple[Path, int | None], Any] | None
    export_progress: QProgressDialog | None
    _closing: bool

    preview_finished = Signal(object)  # PreviewResult | None
    export_finished = Signal(object)  # Path | None
    export_ready = Signal(bool)  # a cross-mix is shown and can be exported (File ▸ Export)

    #: Top matches rendered ahead in the background, so a click on one shows it at once.
    RENDER_AHEAD = 4
    #: Rendered previews kept (each holds its match's stems: tens of MB per minute of song).
    PREVIEWS_KEPT = 6

    # --- messages ---------------------------------------------------------------------------

    def show_error(self, text: str) -> None:
        self._show_error(text)

    def show_info(self, text: str) -> None:
        self._show_info(text)

    def say(self, text: str, ms: int = 0) -> None:
        """``text`` in the window's status bar for ``ms`` milliseconds (0: until replaced)."""
        self._status(text, ms)

    @property
    def querying(self) -> bool:
        """A query or its follow-up analysis is running (the next queued song waits)."""
        return self.query_task is not None or self.analysis_task is not None

    # --- preview ----------------------------------------------------------------------------

    def selected_row(self) -> ResultRow | None:
        idx = self.table.selectionModel().currentIndex()
        if not idx.isValid():
            return None
        row = self.results_proxy.data(idx, ROW_ROLE)
        return row if isinstance(row, ResultRow) else None

    def remix_options(self, *, full: bool = False) -> Any:
        from core.remix.render import RemixOptions

        v, a = self.preview_panel.gains_db()
        return RemixOptions(
            preview=not full,
            preview_seconds=float(self.settings.get("remix/preview_seconds")),
            key_match=self.preview_panel.key_match.isChecked(),
            max_shift=int(self.settings.get("remix/max_shift")),
            vocal_gain_db=v, accompaniment_gain_db=a,
            bar_offset_beats=self.preview_panel.phase.offsets()[0],
            offset_ms=self.preview_panel.phase.offsets()[1])

    def _row_selected(self, current: QModelIndex, _prev: QModelIndex) -> None:
        if current.isValid():
            self.render_preview()

    def render_preview(self) -> None:
        row = self.selected_row()
        r = self.result
        if row is None or r is None or self._closing:
            return
        if self.preview_task is not None:
            self.preview_task.cancel()
        self.player.stop()
        self.preview = None
        self.preview_panel.set_ready(False)
        self.export_ready.emit(False)
        self.preview_panel.heading.setText(f"{row.title} — {row.artist}" if row.artist else row.title)
        if r.analysis is None:  # rendered once the query's tempo is known (_analysis_done)
            self.preview_task = None
            self.preview_panel.show_message("waiting for the tempo analysis…")
            return
        opts = self._render_options()
        if opts != self._previews_options:
            self._forget_previews(keep_task=False)
            self._previews_options = opts
        sid = self._song_id(row)
        cached = self._previews.get(sid) if sid is not None else None
        if cached is not None and cached.choice != self._source_choice(row):
            cached = None  # rendered before another remove / keep choice
        if cached is not None:  # rendered ahead (or earlier): shown at once
            self._previews.move_to_end(sid)  # type: ignore[arg-type]
            self.preview_task = None
            self._show_preview(dataclasses.replace(cached, row=row))
            self.preview_finished.emit(self.preview)
            QTimer.singleShot(0, self._render_ahead)
            return
        self.preview_panel.show_message("rendering…")
        self.preview_panel.report.setText("")
        ahead = self.ahead_task
        if ahead is not None and getattr(ahead, "song_id", None) == sid:
            self.ahead_task = None  # already rendering in the background: it becomes the preview
            self.preview_task = ahead
            return
        if ahead is not None:  # the click comes first; the rendering ahead resumes after it
            ahead.cancel()
            self.ahead_task = None
        self.preview_task = self._start_render(r, row, opts)

    def _render_options(self) -> Any:
        # Gains and offsets act live in the player; the render has none, so moving them never
        # re-renders (an export renders them).
        return dataclasses.replace(self.remix_options(), vocal_gain_db=0.0,
                                   accompaniment_gain_db=0.0, bar_offset_beats=0, offset_ms=0.0)

    @staticmethod
    def _song_id(row: ResultRow) -> int | None:
        sid = getattr(row.match, "song_id", None)
        return int(sid) if sid is not None else None

    def _start_render(self, r: QueryResult, row: ResultRow, opts: Any) -> Task:
        task = Task(self.session.preview, r, row, options=opts, choice=self._source_choice(row),
                    name=f"the preview of {row.title}")
        task.song_id = self._song_id(row)  # type: ignore[attr-defined]
        task.for_result = r  # type: ignore[attr-defined]
        task.signals.progress.connect(lambda p, t=task: self._preview_progress(t, p))
        task.signals.finished.connect(lambda res, t=task: self._preview_done(t, res))
        task.signals.failed.connect(lambda msg, _e, t=task: self._preview_failed(t, msg))
        task.signals.cancelled.connect(lambda t=task: self._preview_gone(t))
        self.runner.start(task)
        return task

    def _preview_progress(self, task: Task, p: Progress) -> None:
        if task is self.preview_task and p.message:
            self.preview_panel.show_message(f"rendering… ({p.message})")
            if self._source_choice(None) is not None:
                self.preview_panel.choice_bar.set_progress(p.fraction, p.message)

    # --- remove / keep a sound like this one (gui/source_choice.py) ----------------------------

    def _source_choice(self, row: ResultRow | None) -> Any:
        """The remove / keep choice made for ``row`` (the selected row when ``None``)."""
        row = row if row is not None else self.selected_row()
        if row is None or self.result is None:
            return None
        return self._source_choices.get((self.result.path, self._song_id(row)))

    def _source_choice_made(self, choice: Any) -> None:
        """Kept with the match until another choice (``None``: Undo) is made."""
        row = self.selected_row()
        if row is None or self.result is None or self.preview_task is not None:
            return
        key = (self.result.path, self._song_id(row))
        self._choice_undo = (key, self._source_choices.get(key))
        if choice is None:
            self._source_choices.pop(key, None)
        else:
            self._source_choices[key] = choice
        self.render_preview()
        self.preview_panel.choice_bar.set_busy(self.preview_task is not None)

    def _source_choice_cancelled(self) -> None:
        """Stop applying a choice: the previous one comes back (re-rendered unless kept)."""
        if self.preview_task is not None:
            self.preview_task.cancel()
            self.preview_task = None
        self.preview_panel.choice_bar.set_busy(False)
        if self._choice_undo is not None:
            key, previous = self._choice_undo
            self._choice_undo = None
            if previous is None:
                self._source_choices.pop(key, None)
            else:
                self._source_choices[key] = previous
        self.render_preview()

    def _forget_previews(self, *, keep_task: bool = False) -> None:
        """Drop the rendered previews (another query, search or options)."""
        self._previews.clear()
        self._ahead_failed.clear()
        self._previews_options = None
        if not keep_task and self.ahead_task is not None:
            self.ahead_task.cancel()
            self.ahead_task = None

    def _keep_preview(self, task: Task, p: PreviewResult) -> None:
        sid = getattr(task, "song_id", None)
        if (sid is None or getattr(task, "for_result", None) is not self.result
                or p.options != self._previews_options):
            return
        self._previews[sid] = p
        self._previews.move_to_end(sid)
        shown = self._song_id(self.preview.row) if self.preview is not None else None
        while len(self._previews) > self.PREVIEWS_KEPT:
            old = next(k for k in self._previews if k != shown)
            del self._previews[old]

    def _render_ahead(self) -> None:
        """Render the next of the top matches in the background, one at a time, after the
        selected row's preview (never beside it: that one is what the user waits for)."""
        r = self.result
        if (self._closing or r is None or r.analysis is None or self.preview_task is not None
                or self.ahead_task is not None or self.querying
                or self._previews_options is None):
            return
        for row in sorted(r.rows, key=lambda x: x.rank)[: self.RENDER_AHEAD]:
            sid = self._song_id(row)
            if sid is None or sid in self._previews or sid in self._ahead_failed:
                continue
            self.ahead_task = self._start_render(r, row, self._previews_options)
            return

    def _preview_done(self, task: Task, p: PreviewResult) -> None:
        self._keep_preview(task, p)
        if task is self.ahead_task:
            self.ahead_task = None
            QTimer.singleShot(0, self._render_ahead)
            return
        if task is not self.preview_task:
            return
        self.preview_task = None
        self._show_preview(p)
        self.preview_finished.emit(p)
        QTimer.singleShot(0, self._render_ahead)

    def _show_preview(self, p: PreviewResult) -> None:
        if self._song_id(p.row) != self._loop_song:  # A and B belong to one match
            self.preview_panel.reset_loop()
            self._loop_song = self._song_id(p.row)
        self.preview = p
        row = p.row
        self.preview_panel.choice_bar.set_busy(False)
        self.preview_panel.choice_bar.set_choice(p.choice, p.envs.get("before"))
        self.preview_panel.heading.setText(f"{row.title} — {row.artist}" if row.artist
                                           else row.title)
        self.player.clear_sources()
        v, a = self.preview_panel.gains_db()
        for key, layers in p.layers.items():
            gains = [10 ** (v / 20), 10 ** (a / 20)] if key == "crossmix" else None
            self.player.set_source(key, layers, p.sr[key], gains)
        self.player.select(self.preview_panel.current_source())
        self._offsets_changed(*self.preview_panel.phase.offsets())
        self.preview_panel.set_waves(p.envs)
        rep = p.crossmix.report
        shift = rep.key_advice(applied=int(p.crossmix.semitones_applied),
                               remedy="raise the largest key shift in Settings to allow it")
        self.preview_panel.report.setText(
            f"Accompaniment stretched {rep.stretch_percent:+.1f} % "
            f"({rep.match_tempo:.1f} → {rep.query_tempo:.1f} BPM), {shift}; "
            f"mashability {rep.mashability:.2f}.")
        self._update_playback_reason()
        self._position_changed(0.0)
        self.export_ready.emit(True)

    def _preview_failed(self, task: Task, msg: str) -> None:
        if task is self.ahead_task:  # said when the user clicks that match, not before
            self.ahead_task = None
            sid = getattr(task, "song_id", None)
            if sid is not None:
                self._ahead_failed.add(sid)
            log.info("rendering ahead: %s", msg)
            QTimer.singleShot(0, self._render_ahead)
            return
        if task is not self.preview_task:
            return
        self.preview_task = None
        self.preview_panel.show_message("")
        self.preview_panel.choice_bar.set_busy(False)
        self.show_error(msg)
        self.preview_finished.emit(None)

    def _preview_gone(self, task: Task) -> None:
        if task is self.ahead_task:
            self.ahead_task = None
        if task is self.preview_task:
            self.preview_task = None
            self.preview_panel.show_message("")

    def _source_changed(self, key: str) -> None:
        if self.player.has_source(key):
            self.player.select(key)
            self._position_changed(self.player.position)

    def _gains_changed(self, vocal_db: float, acc_db: float) -> None:
        self.player.set_gains("crossmix", [10 ** (vocal_db / 20), 10 ** (acc_db / 20)])
        self.settings.set("remix/vocal_gain_db", vocal_db)
        self.settings.set("remix/accompaniment_gain_db", acc_db)

    # --- transport --------------------------------------------------------------------------

    def _wire_player(self) -> None:
        self.player.position_changed.connect(self._position_changed)
        self.player.state_changed.connect(
            lambda s: self.preview_panel.set_playing(s == "playing"))
        self.player.error.connect(lambda msg: self.show_error(msg))
        self._update_playback_reason()

    def _update_playback_reason(self) -> None:
        reason = "" if self.player.available else self.player.reason
        self.preview_panel.playback_reason.setText(reason)
        self.preview_panel.playback_reason.setVisible(bool(reason))
        self.preview_panel.set_ready(self.preview is not None,
                                     playback_ok=self.player.available)

    def _offsets_changed(self, beats: int, ms: float) -> None:
        """Move the cross-mix's accompaniment against the vocal, live (the export renders it)."""
        p = self.preview
        if p is None:
            return
        period = 60.0 / float(p.crossmix.report.query_tempo)
        self.player.set_offsets("crossmix", [0.0, beats * period + ms / 1000.0])


    def toggle_play(self) -> None:
        if self.preview is None or not self.player.available:
            return
        self.player.toggle()

    def _loop_changed(self, region: tuple[float, float] | None) -> None:
        if region is None:
            self.player.clear_loop()
            return
        try:
            self.player.set_loop(*region)
        except ValueError as exc:
            self.player.clear_loop()
            self.show_error(f"The loop was not set: {exc}.")

    def _seek_on(self, key: str, seconds: float) -> None:
        if self.preview is None:
            return
        if key != self.player.current:
            self.preview_panel.source_buttons[key].setChecked(True)
        self.player.seek(seconds)

    def _position_changed(self, seconds: float) -> None:
        self.preview_panel.set_position(seconds, self.player.duration,
                                        self.player.current or "crossmix")

    # --- export -----------------------------------------------------------------------------

    def export_dialog(self) -> None:
        if self.preview is None or self.result is None:
            return
        dlg = ExportDialog(self.settings, parent=self,
                           suggested_name=f"{self.result.title} x {self.preview.row.title}")
        if dlg.exec():
            self.export_to(dlg.choice())

    def export_selected_dialog(self) -> ExportDialog | None:
        """Export the selected matches (one file each) in one go."""
        return self.batch_export.dialog(self.table.selected_result_rows())

    def export_all_dialog(self) -> ExportDialog | None:
        """Export every match shown, in the order shown."""
        return self.batch_export.dialog(self.shown_rows())

    def shown_rows(self) -> list[ResultRow]:
        """The matches in the table, in the order shown."""
        p = self.results_proxy
        rows = [p.data(p.index(i, 0), ROW_ROLE) for i in range(p.rowCount())]
        return [r for r in rows if isinstance(r, ResultRow)]

    def rendered_previews(self) -> dict[int, PreviewResult]:
        """The cross-mixes of the current query rendered so far, by song id (reused by the
        batch export and dragging out instead of rendering again)."""
        out = dict(self._previews)
        if self.preview is not None and (sid := self._song_id(self.preview.row)) is not None:
            out[sid] = self.preview
        return out

    def export_to(self, choice: ExportChoice) -> Task | None:
        if self.preview is None or self.result is None:
            return None
        row = self.preview.row
        task = Task(self.session.export, self.result, row, preview=self.preview, path=choice.path,
                    fmt=choice.format, bitrate=choice.bitrate, full=choice.full,
                    overwrite=choice.overwrite, stems=choice.stems,
                    options=self.remix_options(full=choice.full), name="the export")
        # A progress window with Cancel; shown only if the export takes over half a second.
        dlg = export_progress_window(f"Exporting {choice.path.name}…", 100, self, after_ms=500)
        dlg.canceled.connect(task.cancel)
        self.export_progress = dlg
        started = time.time()

        def progress(p: Progress) -> None:
            self.say(f"Exporting… {p.message}")
            if p.total:
                dlg.setValue(int(100 * p.done / p.total))
            if p.message:
                dlg.setLabelText(f"Exporting {choice.path.name}: {p.message}…")

        task.signals.progress.connect(progress)
        task.signals.finished.connect(
            lambda path: self._export_done(path, stems=choice.stems, row=row))
        task.signals.failed.connect(self._export_failed)
        task.signals.cancelled.connect(lambda: self._export_cancelled(choice.path, started))
        task.signals.done.connect(dlg.close)
        self.runner.start(task)
        return task

    def _export_failed(self, msg: str, _exc: object) -> None:
        self.show_error(msg)
        self.export_finished.emit(None)

    def _export_done(self, path: Path, *, stems: bool = False,
                     row: ResultRow | None = None) -> None:
        if row is not None:  # a drag of that match carries this file from now on
            self.drag_out.remember_song_export(self._song_id(row), path)
        self.show_info(f"Exported {path}" + (" and its stems (_vocals, _accompaniment)"
                                             if stems else ""))
        self.export_finished.emit(path)

    def _export_cancelled(self, path: Path, started: float) -> None:
        # Cancel is checked between rendering and encoding; one pressed during the encoding
        # comes too late, and the file is there: say so rather than "cancelled".
        try:
            written = path.stat().st_mtime >= started - 1
        except OSError:
            written = False
        if written:
            self.show_info(f"The export finished before it could be cancelled: {path}")
            self.export_finished.emit(path)
        else:
            self.say("Export cancelled: nothing was written.", 10000)
            self.export_finished.emit(None)
