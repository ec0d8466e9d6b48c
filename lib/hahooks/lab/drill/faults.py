"""The fault matrix: every mutating step of a scenario x {exit != 0, hang past its timeout,
SIGKILL of the hook mid-step}, each on the live sandbox.

Steps are not listed by hand: a clean failover and failback are run first and every
mutating command the nodes' runners logged (event "command", readonly false) becomes a
step, named by its layer and action. A fault is injected for exactly that command line:
simulated tools read the simulator's fault rules themselves; real tools (zpool, mount,
fsck, the service's rc command, ...) go through shims (drill/shim.py) that read the same
rules and then exec the real tool.

One trial (fault on node X, step S of layer R):
  acquire step: CARP elects X; the holder releases cleanly, X's acquire meets the fault;
  release step: X, holding the stack, is told BACKUP and its release meets the fault.
  kill: the fault is a hang; once the command hangs, the process running the transition
  (the detached worker, or with --warm the agent's converger) is SIGKILLed from outside,
  as the OOM killer or an admin's kill -9 would.
Then: the simulator's invariant log is empty, no pool is imported / filesystem mounted on
both nodes, X's log names the layer (an error for fail/hang; for kill the step it died
in), and after the fault is cleared the same event converges.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import signal
import time

from hahooks import procs, waits
from hahooks.lab.drill import checks, warm
from hahooks.lab.drill.timeline import read_log
from hahooks.lab.drill.verdict import Verdict
from hahooks.errors import WaitTimeout

FAULT_KINDS = ("fail", "hang", "kill")
HANG_SEEN_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Step:
    resource: str
    action: str          # acquire | release
    argv: tuple[str, ...]
    node_words: tuple[str, ...] = ()   # node-specific parts (dev dir, own dir, address)

    @property
    def cmdline(self) -> str:
        return " ".join([os.path.basename(self.argv[0]), *self.argv[1:]])

    @property
    def pattern(self) -> str:
        """fnmatch pattern for this command on either node: the node-specific parts become
        `*`, everything else must match literally."""
        text = self.cmdline
        for word in sorted(self.node_words, key=len, reverse=True):
            text = text.replace(word, "\0")
        escaped = "".join(f"[{c}]" if c in "*?[" else c for c in text)
        return escaped.replace("\0", "*")

    def __str__(self) -> str:
        return f"{self.resource}/{self.action}: {self.short}"

    @property
    def short(self) -> str:
        text = self.cmdline
        for word in sorted(self.node_words, key=len, reverse=True):
            text = text.replace(word, "<node>")
        return text


def node_words(cluster) -> tuple[str, ...]:
    words = []
    for n in cluster.nodes:
        place = cluster.places[n]
        words += [place.dev_dir, place.private, cluster.ips[n]]
    return tuple(words)


@dataclasses.dataclass
class Trial:
    scenario: str
    step: Step
    fault: str
    node: str
    verdict: Verdict
    seconds: float = 0.0
    outcome: str = ""         # stopped safely | recovered by a retry

    @property
    def safe(self) -> bool:
        return self.verdict.passed


def mutating_steps(cluster, node: str, since: float, action: str) -> list[Step]:
    """Mutating commands `node` ran for its layers since `since`, in order, deduplicated."""
    out: list[Step] = []
    role = "master" if action == "acquire" else "slave"
    for rec in read_log(cluster.places[node].log_file):
        if rec["_t"] < since or rec.get("event") != "command" or rec.get("readonly"):
            continue
        if not rec.get("resource") or rec.get("role") != role or rec.get("dry_run"):
            continue
        step = Step(rec["resource"], action, tuple(rec.get("argv") or ()), node_words(cluster))
        if step.argv and step not in out:
            out.append(step)
    return out


def discover(cluster) -> list[Step]:
    """A clean failover to the other node and back; the steps it ran (a symmetric
    scenario's nodes run the same steps)."""
    holder = cluster.holder() or cluster.nodes[0]
    other = cluster.peer(holder)
    t0 = time.time()
    cluster.elect(other)
    t1 = time.time()
    cluster.elect(holder)
    found = (mutating_steps(cluster, other, t0, "acquire") +
             mutating_steps(cluster, holder, t0, "release") +
             mutating_steps(cluster, holder, t1, "acquire") +
             mutating_steps(cluster, other, t1, "release"))
    steps, seen = [], set()
    for step in found:                 # the same step on either node counts once
        key = (step.resource, step.action, step.pattern)
        if key not in seen:
            seen.add(key)
            steps.append(step)
    return steps


def _inject(cluster, step: Step, fault: str, node: str) -> int:
    """fail: every run of the command fails until the trial clears it (a layer that retries
    must give up); hang: the first run hangs (the runner's timeout kills it; a retry may then
    succeed); kill: the first run hangs until the worker is killed."""
    if fault == "fail":
        return cluster.world.inject(step.pattern, fail=1, node=node,
                                    stderr="hahooks drill: injected failure\n")
    return cluster.world.inject(step.pattern, hang=True, node=node, times=1)


def _kill_worker(cluster, node: str, rule: int) -> str:
    try:
        waits.wait_for(lambda: cluster.world.fault_hits(rule) > 0, HANG_SEEN_TIMEOUT,
                       "the step's command to start (and hang)", ceiling=0.05)
    except WaitTimeout as exc:
        return exc.one_line()
    found = warm.transition_pids(cluster.places[node].config_path)
    pids = list(found)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cluster.mark("SIGKILL of the hook's transition (" + (", ".join(
        f"pid {pid}: {what}" for pid, what in found.items()) or "no process") + ")", node)
    try:
        waits.wait_for(lambda: not any(procs.pid_running(p) for p in pids), 10,
                       "the transition's processes to die")
    except WaitTimeout as exc:
        return exc.one_line()
    return "" if pids else "no transition process found"


def _logged(cluster, node: str, since: float, step: Step, fault: str) -> tuple[bool, str]:
    recs = [r for r in read_log(cluster.places[node].log_file) if r["_t"] >= since]
    if fault == "kill":
        started = [r for r in recs if r.get("resource") == step.resource and
                   r.get("event") == "decision"]
        return bool(started), (f"the log shows {step.resource} started ({started[-1]['message']})"
                               " and the transition never ended" if started else
                               f"no record of {step.resource} in the log")
    errors = [r for r in recs if r.get("level") in ("WARNING", "ERROR", "CRITICAL") and
              (r.get("resource") == step.resource or step.resource in r.get("message", ""))]
    return bool(errors), (f"{errors[0]['level']}: {errors[0]['message'][:150]}" if errors
                          else f"no warning or error naming {step.resource}")


def trial(cluster, step: Step, fault: str) -> Trial:
    """Run one (step, fault) on the live cluster; leaves it converged with a holder."""
    holder = cluster.holder() or cluster.nodes[0]
    target = cluster.peer(holder) if step.action == "acquire" else holder
    v = Verdict()
    result = Trial(cluster.sc.name, step, fault, target, v)
    started = time.time()
    cluster.mark(f"fault matrix: {step} -> {fault} on {target}")
    rule = _inject(cluster, step, fault, target)
    try:
        if step.action == "acquire":
            t = cluster.background_elect(target)
        else:
            t = cluster.background_event(target, "BACKUP")
        if fault == "kill":
            problem = _kill_worker(cluster, target, rule)
            v.check("the hook was killed mid-step", not problem, problem)
        t.join()
        if fault != "kill":
            cluster.converge(target)
            cluster.converge(cluster.peer(target))
    finally:
        hits = cluster.world.fault_hits(rule)
        cluster.world.clear_faults(rule)
    v.check("the fault hit the step", hits > 0, f"{hits} time(s)")
    done = cluster.role(target) == ("master" if step.action == "acquire" else "slave")
    result.outcome = "recovered by a retry" if done else "stopped safely"
    checks.no_violations(cluster, v, since=started)
    checks.single_owner(cluster, v, "after the fault")
    ok, detail = _logged(cluster, target, started, step, fault)
    v.check("the log names the step", ok, detail)
    # re-run: the same event again, fault cleared
    cluster.event(target, "MASTER" if step.action == "acquire" else "BACKUP")
    cluster.converge(target)
    want = "master" if step.action == "acquire" else "slave"
    v.check("a re-run converges", cluster.role(target) == want, cluster.role(target))
    checks.no_violations(cluster, v, since=started)
    if step.action == "release":          # give the stack back so the next trial starts held
        cluster.event(target, "MASTER")
        cluster.converge(target)
    result.seconds = time.time() - started
    return result


def matrix(cluster, faults=FAULT_KINDS, steps: list[Step] | None = None) -> list[Trial]:
    if cluster.holder() is None:
        cluster.elect(cluster.nodes[0])
    steps = steps if steps is not None else discover(cluster)
    cluster.mark(f"fault matrix: {len(steps)} mutating steps x {len(faults)} faults")
    out = []
    for step in steps:
        for fault in faults:
            try:
                out.append(trial(cluster, step, fault))
            except Exception as exc:  # a trial that broke the drill is an unsafe outcome
                v = Verdict()
                v.error("trial ran to the end", exc)
                out.append(Trial(cluster.sc.name, step, fault, "?", v))
                recover(cluster)
    return out


def recover(cluster) -> None:
    """After a broken trial: clear faults, boot crashed nodes, converge to one holder."""
    cluster.world.clear_faults()
    for node in cluster.nodes:
        if node in cluster.down:
            cluster.boot(node)
    try:
        cluster.elect(cluster.nodes[0])
    except Exception as exc:
        cluster.mark(f"recovery failed: {exc}")


def injected_failover(cluster, verdict: Verdict, resource: str, action: str,
                      fault: str) -> None:
    """`hahooks drill --inject RESOURCE[/ACTION]:FAULT`: one trial inside the drill."""
    steps = [s for s in discover(cluster) if s.resource == resource and s.action == action]
    if not steps:
        verdict.check(f"{resource}/{action} runs a mutating command", False,
                      "no mutating command of that layer seen in a failover")
        return
    for step in steps[:1]:
        t = trial(cluster, step, fault)
        for c in t.verdict.checks:
            verdict.check(f"{step.resource}/{step.action}:{fault}: {c.name}", c.ok, c.detail)


def matching(steps: list[Step], pattern: str) -> list[Step]:
    return [s for s in steps if fnmatch.fnmatchcase(s.cmdline, pattern)]
