"""A waveform on which a part of the song is chosen by dragging across it (issue 15, part 4).

A left-button drag draws the region; its edges can then be dragged, or the whole region moved.
A click outside it clears it. The region is in seconds of the song, within it.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget

from gui.waveform import Envelope, WaveformView

#: Drags shorter than this (s) are clicks, not selections.
MIN_DRAG_S = 0.2


class _SelectingViewBox(pg.ViewBox):  # type: ignore[misc]  # pyqtgraph is untyped
    """A view box whose left-button drags select instead of panning."""

    def __init__(self) -> None:
        super().__init__()
        self.on_drag: Any = None  # (start_s, end_s, finished) -> None

    def mouseDragEvent(self, ev: Any, axis: Any = None) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton or self.on_drag is None:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        a = float(self.mapSceneToView(ev.buttonDownScenePos()).x())
        b = float(self.mapSceneToView(ev.scenePos()).x())
        self.on_drag(min(a, b), max(a, b), bool(ev.isFinish()))


class RegionWaveformView(WaveformView):
    """:class:`WaveformView` with a draggable region (``region_changed(tuple | None)``)."""

    region_changed = Signal(object)

    def __init__(self, title: str = "", *, color: str = "#4aa3df",
                 parent: QWidget | None = None) -> None:
        vb = _SelectingViewBox()
        super().__init__(title, color=color, parent=parent, view_box=vb)
        self.region_item = pg.LinearRegionItem(values=(0.0, 1.0), movable=True,
                                               brush=pg.mkBrush(255, 200, 60, 50))
        self.region_item.setZValue(-10)
        self.region_item.setVisible(False)
        self.region_item.sigRegionChangeFinished.connect(self._item_moved)
        self.addItem(self.region_item)
        vb.on_drag = self._dragged
        self.seek_requested.connect(self._clicked_at)

    @property
    def region(self) -> tuple[float, float] | None:
        if not self.region_item.isVisible():
            return None
        a, b = self.region_item.getRegion()
        return float(a), float(b)

    def set_region(self, region: tuple[float, float] | None) -> None:
        """Show ``region`` (clipped to the song) or none; says so with ``region_changed``."""
        if region is None or self.env is None:
            changed = self.region_item.isVisible()
            self.region_item.setVisible(False)
        else:
            a, b = (max(0.0, min(region)), min(self.env.duration, max(region)))
            changed = True
            if b - a < MIN_DRAG_S:
                self.region_item.setVisible(False)
            else:
                self.region_item.blockSignals(True)
                self.region_item.setBounds((0.0, self.env.duration))
                self.region_item.setRegion((a, b))
                self.region_item.blockSignals(False)
                self.region_item.setVisible(True)
        if changed:
            self.region_changed.emit(self.region)

    def set_envelope(self, env: Envelope, *, playhead: bool = True) -> None:
        same = self.env is not None and self.env.duration == env.duration
        super().set_envelope(env, playhead=playhead)
        if not same:  # another song: its earlier selection means nothing
            self.set_region(None)

    def show_message(self, text: str) -> None:
        super().show_message(text)
        if hasattr(self, "region_item"):
            self.set_region(None)

    def _dragged(self, a: float, b: float, finished: bool) -> None:
        if self.env is None:
            return
        a, b = max(0.0, a), min(self.env.duration, b)
        if b - a < MIN_DRAG_S:
            return
        self.region_item.blockSignals(True)
        self.region_item.setBounds((0.0, self.env.duration))
        self.region_item.setRegion((a, b))
        self.region_item.blockSignals(False)
        self.region_item.setVisible(True)
        if finished:
            self.region_changed.emit(self.region)

    def _item_moved(self, *_: object) -> None:
        if self.region_item.isVisible():
            self.region_changed.emit(self.region)

    def _clicked_at(self, t: float) -> None:
        r = self.region
        if r is not None and not r[0] <= t <= r[1]:
            self.set_region(None)
