"""Dataclasses to and from JSON objects, checking every field's type on the way in.

The training contract (:mod:`training.events`, :class:`training.trainer.TrainConfig`) is plain
dataclasses read from JSON lines and JSON files written by another process or by hand. This
module turns such an object into the dataclass, or says which field is wrong:

- a field takes its JSON key from ``field(metadata={"json": "key"})``, else its own name;
- a missing field with a default keeps the default, one without is an error;
- ``int`` takes no ``bool`` (JSON ``true`` is not a number) and ``float`` takes an ``int``;
- ``tuple[...]`` reads a JSON list of that length, ``list[...]`` / ``dict[str, ...]`` their
  items, ``X | None`` a ``null`` too, ``Literal[...]`` one of its values;
- keys the dataclass does not know are ignored, or refused with ``unknown="error"``.

It covers the field types the contract uses and refuses others at once (a programming
error), so a library such as pydantic is not needed for a dozen flat records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class TypedJsonError(ValueError):
    """A JSON value does not fit the dataclass; the message names the field."""


def json_key(f: dataclasses.Field[Any]) -> str:
    """The JSON key of a dataclass field."""
    return str(f.metadata.get("json", f.name))


def to_plain(obj: Any) -> dict[str, Any]:
    """The fields of dataclass instance ``obj`` under their JSON keys (tuples become lists)."""
    return {json_key(f): _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: Any, *, what: str = "", unknown: str = "ignore") -> T:
    """An instance of dataclass ``cls`` from a JSON object ``data``.

    ``what`` prefixes the error messages (``"batch event"``, a file name).

    Raises
    ------
    TypedJsonError
        ``data`` is not an object, a field without default is missing, a value has the wrong
        type, or (``unknown="error"``) a key is not a field.
    """
    name = what or cls.__name__
    if not isinstance(data, Mapping):
        raise TypedJsonError(f"{name}: expected a JSON object, got {_show(data)}.")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    hints = _hints(cls)
    if unknown == "error":
        extra = sorted(set(data) - {json_key(f) for f in fields})
        if extra:
            known = ", ".join(sorted(json_key(f) for f in fields if f.init))
            raise TypedJsonError(f"{name}: unknown key{'s' if len(extra) > 1 else ''} "
                                 f"{', '.join(map(repr, extra))} (known: {known}).")
    kwargs: dict[str, Any] = {}
    for f in fields:
        if not f.init:
            continue
        key = json_key(f)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise TypedJsonError(f"{name}: {key!r} is missing.")
            continue
        kwargs[f.name] = _convert(data[key], hints[f.name], f"{name}: {key!r}")
    return cls(**kwargs)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        return _convert_union(value, get_args(tp), where)
    if origin is Literal:
        if value in get_args(tp) and not isinstance(value, bool):
            return value
        raise TypedJsonError(f"{where}: expected one of {', '.join(map(repr, get_args(tp)))}, "
                             f"got {_show(value)}.")
    if origin in (list, tuple, dict):
        return _convert_container(value, tp, origin, where)
    if tp in (bool, int, float, str):
        return _convert_scalar(value, tp, where)
    raise TypeError(f"{where}: type {tp!r} is not supported by training.typed_json")


def _convert_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:  # ``X | None``: the error says what X wanted
        return _convert(value, options[0], where)
    for arg in options:
        try:
            return _convert(value, arg, where)
        except TypedJsonError:
            continue
    names = " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    raise TypedJsonError(f"{where}: expected {names}, got {_show(value)}.")


def _convert_scalar(value: Any, tp: type, where: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise TypedJsonError(f"{where}: expected {_type_name(tp)}, got {_show(value)}.")


def _convert_container(value: Any, tp: Any, origin: Any, where: str) -> Any:
    args = get_args(tp)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise TypedJsonError(f"{where}: expected an object, got {_show(value)}.")
        return {k: _convert(v, args[1], f"{where}[{k!r}]") for k, v in value.items()}
    if not isinstance(value, list | tuple):
        raise TypedJsonError(f"{where}: expected a list, got {_show(value)}.")
    if origin is list:
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise TypedJsonError(f"{where}: expected a list of {len(args)}, got {len(value)} items.")
    return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
