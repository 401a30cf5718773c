"""A region of a song as the query (the chorus, say): checked, then cut from its stems."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.audio.decode import Audio
from core.embedding.features import SEGMENT_SECONDS
from core.errors import CrossmixError

if TYPE_CHECKING:
    from core.separation.separator import Stems


class RegionError(CrossmixError):
    """A region that cannot be a query (reversed, outside the song, too short)."""


def check_region(start: float | None, end: float | None, duration: float, *,
                 name: str = "the song") -> tuple[float, float]:
    """``(start, end)`` in seconds of a region of a ``duration``-second song.

    ``None`` means the song's start (or end). The region must lie in the song and be at
    least one embedding segment (:data:`core.embedding.features.SEGMENT_SECONDS`) long.

    Raises
    ------
    RegionError
        Saying what is wrong with the range and what would do.
    """
    s = 0.0 if start is None else float(start)
    e = duration if end is None else float(end)
    whole = f"{name} is {duration:.1f} s long"
    if s < 0 or e < 0:
        raise RegionError(f"The region {s:g}-{e:g} s has a negative time; {whole}.")
    if s >= duration:
        raise RegionError(f"The region starts at {s:g} s, after the end: {whole}.")
    if e <= s:
        raise RegionError(f"The region ends ({e:g} s) before it starts ({s:g} s); give a start "
                          "before the end.")
    if e > duration + 0.05:
        raise RegionError(f"The region ends at {e:g} s, after the end: {whole}; give an end of "
                          f"at most {duration:.1f} s (or none for the end of the song).")
    e = min(e, duration)
    if e - s < SEGMENT_SECONDS:
        raise RegionError(f"The region {s:.1f}-{e:.1f} s is {e - s:.1f} s long; a query needs at "
                          f"least {SEGMENT_SECONDS:.0f} s. Choose a longer region.")
    return s, e


def crop(audio: Audio, start: float, end: float) -> Audio:
    """``audio`` from ``start`` to ``end`` seconds."""
    a, b = int(round(start * audio.sr)), int(round(end * audio.sr))
    return Audio(audio.samples[:, a:b].copy(), audio.sr, audio.source)


def crop_stems(stems: Stems, start: float, end: float) -> Stems:
    """The stems of the region ``start``-``end`` seconds of a song."""
    from core.separation.separator import Stems

    return Stems(mix=crop(stems.mix, start, end), vocals=crop(stems.vocals, start, end),
                 accompaniment=crop(stems.accompaniment, start, end))
