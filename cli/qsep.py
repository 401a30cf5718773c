"""``crossmix multitracks``, ``crossmix train-qsep`` and ``crossmix calibrate-qsep``: data,
training and calibration of the query-based separator (Lee, Choi & Lee)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.options import add_model_flags
from core.progress import Progress


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "multitracks",
        help="generate multitrack songs (one stem per part) for the query-based separator",
        description=(
            "Generate deterministic multitrack songs for query-based separation: the vocals of a "
            "'crossmix corpus' folder with drums, bass, chords, pad and lead written for each song "
            "and rendered one part at a time by a fresh fluidsynth, from many General MIDI programs "
            "and drum kits; some programs are held out for the 'zeroshot' split. 16 kHz mono. "
            "Songs already there are kept (an interrupted run resumes)."),
    )
    p.add_argument("--vocals", type=Path, required=True, help="a 'crossmix corpus' folder (its vocals.flac)")
    p.add_argument("--split", choices=("train", "val", "test", "zeroshot"), required=True)
    p.add_argument("--count", type=int, required=True, help="songs to generate in the split")
    p.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=data_handler)

    t = subparsers.add_parser(
        "train-qsep",
        help="train the query-based separator on multitracks from 'crossmix multitracks'",
        description=(
            "Train the audio-query-based separator (Query-net + conditioned U-Net) on the 'train' "
            "split, checkpointing every few minutes and keeping the checkpoint that is best on the "
            "'val' split (never the test splits). --resume continues an interrupted run."),
    )
    t.add_argument("--data", type=Path, required=True, help="folder made by 'crossmix multitracks'")
    t.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log)")
    t.add_argument("--minutes", type=float, default=55.0, help="wall-time budget (default 55)")
    t.add_argument("--batch-size", type=int, default=12)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--width", type=int, default=12, help="channels of the first U-Net layer (default 12)")
    t.add_argument("--z-dim", type=int, default=16)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-fft", type=int, default=512, help="STFT size at 16 kHz (default 512)")
    t.add_argument("--hop", type=int, default=256, help="STFT hop at 16 kHz (default 256)")
    t.add_argument("--segment-frames", type=int, default=64,
                   help="frames of a training excerpt, a multiple of 32 (default 64)")
    t.add_argument("--query-frames", type=int, default=128, help="frames of a training query (default 128)")
    t.add_argument("--full-mix-prob", type=float, default=0.0, metavar="P",
                   help="share of training mixtures that are the whole song, as the app separates (default 0)")
    t.add_argument("--class-balanced", action="store_true",
                   help="draw each training target's class first, so drums and bass are targets as often "
                        "as all 'other' stems together (default: every stem alike)")
    t.add_argument("--wave-loss", type=float, default=0.0, metavar="W",
                   help="add the separated waveform's negative SDR (dB) to the losses with weight W, "
                        "e.g. 0.01 (default 0: the paper's three losses only)")
    t.add_argument("--init", type=Path, default=None, metavar="MODEL",
                   help="start from these weights (a .safetensors file, any STFT) instead of random ones")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    add_model_flags(t, separator=False, encoders=False)
    t.add_argument("--checkpoint-minutes", type=float, default=4.0)
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.set_defaults(func=train_handler)

    c = subparsers.add_parser(
        "calibrate-qsep",
        help="set a trained query separator's class latents and mask power on the 'val' split",
        description=(
            "Recompute a trained separator's class-mean latents from more training queries and choose "
            "the power its masks are raised to at inference, by the median SDR on the 'val' split's "
            "whole songs (GT query and class mean, drums, bass and vocals; never a test split). "
            "Writes a new model; the figures of every candidate are kept in its config."),
    )
    c.add_argument("--model", type=Path, required=True, help="a trained model (.safetensors, with its .json)")
    c.add_argument("--data", type=Path, required=True, help="folder made by 'crossmix multitracks'")
    c.add_argument("-o", "--out", type=Path, required=True, help="the calibrated model (NAME.safetensors)")
    c.add_argument("--powers", default="1,1.5,2", metavar="P,...",
                   help="mask powers to try (default 1,1.5,2)")
    c.add_argument("--class-queries", type=int, default=480, metavar="N",
                   help="training queries per class for the class-mean latents (default 480)")
    c.add_argument("--songs", type=int, default=None, metavar="N", help="use the first N validation songs")
    c.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    c.set_defaults(func=calibrate_handler)


def data_handler(args: argparse.Namespace) -> int:
    from training.aqss_data import generate_multitracks

    def show(p: Progress) -> None:
        eta = f", about {p.eta_s / 60:.1f} min left" if p.eta_s is not None else ""
        print(f"\r{int(p.done)}/{int(p.total)} songs{eta}   ", end="", file=sys.stderr, flush=True)

    r = generate_multitracks(vocals_dir=args.vocals, out_dir=args.out, seed=args.seed, split=args.split,
                             count=args.count, progress=show)
    print(file=sys.stderr)
    print(f"{r.written} songs generated, {r.skipped} already there, in {r.elapsed_s:.1f} s -> "
          f"{Path(args.out) / args.split}")
    return 0


def train_handler(args: argparse.Namespace) -> int:
    from training.aqss_train import TrainConfig, train

    cfg = TrainConfig(batch_size=args.batch_size, lr=args.lr, width=args.width, z_dim=args.z_dim,
                      seed=args.seed, minutes=args.minutes, checkpoint_minutes=args.checkpoint_minutes,
                      n_fft=args.n_fft, hop=args.hop, segment_frames=args.segment_frames,
                      query_frames=args.query_frames, full_mix_prob=args.full_mix_prob,
                      class_balanced=args.class_balanced, wave_weight=args.wave_loss,
                      init=str(args.init) if args.init else "")
    result = train(data_dir=args.data, out_dir=args.out, config=cfg, resume=args.resume,
                   threads=args.threads, device_name=args.device,
                   emit=lambda event: print(event.to_json(), flush=True))
    print(f"best validation SI-SDR improvement {result['best_val_sisdri']:.2f} dB at step "
          f"{result['best_step']} -> {result['best_path']}")
    return 0


def calibrate_handler(args: argparse.Namespace) -> int:
    import torch

    from core.errors import TrainingError
    from training.aqss_eval import calibrate

    try:
        powers = [float(x) for x in args.powers.split(",") if x.strip()]
    except ValueError:
        raise TrainingError(f"--powers takes numbers separated by commas, e.g. 1,1.5,2 (not {args.powers!r}).") from None
    torch.set_num_threads(max(1, args.threads))
    cal = calibrate(args.model, args.data, args.out, powers=powers, class_queries=args.class_queries,
                    songs=args.songs, log=lambda m: print(m, flush=True))
    print(f"mask power {cal.mask_power:g}, class latents from {cal.class_queries} queries a class -> {cal.path}")
    return 0
