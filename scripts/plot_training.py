"""Plot training curves from `crossmix train --json-progress` logs (one PNG, one panel a run).

    .venv/bin/python scripts/plot_training.py RUN.jsonl [RUN.jsonl ...] -o docs/training-curves.png

Each log's batch losses (thin) and per-epoch train / validation losses (markers) are drawn;
the panel title is the log's file name without extension (e.g. cross-sp).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path: Path) -> tuple[list[tuple[float, float]], list[dict[str, float]], int]:
    batches: list[tuple[float, float]] = []
    epochs: list[dict[str, float]] = []
    per_epoch = 1
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("event") == "batch":
            per_epoch = int(ev["batches"])
            batches.append((ev["epoch"] + ev["batch"] / per_epoch, ev["loss"]))
        elif ev.get("event") == "epoch":
            epochs.append({"epoch": ev["epoch"] + 1.0, "train": ev["train_loss"], "val": ev["val_loss"]})
    return batches, epochs, per_epoch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    fig, axes = plt.subplots(1, len(args.logs), figsize=(4.6 * len(args.logs), 3.6), sharey=True, squeeze=False)
    for ax, log in zip(axes[0], args.logs, strict=True):
        batches, epochs, per_epoch = read_log(log)
        if batches:
            ax.plot([b[0] for b in batches], [b[1] for b in batches], lw=0.8, alpha=0.45, label="train (batches)")
        if epochs:
            ax.plot([e["epoch"] for e in epochs], [e["train"] for e in epochs], "o-", label="train (epoch mean)")
            ax.plot([e["epoch"] for e in epochs], [e["val"] for e in epochs], "s-", label="validation")
        ax.set_title(f"{log.stem} ({per_epoch} batches / epoch)")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss (equation 4, weighted)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
