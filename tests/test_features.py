"""Front end: log-mel against librosa, segments, vocal-activity selection."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from core.audio.decode import Audio
from core.embedding.features import (
    HOP,
    MIN_ACTIVE_SEGMENTS,
    N_MELS,
    SEGMENT_FRAMES,
    SR_FEATURES,
    active_segments,
    cut_segments,
    log_mel,
    mel_power,
    segment_levels_db,
    segment_starts,
    select_segments,
    song_segments,
    spread,
)


def _noisy_tone(rng: np.random.Generator, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(SR_FEATURES * seconds)) / SR_FEATURES
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_mel_power_matches_librosa(rng: np.random.Generator) -> None:
    x = _noisy_tone(rng, 3.3)
    ref = librosa.feature.melspectrogram(y=x, sr=SR_FEATURES, n_fft=1024, hop_length=512, n_mels=128)
    got = mel_power(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape == (N_MELS, 1 + x.size // HOP)
    # float32 FFT vs librosa's: relative error well under 1e-4 of the peak
    assert np.max(np.abs(got - ref)) <= 1e-4 * ref.max()


def test_log_mel_batched_and_compressed(rng: np.random.Generator) -> None:
    x = np.stack([_noisy_tone(rng, 1.0, f) for f in (220.0, 880.0)])
    out = log_mel(torch.from_numpy(x))
    assert out.shape == (2, N_MELS, 1 + x.shape[1] // HOP)
    ref = np.log10(1 + 10 * librosa.feature.melspectrogram(y=x[1], sr=SR_FEATURES, n_fft=1024, hop_length=512))
    np.testing.assert_allclose(out[1].numpy(), ref, atol=1e-4)
    # the tone's mel band is the brightest one
    f_peak = librosa.mel_frequencies(n_mels=N_MELS, fmax=SR_FEATURES / 2)[int(out[0].mean(1).argmax())]
    assert abs(f_peak - 220.0) < 40.0
    with pytest.raises(ValueError):
        log_mel(torch.zeros(100), sr=44100)


def test_segments_cut_and_pad() -> None:
    spec = torch.arange(2 * 300, dtype=torch.float32).reshape(2, 300)
    starts = segment_starts(300)
    assert list(starts) == [0, 129]
    seg = cut_segments(spec, starts)
    assert seg.shape == (2, 2, SEGMENT_FRAMES)
    assert torch.equal(seg[1, 0], spec[0, 129:258])
    short = cut_segments(spec[:, :50], segment_starts(50))
    assert short.shape == (1, 2, SEGMENT_FRAMES) and float(short[0, 0, 60]) == 0.0


def test_spread_keeps_ends_and_caps() -> None:
    idx = np.arange(100, dtype=np.int64)
    got = spread(idx, 5)
    assert list(got) == [0, 25, 50, 74, 99]
    assert list(spread(idx[:3], 5)) == [0, 1, 2]


def test_vocal_activity_selects_sung_segments(rng: np.random.Generator) -> None:
    seg_s = (SEGMENT_FRAMES * HOP) / SR_FEATURES
    n_seg = 8
    vocal = np.zeros(int(seg_s * n_seg * SR_FEATURES) + HOP, dtype=np.float32)
    sung = [1, 2, 5, 6]
    for k in sung:  # a loud tone in four segments, -80 dB hiss elsewhere
        a = k * SEGMENT_FRAMES * HOP
        vocal[a:a + SEGMENT_FRAMES * HOP] = _noisy_tone(rng, SEGMENT_FRAMES * HOP / SR_FEATURES)
    vocal += 1e-4 * rng.standard_normal(vocal.size).astype(np.float32)
    n_frames = 1 + vocal.size // HOP
    starts = segment_starts(n_frames)
    levels = segment_levels_db(vocal, starts)
    assert list(np.flatnonzero(active_segments(levels))) == sung
    chosen, found = select_segments(n_frames=n_frames, vocal=vocal, max_segments=0)
    assert found and list(chosen // SEGMENT_FRAMES) == sung
    capped, _ = select_segments(n_frames=n_frames, vocal=vocal, max_segments=2)
    assert list(capped // SEGMENT_FRAMES) == [1, 6]
    # too few active segments: every segment is used
    quiet = vocal.copy()
    for k in sung[1:]:
        quiet[k * SEGMENT_FRAMES * HOP:(k + 1) * SEGMENT_FRAMES * HOP] = 0.0
    assert MIN_ACTIVE_SEGMENTS > 1
    fallback, found = select_segments(n_frames=n_frames, vocal=quiet, max_segments=0)
    assert not found and len(fallback) == len(starts)


def test_song_segments_from_44k_stereo(rng: np.random.Generator) -> None:
    x = _noisy_tone(rng, 7.0)
    mix = Audio(np.stack([x, x]), SR_FEATURES).resampled(44100)
    mix_seg, voc_seg, found = song_segments(mix=mix, vocals=mix, max_segments=16)
    assert mix_seg.shape == (2, N_MELS, SEGMENT_FRAMES)
    assert voc_seg is not None and torch.allclose(mix_seg, voc_seg)
    assert found is True  # both segments are sung: the rule chose them (no fallback)
    only_mix, none, _ = song_segments(mix=mix, vocals=None)
    assert none is None and only_mix.shape == mix_seg.shape
