"""Ship trained encoders: copy a checkpoint into assets/encoders/ and record measured quality.

    .venv/bin/python scripts/ship_encoders.py --checkpoint RUN/best.safetensors --name cross-ge2e \\
        --evaluation "CROSS-GE2E=test.json" [--peer resemblyzer-test.json]

- copies ``best.safetensors`` + ``best.json`` to ``assets/encoders/NAME.*`` (the JSON's sha256
  stays valid: the weights are copied byte for byte);
- writes ``assets/encoders/quality.json``: the checkpoint's evaluation (``crossmix evaluate
  --json`` on unseen singers) under its model id, and, with ``--peer``, the resemblyzer
  peer's evaluation under its model id with the alias ``resemblyzer``. The app and
  ``crossmix library status`` read it (:mod:`core.embedding.quality`).

Other entries of quality.json are kept (e.g. the previous shipped model's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="RUN/best.safetensors to ship (omit: quality only)")
    ap.add_argument("--name", default=None, help="asset name (assets/encoders/NAME.*)")
    ap.add_argument("--evaluation", action="append", default=[], metavar="NAME=JSON",
                    help="crossmix evaluate --json report of shipped encoders on unseen singers, with the "
                         "name the app shows for them (repeatable)")
    ap.add_argument("--peer", type=Path, default=None, help="crossmix evaluate --model resemblyzer --json report")
    args = ap.parse_args()
    from core.embedding.encoders import EncoderPair
    from core.paths import assets_dir

    enc_dir = assets_dir() / "encoders"
    if args.checkpoint is not None:
        if not args.name:
            ap.error("--name is needed with --checkpoint")
        pair = EncoderPair.load(args.checkpoint)
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(args.checkpoint.with_suffix(suffix), enc_dir / f"{args.name}{suffix}")
        shipped = EncoderPair.load(enc_dir / f"{args.name}.safetensors")
        assert shipped.model_id == pair.model_id
        print(f"shipped {args.checkpoint} -> {enc_dir / args.name}.* (model {pair.model_id[:12]})")
    qpath = enc_dir / "quality.json"
    doc = json.loads(qpath.read_text()) if qpath.is_file() else {}
    for spec in args.evaluation:
        name, _, path = spec.partition("=")
        ev = Path(path)
        report = json.loads(ev.read_text())
        doc[report["model"]] = {"name": name, "report": _slim(report)}
        print(f"quality of {report['model'][:12]} ({name}) from {ev}")
    if args.peer is not None:
        report = json.loads(args.peer.read_text())
        doc[report["model"]] = {"name": "resemblyzer", "alias": "resemblyzer", "report": _slim(report)}
        print(f"quality of the resemblyzer peer {report['model'][:12]} from {args.peer}")
    qpath.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return 0


def _slim(report: dict) -> dict:  # type: ignore[type-arg]
    """What quality needs: counts, protocol and the model's own figures (not the peers' or paths)."""
    keep = ("model", "n_singers", "n_songs", "n_queries", "chance_top1", "protocol", "singer_id", "query_by_singer")
    return {k: report[k] for k in keep if k in report}


if __name__ == "__main__":
    raise SystemExit(main())
