"""The ``crossmix`` parser: the lazy command table matches the modules, and ``--help`` stays light."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cli import COMMAND_MODULES, COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return [(c.dest, c.help) for c in a._choices_actions]
    return []


def test_command_table_matches_what_the_modules_register() -> None:
    real = _subcommands(build_parser(full=True))
    assert real == [(name, h) for name, (_m, h) in COMMANDS.items()]
    assert {m for m, _h in COMMANDS.values()} == set(COMMAND_MODULES)


def test_placeholders_keep_the_order_and_help() -> None:
    lazy = _subcommands(build_parser())
    assert lazy == [(name, h) for name, (_m, h) in COMMANDS.items()]
    # One real command among placeholders: same listing.
    assert _subcommands(build_parser("separate")) == lazy


def test_chosen_command_parses_with_its_real_options(tmp_path: Path) -> None:
    args = build_parser("separate").parse_args(["separate", "a.wav", "-o", str(tmp_path)])
    assert callable(args.func) and args.output == tmp_path


def _modules_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(' '.join(m for m in ('torch', 'training', 'librosa', 'PySide6') "
            "if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stderr.strip().split())


def test_help_imports_neither_torch_nor_training() -> None:
    assert _modules_after(["--help"]) == set()


def test_separate_help_does_not_import_training() -> None:
    assert "training" not in _modules_after(["separate", "--help"])
