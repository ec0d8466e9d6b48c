"""Pure parsers for what the replication tools print (no I/O; tested against the reference
texts of docs/reference/hast.md §2, docs/reference/gmirror.md §1, docs/reference/md.md §1 and
docs/reference/ggate.md §1, quoted in tests/test_kind_*.py).

hastctl status/list (docs/reference/hast.md §2), gmirror status (docs/reference/gmirror.md §1),
mdconfig -l/-lv (docs/reference/md.md §1), ggatec list [-v] (docs/reference/ggate.md §1),
drbdadm role/cstate/dstate, `zpool status [-P]`.
"""
from __future__ import annotations

import dataclasses
import re

# -- hastctl (docs/reference/hast.md §2) ------------------------------------------------


@dataclasses.dataclass
class HastResource:
    name: str
    role: str | None = None        # init | primary | secondary
    status: str | None = None      # complete | degraded; None when no worker runs
    dirty: int | None = None       # bytes not yet replicated ("dirty: N (xB)")
    localpath: str = ""
    remoteaddr: str = ""
    error: int | None = None       # "name\tERRn" (status) or "  error: n" (list)
    fields: dict = dataclasses.field(default_factory=dict)


def parse_hastctl(text: str) -> dict[str, HastResource]:
    """Either form: the terse `status` table ("Name\\tStatus\\t Role\\t\\tComponents") or the
    verbose `list` blocks (also what `status` printed before `list` existed, FreeBSD 9.0)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].split()[:2] == ["Name", "Status"]:
        return _hast_terse(lines[1:])
    return _hast_verbose(lines)


def _hast_terse(lines: list[str]) -> dict[str, HastResource]:
    out: dict[str, HastResource] = {}
    for line in lines:
        name, _, rest = line.partition("\t")
        name = name.strip()
        m = re.fullmatch(r"ERR(\d+)", rest.strip())
        if m:
            out[name] = HastResource(name, error=int(m.group(1)))
            continue
        # "%-9s" status (or "-"), "%-15s" role, "%s\t" localpath, "%s\n" remoteaddr
        tokens = rest.split()
        res = HastResource(name)
        if tokens:
            res.status = None if tokens[0] == "-" else tokens[0]
        if len(tokens) > 1:
            res.role = tokens[1]
        if len(tokens) > 2:
            res.localpath = tokens[2]
        if len(tokens) > 3:
            res.remoteaddr = tokens[3]
        out[name] = res
    return out


def _hast_verbose(lines: list[str]) -> dict[str, HastResource]:
    out: dict[str, HastResource] = {}
    current: HastResource | None = None
    for line in lines:
        m = re.fullmatch(r"(\S+):\s*", line)
        if m and not line[:1].isspace():
            current = out.setdefault(m.group(1), HastResource(m.group(1)))
            continue
        # (copies that lost the two-space indentation, like seed 003's, still parse)
        if current is None or line.startswith("    "):   # the statistics sub-block
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        value = value.strip()
        current.fields[key] = value
        if key in _VERBOSE_ATTRS:
            setattr(current, key, _VERBOSE_ATTRS[key](value))
    return out


def _leading_int(value: str) -> int | None:
    m = re.match(r"\s*(\d+)", value)
    return int(m.group(1)) if m else None


# `list` keys kept as attributes ("dirty: 4194304 (4.0MB)" -> 4194304)
_VERBOSE_ATTRS = {"role": str, "status": str, "localpath": str, "remoteaddr": str,
                  "dirty": _leading_int, "error": _leading_int}


def human_bytes(n: int) -> str:
    """Like hastd's %NB (humanize_number, 5 columns, decimal): 0B, 2.0MB, 128MB."""
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    value, i = float(n), 0
    while value >= 1000 and i < len(units) - 1:   # keep within 5 columns, as humanize_number
        value /= 1024
        i += 1
    if i == 0:
        return f"{n}B"
    return f"{value:.1f}{units[i]}" if value < 10 else f"{value:.0f}{units[i]}"


# -- gmirror status (docs/reference/gmirror.md §1) --------------------------------------

MIRROR_STATES = ("COMPLETE", "DEGRADED", "STARTING")


@dataclasses.dataclass
class MirrorComponent:
    provider: str
    state: str | None = None       # ACTIVE, SYNCHRONIZING, STALE, ...; None in old "(6%)" form
    percent: int | None = None     # rebuild progress while SYNCHRONIZING


