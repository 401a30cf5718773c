"""The packages' layers and the import graph, read from the source with ``ast``.

Layers (issue 11): ``core/`` is the engine and imports only ``core`` and third-party
packages; ``training/`` may use ``core`` but never ``cli`` or ``gui``; ``gui/`` never imports
``cli``; ``cli/`` sits on top and may import anything.

An import is any of:

- ``import a.b`` and ``from a.b import c`` (relative ones resolved), at module level, inside
  functions or classes, and under ``if TYPE_CHECKING:``;
- the string argument of ``importlib.import_module("a.b")``, ``__import__("a.b")`` and
  ``importlib.util.find_spec("a.b")`` (which imports the parent packages);
- the module names in the command tables ``COMMAND_MODULES`` / ``COMMANDS`` (``cli/__init__.py``
  imports the module of the command being run by name).

ruff's banned-import rule (``pyproject.toml``) sees only the first kind; this test sees all.

The second half checks that first-party modules import no loop at run time (see
:func:`runtime_graph`).
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "training", "gui", "cli")
#: What each package must never import (``cli`` may import anything).
FORBIDDEN: dict[str, frozenset[str]] = {
    "core": frozenset({"cli", "training", "gui"}),
    "training": frozenset({"cli", "gui"}),
    "gui": frozenset({"cli"}),
    "cli": frozenset(),
}
#: Module-level tables whose strings are module names imported by name.
IMPORT_TABLES = frozenset({"COMMAND_MODULES", "COMMANDS"})
#: Calls whose first (string) argument is a module that they import.
DYNAMIC_IMPORTS = frozenset({"import_module", "__import__", "find_spec"})
_MODULE_NAME = re.compile(r"^(" + "|".join(PACKAGES) + r")(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the first-party module imported (or the top-level name of a third-party one)
    path: Path
    line: int
    how: str  # "import", "from", "import_module", "__import__", "find_spec", "COMMANDS", ...
    type_only: bool  # under ``if TYPE_CHECKING:``: never runs

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path) -> dict[str, Path]:
    """Every first-party module under ``root``: dotted name -> file."""
    return {module_name(p, root): p
            for pkg in PACKAGES if (root / pkg).is_dir()
            for p in sorted((root / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """``lazy_loader.attach(__name__, submod_attrs={"sub": ["Name", ...]})`` -> {Name: sub}."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "attach"):
            continue
        for kw in node.keywords:
            if kw.arg == "submod_attrs" and isinstance(kw.value, ast.Dict):
                for key, value in zip(kw.value.keys, kw.value.values, strict=True):
                    if isinstance(key, ast.Constant) and isinstance(value, (ast.List, ast.Tuple)):
                        for elt in value.elts:
                            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                                names[elt.value] = str(key.value)
    return names


