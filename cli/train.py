"""``crossmix train`` and ``crossmix evaluate``.

``crossmix train --json-progress`` writes one JSON object per line on stdout, each naming its
``event``:

- ``{"event": "split", "singers", "songs", "train", "val", "test", "skipped", "seed"}``
- ``{"event": "prepare", "stage": "features", "done", "total", "unit", "message", "eta_s"}``
- ``{"event": "start", "device", "width", "loss", "lambdas", "train_segments", ...}``
- ``{"event": "batch", "epoch", "batch", "batches", "step", "loss", "terms": {...}, "lr",
  "elapsed_s", "epoch_eta_s", "eta_s"}``
- ``{"event": "epoch", "epoch", "train_loss", "val_loss", "best_val_loss", "best_epoch",
  "epochs_since_best", "improved", "checkpoint", "elapsed_s", "eta_s"}``
- ``{"event": "done", "stopped": "early_stopping"|"max_epochs"|"interrupted", "resumable",
  "best_checkpoint", "best_val_loss", "evaluation": "<path of evaluation.json>"|null}``
- ``{"event": "error", "type", "message"}`` (then exit status 1)
- ``{"event": "warning" | "resume", ...}``

SIGTERM or Ctrl-C saves a resumable state (``OUT/state.pt``) and ends with a ``done`` event
whose ``stopped`` is ``"interrupted"`` (exit status 130); ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cli.options import add_model_flags
from core.errors import Cancelled, CrossmixError
from core.progress import CancelToken, Progress
from training.losses import PRESETS

_EPILOG_TRAIN = """\
data: a folder of songs labelled by singer: a manifest.csv (header 'path,singer[,song][,vocals]',
paths relative to the folder) or the files' artist tags. The folder is never written.
Songs are separated once (stem cache under the Crossmix cache folder) and their log-mel
segments cached (--cache, default CACHE/features).

