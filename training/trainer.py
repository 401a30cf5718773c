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

Progress goes to an ``emit(event)`` callback, one :class:`training.events.TrainEvent` at a
time (``crossmix train --json-progress`` prints them as JSON lines). A cancel token (set by
SIGTERM / Ctrl-C in the CLI) makes the trainer save ``state.pt`` and return with
``stopped="interrupted"``; ``resume=True`` continues from it.

A run's settings are a :class:`TrainConfig`, which :meth:`TrainConfig.save` writes as a JSON
file and :meth:`TrainConfig.load` reads (``crossmix train --config FILE``).
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
from core.embedding.encoders import EncoderPair, GE2EHead
from core.errors import Cancelled, TrainingError
from core.progress import CancelToken, Progress
from core.registry import load_separator, separator_name
from training.dataset import (
    FeatureStore,
    SongEntry,
    Split,
    load_dataset,
    refuse_evaluation_only,
    split_singers,
)
from training.events import (
    BatchEvent,
    DoneEvent,
    EpochEvent,
    PrepareEvent,
    ResumeEvent,
    SplitEvent,
    StartEvent,
    Stopped,
    TrainEvent,
    WarningEvent,
)
from training.losses import (
    CONTRASTIVE,
    LossWeights,
    contrastive_loss,
    structure_preserving_loss,
    teacher_loss,
)
from training.mixtures import make_mixtures
from training.triplets import SegmentPool
from training.typed_json import TypedJsonError, from_plain, to_plain

log = logging.getLogger(__name__)

