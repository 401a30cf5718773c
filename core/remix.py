"""Cross-mixes: a query's vocal over a matched song's accompaniment, tempo- and beat-aligned.

The accompaniment is time-stretched with Rubber Band through a *time map* that sends every
accompaniment beat onto a query beat, so the two stay in phase over the whole song, not just
at the first beat. The half/double tempo that needs the least stretch is used. Optionally the
accompaniment (never the vocal) is pitch-shifted, formant-preserving, by the smallest interval
that brings it to the query's key. The two parts are balanced by loudness, faded and run
through a true-peak limiter.

:func:`compatibility` scores a pair from their analyses alone (no audio): stretch, shift and
a combined *mashability* that can re-rank search results (in the spirit of AutoMashUpper,
Davies et al. 2014: similarity minus penalties for heavy stretching and distant keys).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.analysis import Analysis

#: Weight of the stretch penalty in the mashability score.
W_STRETCH = 0.3
#: Weight of the key penalty in the mashability score.
W_KEY = 0.2
#: Stretch (as a speed factor) at which the stretch penalty saturates at 1: +/-25 %.
STRETCH_SATURATION = 1.25
#: Cost of each semitone of pitch shift, relative to a full key clash (shifting is not free).
SHIFT_COST_PER_SEMITONE = 0.05

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RemixOptions:
    """How to render a cross-mix.

    Attributes
    ----------
    preview : bool
        Render ``preview_seconds`` from the query's most vocal-active region (``True``) or
        the whole query (``False``).
    preview_seconds : float
        Length of a preview, seconds.
    preview_start : float or None
        Start of the preview in query seconds; ``None`` picks the most vocal-active region.
    key_match : bool
        Pitch-shift the accompaniment to the query's key (formant-preserving).
    max_shift : int
        Largest shift in semitones key matching may apply; farther keys are left alone.
    vocal_to_accompaniment_db : float
        Target loudness of the vocal relative to the accompaniment (LU); 0 = equally loud.
    vocal_gain_db, accompaniment_gain_db : float
        Extra gain on each part after the balance, dB.
    target_lufs : float
        Integrated loudness of the mix before limiting, LUFS.
    ceiling_dbtp : float
        True-peak ceiling of the limiter, dBTP (below 0 so lossy encoders cannot clip).
    fade_in_s, fade_out_s : float
        Fades at the start and end of the render, seconds.
    align_beats : bool
        Warp the accompaniment beat by beat onto the query's beats (``False``: one constant
        stretch ratio, aligned at the first beat only).
    align_downbeats : bool
        Also put the accompaniment's bar lines on the query's when both have downbeats.
    use_rubberband : bool
        Use Rubber Band (``False`` or missing binary: librosa phase-vocoder fallback).
    """

    preview: bool = True
    preview_seconds: float = 30.0
    preview_start: float | None = None
    key_match: bool = False
    max_shift: int = 3
    vocal_to_accompaniment_db: float = 0.0
    vocal_gain_db: float = 0.0
    accompaniment_gain_db: float = 0.0
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    fade_in_s: float = 0.25
    fade_out_s: float = 1.0
    align_beats: bool = True
    align_downbeats: bool = True
    use_rubberband: bool = True


@dataclass(frozen=True)
class CompatibilityReport:
    """How well a match's accompaniment fits a query vocal, from their analyses.

    Attributes
    ----------
    stretch_ratio : float
        Speed factor applied to the accompaniment: ``query_tempo / (match_tempo *
        tempo_multiplier)``; > 1 means it is sped up.
    stretch_percent : float
        ``(stretch_ratio - 1) * 100``.
    tempo_multiplier : float
        0.5, 1 or 2: the match's tempo level used (half/double time, whichever stretches least).
    semitone_shift : int
        Shift that key matching applies to the accompaniment (0 when the keys already share
        their notes, or when the nearest shift is beyond ``max_shift``).
    key_distance : int
        Circle-of-fifths distance (0..6) between the keys *before* any shift; relative
        major/minor count as 0.
    residual_key_distance : int
        The same distance after ``semitone_shift`` (0 when key matching can fix it).
    similarity : float
        Embedding cosine similarity from the search (0.0 when none was available).
    mashability : float
        ``similarity - W_STRETCH * stretch_penalty - W_KEY * key_penalty``; higher is better.
    query_tempo, match_tempo : float
        BPM.
    query_key, match_key : str
    offset_s : float
        Query time (s) at which the accompaniment's time 0 lands after alignment (negative:
        the accompaniment's opening is before the query's start and is not heard).
    match_beat_offset : float
        Accompaniment beat index placed on the query's first beat.
    downbeat_aligned : bool
        Whether bar lines were aligned too (both songs had downbeats).
    """

    stretch_ratio: float
    stretch_percent: float
    tempo_multiplier: float
    semitone_shift: int
    key_distance: int
    residual_key_distance: int
    similarity: float
    mashability: float
    query_tempo: float
    match_tempo: float
    query_key: str
    match_key: str
    offset_s: float
    match_beat_offset: float
    downbeat_aligned: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in asdict(self).items()}


def tempo_multiplier(query_tempo: float, match_tempo: float) -> float:
    """0.5, 1 or 2: the match tempo level closest (in log ratio) to the query's tempo."""
    return min((0.5, 1.0, 2.0), key=lambda m: abs(math.log(query_tempo / (match_tempo * m))))


