"""A guard against a reference-count bug in PySide6 6.12 on Python 3.11.

PySide6 6.12.0 releases one reference to ``None`` too many in some calls from C++ into Python
overrides, among them ``QGraphicsItem.paint`` (measured: 10 items repainted 100 times take
200 references from ``None``; one pyqtgraph waveform repaint about 180). On Python < 3.12
``None`` has an ordinary reference count (about 10^5 in this app), so after some hundreds of
waveform repaints it reaches zero and the interpreter aborts ("none_dealloc: deallocating
None"). Python 3.12 made ``None`` immortal, which is what :func:`keep_none_alive` does here:
it adds 2^40 references, which no session can use up.

``True`` gets the same treatment (and ``False`` with it): every call of a Python slot by a
signal emitted on the GUI thread releases one reference to ``True`` too many (measured: 10
emits, 10 references; a recording's level meter emits 60 times a second, so a take of a few
minutes used up all of ``True``'s and the app aborted with "bool_dealloc" at exit).
"""

from __future__ import annotations

import sys


def keep_none_alive() -> bool:
    """Make the reference counts of ``None``, ``True`` and ``False`` unreachable from zero
    (CPython < 3.12); ``True`` if done."""
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    import ctypes

    for obj in (None, True, False):
        if sys.getrefcount(obj) <= 1 << 39:  # not done already
            ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True
