"""freevrrpd wiring: the `[VRID]` section whose masterscript / backupscript call hahooks.

freevrrpd (ocochard/FreeVRRPd vrrp_state.c) runs a script as `system(vr->master_script)`:
`/bin/sh -c` with no arguments, its own environment, and *blocking*. It sends one
advertisement before the master script and none while it runs, so a slow master script
makes the peer take over too: the scripts must be `master --detach` / `slave --detach`
(record, start a worker, return). At start a node with priority 255 goes straight to
master; any other priority runs the backup script first, which is a no-op when nothing is
held (`slave` observes first and issues no mutating command then).

Config grammar (vrrp_conf.c): the first line that is not blank or a `#` comment must be
`[VRID]`; an option name is the leading letters of a line, its value is everything after
`=` and the following spaces up to the end of the line (so a script line may carry
arguments: system() hands it to sh); comments only at the start of a line; the password is
cut to 8 characters.
"""
from __future__ import annotations

import re

from hahooks.errors import ConfigError

OPTIONS = ("serverid", "interface", "priority", "addr", "password", "masterscript",
           "backupscript", "carriertimeout", "spanningtreelatency", "monitoredcircuits",
           "MCClearErrorsCount", "vridsdep", "useIKE", "AHencryption", "presharedkey")
PASSWORD_MAX = 8
_WORD = re.compile(r"^[A-Za-z0-9_./@%+=:,-]+$")


class FreevrrpdConfError(ValueError):
    pass


def script_line(hahooks: str, role: str, config_path: str) -> str:
    """The command freevrrpd hands to sh: no arguments arrive from freevrrpd itself."""
    for word in (hahooks, config_path):
        if not _WORD.match(word):
            raise ConfigError(f"{word!r}: use a path without spaces or shell characters in "
                              "freevrrpd.conf (its value goes to sh -c unquoted)")
    return " ".join([hahooks, role, "--detach", "--source", "freevrrpd", "-c", config_path])


def render_vrid(wiring: dict, hahooks: str, config_path: str) -> str:
    """A [VRID] section; values not in [wiring] are left as <placeholders>."""
    def val(key: str, placeholder: str) -> str:
        v = wiring.get(key)
        return placeholder if v is None else str(v)

    vip = wiring.get("vip")
    if vip and "/" not in vip:
        vip += "/32"
    return "\n".join([
        "[VRID]",
        "# serverid is the VRID: the same number on both nodes",
        f"serverid = {val('vhid', '<vrid>')}",
        f"interface = {val('interface', '<interface>')}",
        "# 255 = goes master at start (runs masterscript); below 255 runs backupscript at start",
        f"priority = {val('priority', '<priority>')}",
        f"addr = {vip or '<vip>/32'}",
        f"password = <at most {PASSWORD_MAX} characters>",
        "# hahooks returns at once (--detach): freevrrpd sends no advertisements while a",
        "# master script runs, so a blocking script would hand the VIP to the peer as well",
        f"masterscript = {script_line(hahooks, 'master', config_path)}",
        f"backupscript = {script_line(hahooks, 'slave', config_path)}",
        ""])


def parse_conf(text: str, name: str = "freevrrpd.conf") -> list[dict[str, str]]:
    """Read freevrrpd.conf the way vrrp_conf.c does; one dict per [VRID] section."""
    sections: list[dict[str, str]] = []
    if text and not text.endswith("\n"):
        raise FreevrrpdConfError(f"{name}: the last line has no newline: freevrrpd hits "
                                 "end of file while reading it and drops it")
    for no, raw in enumerate(text.splitlines(), 1):
        if raw == "" or raw.startswith("#"):
            continue
        if raw.startswith("[VRID]"):
            sections.append({})
            continue
        if not sections:
            raise FreevrrpdConfError(f"{name}:{no}: configuration file error ! cannot see "
                                     "[VRID] section (freevrrpd exits)")
        m = re.match(r"^([A-Za-z]+)", raw)
        if not m:
            raise FreevrrpdConfError(f"{name}:{no}: a bad line was found: {raw!r}")
        option = m.group(1)
        if "=" not in raw:
            raise FreevrrpdConfError(f"{name}:{no}: malformed config line (no '='): {raw!r}")
        value = raw.split("=", 1)[1].lstrip(" ")
        if option not in OPTIONS:
            raise FreevrrpdConfError(f"{name}:{no}: option {option!r} unknown (freevrrpd "
                                     "ignores it)")
        if option == "password":
            value = value[:PASSWORD_MAX]
        sections[-1][option] = value
    return sections
