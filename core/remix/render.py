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
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from core.audio.decode import Audio
from core.errors import RemixError
from core.progress import CancelToken, Progress, ProgressFn, check_cancel
from core.remix.analysis import Analysis

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
    bar_offset_beats : int
        Moves the accompaniment's bar lines this many query beats later (earlier when
        negative) against the query's grid: the downbeat phase, nudged by the user.
    offset_ms : float
        Moves the accompaniment this many milliseconds later (earlier when negative) after
        beat alignment: a fine adjustment of the phase.
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
    bar_offset_beats: int = 0
    offset_ms: float = 0.0


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
    needed_shift : int
        The nearest shift (-6..6 semitones) that would make the keys share their notes,
        whatever the limit; ``semitone_shift`` is 0 when it is beyond ``max_shift``.
    max_shift : int
        The limit key matching worked under.
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
    needed_shift: int = 0
    max_shift: int = 3

    @property
    def shift_out_of_range(self) -> int:
        """Semitones by which the needed shift exceeds ``max_shift`` (0 when within it)."""
        return max(0, abs(self.needed_shift) - self.max_shift)

    def key_advice(self, *, applied: int,
                   remedy: str = "raise the largest key shift to allow it") -> str:
        """What happened to the key, in words, given the shift ``applied`` to the render;
        ``remedy`` says how to allow a shift beyond the limit."""
        if applied:
            return f"shifted {applied:+d} semitones to fit {self.query_key}"
        if self.needed_shift == 0:
            return f"not shifted ({self.match_key} suits {self.query_key})"
        if self.shift_out_of_range:
            return (f"not shifted: {self.match_key} needs {self.needed_shift:+d} semitones to fit "
                    f"{self.query_key}, {self.shift_out_of_range} beyond the "
                    f"{self.max_shift}-semitone limit ({remedy})")
        return (f"not shifted ({self.match_key} under {self.query_key}; key matching would "
                f"shift it {self.needed_shift:+d})")

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


def needed_key_shift(query: Analysis, match: Analysis) -> int:
    """Smallest shift (semitones, -6..6) making the match's notes the query key's notes.

    Keys are compared by their note sets (relative major/minor are the same set), so
    A minor over C major needs no shift.
    """
    d = (_major_equivalent(query.key_root, query.key_mode) - _major_equivalent(match.key_root, match.key_mode)) % 12
    return d - 12 if d > 6 else d


