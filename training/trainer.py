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

Progress goes to an ``emit(event: dict)`` callback; see :mod:`training.cli` for the event
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
from core.encoders import EncoderPair
from core.errors import Cancelled, TrainingError
from core.progress import CancelToken, Progress
from training.dataset import FeatureStore, Split, load_dataset, split_singers
from training.losses import LossWeights, structure_preserving_loss
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
    separator: str = "spleeter"
    cache: str | None = None
    device: str = "auto"
    amp: bool = True
    evaluate: bool = True
    log_every: int = 10

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
                "segments_per_song", "val_fraction", "test_fraction", "vocals", "separator", "margin")
        d = {k: getattr(self, k) for k in keys}
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
class Prepared:
    split: Split
    train: SegmentPool
    val: SegmentPool | None
    test_songs: list[Any]
    test_feats: list[Any]
    n_songs: int


def make_separator(name: str, device: torch.device) -> Any:
    """The separator for training data: ``"spleeter"`` (Deezer weights) or ``"tiny"`` (tests)."""
    from core.separation import Separator

    if name == "spleeter":
        return Separator.spleeter_2stems(device=device)
    if name == "tiny":
        return Separator.tiny(device=device)
    raise TrainingError(f"Unknown separator {name!r}: use 'spleeter' or 'tiny'.")


def _emit_progress(emit: EmitFn) -> Callable[[Progress], None]:
    def fn(p: Progress) -> None:
        emit({"event": "prepare", "stage": p.stage, "done": p.done, "total": p.total,
              "unit": p.unit, "message": p.message, "eta_s": p.eta_s})
    return fn


def prepare(cfg: TrainConfig, *, emit: EmitFn, device: torch.device,
            cancel: CancelToken | None = None, split: Split | None = None) -> Prepared:
    """Read the folder, split singers, compute (or load cached) segments of every song."""
    ds = load_dataset(cfg.data)
    if split is None:
        split = split_singers(ds, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed)
    if len(split.train) < 2:
        raise TrainingError(f"{cfg.data}: training needs at least two training singers; add singers.")
    emit({"event": "split", "singers": len(ds.singers), "songs": len(ds.songs),
          "train": len(split.train), "val": len(split.val), "test": len(split.test),
          "skipped": [[str(p), why] for p, why in ds.skipped][:50], "seed": split.seed})
    separator = make_separator(cfg.separator, device) if cfg.vocals == "separated" else None
    store = FeatureStore(Path(cfg.cache) if cfg.cache else None, vocals=cfg.vocals,
                         separator=separator, max_segments=cfg.segments_per_song)
    wanted = ds.subset(set(split.train) | set(split.val) | set(split.test))
    songs, feats, failures = store.load_many(wanted, progress=_emit_progress(emit), cancel=cancel)
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
    val = SegmentPool.build(va_s, va_f) if len({s.singer for s in va_s}) >= 2 else None
    return Prepared(split=split, train=SegmentPool.build(tr_s, tr_f), val=val,
                    test_songs=te_s, test_feats=te_f, n_songs=len(songs))


def _embed_batch(model: EncoderPair, pool: SegmentPool, a: np.ndarray, p: np.ndarray, n: np.ndarray,
                 weights: LossWeights, device: torch.device, amp: bool) -> tuple[Any, Any]:
    """Forward the segments a batch's loss needs; returns the (anchor, pos, negs) tuples for v and m."""
    B, J = n.shape
    targets = np.concatenate([p, n.reshape(-1)])

    def run(net: torch.nn.Module, src: torch.Tensor, want_anchor: bool, want_targets: bool) -> Any:
        if not (want_anchor or want_targets):
            return None
        idx = np.concatenate(([a] if want_anchor else []) + ([targets] if want_targets else []))
        x = src[torch.from_numpy(idx)].to(device, non_blocking=True).float()
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and device.type == "cuda") else contextlib.nullcontext()
        with ctx:
            out = net(x)
        out = out.float()
        anchor = out[:B] if want_anchor else None
        rest = out[B:] if want_anchor else out
        pos = rest[:B] if want_targets else None
        negs = rest[B:].reshape(B, J, -1) if want_targets else None
        return anchor, pos, negs

    v = run(model.f_v, pool.vocal, weights.needs_vocal_anchor, weights.needs_vocal_targets)
    m = run(model.f_m, pool.mix, weights.needs_mix_anchor, weights.needs_mix_targets)
    return v, m


