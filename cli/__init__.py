"""``crossmix`` command line: every capability of the GUI, headless.

``crossmix`` alone (or ``crossmix SONG...``) opens the desktop app; ``crossmix COMMAND``
runs a subcommand. Each command group lives in its own module that exposes
``register(subparsers)``; they are imported lazily so ``crossmix --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

from core.errors import Cancelled, CrossmixError

#: Modules that add subcommands. Each defines ``register(subparsers) -> None`` and sets
#: ``func=handler`` (``handler(args) -> int``) on its parsers.
COMMAND_MODULES: list[str] = [
    "cli.train",
    "cli.library",
    "cli.separate",
    "cli.remix",
    "cli.corpus",
    "cli.qsep",
]

#: Every subcommand, the module that registers it and its one-line help, in ``--help`` order.
#: Only the module of the command being run is imported: ``cli.train`` alone imports torch
#: (about 1.3 s), which ``crossmix --help`` and ``crossmix separate`` have no use for. A test
#: checks this table against what the modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("cli.train",
              "train the vocal/mix encoders on a folder of songs labelled by singer"),
    "evaluate": ("cli.train", "singer identification and query-by-singer of a checkpoint"),
    "library": ("cli.library", "manage song libraries (add folders, scan, status, remove)"),
    "match": ("cli.library", "find library songs whose accompaniment suits SONG's vocal"),
    "separate": ("cli.separate", "separate songs into <name>_vocals and "
                 "<name>_accompaniment files (Spleeter 2-stems)"),
    "remix": ("cli.remix", "render a cross-mix: QUERY's vocal over MATCH's accompaniment, "
              "tempo- and beat-aligned"),
    "corpus": ("cli.corpus",
               "generate a synthetic singing corpus (singers x songs, stems and ground truth)"),
    "multitracks": ("cli.qsep",
                    "generate multitrack songs (one stem per part) for the query-based separator"),
    "train-qsep": ("cli.qsep",
                   "train the query-based separator on multitracks from 'crossmix multitracks'"),
    "calibrate-qsep": ("cli.qsep",
                       "set a trained query separator's class latents and mask power on the 'val' split"),
}


def build_parser(command: str | None = None, *, full: bool = False) -> argparse.ArgumentParser:
    """The ``crossmix`` parser.

    Only ``command``'s module is imported (all of them when ``full``); the other commands get
    a placeholder that carries their name and help, enough for ``crossmix --help``.
    """
    parser = argparse.ArgumentParser(
        prog="crossmix",
        description=(
            "Find accompaniments for a singer's voice. Run without a command to open the app "
            "(optionally with songs to query)."
        ),
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = set(COMMAND_MODULES) if full else (
        {COMMANDS[command][0]} if command in COMMANDS else set())
    # Placeholders first, real parsers over them, then put back the table's order.
    for name, (module, help_text) in COMMANDS.items():
        if module not in wanted:
            sub.add_parser(name, help=help_text, add_help=False)
    for name in COMMAND_MODULES:
        if name in wanted:
            importlib.import_module(name).register(sub)
    order = list(COMMANDS)
    sub._choices_actions.sort(key=lambda a: order.index(a.dest) if a.dest in order else len(order))
    return parser


def _known_commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(first)
    if first is None and not any(a in ("-h", "--help") for a in args_list) or (
        first is not None and first not in _known_commands(parser)
    ):
        return _open_app([a for a in args_list if not a.startswith("-")])
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Library code both logs and warns about a rebuilt index (for callers that only watch
    # warnings); on the command line the log line is enough, and warnings need no source line.
    warnings.filterwarnings("ignore", message=r".*the search index is damaged")
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args))
    except Cancelled as exc:
        print(f"crossmix: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("crossmix: interrupted.", file=sys.stderr)
        return 130
    except CrossmixError as exc:
        print(f"crossmix: error: {exc}", file=sys.stderr)
        return 1


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"crossmix: warning: {message}", file=sys.stderr)


def _open_app(files: list[str]) -> int:
    # The GUI is a separate package; the engine never imports Qt, so it is loaded by name.
    try:
        app = importlib.import_module("gui.app")
    except ModuleNotFoundError as exc:
        print(
            f"crossmix: the desktop app cannot start ({exc}). Run 'crossmix --help' for the "
            "command-line tools.",
            file=sys.stderr,
        )
        return 2
    return int(app.main(files))


if __name__ == "__main__":
    sys.exit(main())
