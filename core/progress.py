"""Progress reports and cancel tokens for long work (separation, indexing, training).

Long functions take ``progress: ProgressFn | None`` and ``cancel: CancelToken | None``.
The GUI turns progress calls into Qt signals in a worker; the CLI draws a bar.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress report.

    ``done`` and ``total`` are in ``unit`` (``"s"`` of audio, ``"songs"``, ``"batches"``...);
    ``stage`` names the step (``"decode"``, ``"separate"``, ``"embed"``, ``"search"``...).
    """

    stage: str
    done: float
    total: float
    unit: str = ""
    message: str = ""
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.done / self.total))


ProgressFn = Callable[[Progress], None]


@dataclass
class CancelToken:
    """Thread-safe cancel flag. ``check()`` raises :class:`Cancelled` once cancelled."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, what: str = "the operation") -> None:
        if self._event.is_set():
            raise Cancelled(what)


def check_cancel(cancel: CancelToken | None, what: str = "the operation") -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set; no-op for ``None``."""
    if cancel is not None:
        cancel.check(what)


class EtaClock:
    """Estimates time left from the rate so far (simple, robust to a slow first item)."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def eta(self, done: float, total: float) -> float | None:
        if done <= 0 or total <= 0:
            return None
        elapsed = time.monotonic() - self._t0
        return max(0.0, elapsed * (total - done) / done)
