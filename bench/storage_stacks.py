"""Real storage stacks: wall time of `hahooks master` / `hahooks slave` against a bare shell
script running the same commands with no checks (issue 3's note; issue 7 part 4).

  fs        filesystem only: `hahooks mount DEV MP ext4 start|stop` vs mount / umount
  fs-links-nginx   filesystem -> links -> nginx (loop ext4 on this host)
  zpool-service    zpool -> nginx, in a sandbox node with its own zfs-fuse

Run (root): python3 bench/storage_stacks.py [--runs N] [--json FILE]
Each run does master then slave (bare: start then stop); figures are medians of N runs
after one warm-up. The bare scripts still wait where the next command would otherwise fail
(the daemon must have exited before umount / export), and nothing else.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, Figure, WarmAgent, detached_until_done, env_with_lib, machine

HAHOOKS = [sys.executable, "-m", "hahooks"]

NODE = """\
[node]
name = "bench"
state_dir = "{d}/state"
log_file = "{d}/hahooks.jsonl"
syslog = false
"""

NGINX_CONF = """\
user root;
pid {d}/run/nginx.pid;
error_log {d}/run/error.log;
worker_processes 2;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/run/tmp;
    proxy_temp_path {d}/run/tmp;
    fastcgi_temp_path {d}/run/tmp;
    uwsgi_temp_path {d}/run/tmp;
    scgi_temp_path {d}/run/tmp;
    server {{ listen unix:{d}/run/nginx.sock; root {d}/www; }}
}}
"""

FS_STACK = """
[[resource]]
name = "data"
kind = "filesystem"
device = "{dev}"
mountpoint = "{d}/srv"
fstype = "ext4"

