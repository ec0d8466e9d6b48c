"""devd wiring: `hahooks devd-event SYSTEM SUBSYSTEM TYPE` and the rules that call it.

devd (sbin/devd/devd.cc) runs the action of the *first* matching rule of the highest
priority through `sh -c` and waits for it; while it waits, later events queue in the
kernel. So the rules pass `--detach` (record the desire, start a worker, return), match only
the configured vhid/interface, and carry no devd variable at all: each rule matches one
event exactly and writes its fields as literal words, which reads the same under old devd
(raw `$var` expansion) and new devd (`$'...'`-quoted expansion).

Event forms (docs/reference/carp-devd.md §1–2):
  FreeBSD >= 10  !system=CARP subsystem=<vhid>@<if> type=MASTER|BACKUP|INIT
  FreeBSD < 10   !system=IFNET subsystem=carp0 type=LINK_UP|LINK_DOWN
INIT (link loss on the carrier) must release the stack: carp(4)'s example rule matching only
(MASTER|BACKUP) never runs on that transition.
"""
from __future__ import annotations

import dataclasses
import re
import shlex

from hahooks.errors import ConfigError, UsageError
from hahooks.wiring import hook

# devd's own variable syntax is [A-Za-z][A-Za-z0-9_-]*; the kernel's values are narrower.
SYSTEM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,14}$")          # IFNAMSIZ 16 with the NUL
CARP_SUBSYSTEM_RE = re.compile(r"^([0-9]{1,3})@([A-Za-z][A-Za-z0-9_.]{0,14})$")
OTHER_SUBSYSTEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
LEGACY_CARP_RE = re.compile(r"^carp[0-9]+$")

CARP_ROLES = {"MASTER": "master", "BACKUP": "slave", "INIT": "slave"}
IFNET_ROLES = {"LINK_UP": "master", "LINK_DOWN": "slave"}
PRIORITY = 100   # above base devd.conf's generic priority-0 IFNET rules
# Characters devd or the shell would reinterpret inside an action string.
_UNSAFE_IN_ACTION = re.compile(r'["$\\`\n\x00]')


@dataclasses.dataclass(frozen=True)
class Decision:
    role: str | None        # "master" | "slave" | None (ignore)
    reason: str

    def __str__(self) -> str:
        return f"{self.role or 'ignore'}: {self.reason}"


def _bad(what: str, value: str, expected: str) -> UsageError:
    return UsageError(f"devd-event: bad {what} {value!r}: expected {expected}; "
                      "nothing recorded")


def validate(system: str, subsystem: str, type_: str) -> None:
    """Reject anything the kernel would never send (shell metacharacters, spaces, junk)."""
    if not SYSTEM_RE.match(system):
        raise _bad("system", system, "a devd system name like CARP or IFNET")
    if not TYPE_RE.match(type_):
        raise _bad("type", type_, "a devd event type like MASTER or LINK_UP")
    upper = system.upper()
    if upper == "CARP":
        m = CARP_SUBSYSTEM_RE.match(subsystem)
        if not m or not 1 <= int(m.group(1)) <= 255:
            raise _bad("subsystem", subsystem, "<vhid>@<interface> like 1@em0 (vhid 1..255)")
    elif upper == "IFNET":
        if not IFNAME_RE.match(subsystem):
            raise _bad("subsystem", subsystem, "an interface name like carp0")
    elif not OTHER_SUBSYSTEM_RE.match(subsystem):
        raise _bad("subsystem", subsystem, "a devd subsystem name")


def decide(system: str, subsystem: str, type_: str, wiring: dict | None = None) -> Decision:
    """Pure: which role an already validated devd event asks for, given [wiring]."""
    wiring = wiring or {}
    system, type_ = system.upper(), type_.upper()
    event = f"{system} {subsystem} {type_}"
    if system == "CARP":
        vhid, ifname = subsystem.split("@", 1)
        want_vhid, want_if = wiring.get("vhid"), wiring.get("interface")
        if (want_vhid is not None and int(vhid) != want_vhid) or \
                (want_if is not None and ifname != want_if):
            return Decision(None, f"{event}: not the configured "
                            f"{want_vhid or '*'}@{want_if or '*'}")
        role = CARP_ROLES.get(type_)
        if role is None:
            return Decision(None, f"{event}: not a CARP state change we act on")
        why = " (carrier lost: CARP went to INIT)" if type_ == "INIT" else ""
        return Decision(role, f"{event}{why}")
    if system == "IFNET":
        legacy = wiring.get("legacy_interface")
        if (subsystem != legacy) if legacy else not LEGACY_CARP_RE.match(subsystem):
            return Decision(None, f"{event}: not the configured CARP interface "
                            f"{legacy or 'carpN'}")
        role = IFNET_ROLES.get(type_)
        if role is None:
            return Decision(None, f"{event}: not a link state change")
        return Decision(role, f"{event} (pre-10 CARP: LINK_UP is MASTER, LINK_DOWN any other)")
    return Decision(None, f"{event}: not a CARP event")


