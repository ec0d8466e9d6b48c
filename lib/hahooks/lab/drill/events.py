"""Cluster events delivered to a sandbox node the way its daemon would deliver them.

devd (docs/reference/carp-devd.md §3): the first matching rule of the highest priority runs through
`sh -c` and devd waits for it (serial per node). freevrrpd (docs/reference/freevrrpd.md §2): `system(masterscript)`,
no arguments, blocking. Heartbeat v1 (docs/reference/heartbeat.md §1): `resource.d/<script> args...
status|start|stop`. The drill renders each node's wiring with hahooks' own renderers and
runs exactly the command line the daemon would run, inside the node.
"""
from __future__ import annotations

import dataclasses
import re

# How long after the old master falls silent the backup declares itself master, when a
# graceful failover is delivered. CARP with preemption and Heartbeat hand over at once (0);
# freevrrpd (advert interval 1 s) waits its master-down interval, 3 adverts. The drill
# uses it for seed 000, whose ggate-export layer stops ggated without waiting for the
# peer's ggatec to go (the delivery at once is left to the fault matrix and the flap storm
# of the HAST scenarios).
MASTER_DOWN = {"freevrrpd": 3.0}

# a rule as hahooks' devd renderer writes it: notify PRIO { match "k" "re"; ... action "x"; };
_RULE = re.compile(r"notify\s+(\d+)\s*\{(.*?)\};", re.S)
_MATCH = re.compile(r'match\s+"([^"]+)"\s+"([^"]+)"\s*;')
_ACTION = re.compile(r'action\s+"([^"]+)"\s*;')


@dataclasses.dataclass
class DevdRule:
    priority: int
    matches: list[tuple[str, str]]
    action: str


def parse_devd(text: str) -> list[DevdRule]:
    """The notify rules of a devd.conf written by `hahooks render --only devd`."""
    text = re.sub(r"(?m)#.*$", "", text)
    rules = []
    for m in _RULE.finditer(text):
        body = m.group(2)
        action = _ACTION.search(body)
        if action:
            rules.append(DevdRule(int(m.group(1)), _MATCH.findall(body), action.group(1)))
    return rules


def devd_action(rules: list[DevdRule], event: dict[str, str]) -> str | None:
    """The action devd runs for `event` ({system, subsystem, type}): first match of the
    highest priority, regexes anchored and case-insensitive as devd compiles them. The
    rendered actions carry no $variables, so no expansion is needed."""
    for rule in sorted(rules, key=lambda r: -r.priority):
        if all(re.fullmatch(rx, event.get(var, ""), re.I) for var, rx in rule.matches):
            return rule.action
    return None


def carp_event(vhid: int, interface: str, state: str) -> dict[str, str]:
    """FreeBSD >= 10: devctl_notify("CARP", "<vhid>@<if>", state)."""
    return {"system": "CARP", "subsystem": f"{vhid}@{interface}", "type": state}


def freevrrpd_script(conf_text: str, state: str) -> str:
    """The masterscript/backupscript line freevrrpd hands to sh for `state`."""
    from hahooks.wiring import freevrrpd

    section = freevrrpd.parse_conf(conf_text)[0]
    return section["masterscript" if state == "MASTER" else "backupscript"]
