"""Measure how long the GUI event loop is kept from running (its *stalls*).

A :class:`QTimer` asks to fire every ``interval_ms``; when the loop is blocked the timer fires
late, and the lateness is the stall. Used by the tests and ``bench/app.py`` to check that the
window stays responsive (no stall over 100 ms) during a query and during indexing.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallMonitor(QObject):
    """Records the lateness of a precise timer; ``max_stall_ms`` is the worst seen."""

    def __init__(self, parent: QObject | None = None, *, interval_ms: int = 10) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.stalls_ms: list[float] = []
        self.ticks = 0

    def start(self) -> None:
        self.reset()
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._last = None

    def reset(self) -> None:
        self.stalls_ms = []
        self.ticks = 0
        if self._timer.isActive():
            self._last = time.perf_counter()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            late = (now - self._last) * 1000.0 - self.interval_ms
            self.stalls_ms.append(max(0.0, late))
        self._last = now
        self.ticks += 1

    @property
    def max_stall_ms(self) -> float:
        return max(self.stalls_ms, default=0.0)

    def count_over(self, threshold_ms: float) -> int:
        return sum(1 for s in self.stalls_ms if s > threshold_ms)

    def percentile(self, q: float) -> float:
        if not self.stalls_ms:
            return 0.0
        s = sorted(self.stalls_ms)
        return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]
