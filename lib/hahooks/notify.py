"""[notify]: tell people after each transition (mail, a webhook, a pager: any command).

Each command gets the outcome as one JSON object on stdin:

    {"node", "peer", "role", "outcome" ("ok", "failed" or "superseded"), "ok",
     "exit_code", "message", "seq", "transition", "trigger", "duration", "at"}

The transition never waits for them: a mail server that hangs must not delay a failover or
hold the transition lock. transition.py calls `after_transition()`, which starts one
detached `hahooks notify-send` (own session, like the worker) and writes the JSON to its
stdin; notify-send runs each command through the runner (argv list, [notify] timeout, its
whole process group killed at the timeout) and logs each result (event `notify`).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

from hahooks import runner as runner_mod
from hahooks.errors import HahooksError

log = logging.getLogger("hahooks.notify")


def payload(cfg, *, role: str, outcome: str, exit_code: int, message: str, seq: int,
            transition: str, trigger: str, duration: float) -> dict:
    return {"node": cfg.node.name, "peer": cfg.node.peer, "role": role, "outcome": outcome,
            "ok": outcome == "ok", "exit_code": exit_code, "message": message, "seq": seq,
            "transition": transition, "trigger": trigger, "duration": duration,
            "at": time.time()}


def after_transition(cfg, record: dict) -> int | None:
    """Start the detached sender for `record` if [notify] asks for it; its PID or None."""
    spec = cfg.notify
    if not spec["commands"] or (spec["on"] == "failure" and record["ok"]):
        return None
    lib = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = lib + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "hahooks", "notify-send", "-q", "-c",
                                 os.path.abspath(cfg.path)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, env=env, cwd="/")
        proc.stdin.write(json.dumps(record).encode())
        proc.stdin.close()
    except OSError as exc:   # telling people must never turn a transition into a failure
        log.warning("cannot start the notify commands: %s", exc,
                    extra={"event": "notify", "ok": False})
        return None
    log.debug("notify-send started, pid %d", proc.pid, extra={"event": "notify_start",
                                                               "pid": proc.pid})
    return proc.pid


def send(cfg, record: dict) -> int:
    """Run every [notify] command with `record` as JSON on stdin; 0 if all succeeded."""
    runner = runner_mod.for_config(cfg)
    data = json.dumps(record) + "\n"
    failed = 0
    for argv in cfg.notify["commands"]:
        try:
            result = runner.run(argv, readonly=False, timeout=cfg.notify["timeout"],
                                input=data, check=False, what="notify")
            ok, why = result.ok, ("timed out" if result.timed_out
                                  else f"exit {result.exit_code}")
        except HahooksError as exc:   # not installed: say so, run the others
            ok, why = False, exc.one_line()
        failed += not ok
        log.log(logging.INFO if ok else logging.WARNING, "notify %s: %s", argv[0],
                "ok" if ok else f"failed ({why})",
                extra={"event": "notify", "ok": ok, "argv0": argv[0],
                       "transition": record.get("transition")})
    return 1 if failed else 0