def _major_equivalent(root: int, mode: str) -> int:
    """Tonic of the major key with the same notes (A minor -> C)."""
    return (root + 3) % 12 if mode == "minor" else root % 12


def _fifths_distance(semitones: int) -> int:
    steps = (semitones * 7) % 12
    return min(steps, 12 - steps)


def key_shift(query: Analysis, match: Analysis, *, max_shift: int = 3) -> int:
    """Smallest shift (semitones, -6..6) making the match's notes the query key's notes.

    Keys are compared by their note sets (relative major/minor are the same set), so
    A minor over C major needs no shift. Returns 0 when the needed shift exceeds
    ``max_shift``.
    """
    d = (_major_equivalent(query.key_root, query.key_mode) - _major_equivalent(match.key_root, match.key_mode)) % 12
    if d > 6:
        d -= 12
    return d if abs(d) <= max_shift else 0


def key_distance(query: Analysis, match: Analysis, *, shift: int = 0) -> int:
    """Circle-of-fifths distance (0..6) between the keys after shifting the match by ``shift``."""
    d = _major_equivalent(query.key_root, query.key_mode) - _major_equivalent(match.key_root + shift, match.key_mode)
    return _fifths_distance(d)


@dataclass(frozen=True)
class BeatPlan:
    """How accompaniment beats are laid onto query beats: match beat ``k + i / m`` on query beat ``i``."""

    multiplier: float
    match_beat_offset: float
    downbeat_aligned: bool


def plan_beats(query: Analysis, match: Analysis, *, use_downbeats: bool = True) -> BeatPlan:
    """Choose the tempo level and which accompaniment beat falls on the query's first beat.

    By default the accompaniment's first beat meets the query's first beat. When both songs
    have downbeats, the offset is moved by 0..3 beats (less than a bar) so that the
    accompaniment's bar lines land on the query's.
    """
    mult = tempo_multiplier(query.tempo, match.tempo)
    k = 0.0
    aligned = False
    if (
        use_downbeats
        and query.downbeats is not None
        and match.downbeats is not None
        and query.downbeats.size
        and match.downbeats.size
        and query.beats.size
        and match.beats.size
    ):
        q_phase = int(np.argmin(np.abs(query.beats - query.downbeats[0])))  # first downbeat's index
        m_phase = int(np.argmin(np.abs(match.beats - match.downbeats[0])))
        r = 1.0 / mult  # match beats per query beat
        # Want k + q_phase * r == m_phase (mod 4 match beats when r >= 1, 4*r otherwise).
        bar = 4.0 * max(r, 1.0)
        k = (m_phase - q_phase * r) % bar
        aligned = True
    return BeatPlan(multiplier=mult, match_beat_offset=k, downbeat_aligned=aligned)


def _beat_index_to_time(beats: FloatArray, period: float, index: FloatArray) -> FloatArray:
    """Time (s) of fractional beat indices, linear between beats, extrapolated at ``period``."""
    idx = np.asarray(index, dtype=np.float64)
    n = beats.size
    if n == 0:
        return idx * period
    if n == 1:
        return np.asarray(beats[0] + idx * period, dtype=np.float64)
    inside = np.interp(idx, np.arange(n, dtype=np.float64), beats)
    before = beats[0] + idx * _edge_period(beats, period, start=True)
    after = beats[-1] + (idx - (n - 1)) * _edge_period(beats, period, start=False)
    return np.asarray(np.where(idx < 0, before, np.where(idx > n - 1, after, inside)), dtype=np.float64)


