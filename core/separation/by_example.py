"""Audio-query-based source separation (Lee, Choi & Lee): separate "a sound like this one".

A **Query-net** Q (6 conv layers and a GRU) encodes a short example of the wanted source into
the mean and log-variance of a latent ``z``; a **separator** S, a U-Net on magnitude
spectrograms, estimates a mask for that source in a mixture, conditioned on ``z`` twice: ``z``
tiled and concatenated to the input channels, and AdaIN (scale and shift from ``z``) after
every decoder layer. Trained as a conditional VAE (:func:`losses`): L1 reconstruction, KL
divergence to N(0, I) and the latent-regressor loss ``||z - Q(S(M, z))||_1``.

Also: class-mean latents (``drums``, ``bass``, ``vocals``, ``other``) stored with the weights,
spherical interpolation between latents (:func:`slerp`) and the iterative re-query refinement
(:meth:`QuerySeparator.separate_magnitude` with ``iterations``).

The network works on 16 kHz mono; :func:`separate_with_query` applies its mask, mapped by
frequency and time, to the song's own STFT, so the output keeps the song's sample rate,
channels and full band.

Weights are a safetensors state dict plus a JSON config (``NAME.safetensors`` + ``NAME.json``,
sha256 checked on load), like the encoders; the shipped model is
``assets/query_separation/aqss.safetensors``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from core.atomic import atomic_write, sha256_file
from core.audio.decode import Audio, resample
from core.errors import AudioError, ModelError
from core.paths import assets_dir
from core.progress import CancelToken, Progress, ProgressFn, check_cancel
from core.separation.source_choice import MIN_QUERY_SECONDS

FORMAT = "crossmix-query-separator"
FORMAT_VERSION = 1
CLASSES = ("drums", "bass", "vocals", "other")
DEFAULT_MODEL_NAME = "aqss"
#: RMS (linear, at 16 kHz mono) under which a query counts as silent (about -60 dBFS).
SILENT_QUERY_RMS = 1e-3


class BadQueryError(AudioError):
    """The query clip cannot describe a source: silent, or too short."""

    hint = f"Choose a stretch of at least {MIN_QUERY_SECONDS:g} s where the sound to separate plays."


@dataclass
class QSepConfig:
    """Architecture of a :class:`QuerySeparator` (JSON-able)."""

    sr: int = 16000
    n_fft: int = 512
    hop: int = 256
    z_dim: int = 16
    width: int = 12                 # channels of the first U-Net layer (doubling, capped at 8x)
    depth: int = 5                  # U-Net levels
    query_channels: tuple[int, ...] = (16, 16, 32, 32, 64, 64)
    gru_hidden: int = 64
    segment_frames: int = 64        # frames per separated segment (as trained; about 1 s)
    query_frames: int = 128         # frames of a training query (about 2 s)
    kernel: int = 3                 # U-Net encoder kernel
    mask_power: float = 1.0         # at inference the mask is raised to this power (chosen on validation)
    name: str = DEFAULT_MODEL_NAME
    classes: tuple[str, ...] = CLASSES
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def bins(self) -> int:
        """Frequency bins the networks see (the Nyquist bin is dropped)."""
        return self.n_fft // 2

    def architecture(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("training", "name", "mask_power"):
            d.pop(k)
        return d

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QSepConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("query_channels", "classes"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


def log_magnitude(mag: torch.Tensor) -> torch.Tensor:
    """The networks' input scale: ``log(1 + |X|)``."""
    return torch.log1p(mag)


