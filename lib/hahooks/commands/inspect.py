"""Read-only subcommands: status, check, plan, history. None of them changes anything: they
take no lock and record no desire; `plan` runs the kinds with a dry-run runner."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from hahooks import config as config_mod, logs
from hahooks.cli import stderr_level
from hahooks.errors import ExitCode, HahooksError

# The engine, the state dir, the kinds, monitoring, preflight and timespec are imported in
# the functions that use them: the CLI imports this module to build its whole parser
# (cli.COMMAND_MODULES), which a wiring hook does at every event.

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABEL = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

STATUS_EPILOG = """\
exit codes (monitoring-plugin style):
  0 OK        the stack is wholly held (master) or wholly released (slave), as desired
  1 WARNING   a layer is degraded, or a transition towards the desired role is running
              (also while it holds half the stack)
  2 CRITICAL  a layer is broken, half the stack is held with no transition running, the
              desired role was not reached, or the state dir cannot be written (full,
              read-only)
  3 UNKNOWN   the config or the state dir cannot be read (a user who is not root: run it
              through sudo, docs/config.md "Monitoring"), a layer cannot be observed, or a
              threshold is malformed
  WARNING also in maintenance mode; -w/-C raise the code when a metric leaves its range.
first line: STATUS: NODE: SUMMARY | layers_held=N;w;c;0;TOTAL last_transition_age=Ns
            hast_dirty_bytes=NB mirror_sync=N% (the last three only where they apply)
