"""Waveform display: a peak envelope pyramid (built in a worker) drawn clipped to the view.

:func:`envelope` reduces ``(channels, n)`` audio to min/max pairs per bin at several
resolutions; it is the only numpy work on long arrays and runs in a worker thread. The widget
then only slices the level whose visible bin count fits the screen (a few thousand points),
so zooming into a 10-minute song stays cheap on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget

from core.audio.decode import Audio

#: Samples per bin at the finest level, and the factor between levels.
FINEST_BIN = 32
LEVEL_FACTOR = 4
#: Most bins drawn at once (about twice a wide screen's pixels).
MAX_DRAWN_BINS = 4000


@dataclass(frozen=True)
class Envelope:
    """Peak envelope of a signal. ``levels[i]`` is ``(lo, hi)``, each ``(bins_i,)`` float32,
    for bins of ``bin_sizes[i]`` samples at ``sr`` Hz; ``duration`` is in seconds."""

    levels: tuple[tuple[np.ndarray, np.ndarray], ...]
    bin_sizes: tuple[int, ...]
    sr: int
    duration: float

    def level_for(self, seconds_visible: float) -> int:
        """Index of the finest level drawing at most :data:`MAX_DRAWN_BINS` bins in view."""
        for i, size in enumerate(self.bin_sizes):
            if seconds_visible * self.sr / size <= MAX_DRAWN_BINS:
                return i
        return len(self.bin_sizes) - 1

    def pairs(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (s) and ``y`` for a 'pairs' line plot of the bins between ``t0`` and ``t1``."""
        t0 = max(0.0, t0)
        t1 = min(self.duration, t1)
        if t1 <= t0:
            return np.zeros(0), np.zeros(0)
        i = self.level_for(t1 - t0)
        lo, hi = self.levels[i]
        size = self.bin_sizes[i]
        a = max(0, int(t0 * self.sr / size) - 1)
        b = min(lo.size, int(np.ceil(t1 * self.sr / size)) + 1)
        x = (np.arange(a, b, dtype=np.float64) + 0.5) * size / self.sr
        xs = np.repeat(x, 2)
        ys = np.empty(2 * (b - a), dtype=np.float32)
        ys[0::2] = lo[a:b]
        ys[1::2] = hi[a:b]
        return xs, ys


def envelope(audio: Audio) -> Envelope:
    """Build the min/max pyramid of ``audio`` (channels summed to mono, peak kept per bin).

    Runs in a worker: O(n) numpy over the whole signal.
    """
    x = audio.samples
    mono = x[0] if x.shape[0] == 1 else x.mean(axis=0)
    n = mono.size
    nb = max(1, -(-n // FINEST_BIN))
    padded = np.zeros(nb * FINEST_BIN, dtype=np.float32)
    padded[:n] = mono
    blocks = padded.reshape(nb, FINEST_BIN)
    lo = blocks.min(axis=1)
    hi = blocks.max(axis=1)
    levels = [(lo, hi)]
    sizes = [FINEST_BIN]
    while lo.size > MAX_DRAWN_BINS // 2:
        m = -(-lo.size // LEVEL_FACTOR)
        lo_p = np.full(m * LEVEL_FACTOR, np.inf, dtype=np.float32)
        hi_p = np.full(m * LEVEL_FACTOR, -np.inf, dtype=np.float32)
        lo_p[: lo.size] = lo
        hi_p[: hi.size] = hi
        lo = lo_p.reshape(m, LEVEL_FACTOR).min(axis=1)
        hi = hi_p.reshape(m, LEVEL_FACTOR).max(axis=1)
        levels.append((lo, hi))
        sizes.append(sizes[-1] * LEVEL_FACTOR)
    return Envelope(tuple(levels), tuple(sizes), audio.sr, audio.duration)


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
