"""[node] fence_options: run the [node] fence command as a fence-agents agent (Debian
`fence-agents`: fence_ipmilan, fence_virsh, ...), which reads its options from stdin as
`name=value` lines when it gets no options on argv (docs/reference/pacemaker.md §8;
fence-agents lib/fencing.py.py read_stdin()/process_input()). That keeps the BMC or
hypervisor password off argv (visible in ps to every user) and out of hahooks' logs: only
the argv is logged, never the stdin.

The password itself is never in the config (often world-readable for monitoring): either
`password_file` (an absolute path, not readable by group or others; hahooks reads it at
fence time and sends `password=`) or the agent's own `password_script` option.
"""
from __future__ import annotations

import os
import re
import stat

from hahooks import schema
from hahooks.errors import PermissionProblem
from hahooks.schema import Invalid

_NAME = re.compile(r"^[a-z0-9_]+$")
INLINE_SECRETS = ("password", "passwd")
PASSWORD_FILE = "password_file"


def _convert(value) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Invalid("expected a table of option = \"value\" (fence-agents stdin options)")
    out: dict[str, str] = {}
    for name, text in value.items():
        if not _NAME.match(name):
            raise Invalid(f"{name!r} is not a fence-agents option name (lower case, digits, _)")
        if name in INLINE_SECRETS:
            raise Invalid(f"{name}: never put the password in the config; use password_file "
                          "= \"/root/fence-pw\" (0600, read at fence time) or the agent's "
                          "password_script")
        if not isinstance(text, str):
            raise Invalid(f"{name}: expected a string")
        if "\n" in text or "\r" in text:
            raise Invalid(f"{name}: the value must be one line (stdin is one option a line)")
        if name == PASSWORD_FILE:
            text = schema.absolute_path(text)
        out[name] = text
    return out


def FenceOptions(default=None, doc="") -> schema.Field:
    return schema.Field(_convert, default, doc, "table of fence-agents options")


def _read_password(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise PermissionProblem(f"fence password_file {path}: {exc.strerror}") from None
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if st.st_mode & 0o077 or st.st_uid not in (0, os.geteuid()) or \
                not stat.S_ISREG(st.st_mode):
            raise PermissionProblem(f"fence password_file {path} must be a regular file "
                                    f"owned by root and not readable by group or others "
                                    f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        return fh.read().strip()


def stdin_for(options: dict[str, str]) -> str:
    """The agent's stdin: action=off unless the options say otherwise, the options in
    config order, the password read from password_file last."""
    lines = [] if "action" in options else ["action=off"]
    lines += [f"{k}={v}" for k, v in options.items() if k != PASSWORD_FILE]
    if PASSWORD_FILE in options:
        password = _read_password(options[PASSWORD_FILE])
        if "\n" in password:
            raise PermissionProblem(f"fence password_file {options[PASSWORD_FILE]} holds "
                                    "more than one line")
        lines.append(f"password={password}")
    return "\n".join(lines) + "\n"
