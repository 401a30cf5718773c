"""Segment pools and triplet sampling (anchor, positive of the same singer, negatives of others).

Every song contributes its cached segments; a *segment index* addresses one paired
(mix, vocal) segment in the pool. A triplet's anchor is a random segment of a random song
of a random singer; the positive is a random segment of **another** song of that singer
(of the same song when the singer has only one); each negative is a random segment of a
random song of a different singer (the negatives of one triplet come from distinct singers
when there are enough).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from core.errors import TrainingError
from training.dataset import SongEntry, SongFeatures

IntArray = npt.NDArray[np.int64]


@dataclass
class SegmentPool:
    """Segments of a set of songs, flattened: ``mix``/``vocal`` are float16 ``(N, 128, 129)``.

    ``song_start[k]`` .. ``song_start[k] + song_count[k]`` index song ``k``'s segments;
    ``singer_songs[s]`` lists the song numbers of singer ``s`` (index into ``singers``).
    """

    mix: torch.Tensor
    vocal: torch.Tensor
    song_start: IntArray
    song_count: IntArray
    singers: list[str]
    singer_songs: list[IntArray]
    #: Accompaniment segments and ``(N, 3)`` mix/vocal/accompaniment levels (dBFS), for
    #: artificial mixtures (:mod:`training.mixtures`); ``None`` when the cache lacks them.
    acc: torch.Tensor | None = None
    levels: npt.NDArray[np.float32] | None = None
    frontend: str = "logmel"

    @classmethod
    def build(cls, songs: list[SongEntry], feats: list[SongFeatures], *, frontend: str = "logmel") -> SegmentPool:
        if not songs:
            raise TrainingError("No songs to sample triplets from.")
        singers = sorted({s.singer for s in songs})
        idx = {name: i for i, name in enumerate(singers)}
        counts = np.array([f.mix.shape[0] for f in feats], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        by: list[list[int]] = [[] for _ in singers]
        for k, s in enumerate(songs):
            by[idx[s.singer]].append(k)
        mix = torch.from_numpy(np.concatenate([f.mix for f in feats], axis=0))
        vocal = torch.from_numpy(np.concatenate([f.vocal for f in feats], axis=0))
        acc = levels = None
        if all(f.acc is not None and f.levels is not None for f in feats):
            acc = torch.from_numpy(np.concatenate([f.acc for f in feats], axis=0))
            levels = np.concatenate([f.levels for f in feats], axis=0).astype(np.float32)
        return cls(mix=mix, vocal=vocal, song_start=starts, song_count=counts, singers=singers,
                   singer_songs=[np.array(b, dtype=np.int64) for b in by], acc=acc, levels=levels,
                   frontend=frontend)

    @property
    def segment_song(self) -> IntArray:
        """The song number of every segment ``(N,)``."""
        return np.repeat(np.arange(len(self.song_count), dtype=np.int64), self.song_count)

    @property
    def n_songs(self) -> int:
        return len(self.song_count)

    @property
    def n_segments(self) -> int:
        return int(self.mix.shape[0])

    def _segment(self, rng: np.random.Generator, song: int) -> int:
        return int(self.song_start[song] + rng.integers(self.song_count[song]))

    def sample(self, rng: np.random.Generator, *, batch_size: int, negatives: int) -> tuple[IntArray, IntArray, IntArray]:
        """Segment indices of ``batch_size`` triplets: anchors ``(B,)``, positives ``(B,)``, negatives ``(B, J)``."""
        n_singers = len(self.singers)
        if n_singers < 2:
            raise TrainingError("Triplets need songs of at least two singers.")
        a = np.empty(batch_size, dtype=np.int64)
        p = np.empty(batch_size, dtype=np.int64)
        n = np.empty((batch_size, negatives), dtype=np.int64)
        for i in range(batch_size):
            s = int(rng.integers(n_singers))
            songs = self.singer_songs[s]
            song_a = int(songs[rng.integers(len(songs))])
            a[i] = self._segment(rng, song_a)
            others = songs[songs != song_a]
            if len(others):
                p[i] = self._segment(rng, int(others[rng.integers(len(others))]))
            else:
                cnt = int(self.song_count[song_a])
                off = int(a[i] - self.song_start[song_a])
                if cnt > 1:
                    off = (off + 1 + int(rng.integers(cnt - 1))) % cnt
                p[i] = int(self.song_start[song_a]) + off
            pool = np.delete(np.arange(n_singers), s)
            neg_singers = rng.choice(pool, size=negatives, replace=len(pool) < negatives)
            for j, ns in enumerate(neg_singers):
                nsongs = self.singer_songs[int(ns)]
                n[i, j] = self._segment(rng, int(nsongs[rng.integers(len(nsongs))]))
        return a, p, n

    def segment_singer(self) -> IntArray:
        """The singer number of every segment ``(N,)`` (for tests and diagnostics)."""
        out = np.empty(self.n_segments, dtype=np.int64)
        for s, songs in enumerate(self.singer_songs):
            for k in songs:
                out[self.song_start[k]:self.song_start[k] + self.song_count[k]] = s
        return out

    def sample_pairs(self, rng: np.random.Generator, *, batch_size: int, labels: bool) -> tuple[IntArray, IntArray]:
        """Anchor and positive segment indices ``(B,)`` of a contrastive batch (CVSM).

        ``labels=True`` (label-informed): the anchors come from ``B`` distinct singers (as
        many as there are) and each positive is a segment of *another* song of the anchor's
        singer (of the same song when the singer has one). ``labels=False`` (label-agnostic):
        the anchors come from distinct songs and each positive is another segment of the
        anchor's own song (a time-shifted excerpt; the same segment when the song has one),
        so no singer label is read.
        """
        if labels:
            n_singers = len(self.singers)
            if n_singers < 2:
                raise TrainingError("Label-informed pairs need songs of at least two singers.")
            who = rng.choice(n_singers, size=batch_size, replace=n_singers < batch_size)
            a = np.empty(batch_size, dtype=np.int64)
            p = np.empty(batch_size, dtype=np.int64)
            for i, s in enumerate(who):
                songs = self.singer_songs[int(s)]
                song_a = int(songs[rng.integers(len(songs))])
                a[i] = self._segment(rng, song_a)
                others = songs[songs != song_a]
                p[i] = self._segment(rng, int(others[rng.integers(len(others))])) if len(others) \
                    else self._other_segment(rng, song_a, int(a[i]))
            return a, p
        n_songs = self.n_songs
        if n_songs < 2:
            raise TrainingError("Contrastive batches need at least two songs.")
        chosen = rng.choice(n_songs, size=batch_size, replace=n_songs < batch_size)
        a = np.array([self._segment(rng, int(k)) for k in chosen], dtype=np.int64)
        p = np.array([self._other_segment(rng, int(k), int(x)) for k, x in zip(chosen, a, strict=True)],
                     dtype=np.int64)
        return a, p

    def _other_segment(self, rng: np.random.Generator, song: int, segment: int) -> int:
        """Another segment of ``song`` than ``segment`` (itself when the song has one)."""
        cnt = int(self.song_count[song])
        off = int(segment - self.song_start[song])
        if cnt > 1:
            off = (off + 1 + int(rng.integers(cnt - 1))) % cnt
        return int(self.song_start[song]) + off