"""


def register(sub, common) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("status", parents=[common], help="observe the stack (exit 0 OK, "
                       "1 WARNING, 2 CRITICAL, 3 UNKNOWN)", epilog=STATUS_EPILOG,
                       formatter_class=raw)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--warning", "-w", action="append", metavar="METRIC=RANGE",
                   help="WARNING when a metric is outside RANGE (Nagios ranges: 10, 10:, "
                   "~:10, 10:20, @10:20; sizes may end in k/m/g/t); metrics: layers_held, "
                   "last_transition_age, hast_dirty_bytes, mirror_sync; repeatable")
    p.add_argument("--critical", "-C", action="append", metavar="METRIC=RANGE",
                   help="CRITICAL when a metric is outside RANGE (as --warning)")
    p.add_argument("--prometheus", metavar="FILE", help="also write the status, transition "
                   "counts and the last transition's duration and outcome as a node_exporter "
                   "textfile (written atomically, 0644)")
    p.set_defaults(func=run_status)
    p = sub.add_parser("check", parents=[common], help="validate the config and the order "
                       "of the stack (exit 6 if bad); --deep: also this node's tools",
                       epilog="exit codes: 0 valid (warnings on stderr as file:line: warning: "
                       "...), 6 invalid or missing, or a layer in an order that cannot work "
                       "(file:line: what is wrong) or naming a path another user could redirect, 5 (--deep) a tool or init script is "
                       "missing, 4 (--deep) permission")
    p.add_argument("--deep", action="store_true", help="also run every layer's read-only "
                   "probes and look up every command, init script, device and pool its status, "
                   "acquire and release would use (changes nothing)")
    p.set_defaults(func=run_check)
    p = sub.add_parser("plan", parents=[common], help="what master or slave would do now",
                       epilog="exit codes: 0 every step's preview completes; 1 (5: a tool is "
                       "missing, 4: permission) a step's preview stops: the walk would not "
                       "get past it now; 6 invalid config")
    p.add_argument("role", choices=("master", "slave"))
    p.set_defaults(func=run_plan)
    p = sub.add_parser("history", parents=[common], help="last transitions: trigger, outcome "
                       "(ok, FAILED, superseded, unfinished), step timings, demotions, fences")
    p.add_argument("-n", type=int, default=5, help="how many transitions (default 5)")
    p.add_argument("--log", help="JSON-lines log to read (default: node.log_file)")
    p.add_argument("--since", help="only transitions started since: yesterday, today, an "
                   "ISO date or time (2026-12-05T22:00, local), or an age (-2h, 30m, 1d); "
                   "-n still limits the count")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_history)


def _quiet_logging(cfg, args) -> None:
    logs.setup(node=cfg.node.name, stderr_level=max(stderr_level(args), logging.WARNING))


def grade(observed, desire=None, in_progress: bool = False, done: dict | None = None,
          state_problem: str | None = None) -> tuple:
    """(code, summary, role) for observed [(spec, Observation)]. Pure: tests feed it.
    state_problem: why the state dir cannot be written (the next transition would fail
    before acting), which makes any stack CRITICAL."""
    from hahooks.kinds.base import State

    states = {o.state for _, o in observed}
    unobservable = [s.name for s, o in observed
                    if o.details.get("status_error") in (ExitCode.NOT_INSTALLED, ExitCode.PERM)]
    broken = [s.name for s, o in observed
              if o.state is State.BROKEN and s.name not in unobservable]
    role = None
    if broken:
        code, summary = CRITICAL, "broken layer(s): " + ", ".join(
            f"{s.name} ({o.reason})" for s, o in observed if s.name in broken)
    elif unobservable:
        code, summary = UNKNOWN, "cannot observe: " + ", ".join(
            f"{s.name} ({o.reason})" for s, o in observed if s.name in unobservable)
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
        # a walk under way holds part of the stack by design; only a stopped one is CRITICAL
        code = WARNING if in_progress else CRITICAL
        summary = "half a stack held: " + ", ".join(
            f"{s.name}={o.state.value}" for s, o in observed)
    if code in (OK, WARNING) and desire and desire.role != role:
        code = WARNING if in_progress else CRITICAL
        summary += f"; desired role is {desire.role} (#{desire.seq})"
        if in_progress:
            summary += ", transition in progress"
        elif done and done.get("seq", 0) >= desire.seq and done.get("exit_code"):
            summary += f", last transition failed: {done.get('message')}"
        else:
            summary += ", not converged"
    if state_problem:
        code, summary = CRITICAL, f"{state_problem}; {summary}"
    return code, summary, role


def evaluate(cfg) -> dict:
    """Observe every layer and grade the whole like a monitoring plugin."""
    from hahooks.engine import Engine
    from hahooks.state import StateDir, TransitionLock

    observed = Engine.for_config(cfg, dry_run=True).observe()
    layers = [{"name": s.name, "kind": s.kind, "state": o.state.value, "reason": o.reason,
               "warning": o.warning, **({"details": o.details} if o.details else {})}
              for s, o in observed]
    desire, done, in_progress, maintenance = None, None, False, None
    state = StateDir(cfg.node.state_dir)
    why = state.write_problem()
    state_problem = (f"state dir {state.path} cannot be written ({why}): the next master "
                     "or slave will fail before acting") if why else None
    state_error = state_unreadable(cfg.node.state_dir)
    if not state_error:
        try:
            desire, done = state.desire(), state.done()
            in_progress = TransitionLock(state).held_elsewhere()
            maintenance = state.maintenance()
        except HahooksError as exc:
            state_error = exc.one_line()
    code, summary, _ = grade(observed, desire, in_progress, done, state_problem)
    if maintenance:   # nobody acts on daemon events: this node will not fail over
        from hahooks.maintenance import describe

        code = WARNING if code == OK else code
        summary += "; " + describe(maintenance)
    if state_error and code in (OK, WARNING):
        # without the desire and the last result an OK could hide a failed master
        code, summary = UNKNOWN, f"{state_error}; {summary}"
    return {"node": cfg.node.name, "status": LABEL[code], "code": code, "summary": summary,
            "state_dir_problem": state_problem,
            "desired": desire.role if desire else None, "desired_seq": desire.seq if desire
            else None, "in_progress": in_progress, "last": done, "state_error": state_error,
            "maintenance": maintenance, "layers": layers}


def state_unreadable(path: str) -> str | None:
    """Why this user cannot read the state dir, or None (readable, or not created yet: a
    node that never ran master or slave). A monitoring user who is not root lands here;
    docs/config.md "Monitoring" says how to give it access."""
    try:
        os.stat(path)
        os.listdir(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return (f"cannot read state dir {path}: {exc.strerror} (run status as root, "
                "e.g. through sudo)")
    return None


def run_status(args) -> int:
    from hahooks import monitoring

    try:
        warning = monitoring.parse_thresholds(args.warning)
        critical = monitoring.parse_thresholds(args.critical)
        cfg = config_mod.load(args.config)
    except HahooksError as exc:   # a plugin's bad arguments are UNKNOWN too
        print(f"UNKNOWN: {exc.one_line()}")
        return UNKNOWN
    _quiet_logging(cfg, args)
    try:
        report = evaluate(cfg)
    except Exception as exc:
        print(f"UNKNOWN: {type(exc).__name__}: {exc}")
        return UNKNOWN
    values = monitoring.metrics(report)
    code, breaches = monitoring.apply_thresholds(report["code"], values, warning, critical)
    if breaches:
        report.update(code=code, status=LABEL[code],
                      summary=report["summary"] + "; " + "; ".join(breaches))
    report["metrics"] = {name: value for name, (value, _) in values.items()}
    if args.prometheus:
        _write_prometheus(cfg, args.prometheus, report, values)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        # '|' starts the perfdata: none may appear in the text before it
        print(f"{report['status']}: {report['node']}: {report['summary'].replace('|', '/')}"
              f" | {monitoring.perfdata(values, warning, critical)}")
        width = max(len(layer["name"]) for layer in report["layers"])
        for layer in report["layers"]:
            extra = f" [warning: {layer['warning']}]" if layer["warning"] else ""
            print(f"  {layer['name']:<{width}}  {layer['kind']:<12} {layer['state']:<8} "
                  f"{layer['reason']}{extra}")
    return report["code"]


def _write_prometheus(cfg, path: str, report: dict, values: dict) -> None:
    from hahooks import monitoring

    try:
        transitions = read_history(cfg.node.log_file)
    except FileNotFoundError:   # no log yet: no transition to count
        transitions = []
    except OSError as exc:      # counts of zero would lie: say why they are missing
        print(f"hahooks status: cannot read {cfg.node.log_file} ({exc.strerror}): the "
              "textfile has no transition counts", file=sys.stderr)
        transitions = []
    for t in transitions:
        t["verdict"] = _verdict(t).lower()
    try:
        monitoring.write_atomically(path, monitoring.prometheus_text(report, values,
                                                                     transitions))
    except OSError as exc:   # the plugin's verdict still stands; the file is the extra
        print(f"hahooks status: cannot write {path}: {exc.strerror}", file=sys.stderr)


def run_check(args) -> int:
    from hahooks import preflight

    cfg = config_mod.load(args.config)
    _quiet_logging(cfg, args)
    config_mod.check_paths(cfg)
    findings = preflight.lint(cfg) + (preflight.deep(cfg) if args.deep else [])
    for finding in findings:
        print(finding.render(cfg.path), file=sys.stderr)
    code = preflight.exit_code(findings)
    if code:
        return code
    warnings = sum(1 for f in findings if f.level == "warning")
    print(f"{cfg.path}: ok: node {cfg.node.name} ({cfg.node.platform.name}), "
          f"{len(cfg.resources)} layer(s): " +
          " -> ".join(f"{r.name} ({r.kind})" for r in cfg.resources) +
          (f"; {warnings} warning(s)" if warnings else "") +
          ("; deep: tools, scripts and devices found" if args.deep else ""))
    return ExitCode.OK


def run_plan(args) -> int:
    from hahooks.engine import Engine

    cfg = config_mod.load(args.config)
    _quiet_logging(cfg, args)
    engine = Engine.for_config(cfg, dry_run=True)
    steps = engine.plan(args.role)
    print(f"plan for {args.role} on {cfg.node.name} "
          f"({'in order' if args.role == 'master' else 'in reverse order'}):")
    for i, step in enumerate(steps, 1):
        print(f"  {i}. {step}")
        for line in step.commands:
            print(f"       {line}")
    if not engine.preview_stops:
        return ExitCode.OK
    # the walk would not get past this step as things are now: not a plan that completes
    name, exc = engine.preview_stops[0]
    print(f"hahooks: plan stops at {name}: {exc.one_line()}", file=sys.stderr)
    return int(exc.exit_code)


def read_history(path: str) -> list[dict]:
    """Transitions in log order, each with its steps, from the JSON-lines log."""
    from hahooks.timespec import record_epoch

    transitions: dict[str, dict] = {}
    for n, rec in enumerate(logs.records(path)):
        if rec.get("event") == "ignored":   # a daemon event during maintenance mode
            transitions[f"ignored-{n}"] = {
                "id": "ignored", "role": rec.get("role"), "node": rec.get("node"),
                "start": rec.get("ts"), "at": record_epoch(rec),
                "trigger": rec.get("source") or None, "steps": [],
                "actions": [], "end": "maintenance mode" + (f" ({rec['reason']})"
                                                            if rec.get("reason") else ""),
                "ok": None, "superseded": False, "ignored": True}
            continue
        tid = rec.get("transition")
        if not tid:
            continue
        t = transitions.setdefault(tid, {"id": tid, "role": rec.get("role"),
                                         "node": rec.get("node"), "start": rec.get("ts"),
                                         "at": record_epoch(rec),
                                         "trigger": None, "steps": [], "actions": [],
                                         "end": None, "ok": None, "superseded": False})
        event = rec.get("event")
        if event == "transition_start":
            t["trigger"] = rec.get("source") or None
        elif event == "step" or (event == "decision" and rec.get("step") == "skip"):
            t["steps"].append({"resource": rec.get("resource"), "step": rec.get("step"),
                               "ok": rec.get("ok", True), "duration": rec.get("duration", 0.0)})
        elif event in ("demote", "fence") and "ok" in rec:
            t["actions"].append({"event": event, "ok": rec["ok"], "message": rec.get("message")})
        elif event == "transition_end":
            t["end"] = rec.get("summary") or rec.get("message")
            t["ok"] = rec.get("ok")
            t["duration"] = rec.get("duration")
            if rec.get("superseded"):
                t["end"], t["ok"], t["superseded"] = "superseded by a newer desire", False, True
    return list(transitions.values())


def _verdict(t: dict) -> str:
    if t.get("ignored"):
        return "ignored"         # maintenance mode: recorded, nothing was done
    if t["superseded"]:
        return "superseded"      # a newer request won: the walk stopped safely, not a failure
    return "unfinished" if t["ok"] is None else ("ok" if t["ok"] else "FAILED")


def run_history(args) -> int:
    cfg = config_mod.load(args.config)
    path = args.log or cfg.node.log_file
    since = None
    if args.since:
        from hahooks.timespec import parse_since

        try:
            since = parse_since(args.since)
        except ValueError as exc:
            print(f"hahooks history: {exc}", file=sys.stderr)
            return ExitCode.ARGS
    try:
        transitions = [t for t in read_history(path)
                       if since is None or (t["at"] or 0) >= since]
        transitions = transitions[-args.n:] if args.n > 0 else []
    except FileNotFoundError:
        print(f"no log yet at {path}", file=sys.stderr)
        return ExitCode.OK
    if args.json:
        print(json.dumps(transitions, indent=2))
        return ExitCode.OK
    if not transitions:
        print(f"no transitions recorded in {path}" +
              (f" since {args.since}" if since is not None else ""), file=sys.stderr)
    for t in transitions:
        took = t.get("duration")
        took = f"{took:.3f}s" if isinstance(took, (int, float)) else "-"
        print(f"{t['start']}  {t['id']}  {t['role']}  {_verdict(t)}  {took}  "
              f"[{t['trigger'] or '-'}]: {t['end'] or '(no end record: killed?)'}")
        for s in t["steps"]:
            print(f"    {s['step']:<8} {s['resource']:<20} {'ok' if s['ok'] else 'FAILED':<6} "
                  f"{s['duration']:.3f}s")
        for a in t["actions"]:
            print(f"    {a['message']}")
    return ExitCode.OK
