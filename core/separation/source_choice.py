"""A choice made in the app: "remove (or keep only) a sound like this one" (issue 12).

Kept apart from :mod:`core.separation.by_example` so that the window can hold and show a choice
without importing torch (the separator loads only when the choice is applied).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: A query shorter than this (seconds) is refused: the Query-net needs a few notes.
MIN_QUERY_SECONDS = 0.5


@dataclass(frozen=True)
class SourceChoice:
    """The stretch ``start``-``end`` (s) of ``origin`` (``"mix"``/``"accompaniment"`` of a match,
    or ``"file"`` at ``path``) is an example of the sound to ``mode`` (``"remove"``/``"keep"``)."""

    mode: str
    origin: str
    start: float
    end: float
    path: str = ""

    def describe(self) -> str:
        where = {"mix": "the match's mix", "accompaniment": "the match's accompaniment"}.get(
            self.origin, Path(self.path).name or "a file")
        verb = "without" if self.mode == "remove" else "only"
        return f"accompaniment {verb} the sound at {self.start:.1f}-{self.end:.1f} s of {where}"
