"""The encoders' front end: log-mel spectrograms and 3-second segments (Kim et al. 2021, 3.1).

Audio is resampled to 22 050 Hz mono; a centred STFT with a 1024-sample Hann window and a
512-sample hop gives power spectra, a 128-band Slaney mel filterbank (``librosa.filters.mel``)
maps them to mel power, and ``log10(1 + 10 * mel)`` compresses them. Encoders see 129-frame
(~3 s) segments. Everything runs in torch so the front end sits on the same device as the
encoders; :func:`log_mel` matches ``librosa.feature.melspectrogram`` (see the tests).

Segment selection keeps the segments where the separated vocal is *active*: a segment is
active when the RMS level of its vocal is at least :data:`VOCAL_ACTIVE_ABS_DB` dBFS and no
more than :data:`VOCAL_ACTIVE_REL_DB` dB below the loudest vocal segment of the song. When
fewer than :data:`MIN_ACTIVE_SEGMENTS` segments are active (a separator that leaves a faint
vocal, a very short song) all segments are used. A cap keeps at most ``max_segments``,
spread evenly over the song.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from core.audio.decode import Audio
from core.embedding.mel import mel_power as _mel_power

#: Sample rate of the front end, Hz.
SR_FEATURES = 22050
#: STFT window (Hann) and FFT length, samples.
N_FFT = 1024
#: STFT hop, samples.
HOP = 512
#: Mel bands.
N_MELS = 128
#: Frames per encoder input segment: 129 frames = (129 - 1) * 512 / 22050 = 2.97 s.
SEGMENT_FRAMES = 129
#: Segment length in seconds (for reports).
SEGMENT_SECONDS = (SEGMENT_FRAMES - 1) * HOP / SR_FEATURES
#: Log compression: ``log10(1 + LOG_GAIN * mel_power)``.
LOG_GAIN = 10.0

#: A segment's vocal is active when its RMS is at least this level (dBFS) ...
VOCAL_ACTIVE_ABS_DB = -50.0
#: ... and no more than this many dB below the song's loudest vocal segment.
VOCAL_ACTIVE_REL_DB = 20.0
#: Fewer active segments than this and selection falls back to all segments.
MIN_ACTIVE_SEGMENTS = 3
#: Default cap on segments per song (about 48 s of audio spread over the song).
DEFAULT_MAX_SEGMENTS = 16

IntArray = npt.NDArray[np.int64]


def mel_power(samples: torch.Tensor, *, sr: int = SR_FEATURES, n_fft: int = N_FFT,
              hop: int = HOP, n_mels: int = N_MELS) -> torch.Tensor:
    """Mel power spectrogram with this front end's defaults (22 050 Hz, 1024, 512, 128 bands).

    :func:`core.embedding.mel.mel_power`, identical to ``librosa.feature.melspectrogram``
    defaults: ``(n,)`` or ``(batch, n)`` audio -> ``(n_mels, frames)`` or
    ``(batch, n_mels, frames)`` with ``frames = 1 + n // hop``.
    """
    return _mel_power(samples, sr=sr, n_fft=n_fft, hop=hop, n_mels=n_mels)


def compress(mel: torch.Tensor) -> torch.Tensor:
    """The log compression the encoders see: ``log10(1 + 10 * mel_power)``."""
    return torch.log10(1.0 + LOG_GAIN * mel)


def log_mel(samples: torch.Tensor, *, sr: int = SR_FEATURES) -> torch.Tensor:
    """Log-compressed mel spectrogram of 22 050 Hz mono audio.

    Parameters
    ----------
    samples : torch.Tensor
        ``(n,)`` or ``(batch, n)`` float audio at ``sr`` (must be :data:`SR_FEATURES`).

    Returns
    -------
    torch.Tensor
        ``(128, frames)`` or ``(batch, 128, frames)`` with ``frames = 1 + n // 512``,
        on the device of ``samples``.
    """
    if sr != SR_FEATURES:
        raise ValueError(f"log_mel expects {SR_FEATURES} Hz audio, got {sr} Hz; resample first")
    return compress(mel_power(samples))


def to_feature_rate(audio: Audio) -> npt.NDArray[np.float32]:
    """Mono ``(n,)`` float32 at :data:`SR_FEATURES` Hz from any :class:`Audio`."""
    mono = audio.mono()
    if mono.sr != SR_FEATURES:
        mono = mono.resampled(SR_FEATURES)
    return np.ascontiguousarray(mono.samples[0], dtype=np.float32)


def segment_starts(n_frames: int, *, frames: int = SEGMENT_FRAMES) -> IntArray:
    """Start frames of the non-overlapping ``frames``-long segments of a spectrogram.

    A spectrogram shorter than one segment yields one segment at 0 (it is padded by
    :func:`cut_segments`).
    """
    count = max(1, n_frames // frames)
    return np.arange(count, dtype=np.int64) * frames


def cut_segments(spec: torch.Tensor, starts: IntArray, *, frames: int = SEGMENT_FRAMES) -> torch.Tensor:
    """Stack segments ``(count, n_mels, frames)`` from ``spec`` ``(n_mels, n_frames)``.

    Segments that run past the end are padded with zeros (log10(1 + 0) = 0, silence).
    """
    n_mels, n_frames = spec.shape
    need = int(starts.max()) + frames if len(starts) else frames
    if need > n_frames:
        spec = torch.nn.functional.pad(spec, (0, need - n_frames))
    idx = torch.as_tensor(starts, device=spec.device)[:, None] + torch.arange(frames, device=spec.device)
    return spec[:, idx].permute(1, 0, 2).contiguous()


def segment_levels_db(samples: npt.NDArray[np.float32], starts: IntArray, *,
                      frames: int = SEGMENT_FRAMES, hop: int = HOP) -> npt.NDArray[np.float64]:
    """RMS level in dBFS of each segment of a 22 050 Hz mono signal (frame ``f`` starts at sample ``f * hop``)."""
    seg_len = (frames - 1) * hop
    out = np.empty(len(starts), dtype=np.float64)
    for i, s in enumerate(starts):
        a = int(s) * hop
        chunk = samples[a:a + seg_len].astype(np.float64)
        rms = float(np.sqrt(np.mean(chunk ** 2))) if chunk.size else 0.0
        out[i] = 20.0 * np.log10(max(rms, 1e-10))
    return out


def active_segments(levels_db: npt.NDArray[np.float64], *,
                    abs_db: float = VOCAL_ACTIVE_ABS_DB,
                    rel_db: float = VOCAL_ACTIVE_REL_DB) -> npt.NDArray[np.bool_]:
    """Which segments hold singing, by the energy rule in the module docstring."""
    if len(levels_db) == 0:
        return np.zeros(0, dtype=bool)
    top = float(np.max(levels_db))
    return np.asarray((levels_db >= abs_db) & (levels_db >= top - rel_db), dtype=bool)


def spread(indices: IntArray, cap: int) -> IntArray:
    """At most ``cap`` of ``indices``, evenly spread (keeps the first and the last)."""
    if cap <= 0 or len(indices) <= cap:
        return indices
    pick = np.round(np.linspace(0, len(indices) - 1, cap)).astype(np.int64)
    return indices[pick]


def select_segments(*, n_frames: int, vocal: npt.NDArray[np.float32] | None,
                    max_segments: int = DEFAULT_MAX_SEGMENTS,
                    min_active: int = MIN_ACTIVE_SEGMENTS) -> tuple[IntArray, bool]:
    """Choose the segment start frames a song is embedded from.

    Parameters
    ----------
    n_frames : int
        Frames of the song's spectrogram.
    vocal : ndarray, optional
        ``(n,)`` separated vocal at 22 050 Hz; ``None`` keeps every segment.
    max_segments : int
        Cap, spread evenly over the chosen segments; ``0`` means no cap.
    min_active : int
        Fall back to all segments when fewer are active.

    Returns
    -------
    starts : ndarray of int64
        Start frames, ascending.
    vocal_found : bool
        ``True`` when the active-vocal rule chose the segments, ``False`` on fallback.
    """
    starts = segment_starts(n_frames)
    if vocal is None:
        return spread(starts, max_segments), False
    active = active_segments(segment_levels_db(vocal, starts))
    chosen = starts[active]
    if len(chosen) < min(min_active, len(starts)) or len(chosen) == 0:
        return spread(starts, max_segments), False
    return spread(chosen, max_segments), True


def song_segments(*, mix: Audio, vocals: Audio | None, device: torch.device | None = None,
                  max_segments: int = DEFAULT_MAX_SEGMENTS,
                  frontend: str = "logmel") -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Segments of a song's mix and vocal at the same (vocal-active) positions.

    ``frontend`` ``"logmel"`` gives the CNN encoders' log-mel segments; ``"ge2e"`` gives
    the GE2E encoder's 40-band mel power segments of the same 3-s stretches at 16 kHz, each
    brought to -30 dBFS (:func:`core.embedding.ge2e.segment_mels`). Segments are chosen from the
    vocal's level at 22 050 Hz either way, so both front ends see the same stretches.

    Returns
    -------
    mix_segments : torch.Tensor
        ``(count, 128, 129)`` float32 on ``device`` (``"ge2e"``: ``(count, 40, 298)``).
    vocal_segments : torch.Tensor or None
        Same shape, or ``None`` when ``vocals`` is ``None``.
    vocal_found : bool
        Whether the vocal-activity rule chose the segments.
    """
    dev = device or torch.device("cpu")
    mix_np = to_feature_rate(mix)
    voc_np = to_feature_rate(vocals) if vocals is not None else None
    if voc_np is not None and len(voc_np) != len(mix_np):
        n = min(len(voc_np), len(mix_np))
        mix_np, voc_np = mix_np[:n], voc_np[:n]
    n_frames = 1 + len(mix_np) // HOP
    starts, found = select_segments(n_frames=n_frames, vocal=voc_np, max_segments=max_segments)
    if frontend == "ge2e":
        return _ge2e_segments(mix, vocals, starts, found, dev, n_samples=len(mix_np))
    if frontend != "logmel":
        raise ValueError(f"unknown front end {frontend!r}: use 'logmel' or 'ge2e'")
    mix_spec = log_mel(torch.from_numpy(mix_np).to(dev))
    mix_seg = cut_segments(mix_spec, starts)
    voc_seg = None
    if voc_np is not None:
        voc_seg = cut_segments(log_mel(torch.from_numpy(voc_np).to(dev)), starts)
    return mix_seg, voc_seg, found


