"""Build the material that is generated rather than committed: the demo songs.

Run by ``scripts/setup.sh`` after the Python packages are installed. Idempotent: when the demo
songs are there it only checks them (a second or so). ``CROSSMIX_SKIP_DEMO=1`` skips it.
The songs go to ``core.paths.data_dir()/demo/songs`` (see ``training/demo.py``); indexing them
into a library is the library's job (``core.library.build_demo_library``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
