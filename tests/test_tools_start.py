"""Every benchmark and script starts: ``--help`` exits 0 in a fresh interpreter.

They are run by hand, not by the other tests, so an import they depend on can move without
anything failing (``bench/query_separation.py`` imported ``load_query_separator`` from where
it no longer lived, and nobody knew until it was next needed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("bench/*.py"), *ROOT.glob("scripts/*.py")])


@pytest.mark.parametrize("tool", TOOLS)
def test_the_tool_starts(tool: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, tool, "--help"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip(), "--help printed nothing"
