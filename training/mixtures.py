"""Artificial mixtures: one song's vocal over another song's accompaniment.

Lee & Nam 2019 train on *mashups* and CVSM (Garoufis et al.) on *artificial mixtures*: a mix
made from the vocal of one song and the accompaniment of another. One corpus of N songs then
gives about N x N (mix, vocal) pairs instead of N, and the pair needs no singer label: the
mix's vocal is known because it was put there.

Mixtures are built from cached segments (:class:`training.dataset.SongFeatures`), on the fly,
in the mel *power* domain, where independent sources add: ``P_mix = gv^2 P_v + ga^2 P_a``.
The cross terms of the two waveforms average out over a mel band; ``tests/test_mixtures.py``
checks the result against the mel spectrogram of the summed waveforms.

- ``logmel`` segments hold ``log10(1 + 10 P)`` of the raw audio, so the stems' levels are in
  the segments already.
- ``ge2e`` segments hold the mel power of each stem brought to -30 dBFS; the stems' levels
  (``SongFeatures.levels``) restore the true powers, and the mixture is brought to -30 dBFS
  again from its level ``sqrt(gv^2 rv^2 + ga^2 ra^2)``, as the app would for a real mix.

The vocal stem of a mixture is the vocal the pool holds for that segment (the separated vocal,
or the ground-truth stem with ``--vocals stems``), and the same segment is what f_v sees as
its pair, so f_v still sees Spleeter's artefacts as it does in the app. The accompaniment is
the other song's (separated or ground-truth) accompaniment.

The gains are drawn so that the vocal-to-accompaniment ratio of the mixture is uniform in
:data:`RATIO_DB` (the corpus draws -5..+3 dB; real mixes lean louder in the vocal) and are
recorded with each mixture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from core.embedding.features import LOG_GAIN

#: Vocal-to-accompaniment level ratio of artificial mixtures, dB (uniform).
RATIO_DB = (-6.0, 6.0)
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class Mixtures:
    """A batch of artificial mixtures and how each was made.

    ``mix`` holds the segments (same front end as the pool); ``vocal_index`` and
    ``acc_index`` are the pool segments whose vocal and accompaniment were used, with the
    gains (dB) applied to each.
    """

    mix: torch.Tensor
    vocal_index: IntArray
    acc_index: IntArray
    vocal_gain_db: FloatArray
    acc_gain_db: FloatArray


def _power(seg: torch.Tensor, frontend: str) -> torch.Tensor:
    if frontend == "logmel":
        return (torch.pow(10.0, seg.float()) - 1.0).clamp_min(0.0) / LOG_GAIN
    return seg.float()


def mix_segments(vocal: torch.Tensor, acc: torch.Tensor, *, frontend: str,
                 vocal_gain_db: FloatArray, acc_gain_db: FloatArray,
                 vocal_level_db: FloatArray | None = None, acc_level_db: FloatArray | None = None) -> torch.Tensor:
    """Segments of ``gv * vocal + ga * acc``, computed in the mel power domain.

    Parameters
    ----------
    vocal, acc : torch.Tensor
        ``(B, bands, frames)`` segments of the two stems (same front end).
    frontend : {"logmel", "ge2e"}
        ``"ge2e"`` segments are level-normalised and need ``vocal_level_db``/``acc_level_db``
        (the stems' true RMS levels, dBFS, ``(B,)``).
    vocal_gain_db, acc_gain_db : ndarray
        ``(B,)`` gains in dB.

    Returns
    -------
    torch.Tensor
        ``(B, bands, frames)`` float32, in the front end's own scale.
    """
    gv = torch.as_tensor(10.0 ** (np.asarray(vocal_gain_db, dtype=np.float64) / 10.0), dtype=torch.float32)
    ga = torch.as_tensor(10.0 ** (np.asarray(acc_gain_db, dtype=np.float64) / 10.0), dtype=torch.float32)
    pv, pa = _power(vocal, frontend), _power(acc, frontend)
    if frontend == "logmel":
        p = gv[:, None, None] * pv + ga[:, None, None] * pa
        return torch.log10(1.0 + LOG_GAIN * p)
    if frontend != "ge2e":
        raise ValueError(f"unknown front end {frontend!r}")
    if vocal_level_db is None or acc_level_db is None:
        raise ValueError("ge2e mixtures need the stems' levels")
    from core.embedding.ge2e import SILENCE_DBFS, TARGET_DBFS

    def true_scale(level_db: FloatArray) -> FloatArray:
        lv = np.asarray(level_db, dtype=np.float64)
        # normalise_level() leaves near-silence untouched; everything else was moved to TARGET_DBFS.
        return np.where(lv <= SILENCE_DBFS, 1.0, 10.0 ** ((lv - TARGET_DBFS) / 10.0))

    sv = gv.double().numpy() * true_scale(vocal_level_db)
    sa = ga.double().numpy() * true_scale(acc_level_db)
    p = (torch.as_tensor(sv, dtype=torch.float32)[:, None, None] * pv
         + torch.as_tensor(sa, dtype=torch.float32)[:, None, None] * pa)
    # Level of the sum of two independent signals, then back to the target level.
    rv = np.where(np.asarray(vocal_level_db) <= SILENCE_DBFS, 10 ** (TARGET_DBFS / 20), 10 ** (np.asarray(vocal_level_db) / 20))
    ra = np.where(np.asarray(acc_level_db) <= SILENCE_DBFS, 10 ** (TARGET_DBFS / 20), 10 ** (np.asarray(acc_level_db) / 20))
    level = np.sqrt(gv.double().numpy() * rv ** 2 + ga.double().numpy() * ra ** 2)
    renorm = np.where(20 * np.log10(np.maximum(level, 1e-12)) <= SILENCE_DBFS, 1.0,
                      (10 ** (TARGET_DBFS / 20) / np.maximum(level, 1e-12)) ** 2)
    return p * torch.as_tensor(renorm, dtype=torch.float32)[:, None, None]


def draw_gains(rng: np.random.Generator, vocal_level_db: FloatArray, acc_level_db: FloatArray,
               *, ratio_db: tuple[float, float] = RATIO_DB) -> tuple[FloatArray, FloatArray]:
    """Gains (dB) giving each mixture a vocal-to-accompaniment ratio drawn from ``ratio_db``.

    The vocal keeps its level (gain 0 dB); the accompaniment is moved.
    """
    ratio = rng.uniform(ratio_db[0], ratio_db[1], size=len(vocal_level_db))
    acc_gain = np.asarray(vocal_level_db, dtype=np.float64) - np.asarray(acc_level_db, dtype=np.float64) - ratio
    return np.zeros(len(ratio)), np.clip(acc_gain, -30.0, 30.0)


def make_mixtures(pool: object, vocal_index: IntArray, rng: np.random.Generator) -> Mixtures:
    """Artificial mixtures for the pool segments ``vocal_index``: each vocal over the
    accompaniment of a random segment of *another* song of the pool.

    ``pool`` is a :class:`training.triplets.SegmentPool` built with accompaniments.
    """
    from training.triplets import SegmentPool

    assert isinstance(pool, SegmentPool)
    if pool.acc is None or pool.levels is None:
        raise ValueError("this segment pool has no accompaniment segments (old feature cache?)")
    vocal_index = np.asarray(vocal_index, dtype=np.int64)
    n = pool.n_segments
    song = pool.segment_song
    acc_index = rng.integers(n, size=len(vocal_index))
    if len(pool.song_count) > 1:
        for _ in range(8):  # redraw the few that landed in their own song
            same = song[acc_index] == song[vocal_index]
            if not same.any():
                break
            acc_index[same] = rng.integers(n, size=int(same.sum()))
    lv = pool.levels[vocal_index, 1].astype(np.float64)
    la = pool.levels[acc_index, 2].astype(np.float64)
    gv, ga = draw_gains(rng, lv, la)
    mix = mix_segments(pool.vocal[torch.from_numpy(vocal_index)], pool.acc[torch.from_numpy(acc_index)],
                       frontend=pool.frontend, vocal_gain_db=gv, acc_gain_db=ga,
                       vocal_level_db=lv, acc_level_db=la)
    return Mixtures(mix=mix, vocal_index=vocal_index, acc_index=acc_index, vocal_gain_db=gv, acc_gain_db=ga)