_Found = tuple[str, str | None, int, str, bool]  # (module, name, line, how, type_only)


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[_Found] = []
        self._type_only = 0

    def _add(self, module: str, name: str | None, node: ast.AST, how: str) -> None:
        self.found.append((module, name, getattr(node, "lineno", 0), how, self._type_only > 0))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_only += 1
            for child in node.body:
                self.visit(child)
            self._type_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, None, node, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            self._add(base, None if alias.name == "*" else alias.name, node, "from")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else (
            func.id if isinstance(func, ast.Name) else None)
        if name in DYNAMIC_IMPORTS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value:
                self._add(arg.value, None, node, name)
        self.generic_visit(node)

    def visit_Module(self, node: ast.Module) -> None:
        for stmt in node.body:
            targets: list[ast.expr] = (stmt.targets if isinstance(stmt, ast.Assign) else
                                       [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
            table = next((t.id for t in targets
                          if isinstance(t, ast.Name) and t.id in IMPORT_TABLES), None)
            value = getattr(stmt, "value", None)
            if table and value is not None:
                for sub in ast.walk(value):
                    if (isinstance(sub, ast.Constant) and isinstance(sub.value, str)
                            and _MODULE_NAME.match(sub.value)):
                        self._add(sub.value, None, sub, table)
        self.generic_visit(node)


@functools.cache
def _read(text: str, module: str, is_package: bool) -> tuple[dict[str, str], list[_Found]]:
    """A module's lazy re-exports and imports; cached by content, so copies parse once."""
    tree = ast.parse(text)
    visitor = _Visitor(module, is_package)
    visitor.visit(tree)
    return (_lazy_exports(tree) if is_package else {}), visitor.found


def scan_imports(root: Path) -> list[Import]:
    """Every import of every first-party module under ``root``."""
    files = source_files(root)
    read = {name: _read(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
            for name, path in files.items()}
    lazy = {name: exports for name, (exports, _) in read.items()}

    def resolve(module: str, name: str | None) -> str:
        if name is not None:
            if f"{module}.{name}" in files:
                return f"{module}.{name}"
            sub = lazy.get(module, {}).get(name)
            if sub is not None and f"{module}.{sub}" in files:
                return f"{module}.{sub}"
        parts = module.split(".")
        while parts and ".".join(parts) not in files:
            parts.pop()
        return ".".join(parts) if parts else module.split(".")[0]

    found: list[Import] = []
    for source, (_, imports) in read.items():
        for module, name, line, how, type_only in imports:
            found.append(Import(source, resolve(module, name), files[source], line, how, type_only))
    return found


def layer_violations(root: Path) -> list[str]:
    """One line per import that crosses a layer the wrong way, with its file and line."""
    bad = []
    for imp in scan_imports(root):
        layer, top = imp.source.split(".")[0], imp.target.split(".")[0]
        if top in FORBIDDEN[layer]:
            bad.append(f"{imp.where(root)}: {imp.source} imports {imp.target} ({imp.how}): "
                       f"{layer}/ never imports {top}/")
    return bad


def runtime_graph(root: Path) -> nx.DiGraph:
    """The first-party modules and the imports between them that run.

    Nodes are modules; an edge ``a -> b`` says that running ``a`` (at import, or later in one of
    its functions) imports ``b``. Imports under ``if TYPE_CHECKING:`` never run and are not
    edges, so a type-only import back is not a loop. Dynamic imports by name count. Importing
    ``a.b.c`` also runs the packages above it (``a``, ``a.b``): those are edges too, except to
    the importer's own packages, which Python has run before the importer (an explicit ``from
    a import x`` in ``a.b`` is still an edge). ``from pkg import Name``, where ``pkg``
    re-exports ``Name`` lazily, is an edge to the sub-module that defines ``Name``; the lazy
    ``__init__`` itself imports nothing until a name is used.
    """
    files = source_files(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for imp in scan_imports(root):
        if imp.type_only or imp.target not in files:
            continue
        parts = imp.target.split(".")
        above = [".".join(parts[:n]) for n in range(1, len(parts))]
        for target in [*(p for p in above if not imp.source.startswith(p + ".")), imp.target]:
            if target != imp.source and target in files:
                at = graph.get_edge_data(imp.source, target, {}).get("at", set())
                graph.add_edge(imp.source, target, at=at | {imp.where(root)})
    return graph


def import_cycles(root: Path) -> list[str]:
    """One description per loop: the modules of each strongly connected group of the runtime
    graph, and one cycle through them with the file and line of each import."""
    graph = runtime_graph(root)
    loops = []
    for group in sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1):
        cycle = nx.find_cycle(graph.subgraph(group))
        steps = [f"{a} -> {b} ({', '.join(sorted(graph.edges[a, b]['at']))})" for a, b in cycle]
        loops.append(f"loop among {', '.join(group)}:\n    " + "\n    ".join(steps))
    return loops


# ---------------------------------------------------------------------------------------------
# The project


def test_layers_are_respected() -> None:
    bad = layer_violations(ROOT)
    assert not bad, "imports across layers:\n" + "\n".join(bad)


def test_no_import_loops() -> None:
    """No loop among the imports that run (module level, inside functions, by name); imports
    under ``if TYPE_CHECKING:`` never run, so they do not count (:func:`runtime_graph`)."""
    loops = import_cycles(ROOT)
    assert not loops, "import loops:\n" + "\n".join(loops)


#: The window is the frame that receives its pages (issue 11): only the composition root
#: (``gui.app``) and what fills the window's tabs (``gui.tabs``) know it; the pages are given
#: what they need and import it nowhere, not even for types.
FRAME = "gui.main_window"
FRAME_KNOWN_BY = frozenset({"gui.app", "gui.tabs"})


def frame_imports(root: Path) -> list[str]:
    """One line per import of the window by a module of ``gui/`` other than those allowed."""
    return [f"{i.where(root)}: {i.source} imports {i.target} ({i.how})"
            for i in scan_imports(root)
            if i.target == FRAME and i.source.startswith("gui.")
            and i.source not in FRAME_KNOWN_BY | {FRAME}]


def test_the_pages_never_import_the_window() -> None:
    bad = frame_imports(ROOT)
    assert not bad, "pages that import the window:\n" + "\n".join(bad)


def test_the_engine_adapter_loads_no_qt() -> None:
    """gui.engine (the Session the window drives from its workers) says "no Qt here": importing
    it, in a fresh interpreter, loads neither Qt's modules nor pyqtgraph."""
    import subprocess
    import sys

    code = ("import sys, gui.engine; "
            "print(sorted(m for m in sys.modules if m.startswith('PySide6.Qt') or m == 'pyqtgraph'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_scanner_sees_imports_by_name() -> None:
    """The checker finds what ruff cannot: ``cli`` importing its commands and the GUI by name."""
    by_how = {(i.source, i.target, i.how) for i in scan_imports(ROOT)}
    assert ("cli", "gui.app", "import_module") in by_how
    assert ("cli", "cli.train", "COMMAND_MODULES") in by_how
    assert ("cli", "cli.qsep", "COMMANDS") in by_how
    graph = runtime_graph(ROOT)
    assert graph.has_edge("cli", "gui.app") and graph.has_edge("cli", "cli.library")


# ---------------------------------------------------------------------------------------------
# The checkers fail on violations (a copy of the sources in tmp_path, never the tree itself)


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", "*.json", "*.qss", "*.svg", "*.png"))
    return tmp_path


@pytest.mark.parametrize(("where", "code", "needle"), [
    ("core/_probe.py", "import gui.app\n", "core._probe imports gui.app (import)"),
    ("core/audio/_probe.py", "from training.dataset import load_dataset\n",
     "core.audio._probe imports training.dataset (from)"),
    ("core/audio/_probe.py", "from ...cli import main\n", "core.audio._probe imports cli (from)"),
    ("core/_probe.py", "def f():\n    import importlib\n    return importlib.import_module('cli.train')\n",
     "core._probe imports cli.train (import_module)"),
    ("core/_probe.py", "mod = __import__('gui.settings')\n", "imports gui.settings (__import__)"),
    ("core/_probe.py", "import importlib.util\nok = importlib.util.find_spec('training.toy')\n",
     "imports training.toy (find_spec)"),
    ("core/_probe.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gui.settings import Settings\n",
     "imports gui.settings (from)"),
    ("training/_probe.py", "COMMAND_MODULES = ['cli.train']\n", "imports cli.train (COMMAND_MODULES)"),
    ("training/_probe.py", "COMMANDS = {'x': ('gui.app', 'help')}\n", "imports gui.app (COMMANDS)"),
    ("gui/_probe.py", "from cli import main\n", "gui._probe imports cli (from)"),
])
def test_a_layer_violation_fails(copy: Path, where: str, code: str, needle: str) -> None:
    assert layer_violations(copy) == layer_violations(ROOT)  # the copy is the tree
    (copy / where).write_text(code)
    new = set(layer_violations(copy)) - set(layer_violations(ROOT))
    assert len(new) == 1 and needle in next(iter(new)), new
    assert next(iter(new)).startswith(where + ":")


def test_cli_may_import_anything(copy: Path) -> None:
    (copy / "cli" / "_probe.py").write_text(
        "import importlib\nimport gui.app\nimport training.toy\nm = importlib.import_module('gui.settings')\n")
    assert set(layer_violations(copy)) == set(layer_violations(ROOT))


def test_an_import_loop_fails(copy: Path) -> None:
    before = import_cycles(copy)
    (copy / "core" / "_loop_a.py").write_text("from core import _loop_b\n")
    (copy / "core" / "_loop_b.py").write_text("def f():\n    from core._loop_a import x\n    return x\n")
    loops = [c for c in import_cycles(copy) if c not in before]
    assert len(loops) == 1
    assert "core._loop_a -> core._loop_b (core/_loop_a.py:1)" in loops[0]
    assert "core._loop_b -> core._loop_a (core/_loop_b.py:2)" in loops[0]


def test_a_loop_through_a_lazy_reexport_fails(copy: Path) -> None:
    """``from core.library import Library`` runs ``core.library.library``: a loop through it counts."""
    before = import_cycles(copy)
    (copy / "core" / "_probe.py").write_text("def f():\n    from core.library import Library\n")
    lib = copy / "core" / "library" / "library.py"
    lib.write_text(lib.read_text() + "\n\ndef _probe():\n    import core._probe\n")
    loops = [c for c in import_cycles(copy) if c not in before]
    assert len(loops) == 1 and "core._probe -> core.library.library" in loops[0]


def test_a_loop_by_name_fails(copy: Path) -> None:
    before = import_cycles(copy)
    (copy / "gui" / "_loop_a.py").write_text("import importlib\nB = importlib.import_module('gui._loop_b')\n")
    (copy / "gui" / "_loop_b.py").write_text("import gui._loop_a\n")
    assert len([c for c in import_cycles(copy) if c not in before]) == 1


def test_a_type_checking_import_back_is_no_loop(copy: Path) -> None:
    before = import_cycles(copy)
    (copy / "core" / "_loop_a.py").write_text("import core._loop_b\n")
    (copy / "core" / "_loop_b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core._loop_a import x\n")
    assert import_cycles(copy) == before


def test_a_page_importing_the_window_fails(copy: Path) -> None:
    assert frame_imports(copy) == []
    page = copy / "gui" / "search_preview.py"
    page.write_text(page.read_text(encoding="utf-8") + "\nif TYPE_CHECKING:\n"
                    "    from gui.main_window import MainWindow\n", encoding="utf-8")
    (bad,) = frame_imports(copy)
    assert "gui.search_preview imports gui.main_window (from)" in bad
