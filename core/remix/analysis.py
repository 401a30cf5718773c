"""Musical analysis of a song: tempo, beats, downbeats, key and loudness.

Everything is estimated from the *original mix* (tempo from a separated vocal alone is
unreliable: a voice has few sharp onsets). Beat tracking is librosa's dynamic-programming
tracker (Ellis 2007) run at a tempo chosen with explicit half/double resolution; the key is
Krumhansl-Schmuckler (correlation of the song's chroma with the 24 rotated key profiles,
averaged over the Krumhansl-Kessler, Temperley and Albrecht-Shanahan profiles); loudness
is ITU-R BS.1770 integrated loudness from pyloudnorm.

An :class:`Analysis` is plain data and round-trips through :meth:`Analysis.to_dict` /
:meth:`Analysis.from_dict` (JSON-able), so the library catalog can cache it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.audio.decode import Audio
from core.errors import RemixError
from core.progress import CancelToken, Progress, ProgressFn, check_cancel

#: Bumped whenever the analysis method changes, so cached analyses can be recomputed.
ANALYSIS_VERSION = 3

#: Analysis runs on mono audio at this rate (librosa's default; plenty for beats and chroma).
SR_ANALYSIS = 22050
#: Onset-envelope hop: 256 samples at 22 050 Hz is 11.6 ms per frame.
HOP = 256

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Key profiles (major, minor), tonic first: Krumhansl & Kessler (1982) probe-tone ratings,
# Temperley's (2005) Kostka-Payne corpus profile and Albrecht & Shanahan's (2013) corpus
# profile. KK alone confuses parallel major/minor when the minor key's V chord is major
# (harmonic minor); the three together, each correlation z-scored over the 24 keys, do not.
_PROFILES = (
    (np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
     np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])),
    (np.array([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400]),
     np.array([0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330])),
    (np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081]),
     np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])),
)

#: Tempo prior for half/double resolution: log-normal around this BPM...
_PRIOR_BPM = 115.0
#: ...with this spread in octaves.
_PRIOR_OCTAVES = 0.9
#: Tempi the tracker may settle on.
MIN_BPM, MAX_BPM = 50.0, 220.0

KeyMode = Literal["major", "minor"]
FloatArray = npt.NDArray[np.float64]


@dataclass
class Analysis:
    """Tempo, beats, key and loudness of one song (from its mix).

    Attributes
    ----------
    tempo : float
        Beats per minute of the tracked beat level (after half/double resolution).
    beats : np.ndarray, shape (n_beats,)
        Beat times in seconds, increasing.
    downbeats : np.ndarray or None, shape (n_bars,)
        Times of the first beat of each bar (a subset of ``beats``), or ``None`` when no
        bar phase could be told apart (4/4 is assumed).
    key : str
        ``"<root> <mode>"``, e.g. ``"A minor"``.
    key_root : int
        Pitch class of the tonic, 0 = C ... 11 = B.
    key_mode : {"major", "minor"}
    lufs : float
        Integrated loudness (ITU-R BS.1770, LUFS); -70.0 for (near) silence.
    duration : float
        Length of the analysed audio in seconds.
    key_confidence : float
        Score of the best key minus the runner-up's (0 = ambiguous).
    tempo_confidence : float
        Share of the tempogram's strength at the chosen tempo (0..1).
    version : int
        :data:`ANALYSIS_VERSION` that produced it.
    """

    tempo: float
    beats: FloatArray
    downbeats: FloatArray | None
    key: str
    key_root: int
    key_mode: KeyMode
    lufs: float
    duration: float
    key_confidence: float = 0.0
    tempo_confidence: float = 0.0
    version: int = ANALYSIS_VERSION

    @property
    def beat_period(self) -> float:
        """Seconds per beat (from :attr:`tempo`)."""
        return 60.0 / self.tempo

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists of floats; ``downbeats`` may be ``None``)."""
        return {
            "version": self.version,
            "tempo": float(self.tempo),
            "beats": [round(float(b), 6) for b in self.beats],
            "downbeats": None if self.downbeats is None else [round(float(b), 6) for b in self.downbeats],
            "key": self.key,
            "key_root": int(self.key_root),
            "key_mode": self.key_mode,
            "lufs": float(self.lufs),
            "duration": float(self.duration),
            "key_confidence": float(self.key_confidence),
            "tempo_confidence": float(self.tempo_confidence),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        """Inverse of :meth:`to_dict`. Raises :class:`RemixError` on a malformed dict."""
        try:
            mode = str(data["key_mode"])
            if mode not in ("major", "minor"):
                raise ValueError(f"key_mode {mode!r}")
            down = data.get("downbeats")
            return cls(
                tempo=float(data["tempo"]),
                beats=np.asarray(data["beats"], dtype=np.float64),
                downbeats=None if down is None else np.asarray(down, dtype=np.float64),
                key=str(data["key"]),
                key_root=int(data["key_root"]) % 12,
                key_mode="major" if mode == "major" else "minor",
                lufs=float(data["lufs"]),
                duration=float(data["duration"]),
                key_confidence=float(data.get("key_confidence", 0.0)),
                tempo_confidence=float(data.get("tempo_confidence", 0.0)),
                version=int(data.get("version", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RemixError(f"Stored analysis is malformed ({exc}); analyse the song again.") from None


def key_name(root: int, mode: KeyMode) -> str:
    """``key_name(9, "minor") == "A minor"``."""
    return f"{PITCH_CLASSES[root % 12]} {mode}"


def parse_key(text: str) -> tuple[int, KeyMode]:
    """``parse_key("A minor") == (9, "minor")``; accepts ``Am``, ``a min``, ``Bb major``."""
    t = text.strip().replace("\u266f", "#").replace("\u266d", "b")
    flats = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
    parts = t.split()
    if len(parts) == 1:
        root_s, mode_s = (parts[0][:-1], "minor") if parts[0].endswith("m") else (parts[0], "major")
    elif len(parts) == 2:
        root_s, mode_s = parts
    else:
        raise ValueError(f"not a key: {text!r}")
    root_s = root_s[:1].upper() + root_s[1:]
    root_s = flats.get(root_s, root_s)
    if root_s not in PITCH_CLASSES:
        raise ValueError(f"not a key: {text!r}")
    mode_l = mode_s.lower()
    if mode_l.startswith("maj"):
        return PITCH_CLASSES.index(root_s), "major"
    if mode_l.startswith("min"):
        return PITCH_CLASSES.index(root_s), "minor"
    raise ValueError(f"not a key: {text!r}")


def analyze(
    audio: Audio,
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Analysis:
    """Estimate tempo, beats, downbeats, key and loudness of a song's mix.

    Parameters
    ----------
    audio : Audio
        The original mix, any rate and channel count (``samples`` float32 ``(ch, n)``).
        Analyse the mix, not a separated vocal.
    progress : ProgressFn, optional
        Called with stages ``"loudness"``, ``"beats"``, ``"key"`` (``done``/``total`` in steps).
    cancel : CancelToken, optional
        Checked between stages; raises :class:`core.errors.Cancelled`.

    Returns
    -------
    Analysis

    Raises
    ------
    RemixError
        When the audio is shorter than 2 s (too short to have a tempo).
    """
    if audio.duration < 2.0:
        raise RemixError(
            f"{audio.source or 'the audio'}: it is {audio.duration:.1f} s long; "
            "at least 2 s are needed to find a tempo and key."
        )

    def report(stage: str, done: int) -> None:
        if progress is not None:
            progress(Progress(stage=stage, done=done, total=3, unit="steps"))

    check_cancel(cancel, "the analysis")
    lufs = integrated_loudness(audio)
    report("loudness", 1)

    check_cancel(cancel, "the analysis")
    y = audio.mono().resampled(SR_ANALYSIS).samples[0].astype(np.float32)
    tempo, tempo_conf, beats = _tempo_and_beats(y)
    report("beats", 2)

    check_cancel(cancel, "the analysis")
    root, mode, key_conf = _key(y)
    downbeats = _estimate_downbeats(y, beats)
    report("key", 3)

    return Analysis(tempo=float(tempo), beats=beats, downbeats=downbeats, key=key_name(root, mode),
                    key_root=root, key_mode=mode, lufs=lufs, duration=audio.duration,
                    key_confidence=key_conf, tempo_confidence=tempo_conf)


def _key(y: npt.NDArray[np.float32]) -> tuple[int, KeyMode, float]:
    """Key root (pitch class), mode and confidence of mono ``y`` at :data:`SR_ANALYSIS`."""
    import librosa  # heavy import (numba); only when analysing

    chroma = librosa.feature.chroma_cqt(y=y, sr=SR_ANALYSIS, hop_length=2048, n_chroma=12)
    return estimate_key(chroma)


def _tempo_and_beats(y: npt.NDArray[np.float32]) -> tuple[float, float, FloatArray]:
    """Tempo (BPM, from the beats when there are four or more), its confidence and the beat
    times (s) of mono ``y`` at :data:`SR_ANALYSIS`."""
    import librosa  # heavy import (numba); only when analysing

    onset_env = librosa.onset.onset_strength(y=y, sr=SR_ANALYSIS, hop_length=HOP, aggregate=np.median)
    # A short-window envelope for placing beats: its peaks lag attacks less, and less
    # differently between sharp and soft attacks, than the 2048-point one used for tracking.
    sharp_env = librosa.onset.onset_strength(y=y, sr=SR_ANALYSIS, hop_length=HOP, n_fft=512, aggregate=np.median)
    tempo, tempo_conf = _resolve_tempo(onset_env)
    beats = _track_beats(onset_env, tempo, sharp_env=sharp_env)
    if beats.size >= 4:
        tempo = float(60.0 / np.median(np.diff(beats)))
    return tempo, tempo_conf, beats


def integrated_loudness(audio: Audio) -> float:
    """ITU-R BS.1770 integrated loudness in LUFS (pyloudnorm); -70.0 for silence or < 0.4 s."""
    import pyloudnorm

    if audio.duration < 0.41:
        return -70.0
    meter = pyloudnorm.Meter(audio.sr)
    with np.errstate(divide="ignore"):
        value = float(meter.integrated_loudness(audio.samples.T.astype(np.float64)))
    return value if math.isfinite(value) and value > -70.0 else -70.0


def estimate_key(chroma: npt.NDArray[np.floating[Any]]) -> tuple[int, KeyMode, float]:
    """Krumhansl-Schmuckler key estimate from a chromagram, with three key profiles.

    Parameters
    ----------
    chroma : np.ndarray, shape (12, frames)
        Chroma energy (C first), e.g. from ``librosa.feature.chroma_cqt``.

    Returns
    -------
    root : int
        Tonic pitch class (0 = C).
    mode : {"major", "minor"}
    confidence : float
        Best mean z-scored correlation minus the runner-up's.
    """
    c = np.asarray(chroma, dtype=np.float64)
    # Frames weighted by their energy, so quiet frames (noise floor) do not vote.
    weights = c.sum(axis=0)
    profile = (c * weights).sum(axis=1) if weights.sum() > 0 else c.sum(axis=1)
    scores = np.zeros(24)
    for major, minor in _PROFILES:
        corr = np.empty(24)
        for r in range(12):
            corr[r] = np.corrcoef(profile, np.roll(major, r))[0, 1]
            corr[12 + r] = np.corrcoef(profile, np.roll(minor, r))[0, 1]
        corr = np.nan_to_num(corr, nan=-1.0)
        scores += (corr - corr.mean()) / (corr.std() + 1e-9) / len(_PROFILES)
    order = np.argsort(scores)[::-1]
    best = int(order[0])
    conf = float(scores[order[0]] - scores[order[1]])
    return best % 12, ("major" if best < 12 else "minor"), conf


def _tempo_prior(bpm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        octaves = np.log2(np.maximum(bpm, 1e-6) / _PRIOR_BPM)
    return np.asarray(np.exp(-0.5 * (octaves / _PRIOR_OCTAVES) ** 2), dtype=np.float64)


def _resolve_tempo(onset_env: npt.NDArray[np.floating[Any]]) -> tuple[float, float]:
    """Tempo in BPM with half/double resolution, and a 0..1 confidence.

    The global autocorrelation tempogram gives the periodicity strength at every tempo. The
    strongest peak is found first; then its half, double (and 2/3, 3/2 for triplet feels are
    left out on purpose: they are different metres, not octave errors) compete, each scored
    by its own strength times a log-normal prior around :data:`_PRIOR_BPM`.
    """
    import librosa

    win = 384  # 4.5 s of onset envelope at 11.6 ms/frame
    tg = librosa.feature.tempogram(onset_envelope=onset_env, sr=SR_ANALYSIS, hop_length=HOP, win_length=win)
    strength = np.mean(tg, axis=1)
    bpms = librosa.tempo_frequencies(win, sr=SR_ANALYSIS, hop_length=HOP)
    valid = (bpms >= MIN_BPM / 2) & (bpms <= MAX_BPM * 2) & np.isfinite(bpms)
    strength = np.where(valid, strength, 0.0)
    if not np.any(strength > 0):
        return 120.0, 0.0
    base = float(bpms[int(np.argmax(strength * np.where(valid, 1.0, 0.0)))])

    def strength_at(bpm: float) -> float:
        # Strongest periodicity within +/-4% of bpm (tempogram bins are coarse at high tempi).
        near = valid & (np.abs(bpms - bpm) <= 0.04 * bpm)
        return float(np.max(strength[near])) if np.any(near) else 0.0

    candidates = [base * f for f in (0.5, 1.0, 2.0) if MIN_BPM <= base * f <= MAX_BPM]
    if not candidates:
        candidates = [float(np.clip(base, MIN_BPM, MAX_BPM))]
    scored = [(strength_at(b) * float(_tempo_prior(np.array([b]))[0]), b) for b in candidates]
    best_score, best = max(scored)
    total = float(np.sum(strength[valid]))
    conf = float(strength_at(best) / total * 10.0) if total > 0 else 0.0
    return _refine_tempo(onset_env, best), min(1.0, conf)


def _refine_tempo(onset_env: npt.NDArray[np.floating[Any]], bpm: float) -> float:
    """Sharpen a coarse tempogram tempo with the onset autocorrelation at sub-frame lag."""
    env = np.asarray(onset_env, dtype=np.float64)
    env = env - env.mean()
    lag = 60.0 / bpm * SR_ANALYSIS / HOP
    lo, hi = int(lag * 0.96) - 1, int(math.ceil(lag * 1.04)) + 2
    if hi >= env.size // 2 or lo < 2:
        return bpm
    # Sum the autocorrelation at multiples of the lag (1..4 beats) for a sharper peak.
    lags = np.arange(lo, hi)
    score = np.zeros(lags.size)
    for mult in (1, 2, 3, 4):
        for i, lg in enumerate(lags):
            m = lg * mult
            if m < env.size - 1:
                score[i] += float(np.dot(env[:-m], env[m:])) / (env.size - m)
    i = int(np.argmax(score))
    if 0 < i < lags.size - 1:
        a, b, c = score[i - 1], score[i], score[i + 1]
        denom = a - 2 * b + c
        delta = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        delta = 0.0
    best_lag = lags[i] + float(np.clip(delta, -0.5, 0.5))
    return float(60.0 * SR_ANALYSIS / HOP / best_lag)


def _track_beats(
    onset_env: npt.NDArray[np.floating[Any]],
    tempo: float,
    *,
    sharp_env: npt.NDArray[np.floating[Any]] | None = None,
) -> FloatArray:
    """Beat times (s) from librosa's DP tracker at ``tempo``, refined to sub-frame peaks.

    Each tracked beat moves to the strongest peak of ``sharp_env`` (default: ``onset_env``)
    from 4 frames (46 ms) before it to 2 frames after: the tracking envelope's peaks come
    late by about its half-window.
    """
    import librosa

    _, frames = librosa.beat.beat_track(
        onset_envelope=onset_env, sr=SR_ANALYSIS, hop_length=HOP, bpm=tempo, tightness=400, trim=True
    )
    frames = np.asarray(frames, dtype=np.int64)
    env = np.asarray(onset_env if sharp_env is None else sharp_env, dtype=np.float64)
    before = 2 if sharp_env is None else 4
    refined = np.empty(frames.size)
    for j, f in enumerate(frames):
        lo, hi = max(0, f - before), min(env.size, f + 3)
        k = lo + int(np.argmax(env[lo:hi]))
        if 0 < k < env.size - 1:
            a, b, c = env[k - 1], env[k], env[k + 1]
            denom = a - 2 * b + c
            delta = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom != 0 else 0.0
        else:
            delta = 0.0
        refined[j] = k + delta
    times = np.asarray(librosa.frames_to_time(refined, sr=SR_ANALYSIS, hop_length=HOP), dtype=np.float64)
    times = np.unique(np.round(times, 6))
    return _fill_gaps(_trim_irregular_ends(times))


def _fill_gaps(beats: FloatArray) -> FloatArray:
    """Put missed beats back (evenly) where an interval spans two or more beat periods.

    A skipped beat in a quiet break would otherwise make the cross-mix squeeze two of the
    accompaniment's beats into one of the query's.
    """
    if beats.size < 8:
        return beats
    period = float(np.median(np.diff(beats)))
    out = [float(beats[0])]
    for b in beats[1:]:
        last = out[-1]
        gap = float(b) - last
        k = int(round(gap / period))
        if k >= 2 and abs(gap / k - period) < 0.15 * period:
            out.extend([last + gap * j / k for j in range(1, k)])
        out.append(float(b))
    return np.asarray(out, dtype=np.float64)


def _trim_irregular_ends(beats: FloatArray) -> FloatArray:
    """Drop leading/trailing beats whose spacing is off the song's median beat period.

    The tracker fills silence before the music starts (and after it ends) with beats at
    odd spacings; those would mis-anchor beat alignment.
    """
    if beats.size < 8:
        return beats
    period = float(np.median(np.diff(beats)))
    lo, hi = 0, beats.size
    while hi - lo > 4 and abs(beats[lo + 1] - beats[lo] - period) > 0.15 * period:
        lo += 1
    while hi - lo > 4 and abs(beats[hi - 1] - beats[hi - 2] - period) > 0.15 * period:
        hi -= 1
    return beats[lo:hi]


def _estimate_downbeats(y: npt.NDArray[np.float32], beats: FloatArray) -> FloatArray | None:
    """First beat of each 4/4 bar, or ``None`` when the bar phase is ambiguous.

    Two cues vote for each of the four phases: harmony changes on the bar line, seen in
    the *bass* chroma (C1-B3, below most singing, so melody notes do not vote), and kick
    drums sit on it (low-band onset strength at the beat). A phase must win clearly.
    """
    import librosa

    if beats.size < 12:  # three bars at least
        return None
    hop = 512
    bass = librosa.feature.chroma_cqt(
        y=y, sr=SR_ANALYSIS, hop_length=hop, fmin=librosa.note_to_hz("C1"), n_octaves=3
    )
    frames = np.clip(librosa.time_to_frames(beats, sr=SR_ANALYSIS, hop_length=hop), 0, bass.shape[1] - 1)
    # sync() adds the stretch before the first beat as segment 0: beat i is segment i + 1.
    bounds = sorted({int(f) for f in frames})
    seg = librosa.util.sync(bass, bounds, aggregate=np.mean)[:, 1 : beats.size + 1]
    seg = seg / (np.linalg.norm(seg, axis=0, keepdims=True) + 1e-9)
    novelty = np.zeros(beats.size)
    n = seg.shape[1]
    if n > 1:
        novelty[1:n] = 1.0 - np.sum(seg[:, 1:n] * seg[:, : n - 1], axis=0)
    low = librosa.onset.onset_strength(y=y, sr=SR_ANALYSIS, hop_length=HOP, fmax=150.0, n_mels=8)
    low_at = low[np.clip(librosa.time_to_frames(beats, sr=SR_ANALYSIS, hop_length=HOP), 0, low.size - 1)]

    def phase_scores(v: FloatArray) -> FloatArray:
        v = (v - v.mean()) / (v.std() + 1e-9)
        return np.array([v[p::4].mean() for p in range(4)])

    score = 2.0 * phase_scores(novelty) + phase_scores(np.asarray(low_at, dtype=np.float64))
    order = np.argsort(score)[::-1]
    if score[order[0]] - score[order[1]] < 0.5:
        return None
    return np.asarray(beats[int(order[0]) :: 4], dtype=np.float64)
