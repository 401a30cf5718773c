"""A real-speech speaker encoder as a backbone: GE2E (Wan et al. 2018) with resemblyzer's weights.

``resemblyzer`` (PyPI, Apache-2.0) ships a GE2E speaker encoder trained on about 9.6k real
speakers as ``resemblyzer/pretrained.pt`` inside its wheel. Crossmix uses those weights in
three ways (issue "Vocal-to-mix search ..."):

- as a **peer encoder**: the same network on the vocal and on the mix
  (:meth:`core.embedding.encoders.EncoderPair.resemblyzer`), a baseline in every evaluation and a choice
  of encoders in the app and the CLI;
- as a **frozen backbone** under trained heads (``arch="ge2e"``): f_v and f_m each add a small
  residual MLP on the backbone's hidden states;
- as a **teacher**: its embedding of a song's vocal is a label-free target for f_m.

The front end is resemblyzer's: 16 kHz mono, a 40-band mel *power* spectrogram (25 ms Hann
window, 10 ms hop, librosa's defaults), partial utterances of 160 frames (1.6 s). Each 3-s
segment of a song (the segments the CNN encoders see, :mod:`core.embedding.features`) is loudness-
normalised to -30 dBFS (resemblyzer's target level) and cut into two overlapping partials;
the segment's embedding is the mean of its partials' unit vectors, as resemblyzer's
``embed_utterance`` does. The weights are read with ``torch.load(weights_only=True)`` (no
unpickling of code) from the installed package; nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from core.embedding.mel import mel_power
from core.errors import ModelError

#: resemblyzer's front end (``resemblyzer/hparams.py``).
SR = 16000
N_MELS = 40
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
HIDDEN = 256
LAYERS = 3
EMBEDDING = 256
#: Loudness every segment is brought to before the mel spectrogram (dBFS RMS).
TARGET_DBFS = -30.0
#: Segments quieter than this (dBFS) are silence: left as they are, not amplified.
SILENCE_DBFS = -70.0
#: Size of the backbone's hidden state that heads read: the last hidden state of each layer.
FEATURE_DIM = HIDDEN * LAYERS


def weights_path() -> Path:
    """``pretrained.pt`` inside the installed ``resemblyzer`` package.

    Raises
    ------
    ModelError
        resemblyzer is not installed (it is part of Crossmix's dependencies).
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The resemblyzer package is not installed, so its speaker encoder cannot be used. "
                         "Reinstall Crossmix (bash scripts/setup.sh install) or: pip install resemblyzer webrtcvad-wheels")
    p = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not p.is_file():
        raise ModelError(f"{p}: resemblyzer's weights are missing; reinstall it (pip install --force-reinstall resemblyzer).")
    return p


@functools.lru_cache(maxsize=1)
def _state_and_sha() -> tuple[dict[str, torch.Tensor], str]:
    p = weights_path()
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise ModelError(f"{p}: resemblyzer's weights cannot be read ({str(exc)[:200]}); reinstall resemblyzer.") from None
    state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{p}: not a resemblyzer checkpoint.")
    keep = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    h = hashlib.sha256()
    for k in sorted(keep):
        h.update(k.encode())
        h.update(keep[k].float().numpy().tobytes())
    return keep, h.hexdigest()


def backbone_sha256() -> str:
    """sha256 of the backbone's tensors (part of every GE2E-based model's identity)."""
    return _state_and_sha()[1]


class GE2E(nn.Module):
    """resemblyzer's ``VoiceEncoder`` network: 3-layer LSTM (256) + linear + ReLU + L2 norm.

    :meth:`hidden` gives the last hidden state of each LSTM layer ``(B, 768)``;
    :meth:`embed_hidden` turns it into the speaker embedding ``(B, 256)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING)

    @classmethod
    def pretrained(cls) -> GE2E:
        """The network with resemblyzer's weights, frozen, in eval mode."""
        net = cls()
        state, _ = _state_and_sha()
        net.load_state_dict(state, strict=True)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def hidden(self, mels: torch.Tensor) -> torch.Tensor:
        """``(B, frames, 40)`` mel power -> ``(B, 768)`` last hidden state of the three layers."""
        _, (h, _) = self.lstm(mels)
        out: torch.Tensor = h.permute(1, 0, 2).reshape(mels.shape[0], LAYERS * HIDDEN)
        return out

    def embed_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, 768)`` hidden states -> ``(B, 256)`` unit speaker embeddings."""
        e = torch.relu(self.linear(hidden[:, -HIDDEN:]))
        out: torch.Tensor = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return out

    def segment_features(self, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone outputs of ``(B, 40, frames)`` segments: ``(embedding (B, 256), hidden (B, 768))``.

        The segment is cut into two 160-frame partials (its start and its end); the embedding
        is the normalised mean of theirs, the hidden state the mean of theirs.
        """
        x = segments.transpose(1, 2).float()  # (B, frames, 40)
        frames = x.shape[1]
        if frames < PARTIAL_FRAMES:
            x = torch.nn.functional.pad(x, (0, 0, 0, PARTIAL_FRAMES - frames))
            frames = PARTIAL_FRAMES
        parts = torch.cat([x[:, :PARTIAL_FRAMES], x[:, frames - PARTIAL_FRAMES:]], dim=0)
        h = self.hidden(parts)
        e = self.embed_hidden(h)
        b = segments.shape[0]
        emb = e[:b] + e[b:]
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return emb, 0.5 * (h[:b] + h[b:])


# --- front end -----------------------------------------------------------------------------


def normalise_level(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Scale ``x`` to :data:`TARGET_DBFS` RMS; near-silence (< :data:`SILENCE_DBFS`) is kept as is."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms <= 10 ** (SILENCE_DBFS / 20):
        return x.astype(np.float32)
    return (x * (10 ** (TARGET_DBFS / 20) / rms)).astype(np.float32)


def segment_mels(samples: npt.NDArray[np.float32], starts_s: npt.NDArray[np.float64], *,
                 seconds: float, device: torch.device | None = None) -> torch.Tensor:
    """Mel power segments ``(count, 40, frames)`` of 16 kHz mono ``samples``.

    Parameters
    ----------
    samples : ndarray
        ``(n,)`` mono audio at :data:`SR` Hz.
    starts_s : ndarray
        Start time of each segment, seconds.
    seconds : float
        Segment length, seconds (segments past the end are zero-padded).
    """
    n = int(round(seconds * SR))
    chunks = []
    for s in starts_s:
        a = int(round(float(s) * SR))
        c = samples[a:a + n]
        if len(c) < n:
            c = np.pad(c, (0, n - len(c)))
        chunks.append(normalise_level(c))
    x = torch.from_numpy(np.stack(chunks) if chunks else np.zeros((0, n), np.float32))
    if device is not None:
        x = x.to(device)
    return mel_power(x, sr=SR, n_fft=N_FFT, hop=HOP, n_mels=N_MELS)