class QueryNet(nn.Module):
    """``(batch, 1, bins, frames)`` magnitude -> mean and log-variance ``(batch, z_dim)`` each.

    Six 3x3 conv layers (batch norm, ReLU), halving the frequency axis each time and the time
    axis every second layer; a GRU reads the result frame by frame and its last state gives
    the two vectors.
    """

    def __init__(self, cfg: QSepConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(cfg.query_channels):
            stride = (2, 2 if i % 2 else 1)
            layers += [nn.Conv2d(c_in, c, 3, stride=stride, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        f_out = cfg.bins // 2 ** len(cfg.query_channels)
        self.gru = nn.GRU(c_in * f_out, cfg.gru_hidden, batch_first=True)
        self.head = nn.Linear(cfg.gru_hidden, 2 * cfg.z_dim)
        self.z_dim = cfg.z_dim

    def forward(self, mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(log_magnitude(mag))                     # (B, C, F', T')
        b, c, f, t = h.shape
        _, last = self.gru(h.permute(0, 3, 1, 2).reshape(b, t, c * f))
        out = self.head(last[-1])
        return out[:, : self.z_dim], out[:, self.z_dim:]


class AdaIN(nn.Module):
    """Instance norm whose scale and shift come from ``z``: ``(1 + g(z)) * norm(x) + b(z)``."""

    def __init__(self, channels: int, z_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style = nn.Linear(z_dim, 2 * channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        g, b = self.style(z).chunk(2, dim=1)
        y: torch.Tensor = (1.0 + g[:, :, None, None]) * self.norm(x) + b[:, :, None, None]
        return y


class Separator(nn.Module):
    """U-Net: mixture magnitude ``(B, 1, bins, frames)`` and ``z`` -> mask in [0, 1], same shape
    (any size: one that does not halve ``depth`` times is zero-padded and the mask cropped)."""

    def __init__(self, cfg: QSepConfig) -> None:
        super().__init__()
        chans = [min(cfg.width * 2**i, cfg.width * 8) for i in range(cfg.depth)]
        self.down = nn.ModuleList()
        c_in = 1 + cfg.z_dim
        for c in chans:
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c, cfg.kernel, stride=2, padding=cfg.kernel // 2), nn.BatchNorm2d(c),
                                           nn.LeakyReLU(0.2)))
            c_in = c
        self.up = nn.ModuleList()
        self.adain = nn.ModuleList()
        for i in reversed(range(cfg.depth)):
            c_out = chans[i - 1] if i > 0 else 8
            c_cat = chans[i] if i == cfg.depth - 1 else 2 * chans[i]
            self.up.append(nn.ConvTranspose2d(c_cat, c_out, 4, stride=2, padding=1))
            self.adain.append(AdaIN(c_out, cfg.z_dim))
        self.out = nn.Conv2d(8 + 1, 1, 3, padding=1)
        self.depth = cfg.depth

    def forward(self, mag: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        bins, frames = mag.shape[2], mag.shape[3]
        unit = 2 ** self.depth
        pad_f, pad_t = -bins % unit, -frames % unit
        if pad_f or pad_t:  # any size: zero-pad to whole U-Net levels, crop the mask back
            return self.forward(F.pad(mag, (0, pad_t, 0, pad_f)), z)[:, :, :bins, :frames]
        x = log_magnitude(mag)
        zz = z[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = torch.cat([x, zz], dim=1)
        skips = []
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        for k, (up, ada) in enumerate(zip(self.up, self.adain, strict=True)):
            if k > 0:
                h = torch.cat([h, skips[self.depth - 1 - k]], dim=1)
            h = F.relu(ada(up(h), z))
        return torch.sigmoid(self.out(torch.cat([h, x], dim=1)))


class QuerySeparator(nn.Module):
    """Query-net + separator + STFT, with the class-mean latents as a buffer."""

    window: torch.Tensor
    class_latents: torch.Tensor

    def __init__(self, cfg: QSepConfig | None = None) -> None:
        super().__init__()
        self.config = cfg or QSepConfig()
        c = self.config
        self.query_net = QueryNet(c)
        self.separator = Separator(c)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.register_buffer("class_latents", torch.zeros(len(c.classes), c.z_dim))

    @property
    def device(self) -> torch.device:
        return self.window.device

    # --- spectrograms ---------------------------------------------------------------------

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` at ``config.sr`` -> complex ``(B, bins, frames)`` (Nyquist bin dropped)."""
        c = self.config
        spec = torch.stft(wave, c.n_fft, c.hop, window=self.window, center=True, return_complex=True)
        return spec[:, : c.bins]

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.config
        full = F.pad(spec, (0, 0, 0, 1))
        return torch.istft(full, c.n_fft, c.hop, window=self.window, center=True, length=length)

    # --- the model ------------------------------------------------------------------------

    def encode(self, query_mag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Query magnitude ``(B, 1, bins, frames)`` -> ``(mu, logvar)``."""
        mu, logvar = self.query_net(query_mag)
        return mu, logvar

    def mask(self, mix_mag: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        m: torch.Tensor = self.separator(mix_mag, z)
        return m

    def class_latent(self, name: str) -> torch.Tensor:
        """The mean latent of class ``name`` (``(z_dim,)``)."""
        if name not in self.config.classes:
            raise ModelError(f"Unknown source class {name!r}: use one of {', '.join(self.config.classes)}.")
        return self.class_latents[self.config.classes.index(name)]

    @torch.no_grad()
    def separate_magnitude(self, mix_mag: torch.Tensor, z: torch.Tensor, *, iterations: int = 0) -> torch.Tensor:
        """Mask for ``mix_mag`` ``(B, 1, bins, frames)`` given ``z`` ``(B, z_dim)``; with
        ``iterations`` > 0 the estimate is re-encoded by the Query-net and separated again
        (the paper's iterative method), that many times. Each mask is raised to
        ``config.mask_power`` (a sharper soft mask above 1)."""
        p = self.config.mask_power

        def sharpened(m: torch.Tensor) -> torch.Tensor:
            return m if p == 1.0 else m.pow(p)

        m = sharpened(self.mask(mix_mag, z))
        for _ in range(iterations):
            z, _ = self.encode(m * mix_mag)
            m = sharpened(self.mask(mix_mag, z))
        return m

    # --- weights --------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``NAME.safetensors`` and ``NAME.json`` (config + sha256); returns the weights path."""
        weights, meta = _paths(path)
        weights.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_write(weights, suffix=".part.safetensors") as tmp:
            save_file(state, str(tmp))
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config.to_dict(),
               "sha256": sha256_file(weights)}
        with atomic_write(meta) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return weights

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | None = None) -> QuerySeparator:
        """Load a model written by :meth:`save`, checking its sha256.

        Raises
        ------
        ModelError
            A file is missing, the checksum does not match, or the tensors do not fit.
        """
        weights, meta = _paths(path)
        if not weights.is_file():
            raise ModelError(f"{weights}: query-separator weights not found. Train one with "
                             "'crossmix train-qsep' or choose another file.")
        if not meta.is_file():
            raise ModelError(f"{meta}: the config (JSON) is missing beside {weights.name}; copy both files together.")
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{meta}: not a readable query-separator config ({exc}).") from None
        if doc.get("format") != FORMAT:
            raise ModelError(f"{meta}: not a Crossmix query-separator config (format {doc.get('format')!r}).")
        if doc.get("sha256") != sha256_file(weights):
            raise ModelError(f"{weights}: checksum mismatch (the file is corrupt or was replaced); re-copy or retrain it.")
        model = cls(QSepConfig.from_dict(doc.get("config", {})))
        try:
            model.load_state_dict(load_file(str(weights)), strict=True)
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise ModelError(f"{weights}: the weights do not fit the architecture in {meta.name} "
                             f"({str(exc)[:200]}).") from None
        model.eval()
        return model.to(device) if device is not None else model


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def default_model_path() -> Path:
    return assets_dir() / "query_separation" / f"{DEFAULT_MODEL_NAME}.safetensors"


# --- training objectives ---------------------------------------------------------------------


@dataclass(frozen=True)
class Losses:
    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    latent: torch.Tensor
    wave: torch.Tensor      # the waveform SDR term (0 when it is not used)


def reconstruction_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_R: mean absolute difference of magnitude spectrograms."""
    return (estimate - target).abs().mean()


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """L_KL: KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dims, mean over the batch."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(dim=1).mean()


def latent_loss(z: torch.Tensor, z_again: torch.Tensor) -> torch.Tensor:
    """L_latent: ``||z - Q(S(M, z))||_1``, mean over dims and batch."""
    return (z - z_again).abs().mean()


def sdr_loss(target: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative SDR in dB, ``-10 log10(|s|^2 / |s - e|^2)``, of waveforms ``(B, n)``, mean over
    the batch (``eps`` keeps a silent target finite). Each example counts alike whatever its
    level, and the loudest bins, where a bass line's energy is, weigh most within it."""
    num = target.pow(2).sum(dim=-1) + eps
    den = (target - estimate).pow(2).sum(dim=-1) + eps
    return -(10.0 * torch.log10(num / den)).mean()


def losses(model: QuerySeparator, mix_mag: torch.Tensor, target_mag: torch.Tensor, query_mag: torch.Tensor,
           *, kl_weight: float, latent_weight: float, generator: torch.Generator | None = None,
           wave_weight: float = 0.0, mix_spec: torch.Tensor | None = None,
           target_wave: torch.Tensor | None = None) -> Losses:
    """The three objectives on a batch (magnitudes ``(B, 1, bins, frames)``), and optionally a
    fourth: with ``wave_weight`` > 0, the mixture's complex STFT ``mix_spec`` ``(B, bins, frames)``
    and the target's waveform ``target_wave`` ``(B, n)``, the masked mixture is turned back into
    a waveform (the mixture's phase, as at inference) and :func:`sdr_loss` is added with that
    weight, so training also optimises the SDR the separation is measured by.

    ``z`` is sampled from the query's posterior (reparameterised); the latent regressor
    re-encodes the separated estimate and pulls its mean back to that ``z`` (held fixed, so
    the term trains the separator to use ``z`` rather than Q to shrink it).
    """
    mu, logvar = model.encode(query_mag)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + eps * torch.exp(0.5 * logvar)
    mask = model.mask(mix_mag, z)
    estimate = mask * mix_mag
    rec = reconstruction_loss(estimate, target_mag)
    kl = kl_loss(mu, logvar)
    z_again, _ = model.encode(estimate)
    lat = latent_loss(z.detach(), z_again)
    total = rec + kl_weight * kl + latent_weight * lat
    wave = torch.zeros((), device=rec.device)
    if wave_weight > 0.0:
        if mix_spec is None or target_wave is None:
            raise ValueError("the waveform loss needs the mixture's STFT and the target's waveform")
        wave = sdr_loss(target_wave, model.istft(mix_spec * mask[:, 0], target_wave.shape[-1]))
        total = total + wave_weight * wave
    return Losses(total, rec, kl, lat, wave)


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation ``sin((1-a)t)/sin(t) a + sin(a t)/sin(t) b`` (t: angle between them);
    linear when they are (nearly) parallel."""
    a_n, b_n = a / a.norm().clamp_min(1e-12), b / b.norm().clamp_min(1e-12)
    theta = torch.arccos((a_n * b_n).sum().clamp(-1.0, 1.0))
    if float(theta) < 1e-6:
        return (1.0 - alpha) * a + alpha * b
    s = torch.sin(theta)
    return torch.sin((1.0 - alpha) * theta) / s * a + torch.sin(alpha * theta) / s * b


# --- metrics ----------------------------------------------------------------------------------


def si_sdr(reference: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of 1-D signals."""
    s = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    alpha = float(np.dot(e, s) / max(np.dot(s, s), 1e-12))
    target = alpha * s
    return float(10.0 * np.log10(max(np.dot(target, target), 1e-12) / max(np.sum((e - target) ** 2), 1e-12)))


def sdr(reference: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """Plain SDR in dB, ``10 log10(|s|^2 / |s - e|^2)`` (the MDX challenges' "SDR")."""
    s = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    return float(10.0 * np.log10(max(np.dot(s, s), 1e-12) / max(np.sum((s - e) ** 2), 1e-12)))


# --- queries and whole songs -----------------------------------------------------------------


def prepare_query(audio: Audio, *, sr: int, what: str = "the query") -> npt.NDArray[np.float32]:
    """Mono ``(n,)`` at ``sr`` from ``audio``; refuses a too-short or silent query."""
    if audio.duration < MIN_QUERY_SECONDS:
        raise BadQueryError(what, f"the query is {audio.duration:.2f} s long, too short to describe a sound.")
    mono = resample(audio.mono().samples, audio.sr, sr)[0]
    if float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))) < SILENT_QUERY_RMS:
        raise BadQueryError(what, "the query is silent (nearly no signal).")
    out: npt.NDArray[np.float32] = mono.astype(np.float32)
    return out


@torch.no_grad()
def query_latent(model: QuerySeparator, query: npt.NDArray[np.float32]) -> torch.Tensor:
    """The latent (the posterior mean) of a mono query at ``model.config.sr``: ``(z_dim,)``.

    A long query is encoded in segments of the training length and the means averaged.
    """
    dev = model.device
    seg = model.config.query_frames * model.config.hop
    pieces = [query[i:i + seg] for i in range(0, max(1, len(query) - seg // 2), seg)] or [query]
    mags = []
    for p in pieces:
        if len(p) < seg // 2 and len(pieces) > 1:
            continue
        mags.append(model.stft(torch.from_numpy(np.ascontiguousarray(p)).to(dev)[None]).abs())
    mus = [model.encode(m[:, None])[0] for m in mags]
    return torch.cat(mus).mean(dim=0)


@torch.no_grad()
def song_mask(model: QuerySeparator, mono: npt.NDArray[np.float32], z: torch.Tensor, *, iterations: int = 0,
              batch: int = 16, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> npt.NDArray[np.float32]:
    """The model's mask over a whole mono song at ``config.sr``: ``(bins, frames)``.

    Segments of the training length overlap by half and are cross-faded (triangular weights),
    so the mask has no seams.
    """
    c = model.config
    dev = model.device
    spec = model.stft(torch.from_numpy(np.ascontiguousarray(mono)).to(dev)[None])[0]
    mag = spec.abs()
    frames = mag.shape[1]
    seg, step = c.segment_frames, c.segment_frames // 2
    starts = list(range(0, max(1, frames - step), step)) if frames > seg else [0]
    pad = max(0, starts[-1] + seg - frames)
    mag_p = F.pad(mag, (0, pad))
    w = torch.bartlett_window(seg + 2, periodic=False, device=dev)[1:-1].clamp_min(1e-3)
    acc = torch.zeros_like(mag_p)
    norm = torch.zeros(mag_p.shape[1], device=dev)
    for i in range(0, len(starts), batch):
        check_cancel(cancel, "query separation")
        chunk = starts[i:i + batch]
        x = torch.stack([mag_p[:, s:s + seg] for s in chunk])[:, None]
        m = model.separate_magnitude(x, z[None].expand(len(chunk), -1), iterations=iterations)[:, 0]
        for j, s in enumerate(chunk):
            acc[:, s:s + seg] += m[j] * w
            norm[s:s + seg] += w
        if progress is not None:
            progress(Progress("separate", min(i + batch, len(starts)), len(starts), "segments"))
    out: npt.NDArray[np.float32] = (acc / norm.clamp_min(1e-6))[:, :frames].cpu().numpy().astype(np.float32)
    return out


def apply_mask(audio: Audio, mask: npt.NDArray[np.float32], *, mask_sr: int, mask_hop: int,
               mask_n_fft: int) -> Audio:
    """Apply a mask computed at ``mask_sr`` to ``audio``'s own STFT (every channel), mapping it by
    frequency (above the mask's top bin its last row holds) and by time; same length and rate."""
    sr = audio.sr
    hop = max(1, int(round(mask_hop * sr / mask_sr)))
    n_fft = 2 ** int(math.ceil(math.log2(mask_n_fft * sr / mask_sr)))
    x = torch.from_numpy(np.ascontiguousarray(audio.samples))
    win = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=win, center=True, return_complex=True)
    freqs = np.arange(spec.shape[1]) * sr / n_fft
    mask_freqs = np.arange(mask.shape[0]) * mask_sr / mask_n_fft
    times = np.arange(spec.shape[2]) * hop / sr
    mask_times = np.arange(mask.shape[1]) * mask_hop / mask_sr
    fi = np.clip(np.interp(freqs, mask_freqs, np.arange(mask.shape[0])), 0, mask.shape[0] - 1)
    ti = np.clip(np.interp(times, mask_times, np.arange(mask.shape[1])), 0, mask.shape[1] - 1)
    m = torch.from_numpy(mask)[None, None]
    grid_x = torch.from_numpy(ti / max(mask.shape[1] - 1, 1) * 2 - 1).float()
    grid_y = torch.from_numpy(fi / max(mask.shape[0] - 1, 1) * 2 - 1).float()
    gy, gx = torch.meshgrid(grid_y, grid_x, indexing="ij")
    big = F.grid_sample(m, torch.stack([gx, gy], dim=-1)[None], mode="bilinear", align_corners=True)[0, 0]
    out = torch.istft(spec * big[None], n_fft, hop, window=win, center=True, length=audio.n)
    return Audio(out.numpy().astype(np.float32), sr, audio.source)


@dataclass(frozen=True)
class QueryResult:
    """``source``: what the query describes; ``rest``: the song without it (``song == source + rest``)."""

    source: Audio
    rest: Audio
    seconds: float


def separate_with_query(model: QuerySeparator, song: Audio, *, query: Audio | None = None,
                        source_class: str | None = None, iterations: int = 0,
                        progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> QueryResult:
    """Separate from ``song`` the source that ``query`` (an example of it) or ``source_class``
    (its class-mean latent) describes. The mask is applied to the song's own STFT, so both
    outputs keep its rate, channels and full band, and add up to it.

    Raises
    ------
    BadQueryError
        The query is silent or shorter than :data:`MIN_QUERY_SECONDS`.
    ModelError
        An unknown class.
    """
    import time

    t0 = time.perf_counter()
    c = model.config
    if (query is None) == (source_class is None):
        raise ModelError("Give either a query clip or a source class, not both or neither.")
    if query is not None:
        z = query_latent(model, prepare_query(query, sr=c.sr, what=str(query.source or "the query")))
    else:
        z = model.class_latent(str(source_class))
    check_cancel(cancel, "query separation")
    mono = resample(song.mono().samples, song.sr, c.sr)[0]
    mask = song_mask(model, mono, z, iterations=iterations, progress=progress, cancel=cancel)
    check_cancel(cancel, "query separation")
    source = apply_mask(song, mask, mask_sr=c.sr, mask_hop=c.hop, mask_n_fft=c.n_fft)
    rest = Audio((song.samples - source.samples).astype(np.float32), song.sr, song.source)
    return QueryResult(source, rest, time.perf_counter() - t0)


# --- a choice made in the app: "remove (or keep only) a sound like this one" ------------------


def crop(audio: Audio, start: float, end: float) -> Audio:
    """``audio`` between ``start`` and ``end`` seconds (clamped to it)."""
    a = int(round(max(0.0, start) * audio.sr))
    b = int(round(min(end, audio.duration) * audio.sr))
    return Audio(np.ascontiguousarray(audio.samples[:, a:max(a, b)]), audio.sr, audio.source)


def apply_source_choice(model: QuerySeparator, accompaniment: Audio, query: Audio, *, mode: str,
                        progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Audio:
    """``accompaniment`` without (``mode="remove"``) or with only (``"keep"``) the sound that
    ``query`` is an example of; same rate, channels and length."""
    if mode not in ("remove", "keep"):
        raise ModelError(f"Unknown choice {mode!r}: use remove or keep.")
    res = separate_with_query(model, accompaniment, query=query, progress=progress, cancel=cancel)
    return res.rest if mode == "remove" else res.source