# -- the subcommand ------------------------------------------------------------------------
def register(sub, common) -> None:
    p = sub.add_parser("devd-event", parents=[common],
                       help="act on a devd CARP event (called by the devd/ rules)",
                       description="Decide master / slave / ignore from devd's $system "
                       "$subsystem $type and record it. devd waits for its actions, so the "
                       "default is --detach.")
    p.add_argument("system", help="devd $system (CARP, IFNET)")
    p.add_argument("subsystem", help="devd $subsystem (<vhid>@<if>, carp0)")
    p.add_argument("type", help="devd $type (MASTER, BACKUP, INIT, LINK_UP, LINK_DOWN)")
    hook.add_mode(p, detach_default=True)
    p.add_argument("--explain", action="store_true",
                   help="print the decision only; record nothing")
    p.set_defaults(func=run_devd_event)


def run_devd_event(args) -> int:
    validate(args.system, args.subsystem, args.type)
    argv = [args.system, args.subsystem, args.type]
    cfg = hook.load(args)
    decision = decide(args.system, args.subsystem, args.type, cfg.wiring)
    if args.explain or decision.role is None:
        if not args.explain:
            hook.log_call("devd", argv, f"ignored: {decision.reason}")
        print(decision)
        return 0
    return hook.request(cfg, args, decision.role, caller="devd", argv=argv)


# -- rendering the rules ---------------------------------------------------------------------
def action_words(*words: str) -> str:
    """A devd action from literal words: shell-quoted, with nothing devd would expand."""
    for w in words:
        if _UNSAFE_IN_ACTION.search(w):
            raise ConfigError(f"cannot put {w!r} into a devd action: it contains a quote, "
                              "'$', backslash, backtick or newline that devd or sh would "
                              "reinterpret")
    return " ".join(shlex.quote(w) for w in words)


def _rule(comment: str, matches: list[tuple[str, str]], action: str) -> str:
    lines = [f"# {comment}", f"notify {PRIORITY} {{"]
    lines += [f'\tmatch "{var}"\t"{regex}";' for var, regex in matches]
    lines += [f'\taction "{action}";', "};", ""]
    return "\n".join(lines)


def render_rules(wiring: dict, hahooks: str, config_path: str) -> str:
    """devd.conf rules for the configured CARP generation(s)."""
    vhid, ifname, legacy = wiring.get("vhid"), wiring.get("interface"), wiring.get("legacy_interface")
    if not (vhid and ifname) and not legacy:
        raise ConfigError(f"{config_path}: devd rules need [wiring] vhid and interface "
                          "(FreeBSD >= 10) or legacy_interface (carp0, FreeBSD < 10)")
    out = [f"# hahooks devd rules, generated by `hahooks render --only devd` for {config_path}.",
           "# devd runs only the first matching rule (highest priority first) and waits",
           "# for it, so each action records the request (--detach) and returns at once.",
           ""]
    events = []
    if vhid and ifname:
        events.append(("FreeBSD >= 10: CARP", "CARP", f"{vhid}@{ifname}", CARP_ROLES))
    if legacy:
        events.append(("FreeBSD < 10: IFNET", "IFNET", legacy, IFNET_ROLES))
    for label, system, subsystem, roles in events:
        for type_, role in roles.items():
            out.append(_rule(
                f"{label} {subsystem} {type_} -> {role}",
                [("system", system), ("subsystem", re.escape(subsystem)), ("type", type_)],
                action_words(hahooks, "devd-event", "--detach", "-c", config_path,
                             system, subsystem, type_)))
    return "\n".join(out)
