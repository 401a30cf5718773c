"""Cycles are collected on the GUI thread, never in a worker (gui/gc_policy.py)."""

from __future__ import annotations

import gc
import threading

import pytest

pytestmark = pytest.mark.gui


class _Cycle:
    collected_in: list[str] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _Cycle.collected_in.append(threading.current_thread().name)


def test_cycles_made_anywhere_are_collected_by_the_gui_thread_timer(qtbot) -> None:  # type: ignore[no-untyped-def]
    from gui.gc_policy import GuiThreadCollector

    was = gc.isenabled()
    gc.enable()
    collector = GuiThreadCollector(interval_ms=20)
    try:
        assert not gc.isenabled()
        _Cycle.collected_in.clear()

        def worker() -> None:
            for _ in range(50):
                _Cycle()
            junk = [[i] for i in range(200_000)]  # allocations that would trigger a collection
            del junk

        t = threading.Thread(target=worker, name="worker")
        t.start()
        t.join()
        assert _Cycle.collected_in == []  # the worker collected nothing
        qtbot.waitUntil(lambda: len(_Cycle.collected_in) == 50, timeout=3000)
        assert set(_Cycle.collected_in) == {threading.main_thread().name}
    finally:
        collector.stop()
        if not was:
            gc.disable()
