"""The Search page's widgets: drop zone and queue, the query, the results and the preview.

:func:`build_search_widgets` builds them for a :class:`gui.search_page.SearchPage` and wires
them to the page's handlers. The widgets are the page's attributes (``page.drop_zone``,
``page.table``, ``page.preview_panel``...), which is what the page's logic and the tests use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gui.batch_export import BatchExporter
from gui.drag_out import DragOut, ResultsTable
from gui.drop_zone import DropZone
from gui.history import HistoryPanel
from gui.note_label import NoteLabel
from gui.preview_panel import PreviewPanel
from gui.query_panel import QueryPanel
from gui.record_panel import RecordPanel
from gui.results_model import ResultsModel, ResultsProxy
from gui.settings import SPACES, choice_label

if TYPE_CHECKING:
    from gui.search_page import SearchPage

SPACE_LABELS = {s: choice_label("search/space", s) for s in SPACES}


class Banner(QLabel):
    """A message strip: info, warning or error. Shown by its :class:`MessageArea`."""

    text_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

    def show_text(self, text: str, kind: str = "info") -> None:
        self.setObjectName(f"banner_{kind}")
        self.setProperty("kind", kind)
        self.setText(text)
        self.setToolTip(text)  # the whole text, should it not fit the strip
        self.style().unpolish(self)
        self.style().polish(self)
        self.text_changed.emit()

    @property
    def kind(self) -> str:
        return str(self.property("kind") or "")


class MessageArea(QStackedWidget):
    """The banners in a box of fixed height, in place of ``idle`` (the drop zone's text) when
    they have something to say: a message appearing or going takes no room of its own and
    never moves the rest of the page (no row jumps away from under a click). The
    error/warning banner has precedence over the first-run hint."""

    LINES = 3

    def __init__(self, *banners: Banner, idle: QWidget | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.banners = banners  # highest precedence first
        self.idle = idle if idle is not None else QWidget()  # nothing to say
        self.addWidget(self.idle)
        for b in banners:
            self.addWidget(b)
            b.text_changed.connect(self._update)
        # the lines, and the banners' padding and border (resources/style.qss)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * self.LINES + 16)
        self._update()

    def _update(self) -> None:
        shown = next((b for b in self.banners if b.text()), None)
        self.setCurrentWidget(shown if shown is not None else self.idle)


class _WindowShortcutKeys(QObject):
    """Lets the window's own shortcuts through a line edit that would take them (Ctrl+E
    is "end of line" in a Qt line edit): the actions of the window holding ``page``."""

    def __init__(self, page: QWidget) -> None:
        super().__init__(page)
        self.page = page

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            keys = QKeySequence(event.keyCombination())
            for action in self.page.window().findChildren(QAction):
                if action.isEnabled() and any(
                        k.matches(keys) == QKeySequence.SequenceMatch.ExactMatch
                        for k in action.shortcuts()):
                    return True  # not overridden: the shortcut fires
        return False


def build_search_widgets(w: SearchPage) -> None:
    """The widgets of the Search page ``w``, set as its attributes, wired to it and laid out."""
    w.hint = Banner()
    w.banner = Banner()
    top = _queue_row(w)
    _query_side(w)
    opts = _search_options(w)
    filters = _filters(w)
    _results_table(w)
    results = QWidget()
    rl = QVBoxLayout(results)
    rl.setContentsMargins(0, 0, 0, 0)
    rl.addLayout(opts)
    rl.addLayout(filters)
    rl.addWidget(w.results_note)
    rl.addWidget(w.table, 1)
    _preview(w)
    side = QSplitter(Qt.Orientation.Vertical)
    side.addWidget(w.record_panel)
    side.addWidget(w.history_panel)
    lower = QSplitter(Qt.Orientation.Horizontal)
    lower.addWidget(side)
    lower.addWidget(results)
    lower.addWidget(w.preview_panel)
    lower.setStretchFactor(0, 1)
    lower.setStretchFactor(1, 3)
    lower.setStretchFactor(2, 2)
    upper = QSplitter(Qt.Orientation.Vertical)
    upper.addWidget(w.query_panel)
    upper.addWidget(lower)
    upper.setStretchFactor(0, 2)
    upper.setStretchFactor(1, 3)

    lay = QVBoxLayout(w)
    lay.addLayout(top)
    lay.addWidget(upper, 1)
    if not w.settings.get("ui/first_run_done"):
        w.hint.show_text(
            "First time here? Click “Try the example song” (or drop any song on this box). "
            "Crossmix separates its vocal and searches your library (at first the "
            "demo songs, indexed on the Library tab) for songs whose accompaniment suits "
            "that voice. Click a match to hear the cross-mix; Space plays and pauses.",
            "info")


def _queue_row(w: SearchPage) -> QHBoxLayout:
    """The drop zone, the example button and the queue of songs waiting."""
    w.drop_zone = DropZone()
    w.drop_zone.files_dropped.connect(w.enqueue)
    # The messages show in the drop zone, in place of its text: no strip kept for them.
    w.drop_zone.set_body(MessageArea(w.banner, w.hint, idle=w.drop_zone.label))
    w.example_button = QPushButton("Try the example song")
    w.example_button.setToolTip("Query with the song clip shipped with Crossmix")
    w.example_button.clicked.connect(w.open_example)
    w.example_button.setEnabled(w.example_path is not None)
    w.queue_label = QLabel("")
    # The queue, visible: what will be queried next; Delete (or Remove) takes a song out.
    w.queue_list = QListWidget()
    w.queue_list.setToolTip("Songs waiting to be queried, in order")
    w.queue_list.setFixedHeight(72)
    w.queue_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    w.queue_list.itemSelectionChanged.connect(w._update_queue_buttons)
    remove_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), w.queue_list)
    remove_key.setContext(Qt.ShortcutContext.WidgetShortcut)
    remove_key.activated.connect(w.remove_from_queue)
    w.queue_remove_button = QPushButton("Remove")
    w.queue_remove_button.setToolTip("Take the selected songs out of the queue")
    w.queue_remove_button.clicked.connect(w.remove_from_queue)
    w.queue_clear_button = QPushButton("Clear queue")
    w.queue_clear_button.clicked.connect(w.clear_queue)
    qbuttons = QVBoxLayout()
    qbuttons.addWidget(w.queue_label)
    qbuttons.addWidget(w.queue_remove_button)
    qbuttons.addWidget(w.queue_clear_button)
    qbuttons.addStretch(1)
    top = QHBoxLayout()
    top.addWidget(w.drop_zone, 1)
    side = QVBoxLayout()
    side.addWidget(w.example_button)
    side.addStretch(1)
    top.addLayout(side)
    top.addWidget(w.queue_list)
    top.addLayout(qbuttons)

    return top


def _query_side(w: SearchPage) -> None:
    """The query panel (stages, waveforms, voice controls), recording and history."""
    w.query_panel = QueryPanel()
    w.query_panel.stages.cancel_requested.connect(w.cancel_query)
    w.record_panel = RecordPanel(w.settings, w.runner)
    w.history_panel = HistoryPanel()
    w._wire_record_and_history()
    voice = w.query_panel.voice  # a voice alone, its tempo, a part of the song
    voice.vocal_only_toggled.connect(w._vocal_only_toggled)
    voice.tempo_requested.connect(w.set_query_tempo)
    voice.estimate_requested.connect(lambda: w.set_query_tempo(None))
    voice.region_search_requested.connect(w.search_region)
    voice.whole_song_requested.connect(lambda: w.search_region(None))
    w.tap_shortcut = QShortcut(QKeySequence(Qt.Key.Key_T), w)
    w.tap_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
    w.tap_shortcut.activated.connect(  # the query's beat, while the Search page shows
        lambda: voice.tap() if w.isVisible() else None)


def _search_options(w: SearchPage) -> QHBoxLayout:
    """Search space and k (remembered as settings), and the note above the results."""
    w.space_combo = QComboBox()
    for s in SPACES:
        w.space_combo.addItem(SPACE_LABELS[s], s)
    w.space_combo.setCurrentIndex(SPACES.index(w.settings.get("search/space")))
    w.k_spin = QSpinBox()
    w.k_spin.setRange(1, 200)
    w.k_spin.setValue(w.settings.get("search/k"))
    w.space_combo.currentIndexChanged.connect(w._search_options_changed)
    w.k_spin.editingFinished.connect(w._search_options_changed)
    # The window's shortcuts (Ctrl+E, Ctrl+O) work while typing in the k box too.
    w._window_keys = _WindowShortcutKeys(w)
    w.k_spin.installEventFilter(w._window_keys)
    w.k_spin.lineEdit().installEventFilter(w._window_keys)
    # two lines at a fixed height: a note appearing never moves the table under the pointer,
    # and a longer one is cut at a word with "…" (whole in its tooltip), never clipped
    w.results_note = NoteLabel(lines=2)
    opts = QHBoxLayout()
    opts.addWidget(QLabel("Search space"))
    opts.addWidget(w.space_combo)
    opts.addWidget(QLabel("Results (k)"))
    opts.addWidget(w.k_spin)
    opts.addStretch(1)

    return opts


def _results_table(w: SearchPage) -> None:
    """The results table (sortable, several rows selectable, dragged out)."""
    w.results_model = ResultsModel(w)
    w.results_proxy = ResultsProxy(w)
    w.results_proxy.setSourceModel(w.results_model)
    # Several rows can be selected (batch export, dragging out); the current row is
    # the one previewed.
    w.table = ResultsTable()
    w.table.setModel(w.results_proxy)
    w.table.setSortingEnabled(True)
    w.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
    w.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    w.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    w.table.setToolTip("Click a match to hear its cross-mix; Ctrl/Shift+click selects "
                          "several to export; drag matches out to get their files")
    w.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    w.table.verticalHeader().hide()
    w.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    w.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
    w.table.selectionModel().currentRowChanged.connect(w._row_selected)
    w.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    w.table.customContextMenuRequested.connect(w._results_menu_requested)
    w.drag_out = DragOut(w)
    w.table.drag_started.connect(w.drag_out.start)
    w.batch_export = BatchExporter(w)


def _preview(w: SearchPage) -> None:
    """The cross-mix preview panel, wired to the page."""
    w.preview_panel = PreviewPanel()
    w.preview_panel.source_changed.connect(w._source_changed)
    w.preview_panel.gains_changed.connect(w._gains_changed)
    w.preview_panel.key_match_changed.connect(w._key_match_changed)
    w.preview_panel.export_requested.connect(w.export_dialog)
    w.preview_panel.loop_changed.connect(w._loop_changed)
    w.preview_panel.phase.offsets_changed.connect(w._offsets_changed)
    bar = w.preview_panel.choice_bar
    bar.runner = w.runner
    bar.choice_made.connect(w._source_choice_made)
    bar.choice_cleared.connect(lambda: w._source_choice_made(None))
    bar.cancel_requested.connect(w._source_choice_cancelled)
    w.preview_panel.play_button.clicked.connect(w.toggle_play)
    w.preview_panel.stop_button.clicked.connect(w.player.stop)
    for key, wave in w.preview_panel.waves.items():
        wave.seek_requested.connect(lambda t, k=key: w._seek_on(k, t))
    w.preview_panel.key_match.setChecked(w.settings.get("remix/key_match"))
    w.preview_panel.set_gains_db(w.settings.get("remix/vocal_gain_db"),
                                    w.settings.get("remix/accompaniment_gain_db"))


def _filters(w: SearchPage) -> QHBoxLayout:
    """Tempo and key filters of the matches and the near-duplicates switch, remembered as settings."""
    from core.remix.analysis import PITCH_CLASSES

    w.tempo_check = QCheckBox("Tempo")
    w.tempo_check.setToolTip("Keep only matches whose tempo lies in this range "
                                "(songs not analysed yet are left out)")
    w.tempo_min = QDoubleSpinBox()
    w.tempo_max = QDoubleSpinBox()
    for box, key in ((w.tempo_min, "search/tempo_min"), (w.tempo_max, "search/tempo_max")):
        box.setRange(20.0, 300.0)
        box.setDecimals(0)
        box.setSuffix(" BPM")
        box.setValue(float(w.settings.get(key)))
        box.editingFinished.connect(w._search_options_changed)
        box.installEventFilter(w._window_keys)
        box.lineEdit().installEventFilter(w._window_keys)
    w.tempo_check.setChecked(bool(w.settings.get("search/tempo_filter")))
    w.tempo_check.toggled.connect(w._tempo_filter_toggled)
    w._tempo_filter_toggled(w.tempo_check.isChecked(), search=False)
    w.key_combo = QComboBox()
    w.key_combo.setToolTip("Keep only matches in this key (songs not analysed yet are "
                              "left out)")
    w.key_combo.addItem("Any key", "")
    for mode in ("major", "minor"):
        for root in PITCH_CLASSES:
            w.key_combo.addItem(f"{root} {mode}", f"{root} {mode}")
    i = w.key_combo.findData(str(w.settings.get("search/key")))
    w.key_combo.setCurrentIndex(max(i, 0))
    w.key_combo.currentIndexChanged.connect(w._search_options_changed)
    row = QHBoxLayout()
    row.addWidget(w.tempo_check)
    row.addWidget(w.tempo_min)
    row.addWidget(QLabel("to"))
    row.addWidget(w.tempo_max)
    row.addWidget(QLabel("Key"))
    row.addWidget(w.key_combo)
    w.duplicates_check = QCheckBox("Include near-duplicates")
    w.duplicates_check.setToolTip("Keep other versions of the query's own recording (the same "
                                  "file, a re-encode, a remaster) among the matches; they are "
                                  "left out by default")
    w.duplicates_check.setChecked(bool(w.settings.get("search/include_duplicates")))
    w.duplicates_check.toggled.connect(w._search_options_changed)
    row.addWidget(w.duplicates_check)
    row.addStretch(1)
    return row

