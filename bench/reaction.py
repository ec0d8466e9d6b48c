"""6. Reaction: time from a condition becoming true (a device appears, the `hastd: X
(secondary)` worker exits) to the hook noticing, through the same waits the kinds use.

Run: python3 bench/reaction.py [--trials N]"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import threading
import time

from common import Figure, summary
from hahooks import procs, waits


def device_appears(trials: int) -> list[float]:
    out = []
    with tempfile.TemporaryDirectory(prefix="hahooks-react-") as d:
        for i in range(trials):
            path = os.path.join(d, f"dev{i}")
            made = {}

            def make():
                time.sleep(random.uniform(0.0, 0.1))  # the condition turns true at a random moment
                open(path, "w").close()
                made["t"] = time.perf_counter()

            t = threading.Thread(target=make)
            t.start()
            waits.wait_for_path(path, 5)
            seen = time.perf_counter()
            t.join()
            out.append(seen - made["t"])
    return out


def worker_exits(trials: int) -> list[float]:
    out = []
    for i in range(trials):
        title = f"hastd: bench{os.getpid()}x{i} (secondary)"
        proc = subprocess.Popen(["bash", "-c", 'exec -a "$0" sleep 30', title])
        waits.wait_for(lambda: procs.find_by_title(title), 5, "the worker to start")
        ended = {}

        def stop():
            time.sleep(random.uniform(0.0, 0.1))
            proc.kill()
            proc.wait()
            ended["t"] = time.perf_counter()

        t = threading.Thread(target=stop)
        t.start()
        procs.wait_for_no_process(title, 5)
        seen = time.perf_counter()
        t.join()
        out.append(max(0.0, seen - ended["t"]))
    return out


def measure(trials: int) -> list[Figure]:
    figs = []
    for name, fn in (("device appears -> wait_for_path returns", device_appears),
                     ("secondary worker exits -> wait_for_no_process returns", worker_exits)):
        med, lo, hi = summary(fn(trials))
        figs.append(Figure("6 reaction", name, med * 1000, "ms", "<= 50 ms", hi <= 0.050,
                           lo * 1000, hi * 1000, note="met = worst case"))
    return figs


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=30)
    for f in measure(ap.parse_args().trials):
        print(f"{f.name:58} median {f.cell():>9}  max {f.high:.1f} ms  {f.target}")
