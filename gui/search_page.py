"""The Search page: drop a song, watch the staged query, browse matches, audition, export.

:class:`SearchPage` owns the page's widgets (built by :mod:`gui.search_widgets`) and its
logic: the queue of songs to query, the query and its follow-up analysis, the results with
their search space and filters, the history, and (:class:`gui.search_preview.SearchPreview`)
the cross-mix preview, its playback and the export. It receives what it needs in its
constructor (the session, the settings, the task runner, the player and how to tell the user
something); :class:`gui.main_window.MainWindow` is the frame that holds it.

All engine work goes through :class:`gui.engine.Session` in :class:`gui.workers.Task` workers;
this module only wires signals to widgets on the GUI thread.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu, QProgressDialog, QWidget

from core.audio.decode import AUDIO_EXTENSIONS
from core.progress import Progress
from gui import desktop
from gui.engine import PreviewResult, QueryResult, Session
from gui.playback import Player
from gui.results_model import ROW_ROLE, ResultRow
from gui.search_preview import SearchPreview
from gui.search_widgets import build_search_widgets
from gui.settings import SPACES, Settings
from gui.voice_controls import show_voice
from gui.workers import Task, TaskRunner

if TYPE_CHECKING:
    from PySide6.QtGui import QShortcut
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QDoubleSpinBox,
        QLabel,
        QListWidget,
        QPushButton,
        QSpinBox,
    )

    from gui.drop_zone import DropZone
    from gui.history import HistoryPanel
    from gui.note_label import NoteLabel
    from gui.query_panel import QueryPanel
    from gui.record_panel import RecordPanel
    from gui.results_model import ResultsModel
    from gui.search_widgets import Banner, _WindowShortcutKeys

log = logging.getLogger(__name__)


def songs_in_folder(folder: Path) -> list[str]:
    """The audio files in ``folder`` and below (hidden ones left out), sorted by path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames)
                if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_EXTENSIONS]
    return out


