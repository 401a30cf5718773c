"""``crossmix train`` and ``crossmix evaluate``.

``crossmix train --json-progress`` writes one JSON object per line on stdout, each naming its
``event``: the dataclasses of :mod:`training.events` (``split``, ``prepare``, ``start``,
``resume``, ``batch``, ``epoch``, ``done``, ``warning``, and ``error`` before exit status 1),
which :func:`training.events.parse_event` reads back.

SIGTERM or Ctrl-C saves a resumable state (``OUT/state.pt``) and ends with a ``done`` event
whose ``stopped`` is ``"interrupted"`` (exit status 130); ``--resume`` continues.

The run's settings are a :class:`training.trainer.TrainConfig`: the defaults, then the
``--config FILE`` (:meth:`TrainConfig.save`), then the options given on the command line
(:func:`train_config`). ``--from-library`` trains on the library's songs, labelled by their
artist tags (:func:`training.sources.data_from_library`, as the app's Retrain tab does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.options import add_model_flags
from core.errors import Cancelled, TrainingError
from core.progress import CancelToken, Progress
from training.events import (
    BatchEvent,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    PrepareEvent,
    ResumeEvent,
    SplitEvent,
    StartEvent,
    TrainEvent,
    WarningEvent,
)
from training.losses import PRESETS

if TYPE_CHECKING:
    from training.trainer import TrainConfig

_EPILOG_TRAIN = """\
data: a folder of songs labelled by singer: a manifest.csv (header 'path,singer[,song][,vocals]',
paths relative to the folder) or the files' artist tags; or a manifest file of any name. The
data are never written. --from-library instead trains on the library's songs, labelled by their
artist tags (OUT/data/manifest.csv lists them). Songs are separated once (stem cache under the
Crossmix cache folder) and their log-mel segments cached (--cache, default CACHE/features).

--config FILE: the run's settings as a JSON object of TrainConfig fields (e.g. {"data": "songs",
"out": "run", "loss": "infonce", "max_epochs": 50}; relative paths are relative to the file).
Options given on the command line override the file's values; fields the file leaves out keep
their defaults (those shown here).

--json-progress prints one JSON object per line on stdout for programs (the GUI):
{"event": "split"|"prepare"|"start"|"batch"|"epoch"|"done"|"error"|"warning"|"resume", ...};
"done" carries "best_checkpoint" and "evaluation" (path of OUT/evaluation.json).
SIGTERM / Ctrl-C save OUT/state.pt; run again with --resume to continue.
"""

#: ``crossmix train`` options (argparse dest) that set a :class:`TrainConfig` field. Their
#: defaults are suppressed, so that only the options given override ``--config``.
CONFIG_FIELDS: dict[str, str] = {
    "data": "data", "out": "out", "loss": "loss", "lambdas": "lambdas", "margin": "margin",
    "width": "width", "epochs": "max_epochs", "batches_per_epoch": "batches_per_epoch",
    "batch_size": "batch_size", "negatives": "negatives", "patience": "patience", "lr": "lr",
    "seed": "seed", "segments_per_song": "segments_per_song", "val_fraction": "val_fraction",
    "test_fraction": "test_fraction", "val_batches": "val_batches", "vocals": "vocals",
    "separator": "separator", "cache": "cache", "device": "device", "no_amp": "amp",
    "no_eval": "evaluate", "log_every": "log_every", "sampling": "sampling", "pairs": "pairs",
    "temperature": "temperature", "arch": "arch", "head_hidden": "head_hidden",
    "teacher": "teacher", "split_file": "split_file",
}


def register(sub: Any) -> None:
    t = sub.add_parser("train", help="train the vocal/mix encoders on a folder of songs labelled by singer",
                       description="Train f_v and f_m with the triplet losses of Kim et al. 2021.",
                       epilog=_EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", default=None, metavar="FILE",
                   help="the run's settings (a JSON TrainConfig, as the app writes); options given "
                        "here override it")
    t.add_argument("--data", help="folder of songs labelled by singer, or a manifest file")
    t.add_argument("--from-library", action="store_true",
                   help="train on the library's songs (labelled by artist tags) instead of --data")
    t.add_argument("--library", type=Path, metavar="DIR", default=None,
                   help="--from-library: the library folder (default: the user's library)")
    t.add_argument("--out", help="output folder (checkpoints, state, split, evaluation); needed, "
                                 "here or in --config")
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
    for action in t._actions:
        if action.dest in CONFIG_FIELDS:
            action.default = argparse.SUPPRESS

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

    def __call__(self, e: TrainEvent) -> None:
        match e:
            case SplitEvent():
                _say(f"{e.singers} singers, {e.songs} songs: {e.train} train / {e.val} validation / "
                    f"{e.test} test singers (seed {e.seed}); {len(e.skipped)} files skipped")
            case PrepareEvent():
                self._prepare(e)
            case StartEvent():
                arch = "GE2E heads" if e.arch == "ge2e" else f"width {e.width}"
                _say(f"training {e.loss} (lambdas {list(e.lambdas)}) {arch}, {e.sampling} mixes"
                    + (f", teacher {e.teacher}" if e.teacher else "") + f" on {e.device}: "
                    f"{e.train_segments} segments of {e.train_singers} singers, {e.parameters} parameters")
            case BatchEvent():
                if self.bar is None:
                    self.bar = self._tqdm(total=e.batches, desc=f"epoch {e.epoch}", unit="batch", file=sys.stderr)
                self.bar.n = e.batch
                self.bar.set_postfix(loss=f"{e.loss:.4f}")
                if e.batch >= e.batches:
                    self._close()
            case EpochEvent():
                self._close()
                _say(f"epoch {e.epoch}: train {e.train_loss:.4f}  val {e.val_loss:.4f}  "
                    f"best {e.best_val_loss:.4f} (epoch {e.best_epoch}){'  *' if e.improved else ''}")
            case DoneEvent():
                self._close()
                _say(_done_line(e))
            case WarningEvent() | ResumeEvent() | ErrorEvent():
                self._close()
                _say(e.to_json())

    def _prepare(self, e: PrepareEvent) -> None:
        if self.bar is not None and self.bar.desc != e.stage:
            self._close()
        if self.bar is None:
            self.bar = self._tqdm(total=int(e.total), desc=e.stage, unit=e.unit or "song", file=sys.stderr)
        self.bar.n = int(e.done)
        self.bar.refresh()
        if e.done >= e.total:
            self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _done_line(e: DoneEvent) -> str:
    if e.stopped == "interrupted":
        return f"interrupted; state saved, continue with --resume. Best so far: {e.best_checkpoint}"
    loss = "–" if e.best_val_loss is None else f"{e.best_val_loss:.4f}"
    return (f"stopped ({e.stopped.replace('_', ' ')}) after {e.epochs} epochs; best checkpoint "
            f"{e.best_checkpoint} (validation loss {loss}, epoch {e.best_epoch})"
            + (f"; evaluation {e.evaluation}" if e.evaluation else ""))


def _json_emit(e: TrainEvent) -> None:
    sys.stdout.write(e.to_json() + "\n")
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


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: :class:`TrainConfig`'s defaults, then ``--config FILE``, then the
    options given on the command line (see :data:`CONFIG_FIELDS`).

    Raises
    ------
    TrainingError
        The file is unusable, or no data source or output folder is named.
    """
    from training.trainer import TrainConfig

    config = getattr(args, "config", None)
    base = TrainConfig.load(config) if config else TrainConfig(data="", out="")
    given: dict[str, Any] = {}
    for dest, name in CONFIG_FIELDS.items():
        if hasattr(args, dest):
            given[name] = _config_value(dest, getattr(args, dest))
    from_library = bool(getattr(args, "from_library", False))
    if from_library and "data" in given:
        raise TrainingError("--from-library and --data name two sources of songs; give one.")
    if getattr(args, "library", None) is not None and not from_library:
        raise TrainingError("--library goes with --from-library (the songs to train on are then the library's).")
    cfg = dataclasses.replace(base, **given)
    if not cfg.out:
        raise TrainingError("Name the output folder: --out DIR (or \"out\" in the --config file).")
    if not cfg.data and not from_library:
        raise TrainingError("Name the songs to train on: --data DIR, --from-library, or \"data\" in the "
                            "--config file.")
    return cfg


