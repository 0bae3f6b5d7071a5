"""Typed, serialisable configs: frozen dataclasses whose field docstrings become `--help`.

A config is built from defaults, then a config file, then command-line flags (each overriding
the last). Unknown keys are errors, never silently swallowed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import math
import pathlib
import types
import typing
from typing import Any

from seemrl.types import SeemrlError


class ConfigError(SeemrlError, ValueError):
    """A bad option or config file. The CLI turns it into a one-line error and exit code 2."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal right after each field) of a dataclass."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass).lstrip())
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_tuple(tp) -> bool:
    return typing.get_origin(tp) is tuple or tp is tuple


def _strip_optional(tp):
    """X | None -> (X, True); X -> (X, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def coerce(cls: type, name: str, value: Any) -> Any:
    """Convert a value from JSON/YAML or argparse to the field's declared type."""
    tp, optional = _strip_optional(field_types(cls)[name])
    if value is None:
        if optional:
            return None
        raise ConfigError(f"option '{name}' cannot be null")
    try:
        if _is_tuple(tp):
            (elem, *_) = typing.get_args(tp) or (str,)
            if isinstance(value, str | int | float):
                value = [value]
            return tuple(elem(v) for v in value)
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is float:
            return float(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option '{name}': cannot read {value!r} as {tp}") from None


def build(cls: type, overrides: dict[str, Any]):
    """`cls(**defaults | overrides)`, with type coercion and a clear error for unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs = {k: coerce(cls, k, v) for k, v in overrides.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def to_dict(cfg) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=_json_default))


def _json_default(o):
    if isinstance(o, pathlib.Path):
        return str(o)
    if isinstance(o, float) and math.isinf(o):
        return str(o)
    raise TypeError(type(o))


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str,
              skip: tuple[str, ...] = ()) -> None:
    """One flag per field (`field_name` -> `--field-name`); help from the field docstrings.

    Defaults are SUPPRESSed so that only flags the user typed override the config file.
    """
    group = parser.add_argument_group(title)
    docs, types_ = field_docs(cls), field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, _ = _strip_optional(types_[f.name])
        help_ = f"{docs.get(f.name, '')} (default: {_show(f.default)})".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_,
                                  "dest": f.name}
        flag = "--" + f.name.replace("_", "-")
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif _is_tuple(tp):
            kwargs["nargs"] = "+"
            kwargs["metavar"] = f.name[:-1].upper() if f.name.endswith("s") else "N"
        else:
            kwargs["metavar"] = f.name.upper().split("_")[-1]
        group.add_argument(flag, **kwargs)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def read_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is a usage error
        raise ConfigError(f"cannot parse config file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return data
