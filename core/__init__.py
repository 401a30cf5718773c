"""Crossmix engine: decoding, separation, embedding, library, remix. Never imports Qt.

The public entry point is :class:`core.api.Crossmix` (``from core import Crossmix``); the
capabilities live in sub-packages: :mod:`core.audio`, :mod:`core.separation`,
:mod:`core.embedding`, :mod:`core.library`, :mod:`core.remix`. Names load on first use.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["api", "audio", "embedding", "library", "remix", "separation"],
    submod_attrs={"api": ["Crossmix", "QueryResult", "MatchRow", "Rendered", "BatchExport"]},
)

if TYPE_CHECKING:
    from . import api, audio, embedding, library, remix, separation
    from .api import BatchExport, Crossmix, MatchRow, QueryResult, Rendered