class SearchPage(SearchPreview):
    """The Search page (a tab of the main window), its widgets and its logic."""

    # The page's widgets (built by gui.search_widgets.build_search_widgets; the preview's
    # are declared in SearchPreview).
    _window_keys: _WindowShortcutKeys
    banner: Banner
    drop_zone: DropZone
    example_button: QPushButton
    hint: Banner
    history_panel: HistoryPanel
    k_spin: QSpinBox
    key_combo: QComboBox
    duplicates_check: QCheckBox
    query_panel: QueryPanel
    queue_clear_button: QPushButton
    queue_label: QLabel
    queue_list: QListWidget
    queue_remove_button: QPushButton
    record_panel: RecordPanel
    results_model: ResultsModel
    results_note: NoteLabel
    space_combo: QComboBox
    tap_shortcut: QShortcut
    tempo_check: QCheckBox
    tempo_max: QDoubleSpinBox
    tempo_min: QDoubleSpinBox

    query_finished = Signal(object)  # QueryResult | None (failed / cancelled): results shown
    analysis_finished = Signal(object)  # QueryResult | None: tempo, key, compatibility shown
    search_finished = Signal(object)  # QueryResult: a new space, k or filter searched again
    result_reopened = Signal(object)  # QueryResult: a query of the history shown again

    #: Query results kept in memory, so the history reopens them at once (each holds the
    #: query's stems: tens of MB per minute of song); older ones are reopened by the engine
    #: from their kept vectors and cached stems (no separation, no embedding).
    RESULTS_KEPT = 3

    def __init__(self, *, settings: Settings, session: Session, runner: TaskRunner,
                 player: Player, show_error: Callable[[str], None],
                 show_info: Callable[[str], None], status: Callable[[str, int], None],
                 example_path: Path | None = None, parent: QWidget | None = None) -> None:
        """``show_error`` and ``show_info`` tell the user something (the window keeps the
        errors and writes them in its status bar too); ``status(text, ms)`` writes in the status
        bar for ``ms`` milliseconds (0: until the next message)."""
        super().__init__(parent)
        self.settings = settings
        self.session = session
        self.runner = runner
        self.player = player
        self._show_error = show_error
        self._show_info = show_info
        self._status = status
        self.example_path = example_path
        self.queue: deque[str] = deque()
        #: keyword arguments of Session.query for a queued file (vocal_only, tempo, first_beat,
        #: region: see query_file; a take: vocal_only and its metronome's tempo)
        self._query_options: dict[str, dict[str, Any]] = {}
        #: the last results by their history key, newest last (see RESULTS_KEPT)
        self._recent: OrderedDict[tuple[str, str], QueryResult] = OrderedDict()
        self.query_task: Task | None = None
        self.analysis_task: Task | None = None
        self.preview_task: Task | None = None
        self.search_task: Task | None = None
        self.ahead_task: Task | None = None  # a preview rendered ahead (not the selected row)
        # the preview's state (documented in SearchPreview)
        self._previews: OrderedDict[int, PreviewResult] = OrderedDict()
        self._source_choices: dict[tuple[Path, int | None], Any] = {}
        self._choice_undo: tuple[tuple[Path, int | None], Any] | None = None
        self._previews_options: Any = None
        self._ahead_failed: set[int] = set()
        self._loop_song: int | None = None  # the match whose A-B loop the preview panel holds
        #: True while the engine loads (gui.app starts it after the window shows): queries wait
        self.engine_loading = False
        self.export_progress: QProgressDialog | None = None
        self.result: QueryResult | None = None
        self.preview: PreviewResult | None = None
        #: the last successful query and its preview, shown again if the next one fails
        self._previous: tuple[QueryResult, PreviewResult | None] | None = None
        self._closing = False

        build_search_widgets(self)
        self._update_queue_label()
        self._wire_player()
        self.settings.changed.connect(self._setting_changed)

    def _setting_changed(self, key: str, value: Any) -> None:
        """Apply a setting of the page changed on the Settings tab."""
        if key == "audio/output_device":
            self.player.set_device(str(value) or None)
            self._update_playback_reason()
            self.record_panel.update_devices()
        elif key == "audio/input_device":
            self.record_panel.update_devices()
        elif key == "search/space":
            i = SPACES.index(str(value))
            if self.space_combo.currentIndex() != i:
                self.space_combo.setCurrentIndex(i)
        elif key == "search/k" and self.k_spin.value() != int(value):
            self.k_spin.setValue(int(value))

    def shutdown(self) -> None:
        """The window closes: no new work starts, the player stops, a take being recorded
        is stopped and kept."""
        self._closing = True
        self.queue.clear()
        self.player.close()
        self.record_panel.shutdown()

    # --- search filters ---------------------------------------------------------------------

    def _tempo_filter_toggled(self, on: bool, *, search: bool = True) -> None:
        self.tempo_min.setEnabled(on)
        self.tempo_max.setEnabled(on)
        if search:
            self._search_options_changed()

    def search_filters(self) -> dict[str, Any]:
        """The ``tempo_range``, ``key`` and ``include_duplicates`` arguments of a search, from
        the filter widgets."""
        tempo = None
        if self.tempo_check.isChecked():
            lo, hi = self.tempo_min.value(), self.tempo_max.value()
            tempo = (min(lo, hi), max(lo, hi))
        return {"tempo_range": tempo, "key": str(self.key_combo.currentData() or "") or None,
                "include_duplicates": self.duplicates_check.isChecked()}

    # --- results menu ----------------------------------------------------------------------

    def results_menu(self, row: ResultRow) -> QMenu:
        """The right-click menu of a match."""
        menu = QMenu(self)
        menu.addAction("Use as query", lambda: self.enqueue([row.path]))
        menu.addAction("Show in folder", lambda: self.show_in_folder(row.path))
        menu.addAction("Copy file path",
                       lambda: QGuiApplication.clipboard().setText(row.path))
        menu.addSeparator()
        n = len(self.table.selected_result_rows())
        menu.addAction(f"Export selected ({n})…" if n > 1 else "Export selected…",
                       self.export_selected_dialog)
        menu.addAction(f"Export all shown ({self.results_model.rowCount()})…",
                       self.export_all_dialog)
        return menu

    def _results_menu_requested(self, pos: QPoint) -> None:
        idx = self.table.indexAt(pos)
        row = self.results_proxy.data(idx, ROW_ROLE) if idx.isValid() else None
        if isinstance(row, ResultRow):
            self.results_menu(row).popup(self.table.viewport().mapToGlobal(pos))

    def show_in_folder(self, path: str) -> bool:
        """Open the file manager on the folder holding ``path``."""
        why = desktop.show_in_folder(path)
        if why is not None:
            self.show_error(why)
        return why is None

    # --- queries ----------------------------------------------------------------------------

    def open_example(self) -> None:
        if self.example_path is not None:
            self.enqueue([str(self.example_path)])

    def enqueue(self, paths: list[str]) -> None:
        """Queue songs to query (a folder: its songs); the first starts at once when nothing
        is running."""
        files: list[str] = []
        for p in paths:
            if Path(p).is_dir():
                found = songs_in_folder(Path(p))
                if not found:
                    self.show_error(f"{p}: no songs in this folder or below it (looked for "
                                    f"{', '.join(sorted(AUDIO_EXTENSIONS))} files).")
                else:
                    self.say(f"Queued {len(found)} songs from {Path(p).name}", 10000)
                files += found
            else:
                files.append(str(p))
        if not files:
            return
        self.queue.extend(files)
        if not self.settings.get("ui/first_run_done"):
            self.settings.set("ui/first_run_done", True)
            self.hint.show_text("", "info")
        self._update_queue_label()
        if not self.querying:
            self.start_next_query()

    def _update_queue_label(self) -> None:
        n = len(self.queue)
        self.queue_label.setText(f"{n} more queued" if n else "Queue empty")
        self.queue_list.clear()
        for path in self.queue:
            self.queue_list.addItem(Path(path).name)
            self.queue_list.item(self.queue_list.count() - 1).setToolTip(path)
        self._update_queue_buttons()

    def _update_queue_buttons(self) -> None:
        self.queue_remove_button.setEnabled(bool(self.queue_list.selectedItems()))
        self.queue_clear_button.setEnabled(bool(self.queue))

    def remove_from_queue(self) -> None:
        """Take the selected songs out of the queue (the running query goes on)."""
        rows = {self.queue_list.row(i) for i in self.queue_list.selectedItems()}
        self.queue = deque(p for i, p in enumerate(self.queue) if i not in rows)
        self._update_queue_label()

    def clear_queue(self) -> None:
        self.queue.clear()
        self._update_queue_label()

    def start_next_query(self) -> None:
        if not self.queue or self._closing or self.querying:
            return
        if self.engine_loading:  # started by engine_loaded()
            self.say("The query starts as soon as the engine is loaded…")
            return
        path = self.queue.popleft()
        options = self._query_options.pop(path, {})
        self._update_queue_label()
        self._drop_previews_and_playback()
        if self.result is not None:
            self._previous = (self.result, self.preview)
        self.result = None
        self.preview = None
        # The previous results stay until this query's are ready (or it fails): greyed out,
        # while the preview of the previous match goes, with its text.
        self.table.setEnabled(False)
        self.results_note.setText(
            f"Results for “{self._previous[0].title}” until those for “{Path(path).name}” "
            "are ready." if self._previous is not None and self.results_model.rowCount()
            else "")
        self.preview_panel.clear()
        self.preview_panel.phase.reset()  # another voice: its bar lines are found afresh
        self._update_playback_reason()
        self.export_ready.emit(False)
        self.banner.show_text("", "info")
        self.query_panel.clear(voice_alone=options.get("vocal_only") is True)
        self.query_panel.show_file(title=Path(path).name, artist="", duration=None)
        self.query_panel.mix_wave.show_message("decoding…")
        self.query_panel.stages.start()
        self.say(f"Querying {path}")
        task = Task(self.session.query, path, space=self.current_space(), k=self.k_spin.value(),
                    **self.search_filters(), **options, name=f"the query for {Path(path).name}")
        task.query_options = options  # type: ignore[attr-defined]  # for the history
        task.signals.progress.connect(self._query_progress)
        # remembered first: the history lists it by the time query_finished is emitted
        task.signals.finished.connect(lambda r, t=task: self._remember(r, t.query_options))
        task.signals.finished.connect(self._query_done)
        task.signals.failed.connect(self._query_failed)
        task.signals.cancelled.connect(self._query_cancelled)
        task.signals.done.connect(lambda t=task: self._query_task_done(t))
        self.query_task = task
        self.runner.start(task)

    def cancel_query(self) -> None:
        """Cancel the running query (or its analysis) and every song queued after it."""
        dropped = len(self.queue)
        self.queue.clear()
        self._update_queue_label()
        for task in (self.query_task, self.analysis_task):
            if task is not None:
                task.cancel()
                self.query_panel.stages.cancel_button.setEnabled(False)
        if dropped or self.querying:
            self.say(
                "Cancelling…" + (f" ({dropped} queued song{'s' if dropped > 1 else ''} "
                                 "removed from the queue)" if dropped else ""), 10000)

    def _query_progress(self, p: Progress) -> None:
        self.query_panel.stages.update_progress(p)
        if p.stage == "separate" and self.query_panel.vocal_wave.env is None:
            self.query_panel.vocal_wave.show_message("separating…")

    def _query_done(self, r: QueryResult) -> None:
        self.result = r
        self._previous = None
        self.table.setEnabled(True)
        self.query_panel.show_file(title=r.title, artist=r.artist, duration=r.duration)
        self.query_panel.show_waves(r.mix_env, r.vocal_env)
        show_voice(self.query_panel, r)
        self.query_panel.tempo_label.setText("analysing…")
        self.query_panel.key_label.setText("analysing…")
        self._show_rows(r)
        total = sum(r.timings.values())
        self.say(f"{r.title}: {len(r.rows)} matches in {total:.1f} s"
                 + (" (reopened from the history)" if r.reopened else ""))
        self.query_finished.emit(r)
        self._start_analysis(r)

    def _show_rows(self, r: QueryResult) -> None:
        self.results_model.set_rows(r.rows)
        self.results_note.setText(" ".join(t for t in (r.message, r.space_note) if t))
        if r.message:
            self.banner.show_text(r.message, "warning")
        if r.rows:
            # The best match, wherever the user's sort puts it.
            best = min(range(len(r.rows)), key=lambda i: r.rows[i].rank)
            idx = self.results_proxy.mapFromSource(self.results_model.index(best, 0))
            self.table.selectRow(idx.row())
            self.table.scrollTo(idx)

    def _start_analysis(self, r: QueryResult, *, tempo: tuple[float | None, str] | None = None,
                        best_first: bool = True) -> None:
        """Tempo and key of the query, then each match's compatibility (after the results);
        with ``tempo`` (BPM or ``None`` for the estimate, and where it came from) the query is
        put on that beat grid first. ``best_first``: the best match is analysed alone first,
        so its cross-mix preview starts while the other matches are analysed (a library
        indexed in fast mode analyses a song the first time it is a match)."""
        if self._closing:
            return
        if self.analysis_task is not None:
            self.analysis_task.cancel()
        common = {"key_match": self.preview_panel.key_match.isChecked(),
                  "max_shift": int(self.settings.get("remix/max_shift"))}
        first = (tempo is None and best_first and len(r.rows) > 1 and self.preview is None
                 and self.preview_task is None)
        task = (Task(self.session.analyze, r, **common, first=1 if first else None,
                     name="the analysis") if tempo is None
                else Task(self.session.set_tempo, r, tempo[0], source=tempo[1], **common,
                          name="the new tempo"))
        task.signals.progress.connect(self.query_panel.stages.update_progress)
        if first:
            task.signals.finished.connect(lambda res, t=task: self._best_analysed(t, res))
        else:
            task.signals.finished.connect(lambda res, t=task: self._analysis_done(t, res))
        task.signals.failed.connect(lambda msg, _e, t=task: self._analysis_failed(t, msg))
        task.signals.cancelled.connect(lambda t=task: self._analysis_cancelled(t))
        task.signals.done.connect(lambda t=task: self._analysis_task_done(t))
        self.analysis_task = task
        self.query_panel.stages.cancel_button.setEnabled(True)
        self.runner.start(task)

    def _best_analysed(self, task: Task, r: QueryResult) -> None:
        """The query and its best match are analysed: preview it, and analyse the others."""
        if task is not self.analysis_task or r is not self.result:
            return
        if r.analysis is not None:
            self.query_panel.show_analysis(tempo=r.analysis.tempo, key=r.analysis.key)
        self.results_model.update_rows(r.rows)
        if self.preview is None and self.preview_task is None and self.selected_row() is not None:
            self.render_preview()
        self._start_analysis(r, best_first=False)

    def _analysis_done(self, task: Task, r: QueryResult) -> None:
        if task is not self.analysis_task or r is not self.result:
            return
        if r.analysis is not None:
            self.query_panel.show_analysis(tempo=r.analysis.tempo, key=r.analysis.key)
        show_voice(self.query_panel, r)
        self.results_model.update_rows(r.rows)
        self.query_panel.stages.finish("done")
        self.analysis_finished.emit(r)
        if self.preview is None and self.preview_task is None and self.selected_row() is not None:
            self.render_preview()

    def _analysis_cancelled(self, task: Task) -> None:
        if task is self.analysis_task:
            self.query_panel.stages.finish("cancelled", stage="analyze")
            self.preview_panel.show_message("")

    def _analysis_failed(self, task: Task, msg: str) -> None:
        if task is self.analysis_task:
            self.query_panel.stages.finish("analysis failed", stage="analyze")
            self.query_panel.tempo_label.setText("–")
            self.query_panel.key_label.setText("–")
            self.preview_panel.show_message("")
            self.show_error(msg)
            self.analysis_finished.emit(None)

    def _analysis_task_done(self, task: Task) -> None:
        if self.analysis_task is task:
            self.analysis_task = None
            QTimer.singleShot(0, self.start_next_query)
            # the best match's preview may have come before the others were analysed: the
            # top matches are rendered ahead now
            QTimer.singleShot(0, self._render_ahead)

    def _query_failed(self, msg: str, _exc: object) -> None:
        self.query_panel.stages.finish("failed")
        self.query_panel.mix_wave.show_message("")
        self.query_panel.vocal_wave.show_message("")
        self.show_error(msg)
        self._restore_previous("the new query failed")
        self.query_finished.emit(None)

    def _query_cancelled(self) -> None:
        self.query_panel.stages.finish("cancelled")
        self.query_panel.mix_wave.show_message("")
        self.query_panel.vocal_wave.show_message("")
        self.say("Query cancelled", 5000)
        self._restore_previous("the new query was cancelled")
        self.query_finished.emit(None)

    def _restore_previous(self, why: str) -> None:
        """A query that did not finish leaves the previous results (and preview) usable."""
        self.table.setEnabled(True)
        prev, self._previous = self._previous, None
        if prev is None:
            self.results_note.setText("")
            return
        r, p = prev
        self.result = r
        self.query_panel.show_file(title=r.title, artist=r.artist, duration=r.duration)
        self.query_panel.show_waves(r.mix_env, r.vocal_env)
        if r.analysis is not None:
            self.query_panel.show_analysis(tempo=r.analysis.tempo, key=r.analysis.key)
        show_voice(self.query_panel, r)
        self.results_note.setText(f"Showing the results for “{r.title}” ({why}).")
        if p is not None:
            self._show_preview(p)
        elif self.selected_row() is not None:
            self.render_preview()

    def _query_task_done(self, task: Task) -> None:
        if self.query_task is task:
            self.query_task = None
            QTimer.singleShot(0, self.start_next_query)


    # --- takes and history -------------------------------------------------------------------

    def _wire_record_and_history(self) -> None:
        rp, hp = self.record_panel, self.history_panel
        rp.take_ready.connect(self.query_take)
        rp.message.connect(self._panel_message)
        rp.take_renamed.connect(lambda old, new: hp.rename_path(old, new, Path(new).stem))
        rp.take_deleted.connect(lambda _p: hp.refresh())
        hp.reopen_requested.connect(self.reopen)
        hp.message.connect(self._panel_message)
        if hp.history.note:
            QTimer.singleShot(0, lambda: self.show_info(hp.history.note))
        # one sound at a time: a take played stops the preview, and the other way round
        rp.player.state_changed.connect(
            lambda s: self.player.stop() if s == "playing" and self.player.playing else None)
        self.player.state_changed.connect(
            lambda s: rp.player.stop() if s == "playing" and rp.player.playing else None)

    def _panel_message(self, text: str, kind: str) -> None:
        if kind == "error":
            self.show_error(text)
        else:
            self.banner.show_text(text, kind)
            self.say(text[:200], 10000)

    def query_take(self, path: str, tempo_bpm: float | None) -> None:
        """A microphone take becomes the query, as a drop would make it, but known to be a
        voice alone (not separated) and, when a metronome was heard, with its exact tempo and
        a first beat at 0 s (the take is trimmed in whole bars)."""
        self.query_file(path, vocal_only=True, tempo=tempo_bpm,
                        first_beat=0.0 if tempo_bpm else None)

    def enqueue_with_options(self, path: str, **options: Any) -> None:
        """Queue ``path`` with keyword arguments of ``Session.query`` (the history reruns a
        query with the options it had; :meth:`query_file` names them)."""
        self._query_options[str(path)] = {k: v for k, v in options.items() if v is not None}
        self.enqueue([str(path)])

    def _remember(self, r: QueryResult, options: dict[str, Any]) -> None:
        """A finished query: first in the history, and kept in memory to reopen at once."""
        from core.library.history import HistoryEntry

        kind = "take" if Path(r.path).parent == self.record_panel.store.root else "file"
        best = min(r.rows, key=lambda row: row.rank).title if r.rows else ""
        entry = HistoryEntry(path=str(r.path), title=r.title, kind=kind, options=dict(options),
                             matches=len(r.rows), best=best)
        self.history_panel.record(entry)
        self._recent[entry.key] = r
        self._recent.move_to_end(entry.key)
        while len(self._recent) > self.RESULTS_KEPT:
            self._recent.popitem(last=False)

    def reopen(self, entry: Any) -> None:
        """Show a query of the history again: at once when its results are still in memory,
        else through the engine's query, which reopens it from its kept vectors and cached
        stems (:attr:`core.api.Crossmix.query_store`: no separation, no embedding) and searches
        the library as it is now."""
        kept = self._recent.get(entry.key)
        if kept is not None and not self.querying:
            self._recent.move_to_end(entry.key)
            self.show_result(kept)
            if not entry.exists:
                self.show_info(f"{entry.path}: the file is not there any more; these are the "
                               "results kept from before.")
            return
        if not entry.exists:
            self.show_error(f"{entry.path}: this query's file is not there any more (moved, "
                            "renamed or deleted), so it cannot be run again. Forget missing "
                            "removes it from the list.")
            self.history_panel.refresh()
            return
        self.enqueue_with_options(entry.path, **entry.options)

    def _drop_previews_and_playback(self) -> None:
        """Another result is coming: stop its previews' work and the player."""
        for task in (self.preview_task, self.search_task, self.ahead_task):
            if task is not None:
                task.cancel()
        self.preview_task = self.search_task = self.ahead_task = None
        self._forget_previews()
        self.player.stop()
        self.player.clear_sources()

    def show_result(self, r: QueryResult) -> None:
        """Show a finished query's results (from the history) without running it again."""
        self._drop_previews_and_playback()
        self.result, self.preview, self._previous = r, None, None
        self.preview_panel.clear()
        self._update_playback_reason()
        self.export_ready.emit(False)
        self.banner.show_text("", "info")
        self.query_panel.clear(voice_alone=bool(r.vocal_only))
        self.query_panel.show_file(title=r.title, artist=r.artist, duration=r.duration)
        self.query_panel.show_waves(r.mix_env, r.vocal_env)
        self.table.setEnabled(True)
        self._show_rows(r)
        if r.analysis is not None:
            self.query_panel.show_analysis(tempo=r.analysis.tempo, key=r.analysis.key)
            self.query_panel.stages.finish("done")
        else:
            self._start_analysis(r)
        self.say(f"{r.title}: {len(r.rows)} matches (from the history)", 10000)
        self.result_reopened.emit(r)

    # --- search options ---------------------------------------------------------------------

    def current_space(self) -> str:
        return str(self.space_combo.currentData())

    def _search_options_changed(self, *_: object) -> None:
        self.settings.set("search/space", self.current_space())
        self.settings.set("search/k", self.k_spin.value())
        self.settings.set("search/tempo_filter", self.tempo_check.isChecked())
        self.settings.set("search/tempo_min", self.tempo_min.value())
        self.settings.set("search/tempo_max", self.tempo_max.value())
        self.settings.set("search/key", str(self.key_combo.currentData() or ""))
        self.settings.set("search/include_duplicates", self.duplicates_check.isChecked())
        r = self.result
        # (closing: the k box losing focus as the window goes must not start a search).
        # A running analysis does not stop it: the new search restarts the analysis.
        if r is None or r.embedding is None or self.query_task is not None or self._closing:
            return
        if self.search_task is not None:
            self.search_task.cancel()
        task = Task(self.session.search, r, space=self.current_space(), k=self.k_spin.value(),
                    **self.search_filters(), name="the search")
        task.signals.finished.connect(self._searched)
        task.signals.failed.connect(lambda msg, _e: self.show_error(msg))
        self.search_task = task
        self.runner.start(task)

    def _searched(self, r: QueryResult) -> None:
        self.preview = None
        self._forget_previews()
        self._show_rows(r)
        self.search_finished.emit(r)
        self._start_analysis(r)

    def _key_match_changed(self, on: bool) -> None:
        self.settings.set("remix/key_match", on)
        r = self.result
        if r is not None and r.analysis is not None and not self.querying and r.rows:
            self._start_analysis(r)  # the shift and mashability columns follow the toggle
        if self.preview is not None or self.preview_task is not None:
            self.render_preview()


    # --- a voice as the query ----------------------------------------------------------------

    def query_file(self, path: str | Path, *, vocal_only: bool | None = None,
                   tempo: float | None = None, first_beat: float | None = None) -> None:
        """Query ``path`` (queued like a drop) with what is known about it: a recorded take is
        ``vocal_only`` (not separated) with its metronome's ``tempo`` (BPM) and ``first_beat``
        (s). See :meth:`gui.engine.Session.query`."""
        self.enqueue_with_options(str(path), vocal_only=vocal_only, tempo=tempo, first_beat=first_beat)

    def _vocal_only_toggled(self, on: bool) -> None:
        """The user says the query is (or is not) a voice alone: it runs again so."""
        r = self.result
        if r is None or self.query_task is not None:
            self.query_panel.voice.vocal_only.setChecked(bool(r is not None and r.vocal_only))
            return
        self.query_file(r.path, vocal_only=on)

    def set_query_tempo(self, bpm: float | None, source: str = "typed") -> None:
        """Align the cross-mixes to a typed or tapped tempo (``None``: the estimated one)."""
        r = self.result
        if r is None or r.auto_analysis is None or self.query_task is not None:
            return
        for task in (self.preview_task, self.ahead_task):
            if task is not None:
                task.cancel()
        self.preview_task = self.ahead_task = None
        self._forget_previews()
        self.player.stop()
        self.preview = None
        self.preview_panel.set_ready(False)
        self.preview_panel.show_message("aligning to the new tempo…")
        self._start_analysis(r, tempo=(bpm, source))

    def search_region(self, region: tuple[float, float] | None) -> Task | None:
        """Embed only ``region`` (s) of the query and search again (``None``: the whole song)."""
        r = self.result
        if r is None or self.query_task is not None or self._closing:
            return None
        if r.embedding is None:
            self.show_error(r.message or "The query was not embedded, so it cannot be searched.")
            return None
        if self.search_task is not None:
            self.search_task.cancel()
        self.say("Searching with the selected part…" if region
                 else "Searching with the whole song…")
        task = Task(self.session.search_region, r, region, space=self.current_space(),
                    k=self.k_spin.value(), **self.search_filters(), name="the search")
        task.signals.finished.connect(self._region_searched)
        task.signals.failed.connect(lambda msg, _e: self.show_error(msg))
        self.search_task = task
        self.runner.start(task)
        return task

    def _region_searched(self, r: QueryResult) -> None:
        self.query_panel.voice.show_searched_region(r.region)
        part = (f"{r.region[0]:.1f}–{r.region[1]:.1f} s of {r.title}" if r.region is not None
                else f"the whole of {r.title}")
        self.say(f"Searched with {part}: {len(r.rows)} matches", 10000)
        self._searched(r)