def key_shift(query: Analysis, match: Analysis, *, max_shift: int = 3) -> int:
    """:func:`needed_key_shift`, or 0 when it exceeds ``max_shift`` (see
    ``CompatibilityReport.shift_out_of_range`` to tell that from "no shift needed")."""
    d = needed_key_shift(query, match)
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
        ``key_penalty = residual circle-of-fifths distance / 6 + 0.05 * |shift applied|``.
    """
    return _report(query, match, plan_beats(query, match), similarity=similarity,
                   max_shift=max_shift, key_match=key_match)


def _report(
    query: Analysis,
    match: Analysis,
    plan: BeatPlan,
    *,
    similarity: float,
    max_shift: int,
    key_match: bool,
) -> CompatibilityReport:
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
        needed_shift=int(needed_key_shift(query, match)),
        max_shift=int(max_shift),
    )


# --- rendering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossMix:
    """A rendered cross-mix and its two parts, sample-aligned: ``mix == vocals + accompaniment``.

    Attributes
    ----------
    mix, vocals, accompaniment : Audio
        Stereo, the query vocal's sample rate, equal length. The parts carry the same
        balance gains, fades and limiter gain as the mix, so they sum to it.
    report : CompatibilityReport
    start_s : float
        Query time (s) of the render's first sample (0 for a full render).
    semitones_applied : int
        Pitch shift actually applied to the accompaniment.
    stretcher : str
        ``"rubberband"`` or ``"librosa-phase-vocoder"`` (fallback).
    beats : np.ndarray
        The query's beat times inside the render, seconds from its start.
    """

    mix: Audio
    vocals: Audio
    accompaniment: Audio
    report: CompatibilityReport
    start_s: float
    semitones_applied: int
    stretcher: str
    beats: FloatArray


# long: the public entry point: 11 lines of keyword-only signature and a 29-line docstring
# over a 44-line body that reads as the pipeline's steps, each in its own function
def render_cross_mix(
    *,
    query_vocals: Audio,
    query_analysis: Analysis,
    match_accompaniment: Audio,
    match_analysis: Analysis,
    options: RemixOptions | None = None,
    similarity: float = 0.0,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> CrossMix:
    """Render the query's vocal over the match's accompaniment, tempo- and beat-aligned.

    Parameters
    ----------
    query_vocals : Audio
        The query's separated vocal, ``(ch, n)`` float32; its rate is the output rate.
    query_analysis : Analysis
        Analysis of the query's *mix* (see :func:`core.remix.analysis.analyze`).
    match_accompaniment : Audio
        The match's accompaniment (by default ``Stems.full_band_accompaniment``).
    match_analysis : Analysis
        Analysis of the match's mix.
    options : RemixOptions, optional
        Preview/full, key matching, balance, limiter... (defaults: a 30 s preview).
    similarity : float
        Embedding similarity, only carried into the report.
    progress : ProgressFn, optional
        Stages ``"stretch"`` and ``"mix"``.
    cancel : CancelToken, optional

    Returns
    -------
    CrossMix

    Raises
    ------
    RemixError
        When an input is empty or the stretcher fails.
    """
    opts = options or RemixOptions()
    if query_vocals.n == 0 or match_accompaniment.n == 0:
        raise RemixError("A cross-mix needs a non-empty query vocal and accompaniment.")
    sr = query_vocals.sr
    vocals = query_vocals.with_channels(2)
    acc = match_accompaniment.with_channels(2)
    if acc.sr != sr:
        acc = acc.resampled(sr)

    def report_stage(stage: str, done: int) -> None:
        if progress is not None:
            progress(Progress(stage=stage, done=done, total=2, unit="steps"))

    plan = _offset_plan(query_analysis, match_analysis, opts)
    report = _report(query_analysis, match_analysis, plan, similarity=similarity,
                     max_shift=opts.max_shift, key_match=opts.key_match)
    shift = report.semitone_shift if opts.key_match else 0

    start, end = _render_window(vocals, query_analysis, opts)
    n_out = int(round((end - start) * sr))
    start_i = int(round(start * sr))
    check_cancel(cancel, "the cross-mix")

    acc_out, stretcher = _stretched_accompaniment(
        acc, query_analysis, match_analysis, plan, opts, start=start, end=end, n_out=n_out,
        shift=shift, stretch_ratio=report.stretch_ratio)
    check_cancel(cancel, "the cross-mix")
    report_stage("stretch", 1)

    voc_out = _fit(vocals.samples[:, start_i : start_i + n_out], n_out)
    voc_out, acc_out, mix = _mix_down(voc_out, acc_out, sr, opts)
    report_stage("mix", 2)

    beats_in = query_analysis.beats[(query_analysis.beats >= start) & (query_analysis.beats < end)] - start
    return CrossMix(
        mix=Audio(mix.astype(np.float32), sr),
        vocals=Audio(voc_out.astype(np.float32), sr),
        accompaniment=Audio(acc_out.astype(np.float32), sr),
        report=report,
        start_s=float(start_i / sr),
        semitones_applied=int(shift),
        stretcher=stretcher,
        beats=np.asarray(beats_in, dtype=np.float64),
    )


def _offset_plan(query: Analysis, match: Analysis, opts: RemixOptions) -> BeatPlan:
    """:func:`plan_beats`, moved by the options' whole-beat bar offset."""
    plan = plan_beats(query, match, use_downbeats=opts.align_downbeats)
    if opts.bar_offset_beats:
        # Query beat i then hears accompaniment beat k + (i - d) / m: d beats later.
        plan = replace(plan, match_beat_offset=plan.match_beat_offset
                       - opts.bar_offset_beats / plan.multiplier)
    return plan


def _stretched_accompaniment(acc: Audio, query: Analysis, match: Analysis, plan: BeatPlan,
                             opts: RemixOptions, *, start: float, end: float, n_out: int,
                             shift: int, stretch_ratio: float) -> tuple[FloatArray, str]:
    """The accompaniment stretched (and shifted ``shift`` semitones) onto the query's time
    from ``start`` to ``end`` s, ``n_out`` samples, and the stretcher's name."""
    pad = 0.5  # context for the stretcher at both ends, trimmed afterwards
    q_times, m_times = _time_map(query, match, plan, start - pad, end + pad,
                                 delay=opts.offset_ms / 1000.0, align_beats=opts.align_beats,
                                 stretch_ratio=stretch_ratio)
    stretched, stretcher = _stretch_to_map(
        acc, q_times - (start - pad), m_times, shift=shift, use_rubberband=opts.use_rubberband
    )
    p0 = int(round(pad * acc.sr))
    return _fit(stretched[:, p0 : p0 + n_out], n_out), stretcher