--json-progress prints one JSON object per line on stdout for programs (the GUI):
{"event": "split"|"prepare"|"start"|"batch"|"epoch"|"done"|"error"|"warning"|"resume", ...};
"done" carries "best_checkpoint" and "evaluation" (path of OUT/evaluation.json).
SIGTERM / Ctrl-C save OUT/state.pt; run again with --resume to continue.
"""


def register(sub: Any) -> None:
    t = sub.add_parser("train", help="train the vocal/mix encoders on a folder of songs labelled by singer",
                       description="Train f_v and f_m with the triplet losses of Kim et al. 2021.",
                       epilog=_EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", required=True, help="folder of songs labelled by singer")
    t.add_argument("--out", required=True, help="output folder (checkpoints, state, split, evaluation)")
    t.add_argument("--sampling", choices=["real", "artificial", "both"], default="real",
                   help="mixes the f_m side sees: real (a song's own mix, the paper), artificial (a vocal "
                        "over another song's accompaniment: mashups), or both (half each)")
    t.add_argument("--pairs", choices=["label", "agnostic"], default="label",
                   help="--loss infonce: positives share a singer (label), or come from the same song "
                        "(agnostic: needs no artist tags)")
    t.add_argument("--temperature", type=float, default=0.1, help="--loss infonce: NT-Xent temperature (0.1)")
    t.add_argument("--arch", choices=["cnn", "ge2e"], default="cnn",
                   help="cnn: the paper's encoders; ge2e: trained heads on resemblyzer's frozen speaker encoder")
    t.add_argument("--head-hidden", type=int, default=512, help="--arch ge2e: hidden units of each head (512)")
    t.add_argument("--teacher", type=float, default=0.0,
                   help="weight of the distillation loss towards resemblyzer's embedding of the vocal (0: off)")
    t.add_argument("--loss", choices=sorted(PRESETS), default="cross-sp",
                   help="mixed (l3=1), cross (l1=1), cross-sp (all 1/4): the paper's triplet losses; infonce: CVSM's contrastive NT-Xent, four directions at 1/4; default cross-sp")
    t.add_argument("--lambdas", type=_lambdas, default=None, metavar="L1,L2,L3,L4",
                   help="free weights of the vocal-mix, mix-vocal, mix-mix, vocal-vocal terms (overrides --loss)")
    t.add_argument("--margin", type=float, default=0.4, help="hinge margin on cosine distance (0.4)")
    t.add_argument("--width", type=float, default=1.0, help="filter-count multiplier (1.0 = the paper's)")
    t.add_argument("--epochs", type=int, default=1000, help="maximum epochs (early stopping usually ends sooner)")
    t.add_argument("--batches-per-epoch", type=int, default=1200, help="random batches per epoch (paper: 1200)")
    t.add_argument("--batch-size", type=int, default=25, help="triplets per batch (25)")
    t.add_argument("--negatives", type=int, default=4, help="negatives per triplet (4)")
    t.add_argument("--patience", type=int, default=20, help="epochs without validation improvement before stopping (20)")
    t.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (0.01; Nesterov momentum 0.9, decay 1e-6)")
    t.add_argument("--segments-per-song", type=int, default=16, help="cap on 3-s segments per song (16)")
    t.add_argument("--val-fraction", type=float, default=0.1, help="share of singers for validation (0.1)")
    t.add_argument("--test-fraction", type=float, default=0.1, help="share of singers for testing (0.1)")
    t.add_argument("--val-batches", type=int, default=20, help="fixed validation batches per epoch (20)")
    t.add_argument("--vocals", choices=["separated", "stems"], default="separated",
                   help="vocal domain: separated by Spleeter (default, what the app sees) or the manifest's ground-truth stems")
    t.add_argument("--cache", default=None, help="feature cache folder (default CACHE/features)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--split-file", default=None, metavar="JSON",
                   help="singer split to use instead of the seeded random one: a JSON file with 'train', 'val' "
                        "and 'test' lists of singer names (e.g. whole voices held out)")
    add_model_flags(t, encoders=False)
    t.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    t.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    t.add_argument("--no-eval", action="store_true", help="skip the test-singer evaluation at the end")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--log-every", type=int, default=10, help="batches between batch events (10)")
    t.add_argument("--json-progress", action="store_true", help="JSON lines on stdout (for the GUI)")
    t.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="singer identification and query-by-singer of a checkpoint",
                       description="The paper's evaluation (singer ID top-1/5 in six scenarios, "
                                   "query-by-singer R@k, Pr@k, mAP) beside two peers on the same songs: "
                                   "an MFCC mean and resemblyzer's real-speech encoder.")
    e.add_argument("--data", required=True, help="folder of songs labelled by singer")
    e.add_argument("--split", choices=["test", "val", "all"], default="test",
                   help="test / val: the checkpoint's test / validation singers (default test); "
                        "all: every singer of the folder")
    e.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    e.add_argument("--vocals", choices=["separated", "stems"], default=None, help="default: as trained")
    e.add_argument("--segments-per-song", type=int, default=None, help="default: as trained")
    e.add_argument("--cache", default=None, help="feature cache folder (default CACHE/features)")
    add_model_flags(e, separator_default=None, old_model_flag="encoders")
    e.set_defaults(func=run_evaluate)


def _lambdas(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give four numbers, e.g. 0.25,0.25,0.25,0.25") from None
    if len(vals) != 4 or any(v < 0 for v in vals) or not any(vals):
        raise argparse.ArgumentTypeError(f"{text!r}: give four non-negative numbers, not all 0")
    return (vals[0], vals[1], vals[2], vals[3])


class _HumanOutput:
    """Progress bar per epoch (tqdm on stderr) and one line per epoch."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar: Any = None

    def __call__(self, e: dict[str, Any]) -> None:
        kind = e["event"]
        if kind == "split":
            print(f"{e['singers']} singers, {e['songs']} songs: {e['train']} train / {e['val']} validation / "
                  f"{e['test']} test singers (seed {e['seed']}); {len(e['skipped'])} files skipped", file=sys.stderr)
        elif kind == "prepare":
            if self.bar is not None and self.bar.desc != e["stage"]:
                self._close()
            if self.bar is None:
                self.bar = self._tqdm(total=int(e["total"]), desc=e["stage"], unit=e.get("unit") or "song",
                                      file=sys.stderr)
            self.bar.n = int(e["done"])
            self.bar.refresh()
            if e["done"] >= e["total"]:
                self._close()
        elif kind == "start":
            arch = "GE2E heads" if e.get("arch") == "ge2e" else f"width {e['width']}"
            print(f"training {e['loss']} (lambdas {e['lambdas']}) {arch}, {e.get('sampling', 'real')} mixes"
                  + (f", teacher {e['teacher']}" if e.get("teacher") else "") + f" on {e['device']}: "
                  f"{e['train_segments']} segments of {e['train_singers']} singers, {e['parameters']} parameters",
                  file=sys.stderr)
        elif kind == "batch":
            if self.bar is None:
                self.bar = self._tqdm(total=e["batches"], desc=f"epoch {e['epoch']}", unit="batch", file=sys.stderr)
            self.bar.n = e["batch"]
            self.bar.set_postfix(loss=f"{e['loss']:.4f}")
            if e["batch"] >= e["batches"]:
                self._close()
        elif kind == "epoch":
            self._close()
            print(f"epoch {e['epoch']}: train {e['train_loss']:.4f}  val {e['val_loss']:.4f}  "
                  f"best {e['best_val_loss']:.4f} (epoch {e['best_epoch']}){'  *' if e['improved'] else ''}",
                  file=sys.stderr)
        elif kind == "done":
            self._close()
            if e["stopped"] == "interrupted":
                print(f"interrupted; state saved, continue with --resume. Best so far: {e['best_checkpoint']}",
                      file=sys.stderr)
            else:
                print(f"stopped ({e['stopped'].replace('_', ' ')}) after {e['epochs']} epochs; best checkpoint "
                      f"{e['best_checkpoint']} (validation loss {e['best_val_loss']:.4f}, epoch {e['best_epoch']})"
                      + (f"; evaluation {e['evaluation']}" if e["evaluation"] else ""), file=sys.stderr)
        elif kind in ("warning", "resume"):
            self._close()
            print(json.dumps(e), file=sys.stderr)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _json_emit(e: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(e) + "\n")
    sys.stdout.flush()


