"""Cyclic garbage is collected on the GUI thread only.

Python's cycle collector runs in whichever thread happens to allocate when a generation fills
up. When that is a worker thread (separation, indexing, rendering) and the garbage holds Qt
wrappers (a closed dialog, a replaced model, a lambda connected to a signal), their C++
objects are destroyed off the GUI thread, which Qt does not allow: the process can crash
("Segmentation fault ... Garbage-collecting" in a worker). The usual cure in PySide/PyQt
applications is to switch the automatic collector off and collect from a timer on the GUI
thread; reference counting still frees everything that is not in a cycle at once.
"""

from __future__ import annotations

import gc
from typing import Any

#: Milliseconds between collections of the young generation on the GUI thread.
INTERVAL_MS = 500


class GuiThreadCollector:
    """Collect generation 0 every :data:`INTERVAL_MS` (older ones when their thresholds say so).

    Create it once the ``QApplication`` exists, keep a reference for the app's lifetime;
    :meth:`stop` restores Python's automatic collection.
    """

    def __init__(self, parent: Any = None, *, interval_ms: int = INTERVAL_MS) -> None:
        from PySide6.QtCore import QTimer

        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(parent)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        self._timer.start()

    def collect(self) -> int:
        """One step: the generations whose allocation counts passed their thresholds."""
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if c2 > t2:
            return gc.collect(2)
        if c1 > t1:
            return gc.collect(1)
        if c0 > 0:
            return gc.collect(0)
        return 0

    def stop(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
