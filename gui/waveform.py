"""Waveform display: a peak envelope pyramid (built in a worker) drawn clipped to the view.

:func:`envelope` reduces ``(channels, n)`` audio to min/max pairs per bin at several
resolutions; it is the only numpy work on long arrays and runs in a worker thread. The widget
then only slices the level whose visible bin count fits the screen (a few thousand points),
so zooming into a 10-minute song stays cheap on the GUI thread.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget

from gui.audio_views import FINEST_BIN, LEVEL_FACTOR, MAX_DRAWN_BINS, Envelope, envelope

__all__ = ["FINEST_BIN", "LEVEL_FACTOR", "MAX_DRAWN_BINS", "Envelope", "WaveformView", "envelope"]


class WaveformView(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """One waveform with a playhead. Click to seek (``seek_requested(seconds)``)."""

    seek_requested = Signal(float)

    def __init__(self, title: str = "", *, color: str = "#4aa3df",
                 parent: QWidget | None = None, view_box: pg.ViewBox | None = None) -> None:
        super().__init__(parent=parent, viewBox=view_box)
        self.setBackground(None)
        self.setMinimumHeight(70)
        self._color = color
        self.env: Envelope | None = None
        item = self.getPlotItem()
        item.hideButtons()
        item.setMenuEnabled(False)
        item.showGrid(x=True, y=False, alpha=0.15)
        item.getAxis("left").hide()
        item.setLabel("bottom", "")
        if title:
            item.setTitle(title, size="9pt")
        self.setMouseEnabled(x=True, y=False)
        self.setYRange(-1.0, 1.0, padding=0.02)
        self.curve = pg.PlotDataItem(pen=pg.mkPen(color, width=1), connect="pairs",
                                     antialias=False)
        self.addItem(self.curve)
        self.playhead = pg.InfiniteLine(pos=0.0, angle=90, movable=False,
                                        pen=pg.mkPen("#ff5050", width=2))
        self.playhead.setVisible(False)
        self.addItem(self.playhead)
        self.placeholder = pg.TextItem("", color="#888888", anchor=(0.5, 0.5))
        self.addItem(self.placeholder)
        item.getViewBox().sigXRangeChanged.connect(self._redraw)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.show_message("")

    def set_title(self, title: str) -> None:
        self.getPlotItem().setTitle(title, size="9pt")

    def show_message(self, text: str) -> None:
        """Clear the plot and show ``text`` in the middle (e.g. 'rendering...')."""
        self.env = None
        self.curve.setData([], [])
        self.playhead.setVisible(False)
        self.placeholder.setText(text)
        self.placeholder.setPos(0.5, 0.0)
        self.getPlotItem().getAxis("bottom").setStyle(showValues=False)  # no time axis yet
        self.getPlotItem().getViewBox().setLimits(xMin=None, xMax=None)
        self.setXRange(0.0, 1.0, padding=0)

    def set_envelope(self, env: Envelope, *, playhead: bool = True) -> None:
        self.env = env
        self.placeholder.setText("")
        self.getPlotItem().getAxis("bottom").setStyle(showValues=True)
        vb = self.getPlotItem().getViewBox()
        vb.setLimits(xMin=0.0, xMax=max(env.duration, 1e-3))
        self.setXRange(0.0, env.duration, padding=0)
        self.setYRange(-1.0, 1.0, padding=0.02)
        self._redraw()
        self.playhead.setValue(0.0)
        self.playhead.setVisible(playhead)

    @property
    def drawn_points(self) -> int:
        x, _ = self.curve.getData()
        return 0 if x is None else int(len(x))

    def _redraw(self, *_: object) -> None:
        if self.env is None:
            return
        t0, t1 = self.getPlotItem().getViewBox().viewRange()[0]
        x, y = self.env.pairs(t0, t1)
        self.curve.setData(x, y)

    def set_playhead(self, seconds: float) -> None:
        if self.env is not None:
            self.playhead.setValue(seconds)

    def _clicked(self, ev) -> None:  # type: ignore[no-untyped-def]
        if self.env is None or ev.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        t = float(vb.mapSceneToView(ev.scenePos()).x())
        self.seek_requested.emit(min(max(t, 0.0), self.env.duration))
