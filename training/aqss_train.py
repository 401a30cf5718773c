"""Training the query-based separator (:mod:`core.separation.by_example`) on multitracks.

``train(data_dir=..., out_dir=...)`` trains on the ``train`` split of
:mod:`training.aqss_data` (mixtures drawn on the fly) for a wall-time budget and writes to
``out_dir``:

- ``state.pt``: everything to resume (model, optimiser, step, random streams, time spent),
  rewritten every ``checkpoint_minutes``; ``resume=True`` continues from it;
- ``best.safetensors`` + ``best.json``: the model with the best mean SI-SDR improvement on a
  fixed set of ``val`` mixtures (the test splits are never read here), with class-mean latents
  computed on training queries;
- ``log.jsonl``: one JSON line per logged step and per validation (:mod:`training.events`:
  ``QSepTrainEvent``, ``QSepValEvent``).

The STFT (``n_fft``, ``hop``) and excerpt lengths are settings; the validation mixtures are
the same whatever they are (:data:`VAL_SAMPLES`), so runs with different spectrograms are
compared on the same audio. ``init`` starts a new run from a trained model's weights, also
one with another STFT (:func:`warm_start`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from core.errors import TrainingError
from core.separation.by_example import QSepConfig, QuerySeparator, losses, si_sdr
from training.aqss_data import CLASS_OF, CLASSES, Example, Multitrack, draw_mixture, load_split
from training.events import QSepEvent, QSepResumeEvent, QSepTrainEvent, QSepValEvent


@dataclass
class TrainConfig:
    batch_size: int = 12
    lr: float = 1e-3
    width: int = 12
    z_dim: int = 16
    seed: int = 0
    minutes: float = 55.0
    checkpoint_minutes: float = 4.0
    kl_weight: float = 1e-3
    latent_weight: float = 0.1
    val_examples: int = 96
    class_queries: int = 48
    log_every: int = 10
    n_fft: int = 512
    hop: int = 256
    segment_frames: int = 64
    query_frames: int = 128
    full_mix_prob: float = 0.0     # share of training mixtures that are the whole song
    class_balanced: bool = False   # targets drawn class first (drums, bass, vocals, other alike)
    wave_weight: float = 0.0       # weight of the waveform SDR loss (0: the paper's three losses only)
    init: str = ""                 # weights to start from (a model file), or "" for random

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must keep (the budget may grow; ``init`` only matters at
        the start)."""
        return {k: v for k, v in asdict(self).items() if k not in ("minutes", "checkpoint_minutes", "init")}

    def model_config(self) -> QSepConfig:
        return QSepConfig(width=self.width, z_dim=self.z_dim, n_fft=self.n_fft, hop=self.hop,
                          segment_frames=self.segment_frames, query_frames=self.query_frames)


#: Settings added after runs were saved: a saved run without them used these values.
_LATER_SETTINGS = {k: TrainConfig.__dataclass_fields__[k].default
                   for k in ("n_fft", "hop", "segment_frames", "query_frames", "full_mix_prob",
                             "class_balanced", "wave_weight")}


def warm_start(model: QuerySeparator, source: QuerySeparator) -> list[str]:
    """Copy ``source``'s weights into ``model`` where they fit; returns the names not copied.

    Every convolution is shared by shape whatever the STFT. The one tensor that depends on the
    number of frequency bins, the Query-net GRU's input weights (channels x bands), is mapped
    band by band: a band of ``source`` is spread evenly over the bands of ``model`` that cover
    the same frequencies.
    """
    own = model.state_dict()
    skipped = []
    for name, value in source.state_dict().items():
        if name not in own:
            skipped.append(name)
            continue
        target = own[name]
        if target.shape == value.shape:
            target.copy_(value)
        elif name == "query_net.gru.weight_ih_l0" and target.shape[0] == value.shape[0]:
            c = model.config.query_channels[-1]
            f_new, f_old = target.shape[1] // c, value.shape[1] // c
            if target.shape[1] % c or value.shape[1] % c or f_new % f_old:
                skipped.append(name)
                continue
            r = f_new // f_old
            old = value.reshape(value.shape[0], c, f_old)
            target.copy_(old.repeat_interleave(r, dim=2).reshape(target.shape) / r)
        else:
            skipped.append(name)
    model.load_state_dict(own)
    return skipped


