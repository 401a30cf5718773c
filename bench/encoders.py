"""Encoder speed: segments per second for inference and training, by width and device.

    .venv/bin/python bench/encoders.py [--widths 1,0.5,0.25,0.125,0.0625] [--threads 1,2]
                                       [--device cpu|cuda|all] [--json FILE]

*Inference*: one encoder's forward pass on batches of 3-s log-mel segments (eval mode, no
grad). *Training*: one encoder's forward + backward + SGD step on a batch (train mode). A
CROSS-SP batch of the paper (25 triplets x (anchor, positive, 4 negatives)) passes 150
segments through each of the two encoders, i.e. 300 segment passes, so
``s/batch = 300 / training rate`` and an epoch is 1200 batches. Also the front end (log-mel
of a 3-minute song). Medians of a few repeats after a warm-up.

*Objectives* (``--objectives``): a whole training step of the real trainer (sampling,
artificial mixtures, every forward, the loss, backward, SGD) for each objective x sampling x
architecture, on a toy corpus; the rate is in *training segments*: pool segments (each a
mix/vocal pair) a batch draws, ``B x (2 + negatives)`` for the triplet losses and ``2B`` for
NT-Xent.

    .venv/bin/python bench/encoders.py --objectives [--threads 1] [--width 0.25]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.embedding.encoders import EncoderPair  # noqa: E402
from core.embedding.features import N_MELS, SEGMENT_FRAMES, SR_FEATURES, log_mel  # noqa: E402

PAPER_SEGMENT_PASSES = 25 * 6 * 2
PAPER_BATCHES_PER_EPOCH = 1200


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, dev: torch.device, *, reps: int, min_s: float = 0.0) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall seconds and median process CPU seconds of one call (after a warm-up).

    On a shared machine the CPU time is the steadier figure: wall time also counts the
    time other processes held the cores.
    """
    fn()
    _sync(dev)
    times, cpu = [], []
    t_start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - t_start < min_s:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if len(times) >= 50:
            break
    return statistics.median(times), statistics.median(cpu)


