"""One loader for every settings type of the assistant: environment variables and
command-line flags, both read from the dataclass fields themselves.

A settings type is a frozen dataclass whose fields carry ``metadata={"help": ...}``
and, when the field may come from the environment, ``"env": "ASSISTANT_..."``.
Defaults are written once, on the field; ``__post_init__`` validates.

    settings = from_env(GenerationSettings)                  # ASSISTANT_* variables
    add_flags(parser, TuneSettings)                          # --lora-r, --lr, ...
    settings = from_flags(TuneSettings, parser.parse_args())

This module imports nothing else of the assistant, so every layer may use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
FALSE_WORDS = ("0", "false", "no", "off")


def _kind(cls: type, name: str) -> Any:
    """The field's type with ``| None`` removed (annotations are strings here)."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def parse_value(cls: type, name: str, raw: str, where: str) -> Any:
    """``raw`` converted to the type of field ``name``; ``ValueError`` naming ``where``."""
    kind = _kind(cls, name)
    if kind is bool:
        return raw.strip().lower() not in FALSE_WORDS
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            noun = "whole number" if kind is int else "number"
            raise ValueError(f"{where}={raw!r} is not a {noun}") from None
    if kind is Path:
        return Path(raw)
    return raw


def env_names(cls: type) -> dict[str, str]:
    """Field name → environment variable, for the fields that have one."""
    return {f.name: f.metadata["env"] for f in dataclasses.fields(cls) if "env" in f.metadata}


def from_env(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """``cls`` from its fields' environment variables (unset or empty: the default),
    then ``overrides`` that are not None (command-line flags win over the environment)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, variable in env_names(cls).items():
        raw = env.get(variable, "").strip()
        if raw:
            values[name] = parse_value(cls, name, raw, variable)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag-name`` per field, with its help text and default."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _kind(cls, f.name)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        elif f.default is dataclasses.MISSING:
            parser.add_argument(flag, required=True, type=kind, help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=f"{f.metadata['help']} (default {f.default})")


def from_flags(cls: type[T], args: argparse.Namespace) -> T:
    """``cls`` from the flags :func:`add_flags` added (other attributes are ignored)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})
