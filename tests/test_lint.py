"""The engine stays headless: ruff's banned-import rule keeps Qt out of core/ and training/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> list[str]:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.skip("ruff not installed")
    return [exe]


def test_ruff_passes_on_the_project() -> None:
    res = subprocess.run([*_ruff(), "check", "core", "cli", "training", "gui", "tests", "bench"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_qt_import_in_core_is_rejected(tmp_path: Path) -> None:
    bad = ROOT / "core" / "_lint_probe_tmp.py"
    bad.write_text("import PySide6\n")
    try:
        res = subprocess.run([*_ruff(), "check", "--select", "TID251", str(bad)],
                             cwd=ROOT, capture_output=True, text=True)
    finally:
        bad.unlink()
    assert res.returncode != 0
    assert "headless" in res.stdout
