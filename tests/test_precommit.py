"""The pre-commit config: local hooks (nothing downloaded at commit time) running ruff and mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".pre-commit-config.yaml"


def _hooks() -> dict[str, dict[str, object]]:
    config = yaml.safe_load(CONFIG.read_text())
    assert [r["repo"] for r in config["repos"]] == ["local"] * len(config["repos"])
    return {h["id"]: h for r in config["repos"] for h in r["hooks"]}


def test_the_hooks_run_ruff_and_mypy_from_the_venv() -> None:
    hooks = _hooks()
    assert {"ruff", "mypy"} <= set(hooks)
    for hook in hooks.values():
        assert hook["language"] == "system"  # pre-commit installs nothing for it
        assert str(hook["entry"]).startswith(".venv/bin/")
    assert str(hooks["ruff"]["entry"]).split()[:2] == [".venv/bin/ruff", "check"]
    assert str(hooks["mypy"]["entry"]).split()[0] == ".venv/bin/mypy"
    assert hooks["mypy"]["pass_filenames"] is False  # pyproject.toml's files, as the tests run it


def test_pre_commit_accepts_the_config() -> None:
    res = subprocess.run([sys.executable, "-m", "pre_commit", "validate-config", str(CONFIG)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
