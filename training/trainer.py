"""Training the encoder pair with the triplet losses of Kim et al. 2021 (4.1).

The paper's recipe: triplets of an anchor, a positive of the same singer and 4 negatives of
other singers, 25 triplets a batch, 1200 random batches an epoch; SGD with learning rate 0.01,
Nesterov momentum (0.9, the usual Keras value) and decay 1e-6 (Keras' time-based decay:
``lr_t = lr / (1 + decay * step)``); training stops when the validation loss has not improved
for 20 epochs, keeping the best checkpoint.

Output folder (``TrainConfig.out``)::

    best.safetensors, best.json   the best encoders so far (EncoderPair.save); the JSON's
                                  config.training holds the loss, lambdas, split, epoch, ...
    state.pt                      resumable state (weights, optimiser, epoch, batch, history)
    split.json                    the singer split
    evaluation.json               test-singer evaluation of the best model (at the end)

Progress goes to an ``emit(event: dict)`` callback; see :mod:`cli.train` for the event
shapes. A cancel token (set by SIGTERM / Ctrl-C in the CLI) makes the trainer save
``state.pt`` and return with ``stopped="interrupted"``; ``resume=True`` continues from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.atomic import atomic_write
from core.device import resolve_device
from core.embedding.encoders import EncoderPair
from core.errors import Cancelled, TrainingError
from core.progress import CancelToken, Progress
from core.registry import load_separator, separator_name
from training.dataset import FeatureStore, Split, load_dataset, split_singers
from training.losses import (
    CONTRASTIVE,
    LossWeights,
    contrastive_loss,
    structure_preserving_loss,
    teacher_loss,
)
from training.mixtures import make_mixtures
from training.triplets import SegmentPool

log = logging.getLogger(__name__)

EmitFn = Callable[[dict[str, Any]], None]
#: Offset of the validation batches' seeds (kept apart from the training batches').
_VAL_STREAM = 10**6


@dataclass
class TrainConfig:
    """Everything a run depends on (written into the checkpoint's JSON)."""

    data: str
    out: str
    loss: str = "cross-sp"
    lambdas: tuple[float, float, float, float] | None = None
    margin: float = 0.4
    width: float = 1.0
    embedding_dim: int = 256
    max_epochs: int = 1000
    batches_per_epoch: int = 1200
    batch_size: int = 25
    negatives: int = 4
    patience: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    lr_decay: float = 1e-6
    seed: int = 0
    segments_per_song: int = 16
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    val_batches: int = 20
    vocals: str = "separated"
    separator: str = "spleeter-2stems"
    cache: str | None = None
    device: str = "auto"
    amp: bool = True
    evaluate: bool = True
    log_every: int = 10
    #: ``"real"``: the paper's pairs (a song's mix and its separated vocal); ``"artificial"``:
    #: every mix is an artificial mixture (a vocal over another song's accompaniment);
    #: ``"both"``: half and half (:mod:`training.mixtures`).
    sampling: str = "real"
    #: Contrastive loss only: ``"label"`` (positives share a singer) or ``"agnostic"``
    #: (positives come from the same song; no singer labels are read).
    pairs: str = "label"
    temperature: float = 0.1
    #: ``"cnn"`` (the paper's encoders) or ``"ge2e"`` (trained heads on a frozen GE2E speaker encoder).
    arch: str = "cnn"
    head_hidden: int = 512
    #: Weight of the distillation loss towards the GE2E teacher's embedding of the vocal
    #: (f_v on the vocal and f_m on its mix); 0 = off.
    teacher: float = 0.0
    #: A JSON file ``{"train": [...], "val": [...], "test": [...]}`` of singer names to use
    #: instead of the seeded random split (e.g. whole base voices held out for validation).
    split_file: str | None = None

    @property
    def contrastive(self) -> bool:
        return self.loss in CONTRASTIVE

    @property
    def uses_labels(self) -> bool:
        """Whether singer labels are read (triplets always need them)."""
        return not (self.contrastive and self.pairs == "agnostic")

    @property
    def mixture_share(self) -> float:
        return {"real": 0.0, "artificial": 1.0, "both": 0.5}[self.sampling]

    @property
    def frontend(self) -> str:
        return "ge2e" if self.arch == "ge2e" else "logmel"

    def check(self) -> None:
        """Raise :class:`TrainingError` for settings that do not go together."""
        if self.sampling not in ("real", "artificial", "both"):
            raise TrainingError(f"Unknown sampling {self.sampling!r}: use real, artificial or both.")
        if self.pairs not in ("label", "agnostic"):
            raise TrainingError(f"Unknown pairs {self.pairs!r}: use label or agnostic.")
        if self.arch not in ("cnn", "ge2e"):
            raise TrainingError(f"Unknown architecture {self.arch!r}: use cnn or ge2e.")
        if self.pairs == "agnostic" and not self.contrastive:
            raise TrainingError("Label-agnostic pairs need the contrastive loss (--loss infonce); "
                                "the triplet losses need singer labels.")
        if self.teacher < 0:
            raise TrainingError("--teacher must be >= 0.")

    def weights(self) -> LossWeights:
        if self.lambdas is not None:
            return LossWeights(*self.lambdas, margin=self.margin)
        return LossWeights.preset(self.loss, margin=self.margin)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lambdas"] = list(self.weights().as_tuple())
        return d

    def identity(self) -> dict[str, Any]:
        """What must not change when a run is resumed."""
        keys = ("data", "width", "embedding_dim", "batch_size", "negatives", "seed",
                "segments_per_song", "val_fraction", "test_fraction", "vocals", "separator", "margin",
                "sampling", "pairs", "temperature", "arch", "head_hidden", "teacher", "split_file")
        d = {k: getattr(self, k) for k in keys}
        d["separator"] = separator_name(self.separator)
        d["lambdas"] = list(self.weights().as_tuple())
        return d


@dataclass
class TrainResult:
    stopped: str  # "early_stopping" | "max_epochs" | "interrupted"
    best_checkpoint: Path | None
    best_val_loss: float
    best_epoch: int
    epochs: int
    evaluation: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class BackboneCache:
    """GE2E outputs of every segment of a pool (embeddings ``(N, 256)``, hidden ``(N, 768)``)."""

    mix_emb: torch.Tensor | None
    mix_hid: torch.Tensor | None
    voc_emb: torch.Tensor
    voc_hid: torch.Tensor | None


@dataclass
class Prepared:
    split: Split
    train: SegmentPool
    val: SegmentPool | None
    test_songs: list[Any]
    test_feats: list[Any]
    n_songs: int
    #: GE2E outputs of the pools' segments (``arch="ge2e"``, or the teacher's for ``teacher > 0``).
    train_ge2e: BackboneCache | None = None
    val_ge2e: BackboneCache | None = None


@torch.no_grad()
def backbone_outputs(net: Any, segments: torch.Tensor, *, batch: int = 64,
                     cancel: CancelToken | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """GE2E embeddings and hidden states (float32, CPU) of ``(N, 40, frames)`` mel segments.

    ``net`` is a :class:`core.embedding.ge2e.GE2E` on the device the segments should run on.
    """
    from core.embedding.ge2e import EMBEDDING, FEATURE_DIM

    device = next(net.parameters()).device
    embs, hids = [torch.zeros(0, EMBEDDING)], [torch.zeros(0, FEATURE_DIM)]
    for a in range(0, segments.shape[0], batch):
        if cancel is not None:
            cancel.check("preparing the training data")
        e, h = net.segment_features(segments[a:a + batch].to(device).float())
        embs.append(e.float().cpu())
        hids.append(h.float().cpu())
    return torch.cat(embs), torch.cat(hids)


def _emit_progress(emit: EmitFn) -> Callable[[Progress], None]:
    def fn(p: Progress) -> None:
        emit({"event": "prepare", "stage": p.stage, "done": p.done, "total": p.total,
              "unit": p.unit, "message": p.message, "eta_s": p.eta_s})
    return fn


def prepare(cfg: TrainConfig, *, emit: EmitFn, device: torch.device,
            cancel: CancelToken | None = None, split: Split | None = None) -> Prepared:
    """Read the folder, split singers, compute (or load cached) segments of every song."""
    ds = load_dataset(cfg.data, labels=cfg.uses_labels)
    if split is None:
        split = split_singers(ds, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed,
                              labels=cfg.uses_labels)
    if len(split.train) < 2:
        raise TrainingError(f"{cfg.data}: training needs at least two training singers; add singers.")
    emit({"event": "split", "singers": len(ds.singers), "songs": len(ds.songs),
          "train": len(split.train), "val": len(split.val), "test": len(split.test),
          "skipped": [[str(p), why] for p, why in ds.skipped][:50], "seed": split.seed})
    separator = load_separator(cfg.separator, device=device) if cfg.vocals == "separated" else None
    store = FeatureStore(Path(cfg.cache) if cfg.cache else None, vocals=cfg.vocals,
                         separator=separator, max_segments=cfg.segments_per_song, frontend=cfg.frontend)
    wanted = ds.subset(set(split.train) | set(split.val) | set(split.test))
    songs, feats, failures = store.load_many(wanted, progress=_emit_progress(emit), cancel=cancel)
    teacher_feats: dict[Path, Any] = {}
    if cfg.teacher > 0 and cfg.frontend != "ge2e":
        # The teacher reads its own front end of the same segments.
        tstore = FeatureStore(Path(cfg.cache) if cfg.cache else None, vocals=cfg.vocals, separator=separator,
                              max_segments=cfg.segments_per_song, frontend="ge2e")
        tsongs, tfeats, _ = tstore.load_many(songs, progress=_emit_progress(emit), cancel=cancel)
        teacher_feats = {s.path: f for s, f in zip(tsongs, tfeats, strict=True)}
    if failures:
        emit({"event": "warning", "message": f"{len(failures)} songs could not be read and were skipped",
              "files": [[str(p), why] for p, why in failures][:50]})
    def pool(names: list[str]) -> tuple[list[Any], list[Any]]:
        sel = set(names)
        pairs = [(s, f) for s, f in zip(songs, feats, strict=True) if s.singer in sel]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    tr_s, tr_f = pool(split.train)
    va_s, va_f = pool(split.val)
    te_s, te_f = pool(split.test)
    if len({s.singer for s in tr_s}) < 2:
        raise TrainingError(f"{cfg.data}: fewer than two training singers have readable songs.")
    val = SegmentPool.build(va_s, va_f, frontend=cfg.frontend) if len({s.singer for s in va_s}) >= 2 else None
    train_pool = SegmentPool.build(tr_s, tr_f, frontend=cfg.frontend)
    if cfg.sampling != "real" and train_pool.acc is None:
        raise TrainingError("Artificial mixtures need accompaniment segments, which this feature cache lacks; "
                            "clear the feature cache (--cache) and train again.")

    backbone = None
    if cfg.frontend == "ge2e" or cfg.teacher > 0:
        from core.embedding.ge2e import GE2E

        backbone = GE2E.pretrained().to(device)

    def ge2e_cache(pool: SegmentPool | None, pool_songs: list[Any]) -> BackboneCache | None:
        if pool is None or backbone is None:
            return None
        if cfg.frontend == "ge2e":
            emit({"event": "prepare", "stage": "backbone", "done": 0, "total": 1, "unit": "pools",
                  "message": "GE2E outputs of the segments", "eta_s": None})
            me, mh = backbone_outputs(backbone, pool.mix, cancel=cancel)
            ve, vh = backbone_outputs(backbone, pool.vocal, cancel=cancel)
            emit({"event": "prepare", "stage": "backbone", "done": 1, "total": 1, "unit": "pools",
                  "message": "GE2E outputs of the segments", "eta_s": None})
            return BackboneCache(me, mh, ve, vh)
        if cfg.teacher > 0:  # the CNN's teacher: only the vocal's GE2E embedding
            voc = [torch.from_numpy(teacher_feats[s.path].vocal) for s in pool_songs]
            if sum(int(v.shape[0]) for v in voc) != pool.n_segments:
                raise TrainingError("The teacher's segments do not line up with the encoders'; clear the feature cache.")
            ve, _ = backbone_outputs(backbone, torch.cat(voc), cancel=cancel)
            return BackboneCache(None, None, ve, None)
        return None

    return Prepared(split=split, train=train_pool, val=val, test_songs=te_s, test_feats=te_f, n_songs=len(songs),
                    train_ge2e=ge2e_cache(train_pool, tr_s), val_ge2e=ge2e_cache(val, va_s))


class _Views:
    """Embeds pool segments for one batch: f_v on vocals, f_m on real or artificial mixes.

    ``mixture_share`` of the mix rows (drawn per row) are replaced by artificial mixtures of
    the same segment's vocal over another song's accompaniment. With ``arch="ge2e"`` the
    frozen backbone's outputs of real segments come from ``cache``, and only mixtures go
    through the backbone.
    """

    def __init__(self, model: EncoderPair, pool: SegmentPool, cache: BackboneCache | None, rng: np.random.Generator,
                 *, mixture_share: float, device: torch.device, amp: bool) -> None:
        self.model, self.pool, self.cache, self.rng = model, pool, cache, rng
        self.share, self.device, self.amp = mixture_share, device, amp
        self.ge2e = model.config.arch == "ge2e"

    def _ctx(self) -> Any:
        if self.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def vocal(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(idx)
        if self.ge2e:
            assert self.cache is not None and self.cache.voc_hid is not None
            head = self.model.f_v
            return head.project(self.cache.voc_emb[t].to(self.device), self.cache.voc_hid[t].to(self.device)).float()  # type: ignore[operator]
        with self._ctx():
            out = self.model.f_v(self.pool.vocal[t].to(self.device, non_blocking=True).float())
        return out.float()

    def mix(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(idx)
        fake = self.rng.random(len(idx)) < self.share if self.share > 0 else np.zeros(len(idx), dtype=bool)
        mixtures = make_mixtures(self.pool, idx[fake], self.rng) if fake.any() else None
        head = self.model.f_m
        if self.ge2e:
            assert self.cache is not None and self.cache.mix_emb is not None and self.cache.mix_hid is not None
            emb = self.cache.mix_emb[t].clone()
            hid = self.cache.mix_hid[t].clone()
            if mixtures is not None:
                e, h = backbone_outputs(self.model.backbone, mixtures.mix)
                emb[torch.from_numpy(fake)] = e
                hid[torch.from_numpy(fake)] = h
            return head.project(emb.to(self.device), hid.to(self.device)).float()  # type: ignore[operator]
        x = self.pool.mix[t].float()
        if mixtures is not None:
            x[torch.from_numpy(fake)] = mixtures.mix
        with self._ctx():
            out = head(x.to(self.device, non_blocking=True))
        return out.float()

    def teacher(self, idx: np.ndarray) -> torch.Tensor:
        assert self.cache is not None
        return self.cache.voc_emb[torch.from_numpy(idx)].to(self.device)


def batch_loss(model: EncoderPair, pool: SegmentPool, rng: np.random.Generator, cfg: TrainConfig,
               weights: LossWeights, device: torch.device, *, cache: BackboneCache | None = None,
               mixture_share: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Sample one batch from ``pool`` and compute its loss (equation 4 or NT-Xent, plus the teacher's).

    ``mixture_share`` overrides the config's share of artificial mixtures (validation uses
    real mixes only, the app's case).
    """
    share = cfg.mixture_share if mixture_share is None else mixture_share
    views = _Views(model, pool, cache, rng, mixture_share=share, device=device, amp=cfg.amp)
    if cfg.contrastive:
        a, p = pool.sample_pairs(rng, batch_size=cfg.batch_size, labels=cfg.uses_labels)
        need_v = weights.l1 or weights.l2 or weights.l4 or cfg.teacher
        need_m = weights.l1 or weights.l2 or weights.l3 or cfg.teacher
        v_a = views.vocal(a) if need_v else None
        m_a = views.mix(a) if need_m else None
        v = (v_a, views.vocal(p) if weights.l4 else v_a) if v_a is not None else None
        m = (m_a, views.mix(p) if weights.l3 else m_a) if m_a is not None else None
        loss, terms = contrastive_loss(v=v, m=m, weights=weights, temperature=cfg.temperature)
        anchors = a
    else:
        a, p, n = pool.sample(rng, batch_size=cfg.batch_size, negatives=cfg.negatives)
        B, J = n.shape
        targets = np.concatenate([p, n.reshape(-1)])

        def run(embed: Callable[[np.ndarray], torch.Tensor], want_anchor: bool, want_targets: bool) -> Any:
            if not (want_anchor or want_targets):
                return None
            idx = np.concatenate(([a] if want_anchor else []) + ([targets] if want_targets else [])).astype(np.int64)
            out = embed(idx)
            anchor = out[:B] if want_anchor else None
            rest = out[B:] if want_anchor else out
            pos = rest[:B] if want_targets else None
            negs = rest[B:].reshape(B, J, -1) if want_targets else None
            return anchor, pos, negs

        v = run(views.vocal, weights.needs_vocal_anchor or cfg.teacher > 0, weights.needs_vocal_targets)
        m = run(views.mix, weights.needs_mix_anchor or cfg.teacher > 0, weights.needs_mix_targets)
        loss, terms = structure_preserving_loss(v=v, m=m, weights=weights)
        v_a = v[0] if v is not None else None
        m_a = m[0] if m is not None else None
        anchors = a
    if cfg.teacher > 0:
        target = views.teacher(anchors)
        t_loss = 0.5 * (teacher_loss(v_a, target) + teacher_loss(m_a, target))  # type: ignore[arg-type]
        terms["teacher"] = float(t_loss.detach())
        loss = loss + cfg.teacher * t_loss
    return loss, terms


@torch.no_grad()
def validation_loss(model: EncoderPair, pool: SegmentPool, cfg: TrainConfig, weights: LossWeights,
                    device: torch.device, cache: BackboneCache | None = None) -> float:
    """Mean loss over ``cfg.val_batches`` fixed (seeded) batches of real mixes, in eval mode."""
    was = model.training
    model.eval()
    total = 0.0
    for k in range(cfg.val_batches):
        rng = np.random.default_rng([cfg.seed, _VAL_STREAM + k])
        loss, _ = batch_loss(model, pool, rng, cfg, weights, device, cache=cache, mixture_share=0.0)
        total += float(loss)
    model.train(was)
    return total / max(1, cfg.val_batches)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_write(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def _write_json(path: Path, doc: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2))


def train(cfg: TrainConfig, *, emit: EmitFn | None = None, cancel: CancelToken | None = None,
          resume: bool = False) -> TrainResult:
    """Train an encoder pair on ``cfg.data``; see the module docstring for the outputs.

    Raises
    ------
    TrainingError
        Unusable data, or ``cfg.out`` holds another run (use ``resume=True`` or another folder).
    Cancelled
        ``cancel`` was set while the data were being prepared (nothing to save yet).
    """
    emit = emit or (lambda e: None)
    cfg.check()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(cfg.data).resolve()
    if data_dir == out.resolve() or data_dir in out.resolve().parents:
        raise TrainingError(f"{out}: the output folder must not be inside the data folder {data_dir} (it is never written).")
    state_path = out / "state.pt"
    state: dict[str, Any] | None = None
    if state_path.exists():
        if not resume:
            raise TrainingError(
                f"{out}: holds a training run already; pass --resume to continue it or choose another --out."
            )
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        saved = json.loads(state["identity"])
        saved["separator"] = separator_name(saved.get("separator"))  # an older spelling
        if saved != json.loads(json.dumps(cfg.identity())):
            raise TrainingError(
                f"{state_path}: was made with other settings ({saved}); resume with the same settings or use another --out."
            )
    device = resolve_device(cfg.device)
    weights = cfg.weights()
    split = Split.from_dict(json.loads(state["split"])) if state is not None else None
    if split is None and cfg.split_file:
        split = _read_split(Path(cfg.split_file), seed=cfg.seed)
    prep = prepare(cfg, emit=emit, device=device, cancel=cancel, split=split)
    _write_json(out / "split.json", prep.split.to_dict())

    if cfg.arch == "ge2e":
        model = EncoderPair.ge2e_heads(hidden=cfg.head_hidden, seed=cfg.seed, name=cfg.loss)
    else:
        model = EncoderPair.create(width=cfg.width, embedding_dim=cfg.embedding_dim, seed=cfg.seed, name=cfg.loss)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    epoch, start_batch, step = 0, 0, 0
    best_val, best_epoch, since_best = math.inf, -1, 0
    history: list[dict[str, Any]] = []
    run_loss = (0.0, 0)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        epoch, start_batch, step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        best_val, best_epoch, since_best = float(state["best_val"]), int(state["best_epoch"]), int(state["since_best"])
        history = json.loads(state["history"])
        run_loss = (float(state["run_loss_sum"]), int(state["run_loss_n"]))
        emit({"event": "resume", "epoch": epoch, "batch": start_batch, "best_val_loss": best_val})

    def save_state(next_epoch: int, next_batch: int) -> None:
        _atomic_torch_save({
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "epoch": next_epoch, "batch": next_batch, "step": step,
            "best_val": best_val, "best_epoch": best_epoch, "since_best": since_best,
            "history": json.dumps(history), "identity": json.dumps(cfg.identity()),
            "split": json.dumps(prep.split.to_dict()),
            "run_loss_sum": run_loss[0], "run_loss_n": run_loss[1],
        }, state_path)

    emit({"event": "start", "device": str(device), "width": cfg.width, "loss": cfg.loss, "arch": cfg.arch,
          "sampling": cfg.sampling, "pairs": cfg.pairs, "teacher": cfg.teacher,
          "lambdas": list(weights.as_tuple()), "train_segments": prep.train.n_segments,
          "train_singers": len(prep.train.singers), "val_singers": len(prep.val.singers) if prep.val else 0,
          "batches_per_epoch": cfg.batches_per_epoch, "max_epochs": cfg.max_epochs,
          "parameters": sum(p.numel() for p in trainable)})

    t0 = time.monotonic()
    batches_done_here = 0
    stopped = "max_epochs"
    best_path = out / "best.safetensors"
    try:
        while epoch < cfg.max_epochs:
            model.train()
            for b in range(start_batch, cfg.batches_per_epoch):
                if cancel is not None:
                    cancel.check("training")
                for g in opt.param_groups:
                    g["lr"] = cfg.lr / (1.0 + cfg.lr_decay * step)
                rng = np.random.default_rng([cfg.seed, epoch, b])
                loss, terms = batch_loss(model, prep.train, rng, cfg, weights, device, cache=prep.train_ge2e)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                step += 1
                batches_done_here += 1
                run_loss = (run_loss[0] + float(loss.detach()), run_loss[1] + 1)
                if (b + 1) % cfg.log_every == 0 or b + 1 == cfg.batches_per_epoch:
                    elapsed = time.monotonic() - t0
                    per_batch = elapsed / batches_done_here
                    left_epoch = cfg.batches_per_epoch - (b + 1)
                    emit({"event": "batch", "epoch": epoch, "batch": b + 1, "batches": cfg.batches_per_epoch,
                          "step": step, "loss": float(loss.detach()), "terms": terms, "lr": opt.param_groups[0]["lr"],
                          "elapsed_s": elapsed, "epoch_eta_s": per_batch * left_epoch,
                          "eta_s": per_batch * (left_epoch + cfg.batches_per_epoch * (cfg.max_epochs - epoch - 1))})
            start_batch = 0
            train_loss = run_loss[0] / max(1, run_loss[1])
            run_loss = (0.0, 0)
            val = (validation_loss(model, prep.val, cfg, weights, device, prep.val_ge2e)
                   if prep.val is not None else train_loss)
            improved = val < best_val - 1e-6
            if improved:
                best_val, best_epoch, since_best = val, epoch, 0
                _save_best(model, best_path, cfg, prep, epoch, val)
            else:
                since_best += 1
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val})
            epoch += 1
            save_state(epoch, 0)
            elapsed = time.monotonic() - t0
            per_epoch = elapsed / max(1e-9, batches_done_here / cfg.batches_per_epoch)
            emit({"event": "epoch", "epoch": epoch - 1, "train_loss": train_loss, "val_loss": val,
                  "val_source": "validation singers" if prep.val is not None else "training loss (no validation singers)",
                  "best_val_loss": best_val, "best_epoch": best_epoch, "epochs_since_best": since_best,
                  "improved": improved, "checkpoint": str(best_path), "elapsed_s": elapsed,
                  "eta_s": per_epoch * min(cfg.max_epochs - epoch, cfg.patience - since_best)})
            if since_best >= cfg.patience:
                stopped = "early_stopping"
                break
    except (Cancelled, KeyboardInterrupt):
        # Steps run epoch by epoch, so the global step says where in this epoch to pick up.
        save_state(epoch, _next_batch(step, cfg, epoch))
        result = TrainResult("interrupted", best_path if best_path.exists() else None, best_val,
                             best_epoch, epoch, None, history)
        emit({"event": "done", "stopped": "interrupted", "resumable": True, "state": str(state_path),
              "best_checkpoint": str(best_path) if best_path.exists() else None,
              "best_val_loss": best_val if best_epoch >= 0 else None, "evaluation": None})
        return result

    evaluation = None
    test_singers = {s.singer for s in prep.test_songs}
    multi = [s for s in test_singers if sum(1 for t in prep.test_songs if t.singer == s) >= 2]
    if cfg.evaluate and best_path.exists() and len(multi) >= 2:
        from training.evaluate import evaluate_songs, write_report

        best = EncoderPair.load(best_path, device=device)
        report = evaluate_songs(best, prep.test_songs, {cfg.frontend: prep.test_feats},
                                protocol="test singers of the training split",
                                feature_store=_store_factory(cfg, device))
        evaluation = write_report(report, out / "evaluation.json")
    elif cfg.evaluate and best_path.exists():
        emit({"event": "warning", "message": "no evaluation: the test split has no singer with two or more songs "
              "(label-agnostic training on untagged songs); evaluate on a tagged folder with crossmix evaluate"})
    emit({"event": "done", "stopped": stopped, "resumable": False, "best_checkpoint": str(best_path),
          "best_val_loss": best_val, "best_epoch": best_epoch, "epochs": epoch,
          "evaluation": str(evaluation) if evaluation else None})
    return TrainResult(stopped, best_path, best_val, best_epoch, epoch, evaluation, history)


def _next_batch(step: int, cfg: TrainConfig, epoch: int) -> int:
    """Batch index inside ``epoch`` that follows global ``step`` (steps run epoch by epoch)."""
    return step - epoch * cfg.batches_per_epoch


def _save_best(model: EncoderPair, path: Path, cfg: TrainConfig, prep: Prepared, epoch: int, val: float) -> None:
    cpu = EncoderPair(dataclasses.replace(model.config, name=cfg.loss, training={}))
    cpu.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    cpu.config.training = {"config": cfg.to_dict(), "epoch": epoch, "val_loss": val,
                           "split": prep.split.to_dict()}
    cpu.save(path)


def _store_factory(cfg: TrainConfig, device: torch.device) -> Callable[[str], FeatureStore]:
    """Feature stores of the run's data for another front end (the evaluation's baselines)."""
    def make(frontend: str) -> FeatureStore:
        separator = load_separator(cfg.separator, device=device) if cfg.vocals == "separated" else None
        return FeatureStore(Path(cfg.cache) if cfg.cache else None, vocals=cfg.vocals, separator=separator,
                            max_segments=cfg.segments_per_song, frontend=frontend)
    return make


def _read_split(path: Path, *, seed: int) -> Split:
    """A singer split from a JSON file (lists ``train``, ``val``, ``test``), checked for overlap."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        parts = {k: sorted(str(x) for x in doc[k]) for k in ("train", "val", "test")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{path}: not a split file with 'train', 'val' and 'test' singer lists ({exc}).") from None
    seen: set[str] = set()
    for k in ("train", "val", "test"):
        both = seen & set(parts[k])
        if both:
            raise TrainingError(f"{path}: singers in two parts of the split: {', '.join(sorted(both)[:5])}.")
        seen |= set(parts[k])
    return Split(train=parts["train"], val=parts["val"], test=parts["test"], seed=seed)