def _time_map(query: Analysis, match: Analysis, plan: BeatPlan, first: float, last: float, *,
              delay: float, align_beats: bool, stretch_ratio: float) -> tuple[FloatArray, FloatArray]:
    """Query times (s) from ``first`` to ``last`` and the accompaniment times that must sound
    there, ``delay`` seconds late: at every query beat (``align_beats``), else only at the
    ends, at the report's constant ``stretch_ratio`` from the first query beat."""
    if align_beats:
        qb = query.beats
        inner = qb[(qb > first) & (qb < last)]
        q_times = np.concatenate([[first], inner, [last]])
        return q_times, query_to_match_time(query, match, plan, q_times - delay)
    q_first = float(query.beats[0]) if query.beats.size else 0.0
    m_first = float(query_to_match_time(query, match, plan, np.array([q_first]))[0])
    q_times = np.array([first, last])
    return q_times, m_first + (q_times - delay - q_first) * stretch_ratio


def _mix_down(voc_out: FloatArray, acc_out: FloatArray, sr: int,
              opts: RemixOptions) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Balance, fade and limit the two parts alike: ``(vocals, accompaniment, mix)`` with
    ``mix == vocals + accompaniment`` under the true-peak ceiling."""
    voc_out, acc_out = _balance(voc_out, acc_out, sr, opts)
    fade = _fade_curve(voc_out.shape[1], sr, opts.fade_in_s, opts.fade_out_s)
    voc_out *= fade
    acc_out *= fade
    gain = true_peak_gain(voc_out + acc_out, sr, ceiling_dbtp=opts.ceiling_dbtp)
    voc_out *= gain
    acc_out *= gain
    mix = voc_out + acc_out
    # Safety net: the limiter works on a 4x oversampled estimate; make sure of full scale.
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    ceiling = 10 ** (opts.ceiling_dbtp / 20.0)
    if peak > ceiling:
        voc_out *= ceiling / peak
        acc_out *= ceiling / peak
        mix = voc_out + acc_out
    return voc_out, acc_out, mix


def most_vocal_active_start(vocals: Audio, seconds: float) -> float:
    """Start (s) of the ``seconds``-long stretch of ``vocals`` with the most energy."""
    if vocals.duration <= seconds:
        return 0.0
    hop = max(1, int(0.25 * vocals.sr))
    n_frames = vocals.n // hop
    energy = np.square(vocals.samples[:, : n_frames * hop]).reshape(vocals.channels, n_frames, hop).sum(axis=(0, 2))
    win = max(1, int(round(seconds * vocals.sr / hop)))
    if win >= n_frames:
        return 0.0
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    totals = csum[win:] - csum[:-win]
    return float(int(np.argmax(totals)) * hop / vocals.sr)


def _render_window(vocals: Audio, query: Analysis, opts: RemixOptions) -> tuple[float, float]:
    total = vocals.duration
    if not opts.preview or opts.preview_seconds >= total:
        return 0.0, total
    length = max(1.0, float(opts.preview_seconds))
    if opts.preview_start is not None:
        start = float(np.clip(opts.preview_start, 0.0, total - length))
    else:
        start = most_vocal_active_start(vocals, length)
        # Start on a bar line (or beat) at or before it, so the preview opens musically.
        marks = query.downbeats if query.downbeats is not None and query.downbeats.size else query.beats
        before = marks[marks <= start + 1e-6]
        if before.size and start - before[-1] < 4 * query.beat_period:
            start = float(before[-1])
    return start, min(total, start + length)


def _fit(x: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float64]:
    out = np.zeros((x.shape[0], n), dtype=np.float64)
    m = min(n, x.shape[1])
    out[:, :m] = x[:, :m]
    return out


def _segment(audio: Audio, t0: float, t1: float) -> npt.NDArray[np.float32]:
    """Samples of ``audio`` from ``t0`` to ``t1`` seconds, zeros outside the recording."""
    a, b = int(round(t0 * audio.sr)), int(round(t1 * audio.sr))
    out = np.zeros((audio.channels, max(0, b - a)), dtype=np.float32)
    lo, hi = max(a, 0), min(b, audio.n)
    if hi > lo:
        out[:, lo - a : hi - a] = audio.samples[:, lo:hi]
    return out


def _stretch_to_map(
    acc: Audio,
    out_times: FloatArray,
    in_times: FloatArray,
    *,
    shift: int,
    use_rubberband: bool,
) -> tuple[npt.NDArray[np.float32], str]:
    """Warp ``acc`` so that ``in_times`` (s, accompaniment) sound at ``out_times`` (s, output)."""
    sr = acc.sr
    seg = _segment(acc, float(in_times[0]), float(in_times[-1]))
    in_pos = np.round((in_times - in_times[0]) * sr).astype(np.int64)
    out_pos = np.round((out_times - out_times[0]) * sr).astype(np.int64)
    in_pos[-1] = seg.shape[1]
    # Rubber Band wants strictly increasing anchors; drop any that crowd the previous one.
    keep = [0]
    for i in range(1, in_pos.size):
        if in_pos[i] - in_pos[keep[-1]] >= 64 and out_pos[i] - out_pos[keep[-1]] >= 64:
            keep.append(i)
    if keep[-1] != in_pos.size - 1:
        keep[-1] = in_pos.size - 1
    in_pos, out_pos = in_pos[keep], out_pos[keep]
    n_out = int(out_pos[-1])
    if use_rubberband and shutil.which("rubberband") is not None:
        return _rubberband(seg, sr, in_pos, out_pos, shift=shift, n_out=n_out), "rubberband"
    return _phase_vocoder(seg, sr, in_pos, out_pos, shift=shift, n_out=n_out), "librosa-phase-vocoder"


def _rubberband(
    seg: npt.NDArray[np.float32],
    sr: int,
    in_pos: npt.NDArray[np.int64],
    out_pos: npt.NDArray[np.int64],
    *,
    shift: int,
    n_out: int,
) -> npt.NDArray[np.float32]:
    import pyrubberband

    # pyrubberband hands the audio over as 16-bit wav: keep it within full scale.
    peak = float(np.max(np.abs(seg))) if seg.size else 0.0
    scale = 0.98 / peak if peak > 0.98 else 1.0
    # R2 engine: the R3 ("fine") engine of rubberband-cli 3.1 ignores the time map. The pitch
    # shift is a second pass: combined with a time map, rubberband-cli 3.1 reads the map in
    # pitch-scaled time and the beats drift by the pitch ratio (12 % at 2 semitones).
    time_map = [(int(a), int(b)) for a, b in zip(in_pos, out_pos, strict=True)]
    try:
        y = pyrubberband.timemap_stretch((seg * scale).T, sr, time_map, rbargs={"-2": ""})
        if shift:
            y = pyrubberband.pitch_shift(y, sr, shift, rbargs={"-2": "", "--formant": ""})
    except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError) as exc:
        raise RemixError(f"Rubber Band could not stretch the accompaniment ({exc}).") from None
    out = np.asarray(y, dtype=np.float32).T / scale
    return _fit(np.atleast_2d(out), n_out).astype(np.float32)


def _phase_vocoder(
    seg: npt.NDArray[np.float32],
    sr: int,
    in_pos: npt.NDArray[np.int64],
    out_pos: npt.NDArray[np.int64],
    *,
    shift: int,
    n_out: int,
) -> npt.NDArray[np.float32]:
    """Fallback without Rubber Band: a phase vocoder read at time-map positions.

    Same algorithm as ``librosa.phase_vocoder`` but with a variable read position per output
    frame; the pitch shift is ``librosa.effects.pitch_shift`` (not formant-preserving).
    """
    import librosa

    n_fft, hop = 2048, 512
    stft = librosa.stft(seg, n_fft=n_fft, hop_length=hop)  # (ch, bins, frames)
    n_frames = stft.shape[-1]
    out_frames = int(math.ceil(n_out / hop)) + 1
    read = np.interp(np.arange(out_frames) * hop, out_pos, in_pos) / hop
    read = np.clip(read, 0, n_frames - 2)
    omega = np.linspace(0, np.pi * hop, stft.shape[1])[None, :]
    padded = np.concatenate([stft, np.zeros_like(stft[..., :2])], axis=-1)
    phase = np.angle(padded[..., 0])
    out = np.empty(stft.shape[:2] + (out_frames,), dtype=stft.dtype)
    for t, pos in enumerate(read):
        i = int(pos)
        frac = pos - i
        cols = padded[..., i : i + 2]
        mag = (1.0 - frac) * np.abs(cols[..., 0]) + frac * np.abs(cols[..., 1])
        out[..., t] = mag * np.exp(1j * phase)
        dphase = np.angle(cols[..., 1]) - np.angle(cols[..., 0]) - omega
        dphase -= 2.0 * np.pi * np.round(dphase / (2.0 * np.pi))
        phase += omega + dphase
    y = librosa.istft(out, hop_length=hop, length=n_out)
    if shift:
        y = librosa.effects.pitch_shift(y, sr=sr, n_steps=float(shift))
    return _fit(np.asarray(y, dtype=np.float32), n_out).astype(np.float32)


def _balance(
    voc: npt.NDArray[np.float64], acc: npt.NDArray[np.float64], sr: int, opts: RemixOptions
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Gain the parts so the vocal sits ``vocal_to_accompaniment_db`` LU above the accompaniment
    and the sum is at ``target_lufs``; then add the user's per-part gains."""
    from core.remix.analysis import integrated_loudness

    lv = integrated_loudness(Audio(voc.astype(np.float32), sr))
    la = integrated_loudness(Audio(acc.astype(np.float32), sr))
    gv = ga = 1.0
    if lv > -70.0 and la > -70.0:
        gv = 10 ** ((la + opts.vocal_to_accompaniment_db - lv) / 20.0)
    mixed = gv * voc + ga * acc
    lm = integrated_loudness(Audio(mixed.astype(np.float32), sr))
    if lm > -70.0:
        g = 10 ** ((opts.target_lufs - lm) / 20.0)
        gv *= g
        ga *= g
    gv *= 10 ** (opts.vocal_gain_db / 20.0)
    ga *= 10 ** (opts.accompaniment_gain_db / 20.0)
    return voc * gv, acc * ga


