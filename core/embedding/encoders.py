"""The vocal and mix encoders f_v and f_m (Kim et al. 2021, 3.1) and their weight files.

Each encoder is the paper's backbone: 8 conv 3x3 layers (64, then 128 x 6, then 256 filters),
each followed by batch norm and ReLU; 2x2 max-pooling after the first seven, global average
pooling after the last. A ``(128 mels, 129 frames)`` segment is pooled down to 1x1 by the
seventh pool, so the output is the 256-d global average of the last layer.

``width`` scales the filters of the first seven layers (a CPU-trainable smaller model); the
last layer keeps ``embedding_dim`` filters so every model gives 256-d embeddings and a
library never has to care which width made them.

A second family (``arch="ge2e"``) puts a small trained head on each side of a frozen
real-speech speaker encoder (:mod:`core.embedding.ge2e`, resemblyzer's GE2E weights from its PyPI
wheel): ``f(x) = g(x) + W2 relu(W1 h(x))``, where ``g`` is the GE2E embedding of the segment
and ``h`` the LSTM's hidden states. The backbone is not stored in the weights file (it comes
from the installed package; its sha256 is part of the architecture and so of ``model_id``).
With no head (``head_hidden=0``) the pair *is* the peer: :meth:`EncoderPair.resemblyzer`.

Weights are a safetensors state dict plus a JSON config beside it (``name.safetensors`` +
``name.json``) holding the hyper-parameters and the sha256 of the weights file, checked on
load. ``model_id`` is a sha256 of the tensors and the architecture, the same before and after
a save/load round trip.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from core.atomic import atomic_write, sha256_file
from core.embedding.features import N_MELS, SEGMENT_FRAMES
from core.errors import ModelError
from core.paths import assets_dir

#: Filters of the paper's 8 layers (the last one is ``embedding_dim``).
PAPER_FILTERS = (64, 128, 128, 128, 128, 128, 128)
FORMAT = "crossmix-encoders"
FORMAT_VERSION = 1
#: The shipped default: GE2E heads trained with NT-Xent (docs/results.md says why it ships).
DEFAULT_MODEL_NAME = "cross-ge2e"


@dataclass
class EncoderConfig:
    """Architecture and provenance of an :class:`EncoderPair` (JSON-able).

    ``training`` holds free-form provenance written by the trainer (loss, lambdas, data,
    split, epochs...); it does not change the architecture.
    """

    width: float = 1.0
    embedding_dim: int = 256
    n_mels: int = N_MELS
    segment_frames: int = SEGMENT_FRAMES
    name: str = "encoders"
    training: dict[str, Any] = field(default_factory=dict)
    #: ``"cnn"`` (the paper's backbone on log-mels) or ``"ge2e"`` (heads on resemblyzer's GE2E).
    arch: str = "cnn"
    #: GE2E heads: hidden units of each head's MLP (0: no head, the backbone alone).
    head_hidden: int = 0
    #: GE2E: sha256 of the backbone tensors the heads were trained on.
    backbone_sha256: str = ""
    #: GE2E heads: weight of the learned correction at inference (1: as trained, 0: the
    #: backbone alone; between or beyond: the same weights, interpolated or extrapolated).
    head_scale: float = 1.0

    @property
    def frontend(self) -> str:
        """The features the encoders read: ``"logmel"`` (:mod:`core.embedding.features`) or ``"ge2e"`` (:mod:`core.embedding.ge2e`)."""
        return "ge2e" if self.arch == "ge2e" else "logmel"

    def filters(self) -> list[int]:
        return [max(4, int(round(c * self.width))) for c in PAPER_FILTERS] + [self.embedding_dim]

    def architecture(self) -> dict[str, Any]:
        if self.arch == "ge2e":
            arch = {"arch": "ge2e", "embedding_dim": self.embedding_dim, "head_hidden": self.head_hidden,
                    "backbone_sha256": self.backbone_sha256}
            if self.head_scale != 1.0:  # (left out at 1, so earlier models keep their id)
                arch["head_scale"] = self.head_scale
            return arch
        return {"width": self.width, "embedding_dim": self.embedding_dim, "n_mels": self.n_mels,
                "segment_frames": self.segment_frames, "filters": self.filters()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        known = {k: d[k] for k in ("width", "embedding_dim", "n_mels", "segment_frames", "name", "training",
                                   "arch", "head_hidden", "backbone_sha256", "head_scale") if k in d}
        return cls(**known)


class Backbone(nn.Module):
    """One encoder: ``(batch, n_mels, frames)`` log-mel -> ``(batch, embedding_dim)``."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        filters = config.filters()
        for i, c_out in enumerate(filters):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < len(filters) - 1:
                layers.append(nn.MaxPool2d(2))  # 128x129 -> ... -> 1x1 after seven pools
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        # NHWC weights make oneDNN convolutions 1.4x (width 1) to 2x (width 0.25) faster on
        # CPU (bench/encoders.py); values, state dicts and model_id are unchanged.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(1)
        h: torch.Tensor = self.layers(x)
        return h.mean(dim=(2, 3))


