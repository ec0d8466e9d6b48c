"""Declarative field types for the config file. A kind declares `PARAMS = {name: Field}`;
config.py validates every resource against its kind's fields and reports file:line."""
from __future__ import annotations

import os
import re
from typing import Any, Callable

REQUIRED = object()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,62}$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")


class Invalid(ValueError):
    """Raised by a converter; config.py adds file:line and key."""


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise Invalid(f"expected a duration like \"500ms\" or \"30s\", got {value!r}")
    if isinstance(value, (int, float)):
        if not 0 <= value < float("inf"):   # also refuses nan
            raise Invalid(f"expected a duration like \"500ms\" or \"30s\", got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise Invalid(f"expected a duration like \"500ms\" or \"30s\", got {value!r}")


def safe_name(value: Any) -> str:
    """Names end up in paths, process titles and argv: no '/', '..', spaces or shell specials."""
    if not isinstance(value, str) or not NAME_RE.match(value) or ".." in value:
        raise Invalid(f"{value!r} is not a safe name (letters, digits, and _ . : @ + - ; "
                      "no '/', '..', spaces or shell characters)")
    return value


class Field:
    def __init__(self, convert: Callable[[Any], Any], default: Any = REQUIRED, doc: str = "",
                 type_name: str = ""):
        self.convert = convert
        self.default = default
        self.doc = doc
        self.type_name = type_name

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _expect(kind: type | tuple, label: str):
    def check(value):
        if isinstance(value, bool) and kind is not bool:
            raise Invalid(f"expected {label}, got {value!r}")
        if not isinstance(value, kind):
            raise Invalid(f"expected {label}, got {type(value).__name__} {value!r}")
        return value
    return check


def Str(default=REQUIRED, doc="", choices: tuple[str, ...] | None = None) -> Field:
    base = _expect(str, "a string")

    def conv(v):
        v = base(v)
        if choices and v not in choices:
            raise Invalid(f"{v!r} is not one of: {', '.join(choices)}")
        if "\x00" in v or "\n" in v:
            raise Invalid(f"{v!r} contains a NUL or newline")
        return v
    return Field(conv, default, doc, " | ".join(f'"{c}"' for c in choices) if choices else "string")


def Name(default=REQUIRED, doc="") -> Field:
    return Field(safe_name, default, doc, "name")


def Names(default=REQUIRED, doc="", min_items: int = 1) -> Field:
    def conv(v):
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or len(v) < min_items:
            raise Invalid(f"expected a name or a list of at least {min_items} names, got {v!r}")
        names = [safe_name(x) for x in v]
        if len(set(names)) != len(names):
            raise Invalid(f"duplicate names in {v!r}")
        return names
    return Field(conv, default, doc, "name or [names]")


def Bool(default=REQUIRED, doc="") -> Field:
    return Field(_expect(bool, "true or false"), default, doc, "bool")


def Int(default=REQUIRED, doc="", minimum: int | None = None, maximum: int | None = None) -> Field:
    base = _expect(int, "an integer")

    def conv(v):
        v = base(v)
        if minimum is not None and v < minimum or maximum is not None and v > maximum:
            raise Invalid(f"{v} is out of range {minimum}..{maximum}")
        return v
    return Field(conv, default, doc, "integer")


def Duration(default=REQUIRED, doc="", minimum: float | None = None) -> Field:
    """Seconds as a float, written "500ms", "30s", "2m", "1h" (a bare number is seconds).
    minimum: refuse shorter ones (a zero timeout would fail every command)."""
    if default is not REQUIRED and default is not None:
        default = parse_duration(default)

    def conv(v):
        seconds = parse_duration(v)
        if minimum is not None and seconds < minimum:
            raise Invalid(f"{v!r} is too short (at least {minimum:g}s)")
        return seconds
    return Field(conv, default, doc, 'duration ("500ms", "30s", "2m")')


def absolute_path(v) -> str:
    if not isinstance(v, str) or not v.startswith("/") or "\x00" in v or "\n" in v:
        raise Invalid(f"expected an absolute path, got {v!r}")
    parts = v.split("/")
    if ".." in parts:
        raise Invalid(f"path {v!r} contains '..'")
    return os.path.normpath(v)


def Path(default=REQUIRED, doc="") -> Field:
    return Field(absolute_path, default, doc, "absolute path")


def argv_list(v) -> list[str]:
    """A command as an argument list. A single string is refused: it would need a shell."""
    if isinstance(v, str):
        raise Invalid(f"commands are argument lists like [\"sysctl\", \"x=1\"], not a shell "
                      f"string: {v!r}")
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise Invalid(f"expected a non-empty list of strings, got {v!r}")
    if not v[0] or any("\x00" in x for x in v):
        raise Invalid(f"bad command {v!r}")
    if "/" in v[0] and not v[0].startswith("/"):
        # a detached worker runs in /: a relative path would name another file there
        raise Invalid(f"the command {v[0]!r} must be a bare name (looked up) or an absolute "
                      "path")
    return list(v)


def Argv(default=REQUIRED, doc="") -> Field:
    return Field(argv_list, default, doc, 'argv list ["cmd", "arg"]')


def StrList(default=REQUIRED, doc="") -> Field:
    def conv(v):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise Invalid(f"expected a list of strings, got {v!r}")
        return list(v)
    return Field(conv, default, doc, "[strings]")


def PathList(default=REQUIRED, doc="") -> Field:
    def conv(v):
        if not isinstance(v, list):
            raise Invalid(f"expected a list of absolute paths, got {v!r}")
        return [absolute_path(x) for x in v]
    return Field(conv, default, doc, "[absolute paths]")


def PathMap(default=REQUIRED, doc="") -> Field:
    def conv(v):
        if not isinstance(v, dict):
            raise Invalid(f"expected a table of name = \"/absolute/path\", got {v!r}")
        return {safe_name(k): absolute_path(p) for k, p in v.items()}
    return Field(conv, default, doc, "table name = path")


def StrMap(default=REQUIRED, doc="") -> Field:
    def conv(v):
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise Invalid(f"expected a table of strings, got {v!r}")
        return dict(v)
    return Field(conv, default, doc, "table of strings")