def _time_to_beat_index(beats: FloatArray, period: float, t: FloatArray) -> FloatArray:
    """Inverse of :func:`_beat_index_to_time`."""
    tt = np.asarray(t, dtype=np.float64)
    n = beats.size
    if n == 0:
        return tt / period
    if n == 1:
        return np.asarray((tt - beats[0]) / period, dtype=np.float64)
    inside = np.interp(tt, beats, np.arange(n, dtype=np.float64))
    before = (tt - beats[0]) / _edge_period(beats, period, start=True)
    after = (n - 1) + (tt - beats[-1]) / _edge_period(beats, period, start=False)
    return np.asarray(np.where(tt < beats[0], before, np.where(tt > beats[-1], after, inside)), dtype=np.float64)


def _edge_period(beats: FloatArray, period: float, *, start: bool) -> float:
    d = np.diff(beats[:9] if start else beats[-9:])
    return float(np.median(d)) if d.size else period


def query_to_match_time(
    query: Analysis, match: Analysis, plan: BeatPlan, t: FloatArray
) -> FloatArray:
    """Map query times (s) to the accompaniment times (s) that should sound there."""
    qi = _time_to_beat_index(query.beats, query.beat_period, t)
    mi = plan.match_beat_offset + qi / plan.multiplier
    return _beat_index_to_time(match.beats, match.beat_period, mi)


def match_to_query_time(
    query: Analysis, match: Analysis, plan: BeatPlan, t: FloatArray
) -> FloatArray:
    """Inverse of :func:`query_to_match_time`: where accompaniment times (s) land in the query."""
    mi = _time_to_beat_index(match.beats, match.beat_period, t)
    qi = (mi - plan.match_beat_offset) * plan.multiplier
    return _beat_index_to_time(query.beats, query.beat_period, qi)


def compatibility(
    query: Analysis,
    match: Analysis,
    *,
    similarity: float,
    max_shift: int = 3,
    key_match: bool = True,
) -> CompatibilityReport:
    """Score how well ``match``'s accompaniment would carry ``query``'s vocal.

    Parameters
    ----------
    query, match : Analysis
        Analyses of the two mixes.
    similarity : float
        Embedding cosine similarity from the search; pass 0.0 when none is available.
    max_shift : int
        Largest key shift (semitones) key matching may apply.
    key_match : bool
        Whether the key penalty assumes the accompaniment will be key-matched.

    Returns
    -------
    CompatibilityReport
        ``mashability = similarity - W_STRETCH * stretch_penalty - W_KEY * key_penalty`` where
        ``stretch_penalty = min(1, (|log stretch_ratio| / log 1.25) ** 2)`` and
        ``key_penalty = residual circle-of-fifths distance / 6 + 0.05 * |shift|``.
    """
    plan = plan_beats(query, match)
    ratio = query.tempo / (match.tempo * plan.multiplier)
    shift = key_shift(query, match, max_shift=max_shift)
    applied = shift if key_match else 0
    dist = key_distance(query, match)
    residual = key_distance(query, match, shift=applied)
    stretch_pen = min(1.0, (abs(math.log(ratio)) / math.log(STRETCH_SATURATION)) ** 2)
    key_pen = residual / 6.0 + SHIFT_COST_PER_SEMITONE * abs(applied)
    mash = float(similarity) - W_STRETCH * stretch_pen - W_KEY * key_pen
    offset = float(match_to_query_time(query, match, plan, np.zeros(1))[0])
    return CompatibilityReport(
        stretch_ratio=float(ratio),
        stretch_percent=float((ratio - 1.0) * 100.0),
        tempo_multiplier=plan.multiplier,
        semitone_shift=int(shift),
        key_distance=int(dist),
        residual_key_distance=int(residual),
        similarity=float(similarity),
        mashability=float(mash),
        query_tempo=float(query.tempo),
        match_tempo=float(match.tempo),
        query_key=query.key,
        match_key=match.key,
        offset_s=offset,
        match_beat_offset=float(plan.match_beat_offset),
        downbeat_aligned=plan.downbeat_aligned,
    )