def excerpt_samples(cfg: QSepConfig, frames: int | None = None) -> int:
    """Samples that give exactly ``frames`` (default ``segment_frames``) centred STFT frames."""
    return ((frames or cfg.segment_frames) - 1) * cfg.hop


#: Lengths (samples at 16 kHz) of the validation mixtures and their queries: those of the first
#: model's excerpts (the default config's), kept for every STFT so runs compare.
_FIRST = QSepConfig()
VAL_SAMPLES, VAL_QUERY_SAMPLES = excerpt_samples(_FIRST), excerpt_samples(_FIRST, _FIRST.query_frames)


def fixed_examples(songs: list[Multitrack], n: int, *, seed: int, samples: int, query_samples: int,
                   targets: list[str] | None = None) -> list[Example]:
    """``n`` mixtures drawn with a fixed seed (the same every time): validation and test sets."""
    rng = np.random.default_rng([seed, 0x7E57])
    out = []
    for i in range(n):
        song = songs[i % len(songs)]
        target = targets[i % len(targets)] if targets else None
        if target is not None and target not in song.present():
            target = None
        out.append(draw_mixture(song, rng, samples=samples, query_samples=query_samples, target=target))
    return out


def magnitudes(model: QuerySeparator, waves: np.ndarray) -> torch.Tensor:
    """``(B, n)`` -> ``(B, 1, bins, frames)`` magnitudes."""
    dev = model.device
    return model.stft(torch.from_numpy(np.ascontiguousarray(waves)).to(dev)).abs()[:, None]


@torch.no_grad()
def evaluate_examples(model: QuerySeparator, examples: list[Example], *, mode: str = "query",
                      iterations: int = 0, batch: int = 16) -> list[dict[str, Any]]:
    """Separate each example and score it: SI-SDR and SDR of the estimate and of the mixture.

    ``mode``: ``"query"`` (the example's own query clip, the paper's ground-truth query) or
    ``"class"`` (the class-mean latent of the target's class).
    """
    model.eval()
    rows = []
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        mix = np.stack([e.mix for e in chunk])
        dev = model.device
        spec = model.stft(torch.from_numpy(mix).to(dev))
        mag = spec.abs()[:, None]
        if mode == "query":
            z, _ = model.encode(magnitudes(model, np.stack([e.query for e in chunk])))
        else:
            z = torch.stack([model.class_latent(CLASS_OF[e.target_name]) for e in chunk])
        m = model.separate_magnitude(mag, z, iterations=iterations)[:, 0]
        est = model.istft(spec * m, mix.shape[1]).cpu().numpy()
        for e, y in zip(chunk, est, strict=True):
            rows.append({"target": e.target_name, "class": CLASS_OF[e.target_name],
                         "si_sdr": si_sdr(e.target, y), "si_sdr_mix": si_sdr(e.target, e.mix),
                         "sdr_est": _sdr(e.target, y), "sdr_mix": _sdr(e.target, e.mix)})
    return rows


def _sdr(s: np.ndarray, e: np.ndarray) -> float:
    from core.separation.by_example import sdr

    return sdr(s, e)


@torch.no_grad()
def class_means(model: QuerySeparator, songs: list[Multitrack], *, per_class: int, seed: int,
                samples: int) -> torch.Tensor:
    """Mean posterior latent per class (:data:`CLASSES`) over ``per_class`` training queries."""
    model.eval()
    rng = np.random.default_rng([seed, 0xC1A5])
    out = []
    for cls in CLASSES:
        queries: list[np.ndarray] = []
        while len(queries) < per_class:
            song = songs[int(rng.integers(len(songs)))]
            names = [s for s in song.present() if CLASS_OF[s] == cls]
            if not names:
                continue
            stem = song.stems[str(rng.choice(names))]
            start = int(rng.integers(0, len(stem) - samples + 1))
            q = stem[start:start + samples]
            if float(np.sqrt(np.mean(q.astype(np.float64) ** 2))) > 1e-3:
                queries.append(q)
        mu, _ = model.encode(magnitudes(model, np.stack(queries)))
        out.append(mu.mean(dim=0))
    return torch.stack(out)


