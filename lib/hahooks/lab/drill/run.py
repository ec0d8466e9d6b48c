"""The default drill, end to end: A master, data written through the service, a graceful
failover to B and back, a crash of A (B takes over with A's processes killed as a power
loss would), B told to take over while A still holds (B fences A), A back, failback; then
(HAST stacks) a partition: the holder's link cut while both stay up, the peer takes over
only after fencing it (drill/partition.py); then the safety checks. Each stage is a named
check; the report is the timeline and verdict."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import TextIO

from hahooks.lab.drill.timeline import Timeline
from hahooks.lab.drill.verdict import Verdict


@dataclasses.dataclass
class Report:
    scenario: str
    timeline: Timeline
    verdict: Verdict
    workdir: str = ""
    prefix: str = ""
    kept: str = ""
    figures: dict = dataclasses.field(default_factory=dict)
    warm: bool = False

    def render(self) -> str:
        path = ", warm path (hahooks agent in each node)" if self.warm else ""
        lines = [f"hahooks drill: scenario {self.scenario}{path}", "", "timeline (event -> steps, "
                 "from the nodes' JSON logs):", self.timeline.render(), "", "checks:",
                 self.verdict.render(), ""]
        if self.figures:
            lines += ["figures:"] + [f"  {k}: {v}" for k, v in self.figures.items()] + [""]
        if self.kept:
            lines += [self.kept, ""]
        lines.append(f"verdict: {self.verdict.summary()}")
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {"scenario": self.scenario, "warm": self.warm, "passed": self.verdict.passed,
                "verdict": self.verdict.summary(), "checks": self.verdict.as_json(),
                "timeline": self.timeline.as_json(), "figures": self.figures,
                "workdir": self.workdir, "prefix": self.prefix}


class Stage:
    """A drill stage: a timeline marker on entry, a FAIL check if it raises."""

    def __init__(self, cluster, verdict: Verdict, name: str):
        self.cluster, self.verdict, self.name = cluster, verdict, name

    def __enter__(self):
        self.cluster.mark(self.name)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, KeyboardInterrupt):
            return False
        self.verdict.error(self.name, exc)
        self.cluster.mark(f"stage failed: {self.name}: {exc}")
        return isinstance(exc, Exception)


def drill(scenario, *, injects=(), keep: bool = False, workdir: str | None = None,
          progress: TextIO | None = sys.stderr, warm: bool = False) -> Report:
    from hahooks.lab.drill.cluster import Cluster
    from hahooks.lab.drill import checks, partition

    verdict = Verdict()
    # with --inject: fault shims for the real tools, and hangs cut after 8 s, not 30 s
    cluster = Cluster(scenario, workdir=workdir, keep=keep, progress=progress,
                      faults=bool(injects), command_timeout="25s" if injects else "30s",
                      warm=warm)
    report = Report(scenario.name, cluster.timeline, verdict, cluster.workdir, cluster.prefix,
                    warm=warm)
    try:
        with Stage(cluster, verdict, "start the sandbox (2 nodes, provisioning)"):
            cluster.start()
        if verdict.failed:
            return report
        a, b = cluster.nodes
        rows: list[int] = []
        with Stage(cluster, verdict, f"CARP elects {a}"):
            cluster.elect(a)
            checks.holder(cluster, verdict, a, "after the first election")
            rows += cluster.service.write(cluster, a, 20, "first")
            verdict.check(f"20 rows written through the service on {a}", len(rows) == 20,
                          f"{len(rows)} acknowledged")
        for resource, action, fault in injects:
            from hahooks.lab.drill import faults

            with Stage(cluster, verdict, f"fault {resource}/{action}:{fault} "
                       "during a graceful failover"):
                faults.injected_failover(cluster, verdict, resource, action, fault)
        with Stage(cluster, verdict, f"graceful failover {a} -> {b} (hook-driven)"):
            holder = cluster.holder()
            other = b if holder == a else a
            cluster.elect(other)
            checks.holder(cluster, verdict, other, "after the graceful failover")
            checks.rows(cluster, verdict, other, rows)
            rows += cluster.service.write(cluster, other, 20, "second")
        with Stage(cluster, verdict, f"graceful failback to {a}"):
            cluster.elect(a)
            checks.holder(cluster, verdict, a, "after the failback")
            checks.rows(cluster, verdict, a, rows)
            rows += cluster.service.write(cluster, a, 20, "before-crash")
        with Stage(cluster, verdict, f"crash of {a} (every process killed), {b} takes over"):
            cluster.crash(a, "drill: power loss")
            cluster.event(b, "MASTER")
            cluster.converge(b)
            checks.holder(cluster, verdict, b, f"after {a} crashed", peer_down=True)
            checks.rows(cluster, verdict, b, rows)
        with Stage(cluster, verdict, f"{a} boots and rejoins as slave"):
            cluster.boot(a)
            cluster.event(a, "BACKUP")
            cluster.converge(a)
            checks.holder(cluster, verdict, b, f"after {a} rejoined")
        with Stage(cluster, verdict, f"split-brain attempt: {a} told to take over while "
                   f"{b} still holds"):
            fenced_before = len(cluster.desk.handled)
            cluster.event(a, "MASTER")
            cluster.converge(a, timeout=cluster.fence_budget)
            fenced = [f for f in cluster.desk.handled[fenced_before:]
                      if f["ok"] and f["request"]["target"] == b]
            if fenced:
                # HAST: the peer's worker did not go away in secondary_wait -> fence, then
                # take over (STONITH)
                verdict.check(f"{a} fenced {b} before taking over", True, fenced[0]["detail"])
                checks.holder(cluster, verdict, a, f"after fencing {b}", peer_down=True)
                checks.rows(cluster, verdict, a, rows)
            else:
                # DRBD: a connected Primary peer is alive and in charge -> refuse
                verdict.check(f"{a} refused to take over from a live {b}",
                              cluster.role(b) == "master", f"{b}: {cluster.role(b)}")
                checks.holder(cluster, verdict, b, "after the refused takeover")
        if b in cluster.down:
            with Stage(cluster, verdict, f"{b} boots and rejoins as slave"):
                cluster.boot(b)
                cluster.event(b, "BACKUP")
                cluster.converge(b)
                checks.holder(cluster, verdict, a, "at the end")
        else:
            with Stage(cluster, verdict, f"graceful failback to {a}"):
                cluster.elect(a)
                checks.holder(cluster, verdict, a, "at the end")
                checks.rows(cluster, verdict, a, rows)
        if partition.has_hast(cluster):
            cut_off = cluster.holder() or a
            survivor = cluster.peer(cut_off)
            with Stage(cluster, verdict, f"partition: {cut_off}'s link cut, both alive; "
                       f"{survivor} told to take over once no sign of {cut_off} is left"):
                partition.takeover(cluster, verdict, cut_off, rows)
            with Stage(cluster, verdict, f"{cut_off} boots on a healed link and rejoins as "
                       "slave"):
                partition.rejoin(cluster, cut_off)
                checks.holder(cluster, verdict, survivor, "after the partition")
        holder = cluster.holder() or a
        from hahooks.lab.drill import operations

        with Stage(cluster, verdict, f"maintenance mode: a CARP flap to {cluster.peer(holder)}"
                   " is ignored"):
            operations.maintenance_ignores_a_flap(cluster, verdict, holder)
        with Stage(cluster, verdict, f"switchover {holder} -> {cluster.peer(holder)}"):
            operations.switchover(cluster, verdict, holder, rows)
        with Stage(cluster, verdict, "safety checks"):
            checks.final(cluster, verdict)
        report.figures = checks.figures(cluster)
    except KeyboardInterrupt:
        verdict.check("drill completed", False, "interrupted")
        raise
    finally:
        report.kept = cluster.close()
    return report


def write_json(report: Report, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(report.as_json(), fh, indent=1)
    os.chmod(path, 0o644)