def _install_stop_handlers(cancel: CancelToken) -> None:
    """SIGTERM and the first Ctrl-C set the cancel token (the trainer then saves its state)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel.cancelled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.cancel()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from training.trainer import TrainConfig, train

    emit = _json_emit if args.json_progress else _HumanOutput()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        data=str(Path(args.data).expanduser().resolve()), out=str(Path(args.out).expanduser().resolve()),
        loss=args.loss, lambdas=args.lambdas, margin=args.margin, width=args.width, max_epochs=args.epochs,
        batches_per_epoch=args.batches_per_epoch, batch_size=args.batch_size, negatives=args.negatives,
        patience=args.patience, lr=args.lr, seed=args.seed, segments_per_song=args.segments_per_song,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, val_batches=args.val_batches,
        vocals=args.vocals, separator=args.separator, cache=args.cache, device=args.device,
        amp=not args.no_amp, evaluate=not args.no_eval, log_every=max(1, args.log_every),
        sampling=args.sampling, pairs=args.pairs, temperature=args.temperature, arch=args.arch,
        head_hidden=args.head_hidden, teacher=args.teacher,
        split_file=str(Path(args.split_file).resolve()) if args.split_file else None,
    )
    cancel = CancelToken()
    _install_stop_handlers(cancel)
    try:
        result = train(cfg, emit=emit, cancel=cancel, resume=args.resume)
    except Cancelled:
        # Stopped while the data were being prepared: the cached songs stay cached, no
        # training state exists yet (or the previous one is untouched).
        emit({"event": "done", "stopped": "interrupted", "resumable": (Path(cfg.out) / "state.pt").exists(),
              "best_checkpoint": None, "best_val_loss": None, "evaluation": None})
        return 130
    except CrossmixError as exc:
        if args.json_progress:
            _json_emit({"event": "error", "type": type(exc).__name__, "message": str(exc)})
        raise
    except Exception as exc:  # the GUI must always get a last line saying what happened
        if args.json_progress:
            _json_emit({"event": "error", "type": type(exc).__name__, "message": str(exc)})
        raise
    if result.stopped == "interrupted":
        return 130
    if result.evaluation is not None and not args.json_progress:
        from training.evaluate import format_table

        print(format_table(json.loads(Path(result.evaluation).read_text())))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from core.device import resolve_device
    from training.evaluate import evaluate_folder, format_table, write_report

    def progress(p: Progress) -> None:
        print(f"\r{p.stage}: {int(p.done)}/{int(p.total)} {p.unit}", end="", file=sys.stderr, flush=True)

    report = evaluate_folder(data=args.data, model=args.encoders, split=args.split, vocals=args.vocals,
                             separator=args.separator, cache=args.cache, segments_per_song=args.segments_per_song,
                             device=resolve_device(args.device), progress=progress)
    print(file=sys.stderr)
    print(format_table(report))
    if args.json:
        write_report(report, args.json)
    return 0
