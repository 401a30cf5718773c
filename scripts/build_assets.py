"""Build the material that is generated rather than committed: the demo library.

Run by ``scripts/setup.sh`` after the Python packages are installed. Two steps, each
idempotent (a second run only checks, in a few seconds):

1. the demo songs, generated into ``core.paths.data_dir()/demo/songs`` (``training/demo.py``);
2. the default library (``core.paths.default_library_dir()``) with those songs indexed in full
   mode by the shipped encoders, so the app opens on a library ready to search.

``CROSSMIX_SKIP_DEMO=1`` skips both. A failure is reported and the set-up goes on: the app
works without the demo.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    if os.environ.get("CROSSMIX_SKIP_DEMO") == "1":
        print("build_assets: CROSSMIX_SKIP_DEMO=1, demo songs skipped.", file=sys.stderr)
        return 0
    from core.errors import CrossmixError
    from core.progress import Progress
    from training.demo import build_demo_songs

    def show(p: Progress) -> None:
        if p.done < p.total:
            print(f"\rbuild_assets: demo songs {int(p.done)}/{int(p.total)}   ", end="",
                  file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        rep = build_demo_songs(progress=show)
    except CrossmixError as exc:
        # The app works without the demo songs; say why they are missing and carry on.
        print(f"\nbuild_assets: the demo songs could not be built: {exc}", file=sys.stderr)
        return 0
    if rep.generated:
        print(f"\nbuild_assets: {rep.generated} demo songs generated in "
              f"{time.perf_counter() - t0:.0f} s -> {rep.songs_dir}", file=sys.stderr)
    return index_demo_library(rep.songs_dir)


def index_demo_library(songs_dir: Path) -> int:
    """Index the demo songs into the default library (full mode: every search space ready)."""
    from core.embedding.encoders import load_default_encoders
    from core.errors import CrossmixError
    from core.library.library import build_demo_library
    from core.paths import default_library_dir
    from core.progress import Progress
    from core.separation.separator import Separator

    def show(p: Progress) -> None:
        print(f"\rbuild_assets: indexing the demo library {int(p.done)}/{int(p.total)}   ", end="",
              file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        report = build_demo_library(songs_dir, default_library_dir(), separator=Separator.spleeter_2stems(),
                                    encoders=load_default_encoders(), mode="full", progress=show)
    except CrossmixError as exc:
        print(f"\nbuild_assets: the demo library could not be indexed: {exc}", file=sys.stderr)
        return 0
    if report.processed or report.failed:
        print(f"\nbuild_assets: demo library: {report.processed} songs indexed, {report.failed} failed, "
              f"in {time.perf_counter() - t0:.0f} s -> {default_library_dir()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
