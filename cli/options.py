"""The model flags every command shares: ``--separator``, ``--encoders`` and ``--device``.

They are added by :func:`add_model_flags` only, so each has the same name, help and checks in
every command; what they name is resolved by :mod:`core.registry` (models) and
:func:`core.device.resolve_device`. The spellings they replaced still work and say once, on
stderr, what to write instead: ``--model`` (for the separator of ``separate``/``remix``, the
encoders of ``evaluate``) and ``--separator spleeter``.

Light: importing this module imports neither torch nor a model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Literal

from core.errors import ModelError
from core.registry import (
    DEFAULT_SEPARATOR,
    ENCODERS,
    SEPARATOR_ALIASES,
    SEPARATORS,
    separator_name,
    shipped_encoder_names,
)

SEPARATOR_METAVAR = "NAME|PATH"
ENCODERS_METAVAR = "NAME|PATH"
DEVICE_METAVAR = "auto|cpu|cuda[:N]"
DEVICE_HELP = "compute device: auto (CUDA when available; the default), cpu, or cuda[:N]"


def separator_help(default: str | None) -> str:
    names = ", ".join(f"{n} ({what})" for n, what in SEPARATORS.items())
    return (f"separation model: {names}, or a .safetensors file of Spleeter 2-stems weights; "
            f"default: {default or 'the one the encoders were trained with'}")


def encoders_help() -> str:
    names = ", ".join(f"{n} ({what})" for n, what in ENCODERS.items())
    others = [n for n in shipped_encoder_names() if n not in ENCODERS]
    return (f"encoders: {names}, "
            + (f"another shipped model ({', '.join(others)}) " if others else "")
            + "or a checkpoint (.safetensors beside its .json); default: shipped")


def deprecated(old: str, new: str) -> None:
    """Say on stderr that ``old`` is an old spelling of ``new``."""
    print(f"crossmix: warning: {old} is deprecated; use {new}", file=sys.stderr)


class _WarnOnce(argparse.Action):
    """An action that says once (per parser) that the spelling it was given is deprecated."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self._warned: set[str] = set()

    def _deprecated(self, old: str, new: str) -> None:
        if old not in self._warned:
            self._warned.add(old)
            deprecated(old, new)


class SeparatorAction(_WarnOnce):
    """``--separator NAME|PATH``: checked at once (an unknown name is a usage error listing the
    names), stored as its canonical name; an old name (``spleeter``) warns."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        text = str(values).strip()
        if text in SEPARATOR_ALIASES:
            self._deprecated(f"--separator {text}", f"--separator {SEPARATOR_ALIASES[text]}")
        try:
            setattr(namespace, self.dest, separator_name(text))
        except ModelError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


class RenamedOption(_WarnOnce):
    """An old option name (hidden from ``--help``): warns once, then does what ``new`` does."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: argparse.Action,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        new = self.new.option_strings[0]
        self._deprecated(str(option_string), new)
        self.new(parser, namespace, values, new)


def add_model_flags(parser: argparse.ArgumentParser, *, separator: bool = True,
                    encoders: bool = True, device: bool = True,
                    separator_default: str | None = DEFAULT_SEPARATOR,
                    old_model_flag: Literal["separator", "encoders"] | None = None) -> None:
    """Add ``--separator``, ``--encoders`` and ``--device`` (those asked for) to ``parser``.

    ``args.separator``: a separator name or path (``separator_default`` when not given;
    ``None`` lets the command choose, e.g. ``evaluate``: the one the encoders were trained
    with); ``args.encoders``: an encoder name or path, ``None`` for the shipped ones;
    ``args.device``: ``auto``, ``cpu`` or ``cuda[:N]``, checked when it is resolved.
    ``old_model_flag``: the flag the command's old ``--model`` stands for.
    """
    group = parser.add_argument_group("models and device")
    actions: dict[str, argparse.Action] = {}
    if separator:
        actions["separator"] = group.add_argument(
            "--separator", action=SeparatorAction, default=separator_default,
            metavar=SEPARATOR_METAVAR, help=separator_help(separator_default))
    if encoders:
        actions["encoders"] = group.add_argument(
            "--encoders", default=None, metavar=ENCODERS_METAVAR, help=encoders_help())
    if device:
        group.add_argument("--device", default="auto", metavar=DEVICE_METAVAR, help=DEVICE_HELP)
    if old_model_flag is not None:
        group.add_argument("--model", action=RenamedOption, new=actions[old_model_flag],
                           metavar=SEPARATOR_METAVAR)
