"""Run engine calls off the GUI thread and turn their callbacks into Qt signals.

A :class:`Task` wraps one call ``fn(*args, progress=..., cancel=..., **kwargs)`` in a
:class:`QRunnable`. Its :class:`TaskSignals` live on the GUI thread, so connected slots run
there (queued connections) and are the only place widgets are touched. Progress reports are
throttled so a chatty engine cannot flood the event loop. :class:`TaskRunner` owns the pool,
keeps the running tasks alive, and cancels/waits for them when the window closes.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from core.errors import Cancelled, CrossmixError
from core.progress import CancelToken, Progress

log = logging.getLogger(__name__)

#: Minimum time between two forwarded progress reports of the same stage.
PROGRESS_INTERVAL_S = 0.05
#: Niceness of the training subprocess (a separate process: lowering its priority keeps the
#: desktop responsive). Worker *threads* are left at normal priority: a niced thread holding
#: the GIL while descheduled would make the GUI thread wait for it (measured: slower queries
#: and no shorter stalls).
WORKER_NICE = 10


def describe_error(exc: BaseException, *, what: str = "") -> str:
    """A readable message for the user: the engine's own message, or a short summary."""
    if isinstance(exc, CrossmixError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"{what or 'The operation'} ran out of memory. Close other programs or use a shorter song."
    prefix = f"{what} failed" if what else "Unexpected error"
    return f"{prefix}: {type(exc).__name__}: {exc}"


class TaskSignals(QObject):
    progress = Signal(object)  # Progress
    finished = Signal(object)  # the result
    failed = Signal(str, object)  # readable message, the exception
    cancelled = Signal()
    done = Signal()  # always emitted last


class Task(QRunnable):
    """One engine call on the thread pool. ``fn`` gets ``progress=`` and ``cancel=``."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name or getattr(fn, "__name__", "task")
        self.cancel_token = CancelToken()
        self.signals = TaskSignals()
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_event = threading.Event()
        self._last_emit: dict[str, float] = {}
        self._last_message: dict[str, str] = {}

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    def _report(self, p: Progress) -> None:
        now = time.monotonic()
        last = self._last_emit.get(p.stage)
        # A report that says something new (the next step's message) always goes through:
        # dropped, the previous message would stand for the whole of that step.
        if (last is not None and now - last < PROGRESS_INTERVAL_S and p.done < p.total
                and p.message == self._last_message.get(p.stage)):
            return
        self._last_emit[p.stage] = now
        self._last_message[p.stage] = p.message
        self.signals.progress.emit(p)

    def run(self) -> None:  # worker thread
        try:
            self.result = self.fn(*self.args, progress=self._report, cancel=self.cancel_token,
                                  **self.kwargs)
            if self.cancel_token.cancelled:
                raise Cancelled(self.name)
        except Cancelled:
            self.signals.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message
            self.error = exc
            if not isinstance(exc, CrossmixError):
                log.error("task %s failed:\n%s", self.name, traceback.format_exc())
            self.signals.failed.emit(describe_error(exc, what=self.name), exc)
        else:
            self.signals.finished.emit(self.result)
        finally:
            self.finished_event.set()
            self.signals.done.emit()


class TaskRunner(QObject):
    """Starts tasks on a private pool, keeps them referenced, cancels them all on close."""

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, *, max_threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._running: set[Task] = set()

    def start(self, task: Task) -> Task:
        self._running.add(task)
        # A bound slot (not a lambda): Qt drops the connection if the runner goes first.
        task.signals.done.connect(self._task_done)
        was_busy = len(self._running) > 1
        self.pool.start(task)
        if not was_busy:
            self.busy_changed.emit(True)
        return task

    def submit(self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> Task:
        return self.start(Task(fn, *args, name=name, **kwargs))

    def _task_done(self) -> None:
        sender = self.sender()
        for task in list(self._running):
            if task.signals is sender:
                self._running.discard(task)
        if not self._running:
            self.busy_changed.emit(False)

    @property
    def running(self) -> list[Task]:
        return [t for t in self._running if not t.finished_event.is_set()]

    def cancel_all(self) -> None:
        for t in list(self._running):
            t.cancel()

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Cancel everything and wait for the threads; ``True`` when all stopped in time.

        Afterwards no task signal is delivered any more: the signals objects are deleted,
        which drops their already-queued events, so no slot runs on a closed window.
        """
        self.cancel_all()
        for task in list(self._running):
            # A task still queued behind busy threads never runs: it is taken back from the
            # pool and counts as finished (otherwise it would stay "running" for ever).
            if self.pool.tryTake(task):
                task.finished_event.set()
        self.pool.clear()
        ok = bool(self.pool.waitForDone(int(timeout_s * 1000)))
        for task in list(self._running):
            if task.finished_event.is_set():
                shiboken6.delete(task.signals)
                self._running.discard(task)
        return ok
