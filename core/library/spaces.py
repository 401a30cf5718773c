"""The search spaces and the near-duplicate rule: written here once, for the engine, the CLI
and the GUI (no heavy imports: the window's query panel reads it at start-up)."""

from __future__ import annotations

from core.errors import LibraryError

__all__ = ["DEFAULT_SPACE", "DUPLICATE_MARGIN", "DUPLICATE_SIMILARITY", "INDEXED_SPACES",
           "NEEDS_VOCALS", "SEARCH_SPACES", "resolve_space"]

#: Search spaces: name -> (query vector space, library vector space).
SEARCH_SPACES: dict[str, tuple[str, str]] = {
    "vocal->mix": ("V", "M"),
    "mix->mix": ("M", "M"),
    "vocal->vocal": ("V", "V"),
    "[M,V]": ("[M,V]", "[M,V]"),
}
_SPACE_ALIASES = {
    "[m,v]->[m,v]": "[M,V]", "[m,v]": "[M,V]", "mv": "[M,V]", "v->m": "vocal->mix",
    "m->m": "mix->mix", "v->v": "vocal->vocal",
}
DEFAULT_SPACE = "vocal->mix"
#: Spaces whose library side needs the songs' separated vocals (full-mode indexing).
NEEDS_VOCALS = frozenset(s for s, (_query, lib) in SEARCH_SPACES.items() if lib != "M")
#: Cosine similarity of the mixes' ``M`` vectors above which a library song counts as
#: another version of the query (a re-encode or remaster) and is excluded from matches.
DUPLICATE_SIMILARITY = 0.95
#: ... and that must also exceed the query's average ``M`` similarity to the whole library by
#: this much: a checkpoint that maps every song to nearly the same vector (undertrained,
#: random) would otherwise make every song a "version" of every other and hide all matches.
DUPLICATE_MARGIN = 0.1
#: Library-side spaces that get an index.
INDEXED_SPACES = ("M", "V", "[M,V]")


def resolve_space(space: str) -> str:
    """Canonical search-space name; raises :class:`LibraryError` for an unknown one."""
    if space in SEARCH_SPACES:
        return space
    alias = _SPACE_ALIASES.get(space.strip().lower().replace(" ", ""))
    if alias is None:
        raise LibraryError(
            f"Unknown search space {space!r}: use one of {', '.join(SEARCH_SPACES)}."
        )
    return alias