EmitFn = Callable[[TrainEvent], None]
#: Fields of :class:`TrainConfig` that name files; a config file's relative ones are relative
#: to the file's folder.
_PATH_FIELDS = ("data", "out", "cache", "split_file")
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

    @classmethod
    def from_dict(cls, d: Any, *, strict: bool = True, what: str = "training settings") -> TrainConfig:
        """A config from its fields (:meth:`to_dict`, a config file), each type-checked.

        ``strict=False`` ignores keys that are not fields (a config written by another
        version); ``strict`` refuses them, so a mistyped name is not silently dropped.

        Raises
        ------
        TrainingError
            Not an object, a value of the wrong type, ``data``/``out`` missing, or (``strict``)
            an unknown key; the message names it.
        """
        try:
            return from_plain(cls, d, what=what, unknown="error" if strict else "ignore")
        except TypedJsonError as exc:
            raise TrainingError(str(exc)) from None

    def save(self, path: str | Path) -> Path:
        """Write the config as a JSON file (:meth:`load` reads it back equal)."""
        path = Path(path)
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(to_plain(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """A config file (:meth:`save`; ``crossmix train --config``). Relative ``data``, ``out``,
        ``cache`` and ``split_file`` are relative to the file's folder.

        Raises
        ------
        TrainingError
            The file cannot be read, is not JSON or does not fit (see :meth:`from_dict`).
        """
        path = Path(path).expanduser()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TrainingError(f"{path}: not a readable training config ({exc}).") from None
        cfg = cls.from_dict(doc, what=str(path))
        base = path.resolve().parent
        fixed: dict[str, Any] = {k: str(base / Path(v).expanduser()) for k in _PATH_FIELDS
                 if isinstance(v := getattr(cfg, k), str) and v
                 and (v.startswith("~") or not Path(v).is_absolute())}
        return dataclasses.replace(cfg, **fixed) if fixed else cfg


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
        emit(PrepareEvent.from_progress(p))
    return fn


def _feature_store(cfg: TrainConfig, separator: Any, frontend: str) -> FeatureStore:
    return FeatureStore(Path(cfg.cache) if cfg.cache else None, vocals=cfg.vocals, separator=separator,
                        max_segments=cfg.segments_per_song, frontend=frontend)


def prepare(cfg: TrainConfig, *, emit: EmitFn, device: torch.device,
            cancel: CancelToken | None = None, split: Split | None = None) -> Prepared:
    """Read the folder, split singers, compute (or load cached) segments of every song."""
    ds = load_dataset(cfg.data, labels=cfg.uses_labels)
    refuse_evaluation_only(ds.songs)
    if split is None:
        split = split_singers(ds, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed,
                              labels=cfg.uses_labels)
    if len(split.train) < 2:
        raise TrainingError(f"{cfg.data}: training needs at least two training singers; add singers.")
    emit(SplitEvent(singers=len(ds.singers), songs=len(ds.songs), train=len(split.train), val=len(split.val),
                    test=len(split.test), skipped=[(str(p), why) for p, why in ds.skipped][:50], seed=split.seed))
    separator = load_separator(cfg.separator, device=device) if cfg.vocals == "separated" else None
    wanted = ds.subset(set(split.train) | set(split.val) | set(split.test))
    songs, feats, failures = _feature_store(cfg, separator, cfg.frontend).load_many(
        wanted, progress=_emit_progress(emit), cancel=cancel)
    teacher_feats: dict[Path, Any] = {}
    if cfg.teacher > 0 and cfg.frontend != "ge2e":
        # The teacher reads its own front end of the same segments.
        tsongs, tfeats, _ = _feature_store(cfg, separator, "ge2e").load_many(
            songs, progress=_emit_progress(emit), cancel=cancel)
        teacher_feats = {s.path: f for s, f in zip(tsongs, tfeats, strict=True)}
    if failures:
        emit(WarningEvent(message=f"{len(failures)} songs could not be read and were skipped",
                          files=[(str(p), why) for p, why in failures][:50]))
    return _pools(cfg, split, songs, feats, teacher_feats, emit=emit, device=device, cancel=cancel)


def _pools(cfg: TrainConfig, split: Split, songs: list[SongEntry], feats: list[Any],
           teacher_feats: dict[Path, Any], *, emit: EmitFn, device: torch.device,
           cancel: CancelToken | None) -> Prepared:
    """The training and validation pools of the split (and their GE2E outputs if needed)."""
    def pool(names: list[str]) -> tuple[list[SongEntry], list[Any]]:
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

    def cache(p: SegmentPool | None, pool_songs: list[SongEntry]) -> BackboneCache | None:
        if p is None or backbone is None:
            return None
        return _ge2e_cache(cfg, backbone, p, [teacher_feats[s.path] for s in pool_songs] if teacher_feats else [],
                           emit=emit, cancel=cancel)

    return Prepared(split=split, train=train_pool, val=val, test_songs=te_s, test_feats=te_f, n_songs=len(songs),
                    train_ge2e=cache(train_pool, tr_s), val_ge2e=cache(val, va_s))


def _ge2e_cache(cfg: TrainConfig, backbone: Any, pool: SegmentPool, teacher_feats: list[Any], *,
                emit: EmitFn, cancel: CancelToken | None) -> BackboneCache | None:
    """GE2E outputs of a pool's segments: all of them for the GE2E heads, the vocals' embedding
    for the CNN's teacher (``teacher_feats``: the pool's songs' GE2E features)."""
    if cfg.frontend == "ge2e":
        def report(done: int) -> None:
            emit(PrepareEvent(stage="backbone", done=done, total=1, unit="pools",
                              message="GE2E outputs of the segments"))

        report(0)
        me, mh = backbone_outputs(backbone, pool.mix, cancel=cancel)
        ve, vh = backbone_outputs(backbone, pool.vocal, cancel=cancel)
        report(1)
        return BackboneCache(me, mh, ve, vh)
    if cfg.teacher > 0:  # the CNN's teacher: only the vocal's GE2E embedding
        voc = [torch.from_numpy(f.vocal) for f in teacher_feats]
        if sum(int(v.shape[0]) for v in voc) != pool.n_segments:
            raise TrainingError("The teacher's segments do not line up with the encoders'; clear the feature cache.")
        ve, _ = backbone_outputs(backbone, torch.cat(voc), cancel=cancel)
        return BackboneCache(None, None, ve, None)
    return None


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
            assert isinstance(head, GE2EHead)
            return head.project(self.cache.voc_emb[t].to(self.device), self.cache.voc_hid[t].to(self.device)).float()
        with self._ctx():
            out: torch.Tensor = self.model.f_v(self.pool.vocal[t].to(self.device, non_blocking=True).float())
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
            assert isinstance(head, GE2EHead)
            return head.project(emb.to(self.device), hid.to(self.device)).float()
        x = self.pool.mix[t].float()
        if mixtures is not None:
            x[torch.from_numpy(fake)] = mixtures.mix
        with self._ctx():
            out: torch.Tensor = head(x.to(self.device, non_blocking=True))
        return out.float()

    def teacher(self, idx: np.ndarray) -> torch.Tensor:
        assert self.cache is not None
        emb: torch.Tensor = self.cache.voc_emb[torch.from_numpy(idx)]
        return emb.to(self.device)


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
    emit = emit or _ignore
    cfg.check()
    out = _output_folder(cfg)
    state = _saved_state(out / "state.pt", cfg, resume=resume)
    device = resolve_device(cfg.device)
    split = Split.from_dict(json.loads(state["split"])) if state is not None else None
    if split is None and cfg.split_file:
        split = _read_split(Path(cfg.split_file), seed=cfg.seed)
    prep = prepare(cfg, emit=emit, device=device, cancel=cancel, split=split)
    _write_json(out / "split.json", prep.split.to_dict())

    run = _Run(cfg, prep, device, out, emit)
    if state is not None:
        run.restore(state)
    emit(run.start_event())
    run.t0 = time.monotonic()
    try:
        stopped = run.loop(cancel)
    except (Cancelled, KeyboardInterrupt):
        return run.interrupted()
    evaluation = _evaluate_best(cfg, prep, run.best_path, device, emit)
    emit(DoneEvent(stopped=stopped, resumable=False, best_checkpoint=str(run.best_path),
                   best_val_loss=run.best_val, best_epoch=run.best_epoch, epochs=run.epoch,
                   evaluation=str(evaluation) if evaluation else None))
    return TrainResult(stopped, run.best_path, run.best_val, run.best_epoch, run.epoch, evaluation, run.history)


def _ignore(event: TrainEvent) -> None:
    pass


def _output_folder(cfg: TrainConfig) -> Path:
    """``cfg.out``, created; refused inside the data folder (which is never written)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(cfg.data).resolve()
    if data_dir.is_file():  # a manifest file: its folder holds the data
        data_dir = data_dir.parent
    if data_dir == out.resolve() or data_dir in out.resolve().parents:
        raise TrainingError(f"{out}: the output folder must not be inside the data folder {data_dir} (it is never written).")
    return out


def _saved_state(state_path: Path, cfg: TrainConfig, *, resume: bool) -> dict[str, Any] | None:
    """The state of the run in ``cfg.out`` to resume (``None``: a new run), checked against ``cfg``."""
    if not state_path.exists():
        return None
    if not resume:
        raise TrainingError(
            f"{state_path.parent}: holds a training run already; pass --resume to continue it or choose another --out."
        )
    state: dict[str, Any] = torch.load(state_path, map_location="cpu", weights_only=True)
    saved = json.loads(state["identity"])
    saved["separator"] = separator_name(saved.get("separator"))  # an older spelling
    if saved != json.loads(json.dumps(cfg.identity())):
        raise TrainingError(
            f"{state_path}: was made with other settings ({saved}); resume with the same settings or use another --out."
        )
    return state


class _Run:
    """One run's model, optimiser and counters: the epochs, the state saved for resuming, and
    the events of each logged batch and each epoch."""

    def __init__(self, cfg: TrainConfig, prep: Prepared, device: torch.device, out: Path, emit: EmitFn) -> None:
        self.cfg, self.prep, self.device, self.emit = cfg, prep, device, emit
        self.weights = cfg.weights()
        if cfg.arch == "ge2e":
            self.model = EncoderPair.ge2e_heads(hidden=cfg.head_hidden, seed=cfg.seed, name=cfg.loss)
        else:
            self.model = EncoderPair.create(width=cfg.width, embedding_dim=cfg.embedding_dim, seed=cfg.seed,
                                            name=cfg.loss)
        self.model.to(device)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(self.trainable, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
        self.state_path = out / "state.pt"
        self.best_path = out / "best.safetensors"
        self.epoch, self.start_batch, self.step = 0, 0, 0
        self.best_val, self.best_epoch, self.since_best = math.inf, -1, 0
        self.history: list[dict[str, Any]] = []
        self.run_loss = (0.0, 0)
        self.t0 = time.monotonic()
        self.batches_done_here = 0

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.epoch, self.start_batch, self.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        self.best_val, self.best_epoch = float(state["best_val"]), int(state["best_epoch"])
        self.since_best = int(state["since_best"])
        self.history = json.loads(state["history"])
        self.run_loss = (float(state["run_loss_sum"]), int(state["run_loss_n"]))
        self.emit(ResumeEvent(epoch=self.epoch, batch=self.start_batch, best_val_loss=self.best_val))

    def save_state(self, next_epoch: int, next_batch: int) -> None:
        _atomic_torch_save({
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(), "epoch": next_epoch, "batch": next_batch, "step": self.step,
            "best_val": self.best_val, "best_epoch": self.best_epoch, "since_best": self.since_best,
            "history": json.dumps(self.history), "identity": json.dumps(self.cfg.identity()),
            "split": json.dumps(self.prep.split.to_dict()),
            "run_loss_sum": self.run_loss[0], "run_loss_n": self.run_loss[1],
        }, self.state_path)

    def start_event(self) -> StartEvent:
        cfg, prep = self.cfg, self.prep
        return StartEvent(device=str(self.device), width=cfg.width, loss=cfg.loss, arch=cfg.arch,
                          sampling=cfg.sampling, pairs=cfg.pairs, teacher=cfg.teacher,
                          lambdas=self.weights.as_tuple(), train_segments=prep.train.n_segments,
                          train_singers=len(prep.train.singers),
                          val_singers=len(prep.val.singers) if prep.val else 0,
                          batches_per_epoch=cfg.batches_per_epoch, max_epochs=cfg.max_epochs,
                          parameters=sum(p.numel() for p in self.trainable))

    def loop(self, cancel: CancelToken | None) -> Stopped:
        """Epochs until early stopping or ``max_epochs``; raises Cancelled when ``cancel`` is set."""
        while self.epoch < self.cfg.max_epochs:
            self.model.train()
            for b in range(self.start_batch, self.cfg.batches_per_epoch):
                self.train_batch(b, cancel)
            self.start_batch = 0
            if self.end_epoch():
                return "early_stopping"
        return "max_epochs"

    def train_batch(self, b: int, cancel: CancelToken | None) -> None:
        cfg = self.cfg
        if cancel is not None:
            cancel.check("training")
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr / (1.0 + cfg.lr_decay * self.step)
        rng = np.random.default_rng([cfg.seed, self.epoch, b])
        loss, terms = batch_loss(self.model, self.prep.train, rng, cfg, self.weights, self.device,
                                 cache=self.prep.train_ge2e)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        self.step += 1
        self.batches_done_here += 1
        value = float(loss.detach())
        self.run_loss = (self.run_loss[0] + value, self.run_loss[1] + 1)
        if (b + 1) % cfg.log_every == 0 or b + 1 == cfg.batches_per_epoch:
            elapsed = time.monotonic() - self.t0
            per_batch = elapsed / self.batches_done_here
            left_epoch = cfg.batches_per_epoch - (b + 1)
            self.emit(BatchEvent(
                epoch=self.epoch, batch=b + 1, batches=cfg.batches_per_epoch, step=self.step, loss=value,
                terms=terms, lr=float(self.opt.param_groups[0]["lr"]), elapsed_s=elapsed,
                epoch_eta_s=per_batch * left_epoch,
                eta_s=per_batch * (left_epoch + cfg.batches_per_epoch * (cfg.max_epochs - self.epoch - 1))))

    def end_epoch(self) -> bool:
        """Validate, keep the best model, save the state; whether to stop early."""
        cfg, prep = self.cfg, self.prep
        train_loss = self.run_loss[0] / max(1, self.run_loss[1])
        self.run_loss = (0.0, 0)
        val = (validation_loss(self.model, prep.val, cfg, self.weights, self.device, prep.val_ge2e)
               if prep.val is not None else train_loss)
        improved = val < self.best_val - 1e-6
        if improved:
            self.best_val, self.best_epoch, self.since_best = val, self.epoch, 0
            _save_best(self.model, self.best_path, cfg, prep, self.epoch, val)
        else:
            self.since_best += 1
        self.history.append({"epoch": self.epoch, "train_loss": train_loss, "val_loss": val})
        self.epoch += 1
        self.save_state(self.epoch, 0)
        elapsed = time.monotonic() - self.t0
        per_epoch = elapsed / max(1e-9, self.batches_done_here / cfg.batches_per_epoch)
        self.emit(EpochEvent(
            epoch=self.epoch - 1, train_loss=train_loss, val_loss=val,
            val_source="validation singers" if prep.val is not None else "training loss (no validation singers)",
            best_val_loss=self.best_val, best_epoch=self.best_epoch, epochs_since_best=self.since_best,
            improved=improved, checkpoint=str(self.best_path), elapsed_s=elapsed,
            eta_s=per_epoch * min(cfg.max_epochs - self.epoch, cfg.patience - self.since_best)))
        return self.since_best >= cfg.patience

    def interrupted(self) -> TrainResult:
        """Save the state where training stopped; the ``done`` event says it can be resumed."""
        # Steps run epoch by epoch, so the global step says where in this epoch to pick up.
        self.save_state(self.epoch, _next_batch(self.step, self.cfg, self.epoch))
        best = self.best_path if self.best_path.exists() else None
        self.emit(DoneEvent(stopped="interrupted", resumable=True, state=str(self.state_path),
                            best_checkpoint=str(best) if best else None,
                            best_val_loss=self.best_val if self.best_epoch >= 0 else None))
        return TrainResult("interrupted", best, self.best_val, self.best_epoch, self.epoch, None, self.history)


def _evaluate_best(cfg: TrainConfig, prep: Prepared, best_path: Path, device: torch.device,
                   emit: EmitFn) -> Path | None:
    """``OUT/evaluation.json`` of the best model on the test singers, when they allow one."""
    if not (cfg.evaluate and best_path.exists()):
        return None
    test_singers = {s.singer for s in prep.test_songs}
    multi = [s for s in test_singers if sum(1 for t in prep.test_songs if t.singer == s) >= 2]
    if len(multi) < 2:
        emit(WarningEvent(message="no evaluation: the test split has no singer with two or more songs "
                          "(label-agnostic training on untagged songs); evaluate on a tagged folder with "
                          "crossmix evaluate"))
        return None
    from training.evaluate import evaluate_songs, write_report

    best = EncoderPair.load(best_path, device=device)
    report = evaluate_songs(best, prep.test_songs, {cfg.frontend: prep.test_feats},
                            protocol="test singers of the training split",
                            feature_store=_store_factory(cfg, device))
    return write_report(report, Path(cfg.out) / "evaluation.json")


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
        return _feature_store(cfg, separator, frontend)
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
