"""The main window: drop a song, watch the staged query, browse matches, audition, export.

All engine work goes through :class:`gui.engine.Session` in :class:`gui.workers.Task` workers;
this module only wires signals to widgets on the GUI thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QGuiApplication,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QTabWidget,
    QWidget,
)

from core.audio.decode import AUDIO_EXTENSIONS
from core.progress import Progress
from gui import desktop
from gui.engine import PreviewResult, QueryResult, Session
from gui.export_dialog import ExportChoice, ExportDialog
from gui.playback import Player
from gui.results_model import ROW_ROLE, ResultRow
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

    from gui.batch_export import BatchExporter
    from gui.drag_out import DragOut, ResultsTable
    from gui.drop_zone import DropZone
    from gui.history import HistoryPanel
    from gui.library_panel import LibraryPanel
    from gui.preview_panel import PreviewPanel
    from gui.query_panel import QueryPanel
    from gui.record_panel import RecordPanel
    from gui.results_model import ResultsModel, ResultsProxy
    from gui.search_page import Banner, _WindowShortcutKeys
    from gui.settings_panel import SettingsPanel
    from gui.training_panel import TrainingPanel

log = logging.getLogger(__name__)

def songs_in_folder(folder: Path) -> list[str]:
    """The audio files in ``folder`` and below (hidden ones left out), sorted by path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames)
                if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_EXTENSIONS]
    return out


