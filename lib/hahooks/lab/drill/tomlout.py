"""A TOML writer for the subset hahooks configs use (the standard library only reads TOML).

The drill loads an example config, overlays the sandbox's paths and writes it back out:
tables, arrays of tables, strings, integers, floats, booleans, lists and inline tables.
"""
from __future__ import annotations



def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _string(value: str) -> str:
    """A TOML basic string: quote, backslash and every control character escaped."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return _string(key)


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps(data: dict) -> str:
    lines: list[str] = []

    def table(prefix: str, body: dict, header: str | None) -> None:
        if header:
            lines.append(header)
        nested = []
        for key, value in body.items():
            if isinstance(value, dict) and value and any(isinstance(v, (dict, list))
                                                         for v in value.values()):
                nested.append((key, value))
            elif _is_table_array(value):
                nested.append((key, value))
            else:
                lines.append(f"{_key(key)} = {_scalar(value)}")
        for key, value in nested:
            name = f"{prefix}.{_key(key)}" if prefix else _key(key)
            lines.append("")
            if isinstance(value, dict):
                table(name, value, f"[{name}]")
            else:
                for i, item in enumerate(value):
                    if i:
                        lines.append("")
                    table(name, item, f"[[{name}]]")

    top_scalars = {k: v for k, v in data.items()
                   if not isinstance(v, dict) and not _is_table_array(v)}
    table("", top_scalars, None)
    for key, value in data.items():
        if key in top_scalars:
            continue
        if lines:
            lines.append("")
        if isinstance(value, dict):
            table(_key(key), value, f"[{_key(key)}]")
        else:
            for i, item in enumerate(value):
                if i:
                    lines.append("")
                table(_key(key), item, f"[[{_key(key)}]]")
    return "\n".join(lines) + "\n"
