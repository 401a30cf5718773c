"""Format `crossmix evaluate --json` files of several models as the tables of docs/results.md.

    .venv/bin/python scripts/results_markdown.py MIXED=a.json CROSS=b.json CROSS-SP=c.json

Prints two Markdown tables: query-by-singer in the layout of the paper's Table 1 (with the
MFCC-mean baseline as the floor), and singer-identification top-1 / top-5 in the six scenarios.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

QBS = ("R@5", "R@10", "Pr@5", "Pr@10", "mAP")
SPACES = ("M", "V", "[M+V]", "[M,V]")
SCENARIOS = ("M->M", "V->V", "M->V", "V->M", "[M+V]", "[M,V]")


def main(argv: list[str]) -> int:
    runs = []
    for arg in argv:
        name, _, path = arg.partition("=")
        runs.append((name, json.loads(Path(path).read_text())))
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    first = runs[0][1]
    print(f"{first['n_singers']} test singers, {first['n_songs']} songs, {first['n_queries']} singer-ID "
          f"queries (chance top-1 {first['chance_top1']:.3f}, top-5 {min(1.0, 5 * first['chance_top1']):.3f}).\n")
    print("| model | space | " + " | ".join(QBS) + " |")
    print("|---|---|" + "---|" * len(QBS))
    base = first["baseline_mfcc"]["query_by_singer"]
    print("| MFCC mean | - | " + " | ".join(f"{base[m]:.4f}" if m in base else "-" for m in QBS) + " |")
    for name, d in runs:
        for sp in SPACES:
            row = d["query_by_singer"][sp]
            print(f"| {name} | {sp} | " + " | ".join(f"{row[m]:.4f}" for m in QBS) + " |")
    print()
    print("| scenario | " + " | ".join(f"{n} top-1 | {n} top-5" for n, _ in runs) + " |")
    print("|---|" + "---|---|" * len(runs))
    for sc in SCENARIOS:
        cells = []
        for _, d in runs:
            r = d["singer_id"][sc]
            cells += [f"{r['top1']:.3f}", f"{r['top5']:.3f}"]
        print(f"| {sc} | " + " | ".join(cells) + " |")
    b = first["baseline_mfcc"]["singer_id"]
    print("| MFCC mean | " + " | ".join([f"{b['top1']:.3f}", f"{b['top5']:.3f}"] * len(runs)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