@dataclasses.dataclass
class Mirror:
    name: str                      # "gm0" (the Name column reads "mirror/gm0")
    status: str                    # COMPLETE | DEGRADED | STARTING
    components: list[MirrorComponent] = dataclasses.field(default_factory=list)

    def component(self, provider: str) -> MirrorComponent | None:
        return next((c for c in self.components if c.provider == provider), None)


_MIRROR_LINE = re.compile(r"^\s*(\S+)\s+([A-Z]+)\s+(\S.*?)\s*$")
_COMPONENT = re.compile(r"^(\S+)(?:\s+\((?:([A-Z]+))?(?:,\s*)?(?:(\d+)%)?\))?$")


def parse_gmirror_status(text: str) -> dict[str, Mirror]:
    """`gmirror status` ("%*s  %*s  %s": right-aligned Name and Status, continuation lines
    carry one more component) and `gmirror status -s` (name and status on every line).
    Also tolerates whitespace-collapsed copies such as seed 000's."""
    out: dict[str, Mirror] = {}
    current: Mirror | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.split()[:2] == ["Name", "Status"]:
            continue
        m = _MIRROR_LINE.match(line)
        if m and m.group(2) in MIRROR_STATES:
            name = m.group(1).removeprefix("mirror/")
            current = out.setdefault(name, Mirror(name, m.group(2)))
            comp = m.group(3)
        elif current is not None:
            comp = line.strip()
        else:
            continue
        c = _COMPONENT.match(comp)
        if c:
            current.components.append(MirrorComponent(
                c.group(1), c.group(2), int(c.group(3)) if c.group(3) else None))
    return out


# -- mdconfig (docs/reference/md.md §1) -------------------------------------------------


def parse_mdconfig_list(text: str) -> list[str]:
    """`mdconfig -l`: "md0 md1 \\n" (each name followed by a space); nothing when none."""
    return text.split()


@dataclasses.dataclass
class MdUnit:
    name: str
    type: str
    size: str
    path: str = ""


def parse_mdconfig_verbose(text: str) -> dict[str, MdUnit]:
    """`mdconfig -lv`: "md0\\tvnode\\t%6s\\t/path" (+ "\\tlabel\\toptions" on newer releases)."""
    out = {}
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) < 3 or not f[0].strip():
            continue
        name = f[0].strip()
        out[name] = MdUnit(name, f[1].strip(), f[2].strip(), f[3] if len(f) > 3 else "")
    return out


# -- ggatec list (docs/reference/ggate.md §1) -------------------------------------------


def parse_ggatec_list(text: str) -> dict[str, dict[str, str]]:
    """`ggatec list` (one provider a line) or `ggatec list -v` (blocks of right-aligned
    "key: value" lines separated by a blank line; NAME names the provider)."""
    out: dict[str, dict[str, str]] = {}
    block: dict[str, str] = {}

    def flush() -> None:
        if block.get("NAME"):
            out[block["NAME"]] = dict(block)
        block.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        key, sep, value = stripped.partition(": ")
        if sep:
            block[key] = value
        elif ":" not in stripped:
            out.setdefault(stripped, {"NAME": stripped})
    flush()
    return out


# -- drbdadm ----------------------------------------------------------------------------


def split_pair(text: str) -> tuple[str, str | None]:
    """drbdadm role/dstate (8.4: "Primary/Secondary", "UpToDate/DUnknown"); 9.x prints only
    the local value for role. Returns (local, peer or None)."""
    value = text.strip().splitlines()[0].strip() if text.strip() else ""
    local, sep, peer = value.partition("/")
    return local, (peer if sep else None)


# -- mounts and pools -------------------------------------------------------------------


def parse_zpool_status(text: str) -> dict[str, list[str]]:
    """`zpool status [-P]` -> pool -> the names in its config tree (vdevs, groups, pool).
    With -P vdevs are full paths; without it, paths under /dev lose that prefix."""
    pools: dict[str, list[str]] = {}
    pool = None
    in_config = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("pool:"):
            pool = stripped.split(":", 1)[1].strip()
            pools[pool] = []
            in_config = False
        elif stripped.startswith("config:"):
            in_config = True
        elif in_config and pool is not None:
            if stripped.startswith(("errors:", "NAME ")) or not stripped:
                if stripped.startswith("errors:"):
                    in_config = False
                continue
            pools[pool].append(stripped.split()[0])
    return pools
