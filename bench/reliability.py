#!/usr/bin/env python3
"""The four reliability figures of `hahooks drill`, each on a fresh two-node sandbox:

  fault matrix    every mutating step x {exit != 0, hang past its timeout, SIGKILL of the
                  hook mid-step}, and a holder hidden from the node's own mount table
                  before its `slave` (another mount namespace, a lazy unmount, a bind
                  mount left elsewhere): tried / safe
  flap storm      >= 500 CARP events, random spacing 0-200 ms, across both nodes
  no lost writes  MariaDB inserts through a graceful and a crash failover
  bad input       >= 50 malformed configs and arguments

    bench/reliability.py [--quick] [--only NAME ...] [--json FILE]

--quick (CI): the fault matrix and lost writes on the default scenario only; the flap
storm keeps its 500 events; bad input is always the whole suite. Needs root. Exit 0 when
every figure is at its target, 1 otherwise. Prints figures, never asserts on time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))

FIGURES = ("bad-input", "fault-matrix", "flap-storm", "lost-writes")


def _cluster(name: str, **kw):
    from hahooks.lab.drill import scenarios
    from hahooks.lab.drill.cluster import Cluster

    return Cluster(scenarios.get(name), progress=sys.stderr if kw.pop("verbose", False)
                   else None, warm=kw.pop("warm", False), **kw)


def bad_input(args) -> dict:
    from hahooks.lab.drill import badinput

    t = time.time()
    outcomes = badinput.run_all()
    unsafe = [o for o in outcomes if not o.safe]
    cats: dict[str, list[int]] = {}
    for o in outcomes:
        c = cats.setdefault(o.case.category, [0, 0])
        c[0] += 1
        c[1] += o.safe
    return {"figure": "bad input", "target": ">= 50 cases, all safe", "tried": len(outcomes),
            "safe": len(outcomes) - len(unsafe),
            "met": len(outcomes) >= 50 and not unsafe,
            "result": f"{len(outcomes)} tried / {len(outcomes) - len(unsafe)} safe (" +
                      ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in cats.items()) + ")",
            "unsafe": [f"{o.case.name}: {'; '.join(o.problems)}" for o in unsafe],
            "seconds": round(time.time() - t, 1)}


def fault_matrix(args) -> dict:
    from hahooks.lab.drill import faults, holders

    names = [args.scenario] if args.quick or args.scenario != "all" else \
        ["seed003", "seed002"]
    trials = []
    t = time.time()
    for name in names:
        if name == "all":
            name = "seed003"
        with _cluster(name, faults=True, command_timeout="8s", verbose=args.verbose,
                      warm=args.warm) as c:
            trials += faults.matrix(c)
            trials += holders.matrix(c)       # issue 17: hidden mounts before `slave`
    unsafe = [tr for tr in trials if not tr.safe]
    hidden = [tr for tr in trials if tr.fault in holders.CASES]
    stepped = {(tr.scenario, tr.step) for tr in trials if tr.fault not in holders.CASES}
    retried = sum(1 for tr in trials if tr.safe and tr.outcome == "recovered by a retry")
    return {"figure": "fault matrix", "target": "every trial safe",
            "tried": len(trials), "safe": len(trials) - len(unsafe),
            "met": bool(trials) and not unsafe,
            "result": f"{len(trials)} tried / {len(trials) - len(unsafe)} safe "
                      f"({', '.join(names)}: {len(stepped)} mutating steps x "
                      f"fail/hang/kill + {len(hidden)} hidden-mount cases "
                      f"({'/'.join(holders.CASES)}); {retried} of the safe ones recovered by "
                      "the layer's own retry, the others stopped and converged on the re-run)",
            "trials": [{"scenario": tr.scenario, "step": str(tr.step), "fault": tr.fault,
                        "node": tr.node, "safe": tr.safe, "seconds": round(tr.seconds, 1),
                        "outcome": tr.outcome,
                        "failed": [f"{c.name}: {c.detail}" for c in tr.verdict.failed]}
                       for tr in trials],
            "seconds": round(time.time() - t, 1)}


def flap_storm(args) -> dict:
    from hahooks.lab.drill import flap

    events = max(500, args.events)
    name = "seed003" if args.scenario == "all" else args.scenario
    t = time.time()
    with _cluster(name, verbose=args.verbose, warm=args.warm) as c:
        c.elect(c.nodes[0])
        r = flap.storm(c, events=events)
    return {"figure": "flap storm", "target": ">= 500 events; the elected node alone holds; "
            "0 overlapping transitions; 0 violations",
            "met": r.verdict.passed and r.events >= 500,
            "result": f"{r.events} events ({r.flips} flips) in {r.seconds:.0f}s: "
                      f"{r.holder or 'nobody'} holds (elected {r.elected}), "
                      f"{r.overlaps} overlapping, {r.violations} violations; "
                      f"{r.transitions} transitions ({r.superseded} superseded); "
                      f"settled {r.settle_seconds:.1f}s after the last event",
            "failed": [f"{c.name}: {c.detail}" for c in r.verdict.failed],
            "seconds": round(time.time() - t, 1)}


def lost_writes(args) -> dict:
    from hahooks.lab.drill import lostwrites

    names = [args.scenario if args.scenario != "all" else "seed003"] if args.quick else \
        (["seed003", "seed002"] if args.scenario == "all" else [args.scenario])
    results = []
    t = time.time()
    for name in names:
        with _cluster(name, verbose=args.verbose, warm=args.warm) as c:
            results.append(lostwrites.run(c))
    parts, failed = [], []
    for r in results:
        for p in r.phases:
            parts.append(f"{r.scenario} {p.name}: {p.acked} acked, {p.missing} missing, "
                         f"writes resumed after {p.outage:.1f}s, "
                         f"{'clean' if p.clean else 'NOT clean'}")
        failed += [f"{r.scenario}: {c.name}: {c.detail}" for c in r.verdict.failed]
    return {"figure": "no lost writes", "target": "0 acknowledged rows missing; fsck -n / "
            "zpool scrub clean", "met": bool(results) and not failed and
            all(len(r.phases) == 2 for r in results),
            "result": "; ".join(parts) or "no phase completed", "failed": failed,
            "seconds": round(time.time() - t, 1)}


RUNNERS = {"bad-input": bad_input, "fault-matrix": fault_matrix, "flap-storm": flap_storm,
           "lost-writes": lost_writes}


def table(rows: list[dict]) -> str:
    out = ["| figure | target | result | met | time |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['figure']} | {r['target']} | {r['result']} | "
                   f"{'yes' if r['met'] else 'NO'} | {r.get('seconds', 0):.0f}s |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI mode (smaller, still real)")
    p.add_argument("--only", action="append", choices=FIGURES, help="run only these")
    p.add_argument("--scenario", default="all", help="scenario for the sandbox figures")
    p.add_argument("--events", type=int, default=0, help="flap storm events (min 500)")
    p.add_argument("--warm", action="store_true", help="the sandbox figures (fault matrix, "
                   "flap storm, lost writes) with `hahooks agent` running in every node that "
                   "is up (the warm path)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("-v", "--verbose", action="store_true", help="drill progress on stderr")
    args = p.parse_args(argv)
    if not args.events:
        args.events = 500 if args.quick else 1000
    from hahooks.lab.drill import preflight, scenarios
    from hahooks.errors import HahooksError

    try:
        tools = set()
        for sc in scenarios.all_scenarios():
            if sc.name in ("seed003", "seed002"):
                tools |= set(sc.tools)
        preflight.check(sorted(tools))
    except HahooksError as exc:
        print(f"reliability: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    rows = []
    for name in args.only or FIGURES:
        try:
            rows.append(RUNNERS[name](args))
            if args.warm and name != "bad-input":       # bad input runs no cluster
                rows[-1]["figure"] += " (warm agents)"
        except Exception as exc:     # a figure that could not be measured is not met
            rows.append({"figure": name, "target": "", "met": False,
                         "result": f"could not run: {type(exc).__name__}: {exc}"})
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(f"reliability figures ({'quick' if args.quick else 'full'} mode, "
          f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    print(table(rows))
    for r in rows:
        for key in ("unsafe", "failed"):
            for line in r.get(key) or []:
                print(f"  {r['figure']}: {line}")
        for tr in r.get("trials", []):
            if not tr["safe"]:
                print(f"  unsafe trial: {tr['scenario']} {tr['step']} {tr['fault']}: "
                      f"{'; '.join(tr['failed'])}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
