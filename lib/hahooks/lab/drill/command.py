"""`hahooks drill`: a two-node sandbox cluster on this machine runs a whole failover and
prints the timeline and a PASS/FAIL verdict (docs/drill.md). A lab command: the CLI
registers it only where the lab is installed (lib/hahooks/cli.py LAB_COMMAND_MODULES)."""
from __future__ import annotations

import json
import re
import sys

from hahooks.errors import ExitCode, UsageError

FAULTS = ("fail", "hang", "kill")
_INJECT_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.@+-]{0,62})(?:/(acquire|release))?"
                        r":(fail|hang|kill)$")


def parse_inject(text: str) -> tuple[str, str, str]:
    """"pool:hang", "disks/release:kill" -> (resource, action, fault)."""
    m = _INJECT_RE.match(text)
    if not m:
        raise UsageError(f"--inject {text!r}: expected STEP:FAULT with STEP a resource name "
                         "of the scenario, optionally /acquire or /release (default acquire), "
                         f"and FAULT one of {', '.join(FAULTS)} (e.g. --inject pool:hang)")
    return m.group(1), m.group(2) or "acquire", m.group(3)


def register(sub, common) -> None:
    text = "run a failover drill on a two-node sandbox cluster (root; development install)"
    p = sub.add_parser("drill", help=text, description=(
        text + ". Builds two nodes (network/mount/PID/UTS namespaces, simulated HAST/"
        "gmirror/ggate/DRBD, real zfs-fuse, ext4, MariaDB, nginx), makes node A master, "
        "writes data through the service, fails A over to B gracefully and by a crash, "
        "checks the data and fails back; prints the timeline and PASS/FAIL (exit 0/1). "
        "Exit 4 without root, 5 when a package is missing (a production install has no "
        "drill: it needs the development install, scripts/bootstrap), 2 for bad arguments."))
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help="which scenario (default: the default one; see --list)")
    p.add_argument("--inject", action="append", default=[], metavar="STEP:FAULT",
                   help="break a step during the first failover: STEP is a resource name "
                   "(optionally /acquire or /release), FAULT one of fail, hang, kill "
                   "(exit != 0, hang past its timeout, SIGKILL of the hook mid-step); the "
                   "drill then checks the failure was safe and that a re-run converges")
    p.add_argument("--warm", action="store_true",
                   help="run `hahooks agent` in every node that is up (the warm path, "
                   "docs/operations.md): each event hands its desire to the agent's "
                   "converger instead of starting a worker")
    p.add_argument("--keep", action="store_true",
                   help="leave the sandbox up for inspection (prints how to enter the nodes "
                   "and how to tear it down)")
    p.add_argument("--nodes", type=int, choices=(2, 3), default=2,
                   help="--scenario pacemaker only: the cluster's size (default 2)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="where the sandbox's files go (default: a new dir under /var/tmp)")
    p.set_defaults(func=run_drill)


def run_drill(args) -> int:
    from hahooks.lab.drill import scenarios

    if args.list:
        for sc in scenarios.all_scenarios():
            mark = " (default)" if sc.name == scenarios.DEFAULT else ""
            print(f"{sc.name:<10} {sc.title}{mark}")
            print(f"{'':<10} resources: {', '.join(sc.resource_names)}")
        from hahooks.lab.drill import pacemaker
        print(f"{pacemaker.NAME:<10} {pacemaker.TITLE}")
        return ExitCode.OK
    name = args.scenario or scenarios.DEFAULT
    if name == "pacemaker":                  # its own cluster: drill/pacemaker.py
        if args.warm:
            raise UsageError("--warm: Pacemaker runs the OCF agent, which converges itself "
                             "(--wait); the warm agent serves --detach hooks only")
        return run_pacemaker(args)
    if args.nodes != 2:
        raise UsageError(f"--nodes {args.nodes}: only --scenario pacemaker has more than "
                         "two nodes")
    try:
        scenario = scenarios.get(name)
    except KeyError:
        raise UsageError(f"--scenario {name!r}: unknown scenario (known: "
                         f"{', '.join(s.name for s in scenarios.all_scenarios())})") from None
    injects = [parse_inject(text) for text in args.inject]
    for resource, _action, _fault in injects:
        if resource not in scenario.resource_names:
            raise UsageError(f"--inject {resource!r}: no such step in scenario {name} "
                             f"(steps: {', '.join(scenario.resource_names)})")
    from hahooks.lab.drill import preflight

    preflight.check(scenario.tools)
    from hahooks.lab.drill import run as run_mod
    from hahooks import logs

    logs.setup(stderr_level=30 if args.json else 20, json_file=False)
    report = run_mod.drill(scenario, injects=injects, keep=args.keep, workdir=args.workdir,
                           progress=None if args.json else sys.stderr, warm=args.warm)
    if args.json:
        print(json.dumps(report.as_json(), indent=1))
    else:
        print(report.render())
    return ExitCode.OK if report.verdict.passed else ExitCode.GENERIC


def run_pacemaker(args) -> int:
    from hahooks.lab.drill import pacemaker, preflight

    if args.inject or args.json:
        raise UsageError("--scenario pacemaker: --inject and --json are not supported")
    preflight.check(pacemaker.TOOLS)
    passed, text = pacemaker.drill(args.workdir, args.keep, progress=sys.stderr,
                                   nodes=args.nodes)
    print(text, end="")
    return ExitCode.OK if passed else ExitCode.GENERIC