[[resource]]
name = "links"
kind = "links"
links = {{ "{d}/etc/nginx" = "{d}/srv/etc/nginx", "{d}/www" = "{d}/srv/www" }}
"""


def web_layer(conf: str, d: str) -> str:
    """nginx as the top layer: its config `conf`, pid and error log under d/run."""
    nginx = f'"nginx", "-e", "{d}/run/error.log", "-c", "{conf}"'
    return (f'\n[[resource]]\nname = "web"\nkind = "service"\nstart = [{nginx}]\n'
            f'stop = [{nginx}, "-s", "quit"]\npidfile = "{d}/run/nginx.pid"\n')


# the same commands, no checks; the waits are the least that keeps the next command working
BARE_FS_MASTER = """\
set -e
D={d}
mount -t ext4 {dev} $D/srv
mv $D/etc/nginx $D/etc/nginx.hahooks-orig
ln -s $D/srv/etc/nginx $D/etc/nginx
ln -s $D/srv/www $D/www
nginx -e $D/run/error.log -c $D/etc/nginx/nginx.conf
"""
BARE_FS_SLAVE = """\
set -e
D={d}
pid=$(cat $D/run/nginx.pid)
nginx -e $D/run/error.log -c $D/etc/nginx/nginx.conf -s quit
while [ -e /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; do sleep 0.005; done
rm $D/www $D/etc/nginx
mv $D/etc/nginx.hahooks-orig $D/etc/nginx
umount $D/srv
"""


def sh(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True, **kw)


def timed(argv, env=None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-600:]}")
    return took


def measure(pairs: dict[str, tuple[list, list]], runs: int, env,
            timer=None) -> dict[str, list[float]]:
    """pairs: label -> (up argv, down argv); every run does up then down, interleaved."""
    timer = timer or (lambda argv: timed(argv, env))
    times: dict[str, list[float]] = {f"{k} {d}": [] for k in pairs for d in ("up", "down")}
    for i in range(runs + 1):
        for label, (up, down) in pairs.items():
            t_up, t_down = timer(up), timer(down)
            if i:
                times[f"{label} up"].append(t_up)
                times[f"{label} down"].append(t_down)
    return times


@contextlib.contextmanager
def loop_ext4(d: str):
    img = os.path.join(d, "st-bench.img")
    with open(img, "wb") as fh:
        fh.truncate(128 << 20)
    sh("mkfs.ext4", "-q", "-F", img)
    dev = sh("losetup", "-f", "--show", img).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["umount", os.path.join(d, "srv")], capture_output=True)
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def bench_fs(runs: int) -> list[dict]:
    env = env_with_lib()
    with tempfile.TemporaryDirectory(prefix="st-bench-") as d, loop_ext4(d) as dev:
        for sub in ("srv", "run/tmp", "etc/nginx"):
            os.makedirs(os.path.join(d, sub))
        sh("mount", dev, f"{d}/srv")
        os.makedirs(f"{d}/srv/etc/nginx")
        os.makedirs(f"{d}/srv/www")
        with open(f"{d}/srv/etc/nginx/nginx.conf", "w") as fh:
            fh.write(NGINX_CONF.format(d=d))
        with open(f"{d}/srv/www/index.html", "w") as fh:
            fh.write("bench\n")
        sh("umount", f"{d}/srv")
        cfg = os.path.join(d, "stack.toml")
        with open(cfg, "w") as fh:
            fh.write(NODE.format(d=d) + FS_STACK.format(d=d, dev=dev)
                     + web_layer(f"{d}/etc/nginx/nginx.conf", d))
        os.chmod(cfg, 0o600)
        for name, text in (("bare-master.sh", BARE_FS_MASTER), ("bare-slave.sh", BARE_FS_SLAVE)):
            with open(os.path.join(d, name), "w") as fh:
                fh.write(text.format(d=d, dev=dev))
        mount = [*HAHOOKS, "mount", dev, f"{d}/srv", "ext4"]
        times = measure({
            "fs hahooks": ([*mount, "start"], [*mount, "stop"]),
            "fs bare": (["mount", "-t", "ext4", dev, f"{d}/srv"], ["umount", f"{d}/srv"]),
            "fs-links-nginx hahooks": ([*HAHOOKS, "master", "-c", cfg],
                                       [*HAHOOKS, "slave", "-c", cfg]),
            "fs-links-nginx bare": (["sh", f"{d}/bare-master.sh"], ["sh", f"{d}/bare-slave.sh"]),
        }, runs, env)
        warm = warm_detached(cfg, env, f"{d}/state", runs, times, "fs-links-nginx")
    return rows(times, (("fs", "mount start / stop"), ("fs-links-nginx", "master / slave"),
                        *((label, "master / slave") for label in warm)))


def warm_detached(cfg: str, env, state_dir: str, runs: int, times: dict, stack: str) -> list:
    """The stack's events through `hahooks agent` (--detach until converged), with the
    express lane off and on, and keepalived's notify through the lane, into `times` beside
    the bare script's figures; the labels."""
    labels = []
    notify = [*HAHOOKS, "keepalived-notify", "-c", cfg, "INSTANCE", "VI_1"]
    variants = (
        ("--detach, warm agent, express lane off", dict(env, HAHOOKS_EXPRESS="0"),
         [*HAHOOKS, "master", "--detach", "-c", cfg], [*HAHOOKS, "slave", "--detach", "-c", cfg]),
        ("--detach, warm agent, express lane", env,
         [*HAHOOKS, "master", "--detach", "-c", cfg], [*HAHOOKS, "slave", "--detach", "-c", cfg]),
        ("keepalived-notify, warm agent, express lane", env,
         [*notify, "MASTER"], [*notify, "BACKUP"]))
    with WarmAgent(cfg, env, state_dir):
        for how, lane_env, up, down in variants:
            label = f"{stack} {how}"
            timer = (lambda e: lambda argv: detached_until_done(argv, e, state_dir))(lane_env)
            times.update(measure({f"{label} hahooks": (up, down)}, runs, lane_env, timer=timer))
            labels.append(label)
        # a waiting caller (Heartbeat, a person) through the lane: until it returns
        label = f"{stack} --wait, warm agent, express lane"
        times.update(measure({f"{label} hahooks": ([*HAHOOKS, "master", "-c", cfg],
                                                   [*HAHOOKS, "slave", "-c", cfg])}, runs, env))
        labels.append(label)
    for label in labels:
        for direction in ("up", "down"):
            times[f"{label} bare {direction}"] = times[f"{stack} bare {direction}"]
    return labels


ZPOOL_STACK = """
[[resource]]
name = "pool"
kind = "zpool"
pool = "stbench"
import_dirs = ["{vdevs}"]
"""
BARE_ZPOOL_MASTER = """\
set -e
zpool import -o cachefile=none -d {vdevs} stbench
nginx -e {d}/run/error.log -c {d}/nginx.conf
"""
BARE_ZPOOL_SLAVE = """\
set -e
pid=$(cat {d}/run/nginx.pid)
nginx -e {d}/run/error.log -c {d}/nginx.conf -s quit
while [ -e /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; do sleep 0.005; done
zpool export stbench
"""


def bench_zpool(runs: int) -> list[dict]:
    """zpool -> nginx inside a sandbox node running its own zfs-fuse; both the hahooks
    commands and the bare scripts are started in the node the same way (nsenter)."""
    try:
        from hahooks.lab.sandbox import Lab
    except ImportError as exc:
        print(f"zpool stack skipped: {exc}", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory(prefix="st-zbench-") as d, \
            Lab(prefix=f"stb{os.getpid() % 10000}", workdir=os.path.join(d, "lab")) as lab:
        node = lab.node("nodea", hostid=0x0A0A0001, zfs=True)
        node.start_zfs()
        vdev = lab.file_vdev("st-bench0", 128)
        vdevs = os.path.dirname(vdev)
        os.makedirs(f"{d}/run/tmp")
        with open(f"{d}/nginx.conf", "w") as fh:
            fh.write(NGINX_CONF.format(d=d).replace(f"root {d}/www", f"root {d}/pool/www"))
        node.run(["zpool", "create", "-m", f"{d}/pool", "stbench", vdev])
        node.run(["sh", "-c", f"mkdir {d}/pool/www && echo bench > {d}/pool/www/index.html"])
        node.run(["zpool", "export", "stbench"])
        cfg = os.path.join(d, "stack.toml")
        with open(cfg, "w") as fh:
            fh.write(NODE.format(d=d) + ZPOOL_STACK.format(d=d, vdevs=vdevs)
                     + web_layer(f"{d}/nginx.conf", d))
        os.chmod(cfg, 0o600)
        for name, text in (("bare-master.sh", BARE_ZPOOL_MASTER),
                           ("bare-slave.sh", BARE_ZPOOL_SLAVE)):
            with open(os.path.join(d, name), "w") as fh:
                fh.write(text.format(d=d, vdevs=vdevs))
        env = lab.node_env(node)

        def in_node(argv):
            t0 = time.perf_counter()
            node.run(argv, env=env, timeout=120)
            return time.perf_counter() - t0
        pairs = {"zpool-service hahooks": ([*HAHOOKS, "master", "-c", cfg],
                                           [*HAHOOKS, "slave", "-c", cfg]),
                 "zpool-service bare": (["sh", f"{d}/bare-master.sh"],
                                        ["sh", f"{d}/bare-slave.sh"])}
        times = measure(pairs, runs, None, timer=in_node)
        lanes = warm_in_node(node, env, cfg, f"{d}/state", runs, times, "zpool-service")
    return rows(times, (("zpool-service", "master / slave"),
                        *((lane, "master / slave") for lane in lanes)))


def warm_in_node(node, env, cfg: str, state_dir: str, runs: int, times: dict,
                 stack: str) -> str:
    """The stack's --detach events through an agent running in the node (express lane),
    from the hook's start in the node until converged; the label."""
    import signal

    from hahooks import agent, waits
    from hahooks.state import StateDir

    state = StateDir(state_dir)

    def detached(argv):
        return detached_until_done(argv, env, state_dir,
                                   start=lambda a: node.run(a, env=env, timeout=120))

    def waiting(argv):
        t0 = time.perf_counter()
        node.run(argv, env=env, timeout=120)
        return time.perf_counter() - t0

    label = f"{stack} --detach, warm agent, express lane"
    waited = f"{stack} --wait, warm agent, express lane"
    proc = node.popen([*HAHOOKS, "agent", "-q", "-c", cfg], env=env,
                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    try:
        waits.wait_for(lambda: agent.alive(state), 60, "the agent in the node")
        times.update(measure({f"{label} hahooks": (
            [*HAHOOKS, "master", "--detach", "-c", cfg],
            [*HAHOOKS, "slave", "--detach", "-c", cfg])}, runs, None, timer=detached))
        times.update(measure({f"{waited} hahooks": (
            [*HAHOOKS, "master", "-c", cfg], [*HAHOOKS, "slave", "-c", cfg])}, runs, None,
            timer=waiting))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for name in (label, waited):
        for direction in ("up", "down"):
            times[f"{name} bare {direction}"] = times[f"{stack} bare {direction}"]
    return label, waited


def rows(times: dict[str, list[float]], stacks) -> list[dict]:
    out = []
    for stack, what in stacks:
        for direction, label in (("up", what.split(" / ")[0]), ("down", what.split(" / ")[1])):
            h = statistics.median(times[f"{stack} hahooks {direction}"])
            b = statistics.median(times[f"{stack} bare {direction}"])
            out.append({"stack": stack, "action": label, "hahooks_s": h, "bare_s": b,
                        "ratio": h / b, "extra_ms": (h - b) * 1000,
                        "runs": len(times[f"{stack} hahooks {direction}"])})
    return out


def table(results: list[dict]) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()} (median of "
             f"{results[0]['runs'] if results else 0} runs).", "",
             "| stack | action | hahooks | bare shell | ratio | hahooks extra |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['stack']} | {r['action']} | {r['hahooks_s'] * 1000:.0f} ms | "
                     f"{r['bare_s'] * 1000:.0f} ms | {r['ratio']:.1f}x | "
                     f"+{r['extra_ms']:.0f} ms |")
    return "\n".join(lines) + "\n"


def run(args) -> list[Figure]:
    """Issue 7 part 4 for bench/run.py: every stack's master and slave as a ratio to the bare
    script (target <= 1.15x), with both walls in the note."""
    runs = getattr(args, "runs", None) or (3 if getattr(args, "quick", False) else 7)
    if os.geteuid() != 0 or not shutil.which("nginx"):
        raise RuntimeError("part 4 needs root and nginx")
    figs = []
    for r in bench_fs(runs) + bench_zpool(runs):
        figs.append(Figure("4 real parts", f"{r['stack']} {r['action']}", r["ratio"], "x",
                           "<= 1.15x", r["ratio"] <= 1.15,
                           note=f"hahooks {r['hahooks_s'] * 1000:.0f} ms vs bare "
                                f"{r['bare_s'] * 1000:.0f} ms, +{r['extra_ms']:.0f} ms"))
    return figs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json")
    ap.add_argument("--only", choices=("fs", "zpool"))
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("nginx"):
        print("needs root and nginx", file=sys.stderr)
        return 1
    results = []
    if args.only in (None, "fs"):
        results += bench_fs(args.runs)
    if args.only in (None, "zpool"):
        results += bench_zpool(args.runs)
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                       "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
