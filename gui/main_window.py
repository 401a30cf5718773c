"""The main window: the frame that holds the pages, the menu and the status bar.

The pages are tabs: the Search page (:class:`gui.search_page.SearchPage`: drop a song, watch
the staged query, browse matches, audition, export), then the Library, Retrain and Settings
pages (:mod:`gui.tabs` fills them in once the engine is imported). The window builds the
Search page from what it receives (the session, the settings, the player), routes the menu's
actions to it, shows the messages of every page (:meth:`show_error`, :meth:`show_info`) and
applies a setting changed on the Settings page to the session; closing it shuts the pages
down and stops the background work.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox, QTabWidget, QWidget

from core.audio.decode import AUDIO_EXTENSIONS
from core.progress import Progress
from gui.engine import Session
from gui.playback import Player
from gui.search_page import SearchPage
from gui.settings import Settings
from gui.workers import TaskRunner

if TYPE_CHECKING:
    from gui.library_panel import LibraryPanel
    from gui.settings_panel import SettingsPanel
    from gui.training_panel import TrainingPanel

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    queries_ready = Signal()  # the engine is imported: queries run, every tab is there
    engine_ready = Signal(object)  # str | None: the models loaded (why there are no encoders)

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
        self.errors: list[str] = []  # every error shown, newest last (tests read it)
        self.settings_panel: SettingsPanel | None = None
        self.library_panel: LibraryPanel | None = None
        self.training_panel: TrainingPanel | None = None

        self.search_page = SearchPage(
            settings=settings, session=session, runner=self.runner, player=self.player,
            show_error=self.show_error, show_info=self.show_info,
            status=lambda text, ms: self.statusBar().showMessage(text, ms),
            example_path=example_path)
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)
        self.tabs.addTab(self.search_page, "Search")
        for title, w in extra_tabs or []:
            self.tabs.addTab(w, title)
        self._build_menu()
        self.statusBar().showMessage("Ready")

        self.space_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        self.space_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self.space_shortcut.activated.connect(self.search_page.toggle_play)
        self.settings.changed.connect(self._setting_changed)

    def _setting_changed(self, key: str, value: Any) -> None:
        """Apply a setting changed on the Settings tab to the session (the Search page applies
        its own: the audio devices, the search space and k)."""
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

    # --- construction -----------------------------------------------------------------------

    def _build_menu(self) -> None:
        page = self.search_page
        m = self.menuBar().addMenu("&File")
        self.open_action = m.addAction("&Open…", QKeySequence.StandardKey.Open, self.open_dialog)
        example = m.addAction("Try the &example song", page.open_example)
        example.setEnabled(page.example_path is not None)
        self.export_action = m.addAction("&Export cross-mix…", QKeySequence("Ctrl+E"),
                                         page.export_dialog)
        self.export_action.setEnabled(False)
        page.export_ready.connect(self.export_action.setEnabled)
        self.export_selected_action = m.addAction(
            "Export &selected matches…", QKeySequence("Ctrl+Shift+E"),
            page.export_selected_dialog)
        self.export_all_action = m.addAction("Export &all shown matches…",
                                             page.export_all_dialog)
        m.addSeparator()
        m.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)
        h = self.menuBar().addMenu("&Help")
        self.about_action = h.addAction("&About Crossmix", self.show_about)
        self.about_box: QMessageBox | None = None

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

    # --- messages ---------------------------------------------------------------------------

    def show_error(self, text: str) -> None:
        """An error of any page: on the Search page's banner and in the status bar."""
        self.errors.append(text)
        self.search_page.banner.show_text(text, "error")
        self.statusBar().showMessage(text.splitlines()[0][:200], 10000)

    def show_info(self, text: str) -> None:
        self.search_page.banner.show_text(text, "info")
        self.statusBar().showMessage(text[:200], 10000)

    # --- start-up ---------------------------------------------------------------------------

    def show_start_progress(self, p: Progress) -> None:
        """The engine loading after the window shows (gui.app): said in the status bar."""
        if p.done < p.total:
            self.statusBar().showMessage(f"Starting: {p.message}…")

    def engine_imported(self) -> None:
        """The engine is imported: queued songs start."""
        page = self.search_page
        page.engine_loading = False
        self.statusBar().showMessage("Loading the models…" if not page.querying else "")
        self.queries_ready.emit()
        page.start_next_query()

    def models_loaded(self, note: str | None = None) -> None:
        if not self.search_page.querying:
            self.statusBar().showMessage("Ready", 5000)
        self.engine_ready.emit(note)

    # --- songs to query ---------------------------------------------------------------------

    def open_dialog(self) -> None:
        """File ▸ Open: songs chosen are queued on the Search page."""
        pattern = " ".join(f"*{e}" for e in AUDIO_EXTENSIONS)
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open songs", self.settings.get("ui/last_open_dir") or str(Path.home()),
            f"Songs ({pattern});;All files (*)")
        if files:
            self.settings.set("ui/last_open_dir", str(Path(files[0]).parent))
            self.search_page.enqueue(files)

    def enqueue(self, paths: list[str]) -> None:
        """Query ``paths`` (songs given on the command line, or used from another page)."""
        self.search_page.enqueue(paths)

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
        # First the Search page: no query starts any more, the player and a take stop.
        self.search_page.shutdown()
        for i in range(self.tabs.count()):
            page = self.tabs.widget(i)
            stop = getattr(page, "shutdown", None)
            if page is not self.search_page and callable(stop):
                stop()
        if not self.runner.shutdown(timeout_s=60.0):
            log.warning("some background work did not stop within 60 s")
        self.session.close()
        self.settings.sync()
        super().closeEvent(event)
