"""The engine as the window uses it: :class:`core.api.Crossmix` plus what a window draws.

Everything the app does to songs (the query pipeline, compatibility, rendering, export, the
library) is :class:`core.api.Crossmix`, the same object ``crossmix match`` and ``remix``
use. This adapter adds only display data: the waveform envelopes of a query
(:attr:`QueryResult.mix_env`, ``vocal_env``) and of a rendered cross-mix, and the arrays the
player plays (:class:`PreviewResult`). No Qt here; every method is blocking and runs in a
worker (:mod:`gui.workers`). Models are built lazily by injected factories, so tests pass tiny
random-weight models through the constructor and the app passes the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.api import (
    QUERY_STAGES,
    BatchExport,
    Crossmix,
    LibraryOverview,
    MatchRow,
    Removal,
    Rendered,
    SongEntry,
    region_options,
    song_entries,
    warm_up,
)
from core.api import QueryResult as EngineQueryResult
from core.audio.decode import DEFAULT_MAX_DURATION
from core.library.spaces import DUPLICATE_SIMILARITY
from core.progress import CancelToken, Progress, ProgressFn
from gui.audio_views import Envelope, envelope, playable

if TYPE_CHECKING:
    import torch

__all__ = [
    "QUERY_STAGES", "BatchExport", "LibraryOverview", "PreviewResult", "QueryResult", "Removal",
    "Session", "SongEntry", "region_options",
    "song_entries", "warm_up",
]


@dataclass
class QueryResult(EngineQueryResult):
    """A query as the window shows it: the engine's result and its waveforms."""

    mix_env: Envelope | None = None
    vocal_env: Envelope | None = None


@dataclass
class PreviewResult(Rendered):
    """A rendered cross-mix for one match, with envelopes and playback arrays."""

    envs: dict[str, Envelope] = field(default_factory=dict)
    layers: dict[str, list[np.ndarray]] = field(default_factory=dict)
    sr: dict[str, int] = field(default_factory=dict)


class Session(Crossmix):
    """:class:`core.api.Crossmix` for the window (the same parameters, as factories)."""

    result_type = QueryResult

    def __init__(
        self,
        *,
        device: torch.device | None = None,
        separator_factory: Callable[[torch.device], Any] | str = "spleeter-2stems",
        encoders_factory: Callable[[torch.device], Any] | str = "",
        library_factory: Callable[[], Any] | None = None,
        stem_cache: Any | None = None,
        max_duration: float = DEFAULT_MAX_DURATION,
        duplicate_threshold: float = DUPLICATE_SIMILARITY,
        query_separator_factory: Callable[[torch.device], Any] | str = "shipped",
        query_store: Any | None = None,
    ) -> None:
        super().__init__(device=device, separator=separator_factory, encoders=encoders_factory,
                         library=library_factory, query_cache=stem_cache,
                         max_duration=max_duration, duplicate_threshold=duplicate_threshold,
                         query_separator=query_separator_factory, query_store=query_store)

    def query(self, path: str | Path, **kw: Any) -> QueryResult:
        """:meth:`core.api.Crossmix.query`, with the query's waveforms drawn (a query of the
        history reopened from the query store draws them from its cached stems)."""
        result = super().query(path, **kw)
        assert isinstance(result, QueryResult)
        result.mix_env = envelope(result.stems.mix)
        result.vocal_env = (result.mix_env if result.vocal_only
                            else envelope(result.stems.vocals))
        return result

    def analyze(self, result: EngineQueryResult, **kw: Any) -> EngineQueryResult:
        """The query's tempo and key, then each match's compatibility (the table's columns)."""
        return self.compatibility(result, **kw)

    def preview(self, query: EngineQueryResult, row: MatchRow, *, options: Any,
                choice: Any = None, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> PreviewResult:
        """Render the cross-mix of ``row`` (:meth:`core.api.Crossmix.render`) and prepare its
        waveforms and the player's arrays."""
        r = self.render(query, row, options=options, choice=choice, progress=progress,
                        cancel=cancel)
        if progress is not None:
            progress(Progress("preview", 2, 3, "steps", "drawing"))
        stems, acc, cm = r.match_stems, r.accompaniment, r.crossmix
        envs = {"mix": envelope(stems.mix), "accompaniment": envelope(acc),
                "crossmix": envelope(cm.mix)}
        if choice is not None:
            envs["before"] = envelope(stems.full_band_accompaniment)
        layers = {"mix": [playable(stems.mix)], "accompaniment": [playable(acc)],
                  "crossmix": [playable(cm.vocals), playable(cm.accompaniment)]}
        srs = {"mix": stems.mix.sr, "accompaniment": acc.sr, "crossmix": cm.mix.sr}
        if progress is not None:
            progress(Progress("preview", 3, 3, "steps"))
        return PreviewResult(row=r.row, crossmix=cm, match_stems=stems, options=r.options,
                             choice=r.choice, accompaniment=acc, envs=envs, layers=layers,
                             sr=srs)
