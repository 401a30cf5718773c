"""Format `crossmix evaluate --json` files of several models as the tables of docs/results.md.

    .venv/bin/python scripts/results_markdown.py MIXED=a.json CROSS=b.json CROSS-SP=c.json ...

All files must be evaluations of the same songs. Prints Markdown tables, one row per model,
with the two peers every report carries (the MFCC mean and resemblyzer's real-speech encoder)
as the first rows: singer identification top-1 (top-5) in the six scenarios, and
query-by-singer mAP (R@5) in the four spaces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SPACES = ("M", "V", "[M+V]", "[M,V]")
SCENARIOS = ("M->M", "V->V", "M->V", "V->M", "[M+V]", "[M,V]")


def _rows(runs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, singer_id, query_by_singer) per row: the peers of the first report, then the models."""
    first = runs[0][1]
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    peers = first.get("baselines", {})
    if "mfcc" in peers:
        out.append(("MFCC mean (floor)", peers["mfcc"]["singer_id"], peers["mfcc"]["query_by_singer"]))
    elif "baseline_mfcc" in first:
        b = first["baseline_mfcc"]
        out.append(("MFCC mean (floor)", {"M->M": b["singer_id"]}, {"M": b["query_by_singer"]}))
    if "resemblyzer" in peers:
        out.append(("resemblyzer (real-speech peer)", peers["resemblyzer"]["singer_id"],
                    peers["resemblyzer"]["query_by_singer"]))
    for name, d in runs:
        if d.get("n_songs") != first.get("n_songs") or d.get("n_singers") != first.get("n_singers"):
            raise SystemExit(f"{name}: evaluated on other songs than {runs[0][0]}; the tables need the same songs")
        out.append((name, d["singer_id"], d["query_by_singer"]))
    return out


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    runs = []
    for arg in argv:
        name, _, path = arg.partition("=")
        runs.append((name, json.loads(Path(path).read_text())))
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    first = runs[0][1]
    print(f"{first['n_singers']} singers, {first['n_songs']} songs, {first['n_queries']} singer-ID queries "
          f"(chance top-1 {first['chance_top1']:.3f}, top-5 {min(1.0, 5 * first['chance_top1']):.3f}); "
          f"{first.get('protocol', '')}.\n")
    rows = _rows(runs)
    print("Singer identification, top-1 (top-5):\n")
    print("| model | " + " | ".join(SCENARIOS) + " |")
    print("|---|" + "---|" * len(SCENARIOS))
    for name, sid, _ in rows:
        cells = [f"{sid[s]['top1']:.3f} ({sid[s]['top5']:.2f})" if s in sid else "-" for s in SCENARIOS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nQuery-by-singer, mAP (R@5):\n")
    print("| model | " + " | ".join(SPACES) + " |")
    print("|---|" + "---|" * len(SPACES))
    for name, _, qbs in rows:
        cells = [f"{qbs[s]['mAP']:.3f} ({qbs[s]['R@5']:.2f})" if s in qbs else "-" for s in SPACES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