def _fade_curve(n: int, sr: int, fade_in_s: float, fade_out_s: float) -> npt.NDArray[np.float64]:
    curve = np.ones(n)
    fi = min(n, int(fade_in_s * sr))
    fo = min(n, int(fade_out_s * sr))
    if fi > 0:
        curve[:fi] *= np.sin(np.linspace(0.0, np.pi / 2, fi)) ** 2
    if fo > 0:
        curve[n - fo :] *= np.cos(np.linspace(0.0, np.pi / 2, fo)) ** 2
    return curve


def true_peak_gain(
    x: npt.NDArray[np.float64],
    sr: int,
    *,
    ceiling_dbtp: float = -1.0,
    window_s: float = 0.01,
) -> npt.NDArray[np.float64]:
    """Gain curve (n,) of a look-ahead true-peak limiter for ``x`` (ch, n).

    The true peak is estimated by 4x oversampling (as in ITU-R BS.1770-4). The required
    gain ``min(1, ceiling / peak)`` is spread by a centred minimum filter and smoothed by a
    centred moving average of the same width, which keeps the gain at or under the
    required gain at every sample while ramping over ``2 * window_s``.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d
    from scipy.signal import resample_poly

    n = x.shape[1]
    ceiling = 10 ** (ceiling_dbtp / 20.0)
    peak = np.max(np.abs(x), axis=0)
    block, overlap = 1 << 14, 64
    for a in range(0, n, block):
        b = min(n, a + block)
        # Inter-sample peaks of music stay well within 6 dB of the sample peak: blocks
        # that quiet cannot reach the ceiling and skip the (costly) oversampling.
        if float(np.max(peak[a:b])) < 0.5 * ceiling:
            continue
        lo, hi = max(0, a - overlap), min(n, b + overlap)
        up = resample_poly(x[:, lo:hi], 4, 1, axis=1)
        up_peak = np.max(np.abs(up), axis=0).reshape(-1, 4).max(axis=1)
        peak[a:b] = np.maximum(peak[a:b], up_peak[a - lo : b - lo])
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if np.all(need >= 1.0):
        return np.ones(n)
    width = 2 * max(1, int(window_s * sr)) + 1
    held = minimum_filter1d(need, size=width, mode="nearest")
    smooth = uniform_filter1d(held, size=width, mode="nearest")
    return np.asarray(np.minimum(smooth, need), dtype=np.float64)
