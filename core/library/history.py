"""The last queries (song files, microphone takes), kept in ``data_dir()/history.json``.

Each entry holds what is needed to run the query again: the file and the query's options
(``vocal_only``, ``tempo``, ``first_beat``, and whatever later options a query takes), with what it found
(matches, the best one) for the list. The file is written atomically; an unreadable one is
set aside as ``history.json.bad`` and the history starts empty, so it never stops the app.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from core.atomic import atomic_write
from core.errors import CrossmixError
from core.paths import data_dir

log = logging.getLogger(__name__)

HISTORY_VERSION = 1
#: Entries kept (the oldest go first).
HISTORY_LIMIT = 50


def history_path() -> Path:
    return data_dir() / "history.json"


@dataclasses.dataclass
class HistoryEntry:
    """One query. ``kind`` is ``"file"`` or ``"take"``; ``options`` are keyword arguments of
    the query (``vocal_only``, ``tempo``, ``first_beat``...), so running it again gives the same query."""

    path: str
    title: str
    kind: str = "file"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    when: str = ""  # ISO 8601, local time
    matches: int = 0
    best: str = ""  # title of the best match

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the query: the same file with the same options is one entry."""
        return self.path, json.dumps(self.options, sort_keys=True)

    @property
    def exists(self) -> bool:
        return Path(self.path).is_file()


class History:
    """The persisted list of :class:`HistoryEntry`, newest first."""

    def __init__(self, path: str | Path | None = None, *, limit: int = HISTORY_LIMIT) -> None:
        self.path = Path(path) if path is not None else history_path()
        self.limit = limit
        self.note = ""  # what went wrong reading or writing it, for the user
        self.entries: list[HistoryEntry] = self._load()

    def _load(self) -> list[HistoryEntry]:
        if not self.path.is_file():
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            fields = {f.name for f in dataclasses.fields(HistoryEntry)}
            return [HistoryEntry(**{k: v for k, v in e.items() if k in fields})
                    for e in raw["entries"]][: self.limit]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            bad = self.path.with_name(self.path.name + ".bad")
            try:
                os.replace(self.path, bad)
                where = f" (set aside as {bad})"
            except OSError:
                where = ""
            self.note = f"{self.path}: the query history could not be read ({exc}){where}; " \
                        "it starts empty."
            log.warning("%s", self.note)
            return []

    def save(self) -> None:
        """Write the history.

        Raises
        ------
        CrossmixError
            The data folder cannot be written (read-only, disk full).
        """
        data = {"version": HISTORY_VERSION,
                "entries": [dataclasses.asdict(e) for e in self.entries]}
        try:
            with atomic_write(self.path) as tmp:
                tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        except OSError as exc:
            raise CrossmixError(f"{self.path}: the query history could not be saved "
                                f"({exc.strerror or exc}); it is kept until Crossmix closes. "
                                "Check that the data folder may be written.") from exc

    def add(self, entry: HistoryEntry) -> HistoryEntry:
        """Put ``entry`` first (replacing an entry of the same query) and save."""
        if not entry.when:
            entry.when = dt.datetime.now().isoformat(timespec="seconds")
        self.entries = [e for e in self.entries if e.key != entry.key]
        self.entries.insert(0, entry)
        del self.entries[self.limit:]
        self.save()
        return entry

    def remove(self, entry: HistoryEntry) -> None:
        self.entries = [e for e in self.entries if e.key != entry.key]
        self.save()

    def remove_missing(self) -> int:
        """Forget the entries whose file is gone; how many."""
        before = len(self.entries)
        self.entries = [e for e in self.entries if e.exists]
        if len(self.entries) != before:
            self.save()
        return before - len(self.entries)

    def rename_path(self, old: str, new: str, *, title: str | None = None) -> None:
        """A file was renamed (a take): its entries follow it (with ``title`` when given)."""
        changed = False
        for e in self.entries:
            if e.path == old:
                e.path = new
                e.title = title or e.title
                changed = True
        if changed:
            self.save()
