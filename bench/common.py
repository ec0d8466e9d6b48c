"""Shared helpers for the benchmarks: repeated timing with medians, a results table.

Benchmarks print figures; they never assert on time (tests do not either)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)


@dataclasses.dataclass
class Figure:
    section: str
    name: str
    value: float          # the median
    unit: str
    target: str = ""      # e.g. "<= 150 ms", ">= 10x"
    met: bool | None = None
    low: float | None = None
    high: float | None = None
    note: str = ""

    def cell(self) -> str:
        if self.value != self.value:      # NaN: a figure that could not be measured
            return "—"
        if self.unit == "x":
            return f"{self.value:.2f}x" if self.value < 10 else f"{self.value:.1f}x"
        if self.unit == "ms":
            return f"{self.value:.1f} ms"
        if self.unit == "s":
            return f"{self.value:.3f} s"
        return f"{self.value:g} {self.unit}"


def env_with_lib(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = LIB + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def time_command(argv, runs: int = 7, env=None, before=None, check=True) -> list[float]:
    """Wall seconds of a whole process, `runs` times after one warm-up run."""
    out = []
    for i in range(runs + 1):
        if before:
            before()
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        took = time.perf_counter() - t0
        if check and proc.returncode != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
        if i:
            out.append(took)
    return out


def summary(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), min(samples), max(samples)


def machine() -> str:
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) // 1024 // 1024
    except OSError:
        pass
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, {mem} GiB, "
            f"Python {platform.python_version()}")


def render_markdown(figures: list[Figure], title: str) -> str:
    lines = [f"## {title}", "", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}.", "",
             "| section | figure | median | min–max | target | met |",
             "|---|---|---|---|---|---|"]
    for f in figures:
        spread = ""
        if f.low is not None and f.high is not None:
            spread = Figure(f.section, "", f.low, f.unit).cell() + " – " + \
                Figure(f.section, "", f.high, f.unit).cell()
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        name = f.name + (f" ({f.note})" if f.note else "")
        lines.append(f"| {f.section} | {name} | {f.cell()} | {spread} | {f.target} | {met} |")
    return "\n".join(lines) + "\n"


def write_results(figures: list[Figure], stem: str) -> tuple[str, str]:
    outdir = os.path.join(ROOT, "bench", "results")
    os.makedirs(outdir, exist_ok=True)
    js = os.path.join(outdir, f"{stem}.json")
    md = os.path.join(outdir, f"{stem}.md")
    with open(js, "w") as fh:
        json.dump({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                   "figures": [{k: (None if v != v else v)   # NaN is not JSON: null
                                for k, v in dataclasses.asdict(f).items()}
                               for f in figures]}, fh, indent=2)
    with open(md, "w") as fh:
        fh.write(render_markdown(figures, "hahooks benchmarks"))
    return js, md


def detached_until_done(argv, env, state_dir: str, timeout: float = 120,
                        start=None) -> float:
    """Wall seconds from starting a `--detach` hook to its desire converged (done.json covers
    it and nobody holds the lock): what an event costs when a worker or the agent walks.
    `start(argv)` runs the hook where it must run (a sandbox node); default: here."""
    from hahooks import waits
    from hahooks.state import StateDir, TransitionLock

    t0 = time.perf_counter()
    if start:
        start(argv)
    else:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    state = StateDir(state_dir)

    def settled():
        return state.pending() is None and not TransitionLock(state).held_elsewhere()

    waits.wait_for(settled, timeout, "the detached transition", ceiling=0.002)
    took = time.perf_counter() - t0
    done = state.done() or {}
    if done.get("exit_code"):
        raise RuntimeError(f"{argv}: {done.get('message')}")
    return took


class WarmAgent:
    """`hahooks agent -c CONFIG` for the duration of a with block (its own process group;
    SIGTERM, then its group killed by id if it lingers)."""

    def __init__(self, config: str, env: dict, state_dir: str):
        self.argv = [sys.executable, "-m", "hahooks", "agent", "-q", "-c", config]
        self.env, self.state_dir, self.proc = env, state_dir, None

    def __enter__(self) -> "WarmAgent":
        from hahooks import agent, waits
        from hahooks.state import StateDir

        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        state = StateDir(self.state_dir)
        waits.wait_for(lambda: os.path.isdir(self.state_dir) and agent.alive(state), 60,
                       "the agent to start")
        return self

    def __exit__(self, *exc) -> None:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
