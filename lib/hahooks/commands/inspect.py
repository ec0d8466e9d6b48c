"""Read-only subcommands: status, check, plan, history. None of them changes anything."""
from __future__ import annotations

import json
import sys

from hahooks import config as config_mod
from hahooks.errors import ExitCode

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABEL = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def register(sub, common) -> None:
    p = sub.add_parser("status", parents=[common], help="observe the stack (exit 0 OK, "
                       "1 WARNING, 2 CRITICAL, 3 UNKNOWN)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_status)
    p = sub.add_parser("check", parents=[common], help="validate the config (exit 6 if bad)")
    p.set_defaults(func=run_check)
    p = sub.add_parser("plan", parents=[common], help="what master or slave would do now")
    p.add_argument("role", choices=("master", "slave"))
    p.set_defaults(func=run_plan)
    p = sub.add_parser("history", parents=[common], help="last transitions with step timings")
    p.add_argument("-n", type=int, default=5, help="how many transitions (default 5)")
    p.add_argument("--log", help="JSON-lines log to read (default: node.log_file)")
    p.set_defaults(func=run_history)


def _quiet_logging(cfg, args) -> None:
    from hahooks import logs
    from hahooks.cli import stderr_level

    import logging
    logs.setup(node=cfg.node.name, stderr_level=max(stderr_level(args), logging.WARNING))


def evaluate(cfg) -> dict:
    """Observe every layer and grade the whole like a monitoring plugin."""
    from hahooks.engine import Engine
    from hahooks.kinds.base import State
    from hahooks.state import StateDir, TransitionLock
    from hahooks.transition import make_runner

    observed = Engine(cfg, make_runner(cfg)).observe()
    layers = [{"name": s.name, "kind": s.kind, "state": o.state.value, "reason": o.reason,
               "warning": o.warning, **({"details": o.details} if o.details else {})}
              for s, o in observed]
    states = {o.state for _, o in observed}
    desire, in_progress = None, False
    try:
        state = StateDir(cfg.node.state_dir)
        desire = state.desire()
        in_progress = TransitionLock(state).held_elsewhere()
    except Exception:
        pass
    if State.BROKEN in states:
        code, summary = CRITICAL, "broken layer(s): " + ", ".join(
            s.name for s, o in observed if o.state is State.BROKEN)
    elif states == {State.HELD}:
        role = "master"
        code, summary = OK, f"master: all {len(observed)} layer(s) held"
        warns = [f"{s.name}: {o.warning}" for s, o in observed if o.warning]
        if warns:
            code, summary = WARNING, summary + "; " + "; ".join(warns)
    elif states == {State.RELEASED}:
        role = "slave"
        code, summary = OK, f"slave: nothing held ({len(observed)} layer(s) released)"
    else:
        role = None
        code, summary = CRITICAL, "half a stack held: " + ", ".join(
            f"{s.name}={o.state.value}" for s, o in observed)
    if code != CRITICAL and desire and desire.role != role:
        code = WARNING if in_progress else CRITICAL
        summary += f"; desired role is {desire.role} (#{desire.seq})" + \
            (", transition in progress" if in_progress else ", not converged")
    return {"node": cfg.node.name, "status": LABEL[code], "code": code, "summary": summary,
            "desired": desire.role if desire else None, "in_progress": in_progress,
            "layers": layers}


def run_status(args) -> int:
    try:
        cfg = config_mod.load(args.config)
    except Exception as exc:
        from hahooks.errors import HahooksError
        msg = exc.one_line() if isinstance(exc, HahooksError) else str(exc)
        print(f"UNKNOWN: {msg}")
        return UNKNOWN
    _quiet_logging(cfg, args)
    try:
        report = evaluate(cfg)
    except Exception as exc:
        print(f"UNKNOWN: {exc}")
        return UNKNOWN
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['status']}: {report['node']}: {report['summary']}")
        width = max(len(layer["name"]) for layer in report["layers"])
        for layer in report["layers"]:
            extra = f" [warning: {layer['warning']}]" if layer["warning"] else ""
            print(f"  {layer['name']:<{width}}  {layer['kind']:<12} {layer['state']:<8} "
                  f"{layer['reason']}{extra}")
    return report["code"]


def run_check(args) -> int:
    cfg = config_mod.load(args.config)
    print(f"{cfg.path}: ok: node {cfg.node.name} ({cfg.node.platform.name}), "
          f"{len(cfg.resources)} layer(s): " +
          " -> ".join(f"{r.name} ({r.kind})" for r in cfg.resources))
    return ExitCode.OK


def run_plan(args) -> int:
    from hahooks.engine import Engine
    from hahooks.transition import make_runner

    cfg = config_mod.load(args.config)
    _quiet_logging(cfg, args)
    steps = Engine(cfg, make_runner(cfg, dry_run=True)).plan(args.role)
    print(f"plan for {args.role} on {cfg.node.name} "
          f"({'in order' if args.role == 'master' else 'in reverse order'}):")
    for i, step in enumerate(steps, 1):
        print(f"  {i}. {step}")
    return ExitCode.OK


def run_history(args) -> int:
    cfg = config_mod.load(args.config)
    path = args.log or cfg.node.log_file
    transitions: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                tid = rec.get("transition")
                if not tid:
                    continue
                t = transitions.setdefault(tid, {"id": tid, "role": rec.get("role"),
                                                 "start": rec.get("time"), "steps": [],
                                                 "end": None})
                event = rec.get("event")
                if event == "step":
                    t["steps"].append(f"{rec.get('step')} {rec.get('resource')} "
                                      f"{'ok' if rec.get('ok') else 'FAILED'} "
                                      f"{rec.get('duration', 0):.3f}s")
                elif event == "transition_end":
                    t["end"] = rec.get("message")
    except FileNotFoundError:
        print(f"no log yet at {path}")
        return ExitCode.OK
    for t in list(transitions.values())[-args.n:]:
        print(f"{t['start']}  #{t['id']}  {t['role']}: {t['end'] or 'unfinished'}")
        for s in t["steps"]:
            print(f"    {s}")
    return ExitCode.OK
