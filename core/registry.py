"""Models by name: the one place a user's choice becomes a model.

Every front end (the ``crossmix`` commands, the app, training, a Ray actor) names its models
the same way and resolves them here:

- a **separator** (:func:`load_separator`): ``"spleeter-2stems"`` (Deezer's Spleeter 2-stems,
  the default), ``"tiny"`` (random weights, for tests), or the path of a ``.safetensors`` file
  of Spleeter 2-stems U-Nets (:meth:`core.separation.separator.Separator.load`);
- an **encoder pair** (:func:`load_encoders`): ``"shipped"`` (the default), ``"resemblyzer"``,
  ``"tiny"`` (random weights, for tests), the name of another shipped model
  (:func:`shipped_encoder_names`), or a checkpoint path (``.safetensors`` beside its ``.json``);
- the **query-based separator** (:func:`load_query_separator`): ``"shipped"`` or a checkpoint
  path;
- the **device**: :func:`core.device.resolve_device` (``auto``, ``cpu``, ``cuda[:N]``).

``None`` or ``""`` always means the default. A word that is neither a name nor an existing
file is refused with a :class:`~core.errors.ModelError` that lists the names.

This module imports neither torch nor the models until a model is loaded, so the command
line can build its ``--help`` from :data:`SEPARATORS` and :data:`ENCODERS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ModelError
from core.paths import assets_dir

if TYPE_CHECKING:
    import torch

    from core.embedding.encoders import EncoderPair
    from core.separation.by_example import QuerySeparator
    from core.separation.separator import Separator

#: Separators by name -> what each is.
SEPARATORS: dict[str, str] = {
    "spleeter-2stems": "Deezer's Spleeter 2-stems",
    "tiny": "random weights, for tests",
}
DEFAULT_SEPARATOR = "spleeter-2stems"
#: Older spellings of a separator name, still accepted.
SEPARATOR_ALIASES: dict[str, str] = {"spleeter": "spleeter-2stems"}

#: Encoder pairs by name -> what each is (besides the other shipped models,
#: :func:`shipped_encoder_names`).
ENCODERS: dict[str, str] = {
    "shipped": "the shipped encoders",
    "resemblyzer": "a real-speech speaker encoder on vocals and mixes alike, no training",
    "tiny": "random weights, for tests",
}
DEFAULT_ENCODERS = "shipped"
_ENCODER_ALIASES: dict[str, str] = {"": "shipped", "default": "shipped"}

#: Query-based separators by name -> what each is.
QUERY_SEPARATORS: dict[str, str] = {"shipped": "the shipped model (assets/query_separation/)"}
DEFAULT_QUERY_SEPARATOR = "shipped"


def _text(choice: str | Path | None) -> str:
    return str(choice).strip() if choice is not None else ""


def _unknown(kind: str, choice: str, names: list[str], file: str) -> ModelError:
    return ModelError(f"{kind} {choice!r} not found: use {', '.join(names)}, or the path of "
                      f"{file}.")


def _is_word(choice: str) -> bool:
    """``choice`` reads as a model name, not a file: no folder, no extension, no such file."""
    p = Path(choice).expanduser()
    return (p.name == choice and not p.suffix and not p.exists()
            and not p.with_name(p.name + ".safetensors").exists())


# --- separator ---------------------------------------------------------------------------


def separator_name(choice: str | Path | None) -> str:
    """The canonical name of a separator choice (an alias becomes its name; a path stays).

    Raises
    ------
    ModelError
        ``choice`` is neither a separator name nor a path.
    """
    text = _text(choice) or DEFAULT_SEPARATOR
    text = SEPARATOR_ALIASES.get(text, text)
    if text in SEPARATORS:
        return text
    if _is_word(text):
        raise _unknown("Separator", text, list(SEPARATORS),
                       "a .safetensors file of Spleeter 2-stems weights")
    return text


def load_separator(choice: str | Path | None = None, *,
                   device: torch.device | None = None) -> Separator:
    """The separator ``choice`` names (default Spleeter 2-stems) on ``device`` (default CPU).

    Raises
    ------
    ModelError
        An unknown name, a missing or unreadable file, or weights that do not fit.
    """
    from core.separation.separator import Separator

    name = separator_name(choice)
    if name == "spleeter-2stems":
        return Separator.spleeter_2stems(device=device)
    if name == "tiny":
        return Separator.tiny(device=device)
    return Separator.load(Path(name).expanduser(), device=device)


# --- encoders ----------------------------------------------------------------------------


def shipped_encoder_names() -> list[str]:
    """Names of the encoders shipped in ``assets/encoders/`` (``NAME.safetensors`` + ``NAME.json``)."""
    d = assets_dir() / "encoders"
    return sorted(p.stem for p in d.glob("*.safetensors") if p.with_suffix(".json").is_file())


def encoder_names() -> list[str]:
    """Every encoder name :func:`load_encoders` takes (besides a path)."""
    return [*ENCODERS, *(n for n in shipped_encoder_names() if n not in ENCODERS)]


def encoders_name(choice: str | Path | None) -> str:
    """The canonical name of an encoder choice (``""``/``"default"`` become ``"shipped"``; a
    path stays as given).

    Raises
    ------
    ModelError
        ``choice`` is neither an encoder name nor a path.
    """
    text = _text(choice)
    text = _ENCODER_ALIASES.get(text, text)
    if text in ENCODERS or text in shipped_encoder_names():
        return text
    if _is_word(text):
        raise _unknown("Encoders", text, encoder_names(),
                       "a checkpoint (.safetensors beside its .json)")
    return text


def encoders_weights(choice: str | Path | None) -> Path | None:
    """The weights file an encoder choice loads, without loading it (``None`` for
    ``resemblyzer`` and ``tiny``, which have no file of their own)."""
    name = encoders_name(choice)
    if name == "shipped":
        from core.embedding.encoders import default_encoders_path

        return default_encoders_path()
    if name in ENCODERS:
        return None
    if name in shipped_encoder_names():
        return assets_dir() / "encoders" / f"{name}.safetensors"
    return Path(name).expanduser()


def load_encoders(choice: str | Path | None = None, *,
                  device: torch.device | None = None) -> EncoderPair:
    """The encoder pair ``choice`` names (default: the shipped encoders) on ``device``.

    Raises
    ------
    ModelError
        An unknown name, a missing or corrupt checkpoint, or resemblyzer not installed.
    """
    from core.embedding.encoders import EncoderPair, load_default_encoders

    name = encoders_name(choice)
    if name == "shipped":
        return load_default_encoders(device=device)
    if name in ("resemblyzer", "tiny"):
        pair = EncoderPair.resemblyzer() if name == "resemblyzer" else EncoderPair.tiny()
        return pair.to(device) if device is not None else pair
    weights = encoders_weights(name)
    assert weights is not None
    return EncoderPair.load(weights, device=device)


# --- query-based separator ---------------------------------------------------------------


def load_query_separator(choice: str | Path | None = None, *,
                         device: torch.device | None = None) -> QuerySeparator:
    """The query-based separator ``choice`` names (default: the shipped model) on ``device``.

    Raises
    ------
    ModelError
        An unknown name, missing shipped weights, or a missing or corrupt checkpoint.
    """
    from core.separation.by_example import DEFAULT_MODEL_NAME, QuerySeparator, default_model_path

    text = _text(choice)
    if text in ("", "default", DEFAULT_MODEL_NAME, *QUERY_SEPARATORS):
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"{path}: the shipped query-separator weights are missing; reinstall "
                             "Crossmix or train one with 'crossmix train-qsep'.")
        return QuerySeparator.load(path, device=device)
    if _is_word(text):
        raise _unknown("Query separator", text, list(QUERY_SEPARATORS),
                       "a checkpoint (.safetensors beside its .json)")
    return QuerySeparator.load(Path(text).expanduser(), device=device)


__all__ = [
    "DEFAULT_ENCODERS", "DEFAULT_QUERY_SEPARATOR", "DEFAULT_SEPARATOR", "ENCODERS",
    "QUERY_SEPARATORS", "SEPARATORS", "SEPARATOR_ALIASES", "encoder_names", "encoders_name",
    "encoders_weights", "load_encoders", "load_query_separator", "load_separator",
    "separator_name", "shipped_encoder_names",
]
