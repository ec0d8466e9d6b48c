"""5. Hook overhead: `hooks/master --detach` and devd's `hahooks devd-event --detach` until
they return (cold, warm with the express lane off and on), a no-op `hahooks master` when
already master, `hahooks status`, and the import time of the heavy modules.

Run: python3 bench/overhead.py [--runs N]"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap

from common import ROOT, Figure, WarmAgent, env_with_lib, summary, time_command
from hahooks import waits

STACK = """\
[node]
name = "bench"
state_dir = "{d}/state"
log_file = "{d}/hahooks.jsonl"
syslog = false

[[resource]]
name = "one"
kind = "command"
acquire = ["touch", "{d}/one"]
release = ["rm", "-f", "{d}/one"]
status = ["test", "-e", "{d}/one"]

[[resource]]
name = "two"
kind = "command"
acquire = ["touch", "{d}/two"]
release = ["rm", "-f", "{d}/two"]
status = ["test", "-e", "{d}/two"]
"""


def import_ms(module: str) -> float:
    """Cumulative import time of `module` from -X importtime (median of 5)."""
    samples = []
    for _ in range(5):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                              capture_output=True, text=True, env=env_with_lib())
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
            if m and m.group(2) == module:
                samples.append(int(m.group(1)) / 1000.0)
    return summary(samples)[0] if samples else float("nan")


def transition_imports(env: dict, runs: int = 5) -> list[Figure]:
    """What a no-op `hahooks master` imports before and around its commands: the sum of the
    top-level modules' cumulative times (-X importtime), and the heaviest of them."""
    totals, heaviest = [], {}
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "hahooks", "master",
                               "-q"], capture_output=True, text=True, env=env)
        total = 0.0
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line)
            if m and not m.group(2).strip(" ") and len(m.group(2)) == 1:   # top level
                ms = int(m.group(1)) / 1000.0
                total += ms
                heaviest.setdefault(m.group(3), []).append(ms)
        totals.append(total)
    top = sorted(((summary(v)[0], k) for k, v in heaviest.items()), reverse=True)[:6]
    note = "cumulative, -X importtime; heaviest: " + ", ".join(f"{k} {v:.1f}" for v, k in top)
    return [Figure("5 overhead", "imports of a no-op hahooks master (all top-level modules)",
                   summary(totals)[0], "ms", note=note)]


def worker_settled(d: str) -> bool:
    try:
        with open(os.path.join(d, "state", "desire.json")) as fh:
            want = json.load(fh)["seq"]
        with open(os.path.join(d, "state", "done.json")) as fh:
            return json.load(fh)["seq"] >= want
    except (OSError, ValueError, KeyError):
        return False


def hook_return(argv: list[str], label: str, runs: int, env: dict, d: str,
                how: str) -> Figure:
    """A detached hook (`argv`) until it returns, each run after the last one converged."""
    def settled():
        return worker_settled(d) or not os.path.exists(f"{d}/state")

    samples = time_command(argv, runs, env=env,
                           before=lambda: waits.wait_for(settled, 30, "the converger"))
    waits.wait_for(lambda: worker_settled(d), 30, "the converger")
    med, lo, hi = summary(samples)
    return Figure("5 overhead", f"{label} until it returns ({how})", med * 1000,
                  "ms", "<= 100 ms", med <= 0.100, lo * 1000, hi * 1000)


def measure(runs: int) -> list[Figure]:
    figs = []
    with tempfile.TemporaryDirectory(prefix="hahooks-bench-") as d:
        cfg = os.path.join(d, "hahooks.toml")
        with open(cfg, "w") as fh:
            fh.write(STACK.format(d=d))
        os.chmod(cfg, 0o600)
        env = env_with_lib(HAHOOKS_CONFIG=cfg)
        hook = os.path.join(ROOT, "hooks", "master")
        hahooks = [sys.executable, "-m", "hahooks"]
        # the hook wrapper execs `hahooks` from PATH (installed by scripts/bootstrap);
        # devd's rule runs `hahooks devd-event --detach ...` (what a CARP event costs devd)
        hooks = (([hook, "--detach", "-q"], "hooks/master --detach"),
                 (hahooks + ["devd-event", "--detach", "-q", "CARP", "1@em0", "MASTER"],
                  "hahooks devd-event --detach CARP 1@em0 MASTER"))
        for argv, label in hooks:
            figs.append(hook_return(argv, label, runs, env, d, "cold: starts a worker"))
        with WarmAgent(cfg, env, os.path.join(d, "state")):
            for argv, label in hooks:
                figs.append(hook_return(argv, label, runs, dict(env, HAHOOKS_EXPRESS="0"), d,
                                        "warm, express lane off: the agent takes it"))
                figs.append(hook_return(argv, label, runs, env, d,
                                        "warm: the express lane hands it to the agent"))
        samples = time_command(hahooks + ["master", "-q"], runs, env=env)
        med, lo, hi = summary(samples)
        figs.append(Figure("5 overhead", "no-op hahooks master (already master, 2 layers)",
                           med * 1000, "ms", "", None, lo * 1000, hi * 1000))
        figs += transition_imports(env)
        samples = time_command(hahooks + ["status"], runs, env=env)
        med, lo, hi = summary(samples)
        figs.append(Figure("5 overhead", "hahooks status (2 layers)", med * 1000, "ms", "",
                           None, lo * 1000, hi * 1000))
    # the floor any Python hook pays before its first line runs (compare the figures above)
    samples = time_command([sys.executable, "-c", "pass"], runs)
    med, lo, hi = summary(samples)
    figs.append(Figure("5 overhead", "python3 -c pass (interpreter start, the floor)",
                       med * 1000, "ms", "", None, lo * 1000, hi * 1000))
    for module in ("sh", "psutil", "pythonjsonlogger.json", "hahooks.cli", "hahooks.engine"):
        figs.append(Figure("5 overhead", f"import {module}", import_ms(module), "ms",
                           note="cumulative, -X importtime"))
    return figs


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=9)
    for f in measure(ap.parse_args().runs):
        print(f"{f.name:55} {f.cell():>10}  {f.target}")
