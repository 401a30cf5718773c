"""Mel power spectrograms in torch, as ``librosa.feature.melspectrogram`` computes them.

The one spectrogram primitive of both front ends: the CNN encoders' (:mod:`core.embedding.features`,
22 050 Hz, 128 bands) and the GE2E encoder's (:mod:`core.embedding.ge2e`, 16 kHz, 40 bands). It
sits below both, so neither front end imports the other for it.
"""

from __future__ import annotations

import functools

import librosa
import numpy as np
import numpy.typing as npt
import torch


@functools.lru_cache(maxsize=8)
def _mel_basis_np(sr: int, n_fft: int, n_mels: int) -> npt.NDArray[np.float32]:
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def mel_power(samples: torch.Tensor, *, sr: int, n_fft: int, hop: int, n_mels: int) -> torch.Tensor:
    """Mel power spectrogram, identical to ``librosa.feature.melspectrogram`` defaults.

    Parameters
    ----------
    samples : torch.Tensor
        ``(n,)`` or ``(batch, n)`` float mono audio at ``sr`` Hz.
    sr, n_fft, hop, n_mels : int
        Sample rate, FFT length (= Hann window length), hop and number of mel bands.

    Returns
    -------
    torch.Tensor
        ``(n_mels, frames)`` or ``(batch, n_mels, frames)``, ``frames = 1 + n // hop``
        (centred STFT, zero padding as librosa >= 0.10 does by default).
    """
    x = samples.to(torch.float32)
    squeeze = x.ndim == 1
    if squeeze:
        x = x.unsqueeze(0)
    if x.ndim != 2:
        raise ValueError(f"samples must be (n,) or (batch, n), got {tuple(samples.shape)}")
    window = torch.hann_window(n_fft, periodic=True, device=x.device, dtype=torch.float32)
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    basis = torch.from_numpy(_mel_basis_np(sr, n_fft, n_mels)).to(x.device)
    mel = torch.matmul(basis, power)
    return mel.squeeze(0) if squeeze else mel