def _ge2e_segments(mix: Audio, vocals: Audio | None, starts: IntArray, found: bool, dev: torch.device,
                   *, n_samples: int) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    from core.embedding import ge2e

    starts_s = starts.astype(np.float64) * HOP / SR_FEATURES
    limit = n_samples / SR_FEATURES

    def mels(a: Audio) -> torch.Tensor:
        mono = a.mono()
        x = mono.resampled(ge2e.SR) if mono.sr != ge2e.SR else mono
        samples = np.ascontiguousarray(x.samples[0][:int(round(limit * ge2e.SR))], dtype=np.float32)
        return ge2e.segment_mels(samples, starts_s, seconds=SEGMENT_SECONDS, device=dev)

    return mels(mix), (mels(vocals) if vocals is not None else None), found


def stems_levels_db(stems: list[Audio], vocals: Audio, *,
                    max_segments: int = DEFAULT_MAX_SEGMENTS) -> npt.NDArray[np.float64]:
    """RMS level (dBFS) ``(count, len(stems))`` of each of ``stems`` in the segments that
    :func:`song_segments` chooses from ``vocals``.

    Used to rebuild artificial mixtures at the stems' true levels from level-normalised segments.
    The vocal is brought to the feature rate and the segments chosen once for all the stems.
    """
    voc = to_feature_rate(vocals)
    signals = [to_feature_rate(a) for a in stems]
    n = min([len(voc), *(len(x) for x in signals)])
    starts, _ = select_segments(n_frames=1 + n // HOP, vocal=voc[:n], max_segments=max_segments)
    return np.stack([segment_levels_db(x[:n], starts) for x in signals], axis=1)
