"""A small real daemon for the service tests, driven like an init.d or rc.d script:

    st_daemon.py CONFIG.json start|stop|status|onestart|onestop|onestatus

It double-forks, writes a pidfile, keeps its cwd in the docroot (so it holds the mount
the docroot lives on) and serves the docroot over HTTP on a UNIX socket (no network
address). With "leave_child": true it also forks a child that ignores SIGTERM, which the
stop does not end: a stop that leaves a process behind.
Exit codes as the conventions say: status 0 running, 3 (LSB) or 1 (rc.d) not running;
stop of a stopped daemon is 0 (LSB) or 1 with rc.d's "not running?" message.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socketserver
import sys
import time


def running_pid(pidfile: str) -> int | None:
    try:
        pid = int(open(pidfile).read().split()[0])
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
        return pid
    except (OSError, ValueError, IndexError):
        return None


class UnixHTTPServer(socketserver.UnixStreamServer):
    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(cfg: dict, ready: int) -> None:
    try:
        os.chdir(cfg["docroot"])
    except OSError as exc:
        os.write(ready, f"cannot chdir to the docroot: {exc}".encode())
        os._exit(1)
    if cfg.get("leave_child") and os.fork() == 0:
        os.close(ready)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(60)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.path.exists(cfg["socket"]):
        os.unlink(cfg["socket"])
    server = UnixHTTPServer(cfg["socket"], functools.partial(QuietHandler,
                                                             directory=cfg["docroot"]))
    with open(cfg["pidfile"] + ".tmp", "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.rename(cfg["pidfile"] + ".tmp", cfg["pidfile"])
    os.write(ready, b"ok")
    os.close(ready)
    try:
        server.serve_forever()
    finally:
        for path in (cfg["pidfile"], cfg["socket"]):
            try:
                os.unlink(path)
            except OSError:
                pass


def start(cfg: dict) -> int:
    if running_pid(cfg["pidfile"]):
        return 0
    r, w = os.pipe()
    if os.fork() == 0:
        os.close(r)
        os.setsid()
        if os.fork() == 0:
            fd = os.open(os.devnull, os.O_RDWR)
            for n in (0, 1, 2):
                os.dup2(fd, n)
            serve(cfg, w)
            os._exit(0)
        os._exit(0)
    os.close(w)
    said = b""
    while chunk := os.read(r, 4096):    # EOF once the daemon is up (or died)
        said += chunk
    if said != b"ok" or not running_pid(cfg["pidfile"]):
        print(f"{cfg['name']}: did not start: {said.decode() or 'died'}", file=sys.stderr)
        return 1
    return 0


def stop(cfg: dict, rcd: bool) -> int:
    pid = running_pid(cfg["pidfile"])
    if not pid:
        if rcd:
            print(f"{cfg['name']} not running? (check {cfg['pidfile']}).", file=sys.stderr)
            return 1
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while running_pid(cfg["pidfile"]) == pid:
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.01)
    return 0


def main() -> int:
    cfg = json.load(open(sys.argv[1]))
    action = sys.argv[2]
    rcd = action.startswith("one")
    action = action.removeprefix("one")
    if action == "start":
        return start(cfg)
    if action == "stop":
        return stop(cfg, rcd)
    if action == "status":
        pid = running_pid(cfg["pidfile"])
        if pid:
            print(f"{cfg['name']} is running as pid {pid}.")
            return 0
        print(f"{cfg['name']} is not running.")
        return 1 if rcd else 3
    print(f"usage: {cfg['name']} start|stop|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