def train(*, data_dir: Path, out_dir: Path, config: TrainConfig | None = None, resume: bool = False,
          threads: int = 1, device_name: str = "cpu",
          emit: Callable[[QSepEvent], None] | None = None) -> dict[str, Any]:
    """Train for ``config.minutes`` of wall time (in total, across resumes); see the module doc.

    ``emit`` gets every event (:mod:`training.events`): the ``train`` and ``val`` ones that
    ``log.jsonl`` records, and ``resume``.
    """
    from core.device import resolve_device

    cfg = config or TrainConfig()
    torch.set_num_threads(max(1, threads))
    device = resolve_device(device_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "state.pt"
    if state_path.exists() and not resume:
        raise TrainingError(f"{out_dir}: holds a run already; pass --resume to continue it or choose another --out.")
    run = _Run(cfg, Path(data_dir), out_dir, device, emit or (lambda _e: None))
    if resume and state_path.exists():
        run.restore(state_path)
    elif cfg.init:  # a new run from trained weights (a resumed one has its own in state.pt)
        warm_start(run.model, QuerySeparator.load(cfg.init, device=run.model.device))
    with (out_dir / "log.jsonl").open("a", encoding="utf-8") as log_file:
        run.log_file = log_file
        run.loop()
        run.checkpoint()
    return {"best_val_sisdri": run.best, "best_step": run.best_step,
            "best_path": str(out_dir / "best.safetensors"), "steps": run.step, "elapsed_s": run.elapsed}


class _Run:
    """The model, optimiser, random streams and counters of one run (all saved in ``state.pt``)."""

    def __init__(self, cfg: TrainConfig, data_dir: Path, out_dir: Path, device: torch.device,
                 emit: Callable[[QSepEvent], None]) -> None:
        self.cfg, self.data_dir, self.out_dir, self.emit = cfg, data_dir, out_dir, emit
        self.train_songs = load_split(data_dir, "train")
        val_songs = load_split(data_dir, "val")
        mcfg = cfg.model_config()
        self.samples = excerpt_samples(mcfg)
        self.qsamples = excerpt_samples(mcfg, mcfg.query_frames)
        self.val_set = fixed_examples(val_songs, cfg.val_examples, seed=cfg.seed, samples=VAL_SAMPLES,
                                      query_samples=VAL_QUERY_SAMPLES)
        torch.manual_seed(cfg.seed)
        self.model = QuerySeparator(mcfg).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.step, self.elapsed, self.best, self.best_step = 0, 0.0, -math.inf, -1
        self.rng = np.random.default_rng([cfg.seed, 0x7EA1])
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.log_file: TextIO | None = None

    def restore(self, state_path: Path) -> None:
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        saved = {**_LATER_SETTINGS, **st["config"]}
        init = saved.pop("init", "")
        if saved != self.cfg.identity():
            raise TrainingError(f"{state_path}: was made with other settings ({st['config']}); "
                                "resume with the same settings or use another --out.")
        # The weights it started from stay on record whatever --init the resume names.
        self.cfg = replace(self.cfg, init=init or self.cfg.init)
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.elapsed, self.best, self.best_step = st["step"], st["elapsed"], st["best"], st["best_step"]
        self.rng.bit_generator.state = st["rng"]
        self.gen.set_state(st["torch_rng"])
        self.emit(QSepResumeEvent(step=self.step, elapsed_s=round(self.elapsed, 1)))

    def write(self, event: QSepEvent) -> None:
        """One event to ``log.jsonl`` and to ``emit``."""
        if self.log_file is not None:
            self.log_file.write(event.to_json() + "\n")
            self.log_file.flush()
        self.emit(event)

    def loop(self) -> None:
        """Batches until the wall-time budget is spent, checkpointing every few minutes."""
        cfg = self.cfg
        budget = cfg.minutes * 60.0
        last_ckpt = self.elapsed
        t_mark = time.perf_counter()
        self.model.train()
        sums, summed = np.zeros(5), 0  # since the last log line (fewer right after a resume)
        while self.elapsed < budget:
            sums += self.train_step(self.elapsed / budget)
            summed += 1
            now = time.perf_counter()
            self.elapsed += now - t_mark
            t_mark = now
            if self.step % cfg.log_every == 0:
                s = sums / summed
                summed = 0
                self.write(QSepTrainEvent(step=self.step, elapsed_s=round(self.elapsed, 1), loss=round(s[0], 5),
                                          rec=round(s[1], 5), kl=round(s[2], 4), latent=round(s[3], 4),
                                          wave=round(s[4], 4), lr=float(self.opt.param_groups[0]["lr"])))
                sums[:] = 0
            if self.elapsed - last_ckpt >= cfg.checkpoint_minutes * 60.0:
                self.checkpoint()
                last_ckpt = self.elapsed
                t_mark = time.perf_counter()

    def train_step(self, frac: float) -> list[float]:
        """One batch at ``frac`` of the budget (cosine learning rate); its five losses (total,
        reconstruction, KL, latent, waveform)."""
        cfg, model = self.cfg, self.model
        batch = [draw_mixture(self.train_songs[int(self.rng.integers(len(self.train_songs)))], self.rng,
                              samples=self.samples, query_samples=self.qsamples,
                              full_prob=cfg.full_mix_prob, balance_classes=cfg.class_balanced)
                 for _ in range(cfg.batch_size)]
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))
        mix = torch.from_numpy(np.stack([e.mix for e in batch])).to(model.device)
        target = np.stack([e.target for e in batch])
        mix_spec = model.stft(mix)
        out = losses(model, mix_spec.abs()[:, None], magnitudes(model, target),
                     magnitudes(model, np.stack([e.query for e in batch])),
                     kl_weight=cfg.kl_weight, latent_weight=cfg.latent_weight, generator=self.gen,
                     wave_weight=cfg.wave_weight, mix_spec=mix_spec,
                     target_wave=torch.from_numpy(target).to(model.device))
        self.opt.zero_grad()
        out.total.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        self.opt.step()
        self.step += 1
        return [float(v.detach()) for v in (out.total, out.reconstruction, out.kl, out.latent, out.wave)]

    def checkpoint(self) -> None:
        """Validate; keep the best model (with class-mean latents); save the resumable state."""
        cfg, model, out_dir = self.cfg, self.model, self.out_dir
        rows = evaluate_examples(model, self.val_set)
        gains = np.array([r["si_sdr"] - r["si_sdr_mix"] for r in rows])
        classes = np.array([r["class"] for r in rows])
        gain, med = float(gains.mean()), float(np.median(gains))
        by_class = {c: round(float(np.median(gains[classes == c])), 3) for c in CLASSES if (classes == c).any()}
        self.write(QSepValEvent(step=self.step, elapsed_s=round(self.elapsed, 1), val_sisdri_mean=round(gain, 3),
                                val_sisdri_median=round(med, 3), by_class=by_class))
        if gain > self.best:
            self.best, self.best_step = gain, self.step
            model.class_latents.copy_(class_means(model, self.train_songs, per_class=cfg.class_queries,
                                                  seed=cfg.seed, samples=self.qsamples))
            model.config.training = {"step": self.step, "elapsed_s": round(self.elapsed, 1), "val_sisdri_mean": gain,
                                     "data": str(self.data_dir), **asdict(cfg)}
            model.save(out_dir / "best")
        torch.save({"model": model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                    "elapsed": self.elapsed, "best": self.best, "best_step": self.best_step,
                    "rng": self.rng.bit_generator.state, "torch_rng": self.gen.get_state(),
                    "config": {**cfg.identity(), "init": cfg.init}}, out_dir / "state.pt.part")
        (out_dir / "state.pt.part").replace(out_dir / "state.pt")
        model.train()