def _config_value(dest: str, value: Any) -> Any:
    """A command-line option's value as the :class:`TrainConfig` field takes it."""
    if dest in ("no_amp", "no_eval"):
        return not value
    if dest in ("data", "out"):
        return str(Path(value).expanduser().resolve())
    if dest == "split_file":
        return str(Path(value).resolve())
    if dest == "log_every":
        return max(1, int(value))
    return value


def _library_data(args: argparse.Namespace, cfg: TrainConfig) -> Path:
    """``--from-library``: the library's songs as ``OUT/data`` (kept as they are when ``OUT``
    holds a run already: it resumes on the songs it started with, or the trainer refuses it)."""
    from training.dataset import MANIFEST
    from training.sources import DATA_DIR, data_from_library, open_library

    out = Path(cfg.out)
    if (out / "state.pt").exists() and (out / DATA_DIR / MANIFEST).is_file():
        return out / DATA_DIR
    lib = open_library(args.library)
    try:
        return data_from_library(lib, out, labels=cfg.uses_labels)
    finally:
        lib.close()


def run_train(args: argparse.Namespace) -> int:
    import torch

    from training.trainer import train

    emit = _json_emit if args.json_progress else _HumanOutput()
    cancel = CancelToken()
    cfg: TrainConfig | None = None
    try:
        cfg = train_config(args)
        if args.from_library:
            cfg = dataclasses.replace(cfg, data=str(_library_data(args, cfg)))
        if args.threads:
            torch.set_num_threads(args.threads)
        _install_stop_handlers(cancel)
        result = train(cfg, emit=emit, cancel=cancel, resume=args.resume)
    except Cancelled:
        # Stopped while the data were being prepared: the cached songs stay cached, no
        # training state exists yet (or the previous one is untouched).
        resumable = cfg is not None and (Path(cfg.out) / "state.pt").exists()
        emit(DoneEvent(stopped="interrupted", resumable=resumable, best_checkpoint=None, best_val_loss=None))
        return 130
    except Exception as exc:  # the GUI must always get a last line saying what happened
        if args.json_progress:
            _json_emit(ErrorEvent(type=type(exc).__name__, message=str(exc)))
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
