"""Flags that several commands share.

A leaf module: the command modules import it, and it imports none of them (``cli/__init__.py``
imports the command modules, so a helper kept there made every command an import loop).
"""

from __future__ import annotations

import argparse


def add_voice_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """``--vocal-only`` / ``--separate`` for a command whose ``what`` (SONG, QUERY) may be a
    voice alone: ``args.vocal_only`` is ``True``, ``False`` or ``None`` (let Crossmix decide)."""
    voice = parser.add_mutually_exclusive_group()
    voice.add_argument("--vocal-only", dest="vocal_only", action="store_const", const=True,
                       default=None,
                       help=f"{what} is a voice alone (an a-cappella): use it as it is, without "
                       "separating it (default: Crossmix recognises a voice alone itself)")
    voice.add_argument("--separate", dest="vocal_only", action="store_const", const=False,
                       help=f"always separate {what}, even if it sounds like a voice alone")