def bench_width(width: float, dev: torch.device, *, batch_infer: int, batch_train: int, reps: int,
                amp: bool) -> dict[str, float]:
    pair = EncoderPair.create(width=width).to(dev)
    net = pair.f_m
    x_inf = torch.randn(batch_infer, N_MELS, SEGMENT_FRAMES, device=dev)
    x_tr = torch.randn(batch_train, N_MELS, SEGMENT_FRAMES, device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    use_amp = amp and dev.type == "cuda"

    def infer() -> None:
        net.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            net(x_inf)

    def train_step() -> None:
        net.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            out = net(x_tr)
        loss = out.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_inf, c_inf = _time(infer, dev, reps=reps, min_s=1.0 if dev.type == "cuda" else 0.0)
    t_tr, c_tr = _time(train_step, dev, reps=reps, min_s=1.0 if dev.type == "cuda" else 0.0)
    inf_rate = batch_infer / t_inf
    tr_rate = batch_train / t_tr
    return {
        "width": width,
        "parameters_pair": sum(p.numel() for p in pair.parameters()),
        "infer_seg_per_s": inf_rate,
        "train_seg_per_s": tr_rate,
        "infer_seg_per_cpu_s": batch_infer / max(c_inf, 1e-9),
        "train_seg_per_cpu_s": batch_train / max(c_tr, 1e-9),
        "paper_batch_s": PAPER_SEGMENT_PASSES / tr_rate,
        "paper_epoch_h": PAPER_SEGMENT_PASSES * PAPER_BATCHES_PER_EPOCH / tr_rate / 3600,
    }


def bench_front_end(dev: torch.device, reps: int) -> float:
    """Seconds of audio turned into log-mel per second of compute."""
    x = torch.randn(SR_FEATURES * 180, device=dev) * 0.1
    t, _ = _time(lambda: log_mel(x), dev, reps=reps)
    return 180.0 / t


def _train_step(model: EncoderPair, prep: object, cfg: object, weights: object, opt: torch.optim.Optimizer,
                dev: torch.device) -> object:
    import numpy as np

    from training.trainer import batch_loss

    k = [0]

    def step() -> None:
        model.train()
        loss_t, _ = batch_loss(model, prep.train, np.random.default_rng(k[0]), cfg, weights, dev,  # type: ignore[attr-defined,arg-type]
                               cache=prep.train_ge2e)  # type: ignore[attr-defined]
        k[0] += 1
        opt.zero_grad(set_to_none=True)
        loss_t.backward()  # type: ignore[no-untyped-call]
        opt.step()

    return step


def bench_objectives(*, width: float, threads: int, steps: int = 6) -> list[dict[str, object]]:
    """Training segments per second of each objective x sampling (x GE2E heads), one thread count."""
    import tempfile

    from training.toy import make_toy_corpus
    from training.trainer import TrainConfig, prepare

    torch.set_num_threads(threads)
    dev = torch.device("cpu")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="crossmix-bench-") as tmp:
        data = make_toy_corpus(Path(tmp) / "toy", singers=8, songs=3, seconds=10.0, seed=1)
        combos = [("cnn", loss, sampling, 0.0) for loss in ("cross-sp", "infonce") for sampling in ("real", "artificial")]
        combos += [("cnn", "infonce", "both", 1.0), ("ge2e", "infonce", "real", 0.0), ("ge2e", "infonce", "both", 0.0),
                   ("ge2e", "cross-sp", "both", 0.0)]
        preps: dict[str, object] = {}
        for arch, loss, sampling, teacher in combos:
            bs = 25 if loss != "infonce" else 64
            cfg = TrainConfig(data=str(data), out=str(Path(tmp) / "out"), loss=loss, sampling=sampling, arch=arch,
                              teacher=teacher, width=width, batch_size=bs, negatives=4, segments_per_song=4,
                              val_fraction=0.0, test_fraction=0.0, vocals="stems", cache=str(Path(tmp) / "cache"),
                              device="cpu", evaluate=False)
            key = f"{arch}-{teacher > 0}"
            if key not in preps:
                preps[key] = prepare(cfg, emit=lambda e: None, device=dev)
            prep = preps[key]
            model = (EncoderPair.ge2e_heads(hidden=512) if arch == "ge2e" else EncoderPair.create(width=width))
            opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.01, momentum=0.9)
            weights = cfg.weights()

            t, c = _time(_train_step(model, prep, cfg, weights, opt, dev), dev, reps=steps)
            segs = bs * (2 + cfg.negatives) if loss != "infonce" else 2 * bs
            name = f"{arch} {loss} {sampling}" + (" + teacher" if teacher else "")
            rows.append({"objective": name, "threads": threads, "batch": bs, "segments_per_batch": segs,
                         "s_per_batch": t, "train_seg_per_s": segs / t, "train_seg_per_cpu_s": segs / max(c, 1e-9)})
            print(f"{name:<32} {segs / t:8.1f} training seg/s  ({t:.3f} s per batch of {segs})", file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="1,0.5,0.25,0.125,0.0625")
    ap.add_argument("--threads", default="1,2", help="CPU thread counts to measure")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-amp", action="store_true", help="CUDA: float32 instead of bfloat16 autocast")
    ap.add_argument("--json", default=None)
    ap.add_argument("--objectives", action="store_true",
                    help="training segments per second of each objective x sampling (CPU), then stop")
    ap.add_argument("--width", type=float, default=0.25, help="--objectives: CNN width (0.25)")
    args = ap.parse_args()
    if args.objectives:
        obj_rows: list[dict[str, object]] = []
        for t in (int(x) for x in args.threads.split(",")):
            obj_rows += bench_objectives(width=args.width, threads=t)
        print("| objective | CPU threads | batch | training segments / batch | s / batch | training seg/s | seg/CPU-s |")
        print("|---|---|---|---|---|---|---|")
        for r in obj_rows:
            print(f"| {r['objective']} | {r['threads']} | {r['batch']} | {r['segments_per_batch']} | "
                  f"{float(r['s_per_batch']):.3f} | {float(r['train_seg_per_s']):.1f} | {float(r['train_seg_per_cpu_s']):.1f} |")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": platform.platform(), "rows": obj_rows}, indent=2))
        return 0
    widths = [float(w) for w in args.widths.split(",")]
    rows = []
    runs: list[tuple[torch.device, int | None]] = []
    if args.device in ("cpu", "all"):
        runs += [(torch.device("cpu"), int(t)) for t in args.threads.split(",")]
    if args.device in ("cuda", "all"):
        if torch.cuda.is_available():
            runs.append((torch.device("cuda"), None))
        else:
            print("no CUDA device: skipped", file=sys.stderr)
    for dev, threads in runs:
        if threads is not None:
            torch.set_num_threads(threads)
        label = f"cpu x{threads}" if threads else torch.cuda.get_device_name(dev)
        fe = bench_front_end(dev, args.reps)
        print(f"{label}: front end {fe:.0f} s of audio per s", file=sys.stderr)
        for w in widths:
            big = w >= 0.5 and dev.type == "cpu"
            r = bench_width(w, dev, batch_infer=16 if big else 32, batch_train=16 if big else 32,
                            reps=2 if big else args.reps, amp=not args.no_amp)
            r.update({"device": label, "front_end_audio_s_per_s": fe})
            rows.append(r)
            print(f"{label:>12} width {w:<6} infer {r['infer_seg_per_s']:9.1f} seg/s  train "
                  f"{r['train_seg_per_s']:8.1f} seg/s  paper batch {r['paper_batch_s']:7.2f} s  "
                  f"paper epoch {r['paper_epoch_h']:6.2f} h", file=sys.stderr)
    print("| device | width | params (pair) | inference seg/s | training seg/s | inference seg/CPU-s | "
          "training seg/CPU-s | s per paper batch | h per paper epoch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['width']:g} | {r['parameters_pair'] / 1e6:.2f} M | {r['infer_seg_per_s']:.1f} | "
              f"{r['train_seg_per_s']:.1f} | {r['infer_seg_per_cpu_s']:.1f} | {r['train_seg_per_cpu_s']:.1f} | "
              f"{r['paper_batch_s']:.2f} | {r['paper_epoch_h']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