class GE2EHead(nn.Module):
    """One side (f_v or f_m) of a GE2E-based pair: the frozen backbone's embedding plus a residual MLP.

    ``forward`` takes mel power segments ``(B, 40, frames)``; :meth:`project` takes the
    backbone's outputs directly (training on cached backbone features). The MLP's last
    layer starts at zero, so an untrained head is exactly the backbone.
    """

    def __init__(self, backbone: Callable[[], Any], hidden: int, dim: int, *, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)
        from core.embedding.ge2e import EMBEDDING, FEATURE_DIM

        if dim != EMBEDDING:
            raise ModelError(f"GE2E-based encoders give {EMBEDDING}-d embeddings, not {dim}.")
        self._backbone = backbone  # a callable, so the frozen weights are not part of this module
        self.mlp: nn.Sequential | None = None
        if hidden > 0:
            last = nn.Linear(hidden, dim)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.mlp = nn.Sequential(nn.Linear(FEATURE_DIM, hidden), nn.ReLU(), last)

    def project(self, embedding: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Backbone outputs ``(B, 256)``, ``(B, 768)`` -> ``(B, 256)`` (not normalised)."""
        if self.mlp is None:
            return embedding
        out: torch.Tensor = embedding + self.scale * self.mlp(hidden)  # x * 1.0 is x exactly
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            emb, hid = self._backbone().segment_features(x)
        return self.project(emb, hid)


class EncoderPair(nn.Module):
    """The vocal encoder ``f_v`` and the mix encoder ``f_m`` (separate weights).

    Use :meth:`tiny` for tests, :meth:`load` for a weights file, :func:`load_default_encoders`
    for the shipped default, :func:`core.registry.load_encoders` for a user's choice.
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or EncoderConfig()
        self._model_id: str | None = None
        self.f_v: nn.Module
        self.f_m: nn.Module
        if self.config.arch == "ge2e":
            from core.embedding.ge2e import GE2E, backbone_sha256

            sha = backbone_sha256()
            if self.config.backbone_sha256 and self.config.backbone_sha256 != sha:
                raise ModelError(
                    "These encoders were trained on another version of resemblyzer's weights "
                    f"({self.config.backbone_sha256[:12]}, installed {sha[:12]}); reinstall resemblyzer 0.1.4 or retrain.")
            self.config.backbone_sha256 = sha
            self.backbone = GE2E.pretrained()
            self.f_v = GE2EHead(lambda: self.backbone, self.config.head_hidden, self.config.embedding_dim,
                                scale=self.config.head_scale)
            self.f_m = GE2EHead(lambda: self.backbone, self.config.head_hidden, self.config.embedding_dim,
                                scale=self.config.head_scale)
        elif self.config.arch == "cnn":
            self.f_v = Backbone(self.config)
            self.f_m = Backbone(self.config)
        else:
            raise ModelError(f"Unknown encoder architecture {self.config.arch!r} (this Crossmix knows 'cnn' and 'ge2e').")

    @property
    def frontend(self) -> str:
        """``"logmel"`` or ``"ge2e"``: which segments :func:`core.embedding.features.song_segments` must make."""
        return self.config.frontend

    @property
    def dim(self) -> int:
        """Embedding size of one space (256 by default; ``[M,V]`` is twice that)."""
        return self.config.embedding_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def create(cls, *, width: float = 1.0, embedding_dim: int = 256, seed: int = 0,
               name: str = "encoders") -> EncoderPair:
        """A randomly initialised pair (seeded), ready to train."""
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            pair = cls(EncoderConfig(width=width, embedding_dim=embedding_dim, name=name))
        finally:
            torch.random.set_rng_state(gen_state)
        pair.eval()
        return pair

    @classmethod
    def resemblyzer(cls) -> EncoderPair:
        """The real-speech peer: resemblyzer's GE2E encoder, the same network on vocals and mixes."""
        pair = cls(EncoderConfig(arch="ge2e", head_hidden=0, name="resemblyzer"))
        pair.eval()
        return pair

    @classmethod
    def ge2e_heads(cls, *, hidden: int = 512, seed: int = 0, name: str = "ge2e") -> EncoderPair:
        """GE2E backbone with untrained (identity) heads of ``hidden`` units, ready to train."""
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            pair = cls(EncoderConfig(arch="ge2e", head_hidden=hidden, name=name))
        finally:
            torch.random.set_rng_state(gen_state)
        pair.eval()
        return pair

    @classmethod
    def tiny(cls, *, seed: int = 0) -> EncoderPair:
        """Random weights at 1/16 width (4-8 filters, 256-d output), for tests and demos."""
        return cls.create(width=1 / 16, seed=seed, name="tiny")

    def embed_mix(self, segments: torch.Tensor) -> torch.Tensor:
        """``f_m``: ``(batch, 128, 129)`` mix log-mel -> ``(batch, dim)`` (not normalised)."""
        out: torch.Tensor = self.f_m(segments)
        return out

    def embed_vocal(self, segments: torch.Tensor) -> torch.Tensor:
        """``f_v``: ``(batch, 128, 129)`` vocal log-mel -> ``(batch, dim)`` (not normalised)."""
        out: torch.Tensor = self.f_v(segments)
        return out

    # --- identity and files ---------------------------------------------------------------

    def _cpu_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (a GE2E backbone comes from its package and is left out)."""
        return {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()
                if not k.startswith("backbone.")}

    def train(self, mode: bool = True) -> EncoderPair:
        self._model_id = None  # weights may change while training
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self._model_id = None
        if self.config.arch == "ge2e" and not any(k.startswith("backbone.") for k in state_dict):
            state_dict = {**{f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def model_id(self) -> str:
        """sha256 of the architecture and every tensor (stable across save/load and devices).

        Cached in eval mode (embedding a library asks for it per song); switching to train
        mode or loading a state dict forgets it, so change weights only in one of those ways.
        """
        cached: str | None = getattr(self, "_model_id", None)
        if cached is not None and not self.training:
            return cached
        h = hashlib.sha256()
        h.update(json.dumps(self.config.architecture(), sort_keys=True).encode())
        for key, t in sorted(self._cpu_state().items()):
            h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        digest = h.hexdigest()
        if not self.training:
            self._model_id = digest
        return digest

    def save(self, path: str | Path) -> Path:
        """Write ``NAME.safetensors`` and ``NAME.json`` (atomically); returns the weights path.

        ``path`` may name either file or the stem.
        """
        weights, meta = _paths(path)
        state = self._cpu_state()
        with atomic_write(weights) as tmp:
            save_file(state, str(tmp), metadata={"format": FORMAT})
            sha = sha256_file(tmp)
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "sha256": sha, "model_id": self.model_id,
               "config": self.config.to_dict()}
        _write_json(meta, doc)
        return weights

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device | None = None) -> EncoderPair:
        """Load a pair saved by :meth:`save`, checking the sha256 of the weights.

        Raises
        ------
        ModelError
            A file is missing, the checksum does not match, or the tensors do not fit the config.
        """
        weights, meta = _paths(path)
        if not weights.is_file():
            raise ModelError(f"{weights}: encoder weights not found. Train a model ('crossmix train') or choose another file.")
        if not meta.is_file():
            raise ModelError(f"{meta}: the encoder config (JSON) is missing beside {weights.name}; copy both files together.")
        try:
            doc = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta}: not a readable encoder config ({exc}).") from None
        if doc.get("format") != FORMAT:
            raise ModelError(f"{meta}: not a Crossmix encoder config (format {doc.get('format')!r}).")
        sha = sha256_file(weights)
        if doc.get("sha256") != sha:
            raise ModelError(f"{weights}: checksum mismatch (the file is corrupt or was replaced); re-copy or retrain it.")
        config = EncoderConfig.from_dict(doc.get("config", {}))
        pair = cls(config)
        try:
            state = load_file(str(weights))
            pair.load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError, OSError) as exc:
            raise ModelError(f"{weights}: the weights do not fit the architecture in {meta.name} ({str(exc)[:200]}).") from None
        pair.eval()
        if device is not None:
            pair.to(device)
        return pair


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))


def default_encoders_path() -> Path:
    """``assets/encoders/cross-ge2e.safetensors``: the shipped default encoders."""
    return assets_dir() / "encoders" / f"{DEFAULT_MODEL_NAME}.safetensors"


def load_default_encoders(*, device: torch.device | None = None) -> EncoderPair:
    """The shipped default encoders (``assets/encoders/cross-ge2e.safetensors`` + ``.json``).

    Raises
    ------
    ModelError
        The shipped weights are missing or corrupt. There is no silent fallback to random
        weights: train a model with ``crossmix train`` or reinstall.
    """
    path = default_encoders_path()
    if not path.is_file():
        raise ModelError(
            f"{path}: the shipped encoder weights are missing. Reinstall Crossmix, or train encoders "
            "with 'crossmix train --data FOLDER' and choose the checkpoint in the settings."
        )
    return EncoderPair.load(path, device=device)
