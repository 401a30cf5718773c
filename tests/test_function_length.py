"""No function over 60 lines in core/ or gui/ without a stated reason (issue 11).

A function's length runs from its ``def`` line to its last line (docstring, comments and
blank lines included). A longer one passes only with a comment ``# long: <reason>`` in the
comment lines right above the ``def`` (above its decorators, if any) or on the first line of
its body (after the signature, or after the docstring).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("core", "gui")
MAX_LINES = 60
_REASON = re.compile(r"#\s*long:\s*\S.{9,}")  # a reason of ten characters or more

_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, _Function]]:
    """Every function and method, nested ones too, by qualified name (``Class.method``)."""
    out: list[tuple[str, _Function]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((prefix + node.name, node))
            out += _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            out += _functions(node, f"{prefix}{node.name}.")
        else:
            out += _functions(node, prefix)
    return out


def _has_reason(fn: _Function, lines: list[str]) -> bool:
    top = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
    body = fn.body
    first = body[1] if (len(body) > 1 and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)) else body[0]
    above = []  # the comment lines right above (1-based line numbers)
    n = top - 1
    while n >= 1 and lines[n - 1].lstrip().startswith("#"):
        above.append(n)
        n -= 1
    candidates = [*above, *range(fn.lineno, first.lineno + 1)]
    return any(1 <= n <= len(lines) and _REASON.search(lines[n - 1]) for n in candidates)


def long_functions(root: Path, folders: tuple[str, ...] = FOLDERS, *,
                   max_lines: int = MAX_LINES) -> list[tuple[str, str, int]]:
    """``(file, qualified name, lines)`` of each function over ``max_lines`` without a reason."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for name, fn in _functions(ast.parse(text)):
                length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
                if length > max_lines and not _has_reason(fn, lines):
                    found.append((path.relative_to(root).as_posix(), name, length))
    return found


def test_no_long_function_without_a_reason() -> None:
    long = [f"{f}: {name} ({n} lines)" for f, name, n in long_functions(ROOT)]
    assert not long, (f"functions over {MAX_LINES} lines: split them, or say why not with a "
                      "'# long: <reason>' comment above the def:\n" + "\n".join(long))


# ---------------------------------------------------------------------------------------------
# The checker, on files written into tmp_path


def _function(lines: int, *, above: str = "", first: str = "", docstring: bool = False,
              decorator: bool = False) -> str:
    """A module with one function of exactly ``lines`` lines."""
    head = [*([above] if above else []), *(["@staticmethod"] if decorator else []), "def f():"]
    body = [*(['    """Doc."""'] if docstring else []), *([f"    {first}"] if first else [])]
    body += ["    x = 1"] * (lines - 1 - len(body))
    return "\n".join([*head, *body]) + "\n"


def _check(tmp_path: Path, text: str) -> list[tuple[str, str, int]]:
    (tmp_path / "core").mkdir(exist_ok=True)
    (tmp_path / "core" / "mod.py").write_text(text)
    return long_functions(tmp_path)


def test_sixty_lines_pass_and_sixty_one_fail(tmp_path: Path) -> None:
    assert _check(tmp_path, _function(60)) == []
    assert _check(tmp_path, _function(61)) == [("core/mod.py", "f", 61)]


def test_methods_and_nested_functions_are_measured(tmp_path: Path) -> None:
    method = "class C:\n" + "".join(f"    {line}\n" for line in _function(70).splitlines())
    assert _check(tmp_path, method) == [("core/mod.py", "C.f", 70)]
    nested = "def outer():\n" + "".join(f"    {line}\n" for line in _function(62).splitlines())
    assert [n for _, n, _ in _check(tmp_path, nested)] == ["outer", "outer.f"]


@pytest.mark.parametrize("text", [
    _function(80, above="# long: one table of forty options, clearer in one place"),
    _function(80, above="# long: one table of forty options, clearer in one place", decorator=True),
    _function(80, above="# long: one table of forty options,\n# clearer in one place"),
    _function(80, first="# long: one table of forty options, clearer in one place"),
    _function(80, first="# long: one table of forty options, clearer in one place", docstring=True),
])
def test_a_stated_reason_passes(tmp_path: Path, text: str) -> None:
    assert _check(tmp_path, text) == []


@pytest.mark.parametrize("text", [
    _function(80, above="# long:"),  # no reason
    _function(80, above="# long: yes"),  # not a reason
    _function(80, above="# too long, but never mind"),
    "# long: one table of forty options, clearer in one place\n\n" + _function(80),  # not next to it
])
def test_no_real_reason_fails(tmp_path: Path, text: str) -> None:
    assert [n for _, n, _ in _check(tmp_path, text)] == ["f"]