def batch_loss(model: EncoderPair, pool: SegmentPool, rng: np.random.Generator, cfg: TrainConfig,
               weights: LossWeights, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    """Sample one batch from ``pool`` and compute equation 4 on it."""
    a, p, n = pool.sample(rng, batch_size=cfg.batch_size, negatives=cfg.negatives)
    v, m = _embed_batch(model, pool, a, p, n, weights, device, cfg.amp)
    return structure_preserving_loss(v=v, m=m, weights=weights)


@torch.no_grad()
def validation_loss(model: EncoderPair, pool: SegmentPool, cfg: TrainConfig, weights: LossWeights,
                    device: torch.device) -> float:
    """Mean loss over ``cfg.val_batches`` fixed (seeded) batches, in eval mode."""
    was = model.training
    model.eval()
    total = 0.0
    for k in range(cfg.val_batches):
        rng = np.random.default_rng([cfg.seed, _VAL_STREAM + k])
        loss, _ = batch_loss(model, pool, rng, cfg, weights, device)
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
        if saved != json.loads(json.dumps(cfg.identity())):
            raise TrainingError(
                f"{state_path}: was made with other settings ({saved}); resume with the same settings or use another --out."
            )
    device = resolve_device(cfg.device)
    weights = cfg.weights()
    split = Split.from_dict(json.loads(state["split"])) if state is not None else None
    prep = prepare(cfg, emit=emit, device=device, cancel=cancel, split=split)
    _write_json(out / "split.json", prep.split.to_dict())

    model = EncoderPair.create(width=cfg.width, embedding_dim=cfg.embedding_dim, seed=cfg.seed, name=cfg.loss)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
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

    emit({"event": "start", "device": str(device), "width": cfg.width, "loss": cfg.loss,
          "lambdas": list(weights.as_tuple()), "train_segments": prep.train.n_segments,
          "train_singers": len(prep.train.singers), "val_singers": len(prep.val.singers) if prep.val else 0,
          "batches_per_epoch": cfg.batches_per_epoch, "max_epochs": cfg.max_epochs,
          "parameters": sum(p.numel() for p in model.parameters())})

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
                loss, terms = batch_loss(model, prep.train, rng, cfg, weights, device)
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
            val = validation_loss(model, prep.val, cfg, weights, device) if prep.val is not None else train_loss
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
    if cfg.evaluate and best_path.exists() and len({s.singer for s in prep.test_songs}) >= 2:
        from training.evaluate import evaluate_songs, write_report

        best = EncoderPair.load(best_path, device=device)
        report = evaluate_songs(best, prep.test_songs, prep.test_feats, protocol="test singers of the training split")
        evaluation = write_report(report, out / "evaluation.json")
    emit({"event": "done", "stopped": stopped, "resumable": False, "best_checkpoint": str(best_path),
          "best_val_loss": best_val, "best_epoch": best_epoch, "epochs": epoch,
          "evaluation": str(evaluation) if evaluation else None})
    return TrainResult(stopped, best_path, best_val, best_epoch, epoch, evaluation, history)


def _next_batch(step: int, cfg: TrainConfig, epoch: int) -> int:
    """Batch index inside ``epoch`` that follows global ``step`` (steps run epoch by epoch)."""
    return step - epoch * cfg.batches_per_epoch


def _save_best(model: EncoderPair, path: Path, cfg: TrainConfig, prep: Prepared, epoch: int, val: float) -> None:
    cpu = EncoderPair(dataclasses.replace(model.config, name=cfg.loss))
    cpu.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    cpu.config.training = {"config": cfg.to_dict(), "epoch": epoch, "val_loss": val,
                           "split": prep.split.to_dict()}
    cpu.save(path)
