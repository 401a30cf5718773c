"""The tempo of a voice: estimated from its onsets, typed, tapped, or known (a metronome).

A voice alone gives a beat tracker little to hold on to (no drums, soft attacks), so a vocal
query's beats are a *grid*: evenly spaced beats at one tempo from a first beat, with a bar
line every four beats. The tempo comes from the user (typed, or tapped: :func:`tap_bpm`),
from a metronome (exact), or from :func:`estimate_vocal_tempo`, which uses the vocal's onset
envelope (librosa) with the same half/double resolution as a mix's analysis and says how
sure it is. The grid's phase (its first beat) is fitted to the onsets unless it is known;
the cross-mix then lays the accompaniment's beats on that grid (:mod:`core.remix.render`), and the
user can move its bar lines by whole beats and fine-tune it in milliseconds
(``RemixOptions.bar_offset_beats`` and ``offset_ms``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.audio.decode import Audio
from core.errors import RemixError
from core.progress import CancelToken, ProgressFn, check_cancel
from core.remix.analysis import HOP, MAX_BPM, MIN_BPM, SR_ANALYSIS, Analysis, _resolve_tempo

#: Beats per bar of the grid (4/4).
BEATS_PER_BAR = 4
#: Slowest and fastest tempo a user may type or tap (BPM).
USER_MIN_BPM, USER_MAX_BPM = 30.0, 300.0
#: Taps further apart than this (s) start a new count.
TAP_RESET_S = 2.0
#: Taps used for the tempo (the most recent ones).
TAPS_KEPT = 8

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TempoEstimate:
    """A grid for a voice.

    Attributes
    ----------
    bpm : float
    first_beat : float
        Time (s) of the grid's first beat, ``0 <= first_beat < 60 / bpm``.
    confidence : float
        0..1: how much more of the voice's onsets fall on the grid's eighth notes than
        would by chance (0: no better than chance; 1: every onset on the grid).
    """

    bpm: float
    first_beat: float
    confidence: float


def onset_envelope(audio: Audio, *, sharp: bool = False) -> FloatArray:
    """The onset strength of ``audio`` (librosa, mono at 22 050 Hz, hop 256: 11.6 ms).

    The spectral flux is the median over mel bands, not the mean: a sung note's onset rises
    in most bands at once, while a voice's vibrato and glides move a few (on generated vocal
    stems the median found the tempo of 36 of 60 songs, the mean of 9). ``sharp``: a 512-point
    window instead of 2048, whose peaks lag the attacks less (for placing the grid, as
    :func:`core.remix.analysis.analyze` places beats); the tempo is found on the smoother one.
    """
    import librosa

    y = audio.mono().resampled(SR_ANALYSIS).samples[0].astype(np.float32)
    return np.asarray(librosa.onset.onset_strength(y=y, sr=SR_ANALYSIS, hop_length=HOP,
                                                   n_fft=512 if sharp else 2048,
                                                   aggregate=np.median), dtype=np.float64)


def check_bpm(bpm: float) -> float:
    """``bpm`` as a float, or :class:`RemixError` saying what a tempo may be."""
    try:
        value = float(bpm)
    except (TypeError, ValueError):
        raise RemixError(f"{bpm!r} is not a tempo: give beats per minute, e.g. 96.") from None
    if not USER_MIN_BPM <= value <= USER_MAX_BPM:
        raise RemixError(f"A tempo of {value:g} BPM is out of range: give "
                         f"{USER_MIN_BPM:.0f} to {USER_MAX_BPM:.0f} BPM.")
    return value


def fit_first_beat(env: FloatArray, bpm: float) -> float:
    """The phase (s, in ``[0, 60 / bpm)``) of a ``bpm`` grid that sits on the strongest onsets."""
    period = 60.0 * SR_ANALYSIS / HOP / bpm  # frames per beat
    if env.size < 2:
        return 0.0
    phases = np.arange(0.0, period, 0.25)
    best, best_score = 0.0, -np.inf
    frames = np.arange(env.size, dtype=np.float64)
    for ph in phases:
        grid = np.arange(ph, env.size - 1, period)
        score = float(np.interp(grid, frames, env).sum())
        if score > best_score:
            best, best_score = float(ph), score
    return best * HOP / SR_ANALYSIS


def onset_times(env: FloatArray) -> FloatArray:
    """Onset times (s) picked from an onset envelope (librosa's peak picking)."""
    import librosa

    return np.asarray(librosa.onset.onset_detect(onset_envelope=env, sr=SR_ANALYSIS,
                                                 hop_length=HOP, units="time"), dtype=np.float64)


def refine_grid(peaks: FloatArray, bpm: float, first_beat: float) -> tuple[float, float]:
    """``(bpm, first_beat)`` fitted by least squares to the onsets near the grid's eighth notes.

    The tempogram's tempo is a little off (0.5 % is 70 ms over a minute), which walks the
    grid off the voice; the onsets within a quarter of an eighth note of the grid, against
    their eighth-note numbers, give the tempo and phase directly (twice, as the fit moves).
    """
    for _ in range(2):
        eighth = 30.0 / bpm
        k = np.round((peaks - first_beat) / eighth)
        near = np.abs(peaks - first_beat - k * eighth) < eighth / 4
        if np.count_nonzero(near) < 4 or np.ptp(k[near]) < 8:
            break
        slope, origin = np.polyfit(k[near], peaks[near], 1)
        if not (MIN_BPM <= 30.0 / slope <= MAX_BPM):
            break
        bpm, first_beat = float(30.0 / slope), float(origin)
    return bpm, first_beat % (60.0 / bpm)


def grid_confidence(env: FloatArray, bpm: float, first_beat: float, *,
                    peaks: FloatArray | None = None) -> float:
    """0..1: the share of the voice's onsets on the grid's eighth notes, beyond chance.

    An onset counts when it lies within 1/16 of a beat of an eighth note; by chance a quarter
    of them would. ``(share - 0.25) / 0.75``, clipped to 0..1.
    """
    if peaks is None:
        peaks = onset_times(env)
    if len(peaks) < 4:
        return 0.0
    period = 60.0 / bpm
    eighth = period / 2.0
    pos = ((np.asarray(peaks) - first_beat) / eighth) % 1.0
    dist = np.minimum(pos, 1.0 - pos) * eighth
    share = float(np.mean(dist <= period / 16.0))
    return float(np.clip((share - 0.25) / 0.75, 0.0, 1.0))


def estimate_vocal_tempo(audio: Audio) -> TempoEstimate:
    """Tempo, first beat and confidence of a voice from its onsets.

    The tempo is chosen from the onset envelope's tempogram with half/double resolution
    (:func:`core.remix.analysis.analyze`'s method), then the grid's phase is fitted to the onsets.

    Raises
    ------
    RemixError
        The audio is shorter than 2 s.
    """
    if audio.duration < 2.0:
        raise RemixError(f"{audio.source or 'the voice'}: it is {audio.duration:.1f} s long; "
                         "at least 2 s are needed to estimate a tempo.")
    smooth = onset_envelope(audio)
    bpm, _ = _resolve_tempo(smooth)
    bpm = float(np.clip(bpm, MIN_BPM, MAX_BPM))
    # Tempo, phase and confidence from the smooth envelope's onsets (its confidence told right
    # tempi from wrong ones better: bench/vocal_tempo.py), then the phase from the sharp one's.
    peaks = onset_times(smooth)
    bpm, first = refine_grid(peaks, bpm, fit_first_beat(smooth, bpm))
    conf = grid_confidence(smooth, bpm, first, peaks=peaks)
    first = sharpen_phase(onset_times(onset_envelope(audio, sharp=True)), bpm, first)
    return TempoEstimate(bpm=bpm, first_beat=first, confidence=conf)


def sharpen_phase(peaks: FloatArray, bpm: float, first_beat: float) -> float:
    """``first_beat`` moved by the median offset of the onsets near the grid's eighth notes
    (onsets of a sharper envelope: the smooth one's peaks come late by about 10 ms)."""
    eighth = 30.0 / bpm
    res = peaks - first_beat - np.round((peaks - first_beat) / eighth) * eighth
    near = np.abs(res) < eighth / 4
    if np.count_nonzero(near) >= 4:
        first_beat += float(np.median(res[near]))
    return first_beat % (60.0 / bpm)


def beat_grid(bpm: float, first_beat: float, duration: float) -> FloatArray:
    """Beat times (s) from ``first_beat`` every ``60 / bpm`` s, up to ``duration``."""
    period = 60.0 / bpm
    start = first_beat % period
    return np.arange(start, max(duration, start + period), period, dtype=np.float64)


def grid_analysis(base: Analysis, *, bpm: float, first_beat: float,
                  confidence: float) -> Analysis:
    """``base`` (key, loudness, duration kept) with its beats replaced by a ``bpm`` grid whose
    bar lines fall every :data:`BEATS_PER_BAR` beats from the first."""
    beats = beat_grid(bpm, first_beat, base.duration)
    return dataclasses.replace(base, tempo=float(bpm), beats=beats,
                               downbeats=beats[::BEATS_PER_BAR].copy(),
                               tempo_confidence=float(confidence))


def tap_bpm(taps: Any) -> float | None:
    """The tempo (BPM) of tap times (s, increasing), or ``None`` with fewer than two taps.

    Only the taps since the last pause longer than :data:`TAP_RESET_S` count, at most the
    last :data:`TAPS_KEPT`. The period is the slope of a least-squares line through the taps
    against their count (a tap's timing error then does not add up as it would in the
    intervals), fitted again without taps more than a quarter period off the line.
    """
    t = np.asarray(list(taps), dtype=np.float64)
    if t.size < 2:
        return None
    breaks = np.flatnonzero(np.diff(t) > TAP_RESET_S)
    if breaks.size:
        t = t[int(breaks[-1]) + 1 :]
    t = t[-TAPS_KEPT:]
    if t.size < 2:
        return None
    n = np.arange(t.size, dtype=np.float64)
    period = float(np.median(np.diff(t)))
    if t.size >= 3:
        slope, origin = np.polyfit(n, t, 1)
        keep = np.abs(t - (origin + slope * n)) <= 0.25 * slope
        if np.count_nonzero(keep) >= 3:
            slope, origin = np.polyfit(n[keep], t[keep], 1)
        period = float(slope)
    return float(60.0 / period) if period > 0 else None


def analyze_query(audio: Audio, *, voice: bool, bpm: float | None = None,
                  first_beat: float | None = None, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> tuple[Analysis, str]:
    """The analysis a query's cross-mixes align to, and where its tempo came from.

    Key and loudness always come from :func:`core.remix.analysis.analyze`. The beats:

    - ``bpm`` given (typed, tapped, a metronome): a grid at ``bpm`` from ``first_beat``, or,
      without it, fitted to the onsets; source ``"given"``;
    - a voice alone (``voice``): a grid estimated from its onsets
      (:func:`estimate_vocal_tempo`); source ``"onsets"``;
    - otherwise the mix's tracked beats; source ``"mix"``.

    ``Analysis.tempo_confidence`` of a grid says how well the onsets sit on it (1.0 when both
    ``bpm`` and ``first_beat`` are given: a metronome's grid is exact).
    """
    from core.remix.analysis import analyze

    base = analyze(audio, progress=progress, cancel=cancel)
    if bpm is not None:
        return given_grid(base, audio, bpm=bpm, first_beat=first_beat), "given"
    if not voice:
        return base, "mix"
    check_cancel(cancel, "the tempo of the voice")
    est = estimate_vocal_tempo(audio)
    return grid_analysis(base, bpm=est.bpm, first_beat=est.first_beat,
                         confidence=est.confidence), "onsets"


def given_grid(base: Analysis, audio: Audio, *, bpm: float,
               first_beat: float | None = None) -> Analysis:
    """``base`` on a grid at a given tempo; the phase is fitted to ``audio``'s onsets unless
    ``first_beat`` is given (then the grid is exact: confidence 1)."""
    value = check_bpm(bpm)
    if first_beat is not None:
        return grid_analysis(base, bpm=value, first_beat=float(first_beat), confidence=1.0)
    first = fit_first_beat(onset_envelope(audio, sharp=True), value)
    return grid_analysis(base, bpm=value, first_beat=first,
                         confidence=grid_confidence(onset_envelope(audio), value, first))