class MainWindow(QMainWindow):
    # The Search page's widgets (built by gui.search_page.build_search_page).
    _window_keys: _WindowShortcutKeys
    banner: Banner
    batch_export: BatchExporter
    drag_out: DragOut
    drop_zone: DropZone
    example_button: QPushButton
    hint: Banner
    history_panel: HistoryPanel
    k_spin: QSpinBox
    key_combo: QComboBox
    duplicates_check: QCheckBox
    preview_panel: PreviewPanel
    query_panel: QueryPanel
    queue_clear_button: QPushButton
    queue_label: QLabel
    queue_list: QListWidget
    queue_remove_button: QPushButton
    record_panel: RecordPanel
    results_model: ResultsModel
    results_note: QLabel
    results_proxy: ResultsProxy
    space_combo: QComboBox
    table: ResultsTable
    tap_shortcut: QShortcut
    tempo_check: QCheckBox
    tempo_max: QDoubleSpinBox
    tempo_min: QDoubleSpinBox

    query_finished = Signal(object)  # QueryResult | None (failed / cancelled): results shown
    analysis_finished = Signal(object)  # QueryResult | None: tempo, key, compatibility shown
    preview_finished = Signal(object)  # PreviewResult | None
    export_finished = Signal(object)  # Path | None
    search_finished = Signal(object)  # QueryResult: a new space, k or filter searched again
    queries_ready = Signal()  # the engine is imported: queries run, every tab is there
    engine_ready = Signal(object)  # str | None: the models loaded (why there are no encoders)
    result_reopened = Signal(object)  # QueryResult: a query of the history shown again

    #: Top matches rendered ahead in the background, so a click on one shows it at once.
    RENDER_AHEAD = 4
    #: Rendered previews kept (each holds its match's stems: tens of MB per minute of song).
    PREVIEWS_KEPT = 6
    #: Query results kept in memory, so the history reopens them at once (each holds the
    #: query's stems: tens of MB per minute of song); older ones are queried again.
    RESULTS_KEPT = 3

    def __init__(self, *, settings: Settings, session: Session, player: Player | None = None,
                 example_path: Path | None = None, extra_tabs: list[tuple[str, QWidget]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Crossmix")
        self.resize(1400, 900)
        self.settings = settings
        self.session = session
        self.runner = TaskRunner(self)
        self.player = player if player is not None else Player(
            self, device=settings.get("audio/output_device") or None)
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
        #: rendered previews of self.result by song id, for the options in _previews_options
        self._previews: OrderedDict[int, PreviewResult] = OrderedDict()
        #: remove / keep choices by (query path, song id), and the one a Cancel restores
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
        self.errors: list[str] = []  # every error shown, newest last (tests read it)
        self._closing = False
        self.settings_panel: SettingsPanel | None = None
        self.library_panel: LibraryPanel | None = None
        self.training_panel: TrainingPanel | None = None

        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        self.tabs.addTab(self._build_search_tab(), "Search")
        for title, w in extra_tabs or []:
            self.tabs.addTab(w, title)
        self._build_menu()
        self._update_queue_label()
        self._wire_player()
        self.statusBar().showMessage("Ready")

        self.space_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        self.space_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self.space_shortcut.activated.connect(self.toggle_play)
        self.settings.changed.connect(self._setting_changed)

    def _setting_changed(self, key: str, value: Any) -> None:
        """Apply a setting changed on the Settings tab to the running app."""
        if key == "compute/device":
            from gui.settings import compute_device

            device, note = compute_device(str(value))
            self.session.set_device(device)
            if note:
                self.show_error(note)
                # Not kept: a setting that cannot work would say "CUDA" while the CPU runs.
                # Later, so every listener of this change (the Settings tab) sees it first.
                QTimer.singleShot(0, lambda: self.settings.set("compute/device", "auto"))
        elif key == "model/encoder_checkpoint":
            self.session.set_encoders(str(value))
        elif key == "library/location":
            self.session.set_library(str(value))
            if self.library_panel is not None:
                self.library_panel.refresh()
        elif key == "search/duplicate_threshold":
            self.session.duplicate_threshold = float(value)
        elif key == "cache/stem_cache_gb" and self.session.stem_cache is not None:
            from gui.settings import gigabytes

            self.session.stem_cache.max_bytes = gigabytes(value)
            self.session.stem_cache.prune()
        elif key == "audio/output_device":
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

    # --- construction -----------------------------------------------------------------------

    def _build_search_tab(self) -> QWidget:
        from gui.search_page import build_search_page

        return build_search_page(self)

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

    def _build_menu(self) -> None:
        m = self.menuBar().addMenu("&File")
        self.open_action = m.addAction("&Open…", QKeySequence.StandardKey.Open, self.open_dialog)
        example = m.addAction("Try the &example song", self.open_example)
        example.setEnabled(self.example_path is not None)
        self.export_action = m.addAction("&Export cross-mix…", QKeySequence("Ctrl+E"),
                                         self.export_dialog)
        self.export_action.setEnabled(False)
        self.export_selected_action = m.addAction(
            "Export &selected matches…", QKeySequence("Ctrl+Shift+E"),
            self.export_selected_dialog)
        self.export_all_action = m.addAction("Export &all shown matches…",
                                             self.export_all_dialog)
        m.addSeparator()
        m.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)
        h = self.menuBar().addMenu("&Help")
        self.about_action = h.addAction("&About Crossmix", self.show_about)
        self.about_box: QMessageBox | None = None

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

    def show_about(self) -> QMessageBox:
        """Help ▸ About: what Crossmix is, its keys, where the command line is (non-blocking)."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("crossmix")
        except PackageNotFoundError:
            v = "(not installed)"
        box = QMessageBox(QMessageBox.Icon.Information, "About Crossmix", f"Crossmix {v}",
                          QMessageBox.StandardButton.Close, self)
        box.setInformativeText(
            "Finds accompaniments for a singer's voice: drop a song, Crossmix separates its "
            "vocal (Spleeter 2-stems), embeds it and lists the library songs whose accompaniment "
            "suits it (Kim et al. 2021, cross-domain vocal/mix embeddings); click a match to hear "
            "the tempo-aligned cross-mix.\n\n"
            "Keys: Space plays and pauses, Ctrl+O opens songs, Ctrl+E exports the cross-mix, "
            "Ctrl+Shift+E exports the selected matches, T taps the query's tempo, Delete takes "
            "a song out of the queue. Right-click a match to show it in its folder, to search "
            "with it or to export several at once; drag matches out to a file manager to get "
            "their files.\n\n"
            "Everything is also on the command line: crossmix --help.")
        box.setModal(False)
        box.show()
        self.about_box = box
        return box

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

    # --- messages ---------------------------------------------------------------------------

    def show_error(self, text: str) -> None:
        self.errors.append(text)
        self.banner.show_text(text, "error")
        self.statusBar().showMessage(text.splitlines()[0][:200], 10000)

    def show_info(self, text: str) -> None:
        self.banner.show_text(text, "info")
        self.statusBar().showMessage(text[:200], 10000)

    # --- start-up ---------------------------------------------------------------------------

    def show_start_progress(self, p: Progress) -> None:
        """The engine loading after the window shows (gui.app): said in the status bar."""
        if p.done < p.total:
            self.statusBar().showMessage(f"Starting: {p.message}…")

    def engine_imported(self) -> None:
        """The engine is imported: queued songs start."""
        self.engine_loading = False
        self.statusBar().showMessage("Loading the models…" if not self.querying else "")
        self.queries_ready.emit()
        self._start_next_query()

    def models_loaded(self, note: str | None = None) -> None:
        if not self.querying:
            self.statusBar().showMessage("Ready", 5000)
        self.engine_ready.emit(note)

    # --- queries ----------------------------------------------------------------------------

    def open_dialog(self) -> None:
        pattern = " ".join(f"*{e}" for e in AUDIO_EXTENSIONS)
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open songs", self.settings.get("ui/last_open_dir") or str(Path.home()),
            f"Songs ({pattern});;All files (*)")
        if files:
            self.settings.set("ui/last_open_dir", str(Path(files[0]).parent))
            self.enqueue(files)

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
                    self.statusBar().showMessage(
                        f"Queued {len(found)} songs from {Path(p).name}", 10000)
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
            self._start_next_query()

    @property
    def querying(self) -> bool:
        """A query or its follow-up analysis is running (the next queued song waits)."""
        return self.query_task is not None or self.analysis_task is not None

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

    def _start_next_query(self) -> None:
        if not self.queue or self._closing or self.querying:
            return
        if self.engine_loading:  # started by engine_loaded()
            self.statusBar().showMessage("The query starts as soon as the engine is loaded…")
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
        self.export_action.setEnabled(False)
        self.banner.show_text("", "info")
        self.query_panel.clear()
        self.query_panel.show_file(title=Path(path).name, artist="", duration=None)
        self.query_panel.mix_wave.show_message("decoding…")
        self.query_panel.stages.start()
        self.statusBar().showMessage(f"Querying {path}")
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
            self.statusBar().showMessage(
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
        self.statusBar().showMessage(f"{r.title}: {len(r.rows)} matches in {total:.1f} s")
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
            QTimer.singleShot(0, self._start_next_query)
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
        self.statusBar().showMessage("Query cancelled", 5000)
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
            QTimer.singleShot(0, self._start_next_query)

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
            self.statusBar().showMessage(text[:200], 10000)

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
        else by querying its file again (the stem cache spares the separation)."""
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
        self.export_action.setEnabled(False)
        self.banner.show_text("", "info")
        self.query_panel.clear()
        self.query_panel.show_file(title=r.title, artist=r.artist, duration=r.duration)
        self.query_panel.show_waves(r.mix_env, r.vocal_env)
        self.table.setEnabled(True)
        self._show_rows(r)
        if r.analysis is not None:
            self.query_panel.show_analysis(tempo=r.analysis.tempo, key=r.analysis.key)
            self.query_panel.stages.finish("done")
        else:
            self._start_analysis(r)
        self.statusBar().showMessage(f"{r.title}: {len(r.rows)} matches (from the history)",
                                     10000)
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
        self.export_action.setEnabled(False)
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
        self.export_action.setEnabled(True)

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
        self.statusBar().showMessage("Searching with the selected part…" if region
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
        self.statusBar().showMessage(f"Searched with {part}: {len(r.rows)} matches", 10000)
        self._searched(r)

    def _offsets_changed(self, beats: int, ms: float) -> None:
        """Move the cross-mix's accompaniment against the vocal, live (the export renders it)."""
        p = self.preview
        if p is None:
            return
        period = 60.0 / float(p.crossmix.report.query_tempo)
        self.player.set_offsets("crossmix", [0.0, beats * period + ms / 1000.0])

    # --- transport --------------------------------------------------------------------------

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
        dlg = QProgressDialog(f"Exporting {choice.path.name}…", "Cancel", 0, 100, self)
        dlg.setWindowTitle("Export")
        dlg.setWindowModality(Qt.WindowModality.NonModal)
        dlg.setMinimumDuration(500)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.setValue(0)
        dlg.canceled.connect(task.cancel)
        self.export_progress = dlg
        started = time.time()

        def progress(p: Progress) -> None:
            self.statusBar().showMessage(f"Exporting… {p.message}")
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
            self.statusBar().showMessage("Export cancelled: nothing was written.", 10000)
            self.export_finished.emit(None)

    # --- models -----------------------------------------------------------------------------

    def use_model(self, checkpoint: str) -> None:
        """Switch the encoders to ``checkpoint`` and re-embed the library with it."""
        self.settings.set("model/encoder_checkpoint", checkpoint)
        if self.settings_panel is not None:
            self.settings_panel.refresh_checkpoints(checkpoint)
        self.show_info(f"Now using the encoders {checkpoint}. The library is being re-embedded "
                       "with them (Library tab); searches use them once it is done.")
        if self.library_panel is not None:
            self.library_panel.rescan()
            self.tabs.setCurrentWidget(self.library_panel)

    # --- closing ----------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self._closing = True
        self.queue.clear()
        self.player.close()
        self.record_panel.shutdown()  # a take being recorded is stopped and kept
        for i in range(self.tabs.count()):
            stop = getattr(self.tabs.widget(i), "shutdown", None)
            if callable(stop):
                stop()
        if not self.runner.shutdown(timeout_s=60.0):
            log.warning("some background work did not stop within 60 s")
        self.session.close()
        self.settings.sync()
        super().closeEvent(event)
