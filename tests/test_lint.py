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
    """The ban as configured: checked on a copy (pyproject.toml and a probe file in tmp_path),
    never by writing into the project's own core/."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for folder in ("core", "training", "gui"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "probe.py").write_text("import PySide6\n")

    def check(path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_ruff(), "check", "--no-cache", "--select", "TID251", path],
                              cwd=tmp_path, capture_output=True, text=True)

    for banned in ("core/probe.py", "training/probe.py"):
        res = check(banned)
        assert res.returncode != 0, res.stdout + res.stderr
        assert "headless" in res.stdout and banned in res.stdout
    res = check("gui/probe.py")  # Qt belongs in gui/
    assert res.returncode == 0, res.stdout + res.stderr
