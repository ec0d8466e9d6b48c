"""fence_hahooks_sandbox: a fence agent that speaks fence-agents' stdin protocol (one
`name=value` a line: action, plug/port/nodename, and this agent's desk and fencer;
docs/reference/pacemaker.md §8) and powers off a sandbox node through the drill's fence
desk (drill/fence.py: the desk kills the node's namespaces and answers only once it is
down). So hahooks' `[node] fence` with `fence_options`, and Pacemaker's stonith, can be
exercised against real sandbox nodes exactly as with fence_ipmilan.

    printf 'action=off\\nplug=nodea\\ndesk=/run/lab/fence\\nfencer=nodeb\\n' | \\
        python3 -m hahooks.lab.drill.fence_agent

Exit codes as fence-agents: 0 done (status: on), 1 failed, 2 status: off.
"""
from __future__ import annotations

import os
import sys

from hahooks.lab.drill import fence

AGENT = "fence_hahooks_sandbox"
ACTIONS = ("off", "reboot", "on", "status", "monitor", "list", "metadata", "validate-all")

METADATA = f"""<?xml version="1.0" ?>
<resource-agent name="{AGENT}" shortdesc="Fence agent for hahooks sandbox nodes">
<longdesc>Powers off a hahooks sandbox node (its namespaces killed) through the drill's
fence desk.</longdesc>
<vendor-url>https://example.invalid/hahooks</vendor-url>
<parameters>
<parameter name="action" unique="0" required="1"><getopt mixed="-o, --action=[action]"/>
<content type="string" default="reboot"/><shortdesc lang="en">Fencing action</shortdesc>
</parameter>
<parameter name="plug" unique="0" required="0"><getopt mixed="-n, --plug=[id]"/>
<content type="string"/><shortdesc lang="en">The node to power off</shortdesc></parameter>
<parameter name="desk" unique="0" required="1"><getopt mixed="--desk=[dir]"/>
<content type="string"/><shortdesc lang="en">The drill's fence desk directory</shortdesc>
</parameter>
<parameter name="fencer" unique="0" required="0"><getopt mixed="--fencer=[node]"/>
<content type="string"/><shortdesc lang="en">The node asking (default: hostname)</shortdesc>
</parameter>
</parameters>
<actions>
<action name="on"/><action name="off"/><action name="reboot"/><action name="status"/>
<action name="list"/><action name="monitor"/><action name="metadata"/>
<action name="validate-all"/>
</actions>
</resource-agent>
"""


def read_options(text: str) -> dict[str, str]:
    """fence-agents' read_stdin(): `name=value` lines, `#` comments and blanks skipped;
    `port` and `nodename` are aliases of `plug` (Pacemaker passes nodename)."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        opts[name.strip()] = value.strip()
    for alias in ("port", "nodename"):
        if alias in opts and "plug" not in opts:
            opts["plug"] = opts[alias]
    return opts


def run(opts: dict[str, str]) -> tuple[int, str]:
    action = opts.get("action", "reboot")
    if action == "metadata":
        return 0, METADATA
    if action not in ACTIONS:
        return 1, f"{AGENT}: unsupported action {action!r}"
    desk = opts.get("desk", "")
    if not desk or not os.path.isdir(desk):
        return 1, f"{AGENT}: desk {desk!r}: no such fence desk"
    if action in ("monitor", "validate-all"):
        return 0, ""
    if action == "list":
        return 0, ""                       # static host list: Pacemaker's pcmk_host_list
    target = opts.get("plug", "")
    if not target:
        return 1, f"{AGENT}: no plug (node to power off) given"
    if action in ("on", "status"):
        # The desk only powers nodes off (a node comes back when the drill boots it) and
        # does not say who is up: no answer is better than a wrong one.
        return 1, f"{AGENT}: {action} of {target} is not supported by the fence desk"
    fencer = opts.get("fencer") or os.uname().nodename.split(".")[0]
    ok, detail = fence.request(desk, fencer, target, f"{AGENT} {action}",
                               float(opts.get("timeout", fence.DEFAULT_TIMEOUT)))
    return (0, f"Success: {target} powered off ({detail})") if ok else \
        (1, f"{AGENT}: {target} NOT powered off: {detail}")


def main() -> int:
    code, text = run(read_options(sys.stdin.read()))
    if text:
        print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
