"""The drill's database client: inserts numbered rows with autocommit, one statement per
connection, and records a row as acknowledged only when the server said OK.

It runs outside both nodes (in the sandbox's client namespace), so it lives through a node
crash. It tries the node that answered last, then the other, so it follows the stack
through a failover without a floating address. A row whose insert failed is "in doubt"
(it may or may not have been committed) and its number is never reused; only acknowledged
rows are promised.

    python3 -m hahooks.lab.drill.writer --hosts 10.99.40.1,10.99.40.2 --acked FILE \
        --stop FILE [--first N] [--max-seconds S]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

RETRY_PAUSE = 0.05     # after a failed insert: the stack is moving


def insert(host: str, row: int, who: str) -> bool:
    from hahooks.lab.drill.mariadb import TABLE, client_argv

    sql = f"INSERT INTO {TABLE} (id, who, at) VALUES ({row}, '{who}', {time.time():.6f})"
    try:
        r = subprocess.run(client_argv(host, sql), capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def run(hosts: list[str], acked_path: str, stop_path: str, first: int, max_seconds: float,
        who: str, count: int | None = None) -> int:
    pause = threading.Event()
    end = time.monotonic() + max_seconds
    current, row, acked, failed = 0, first, 0, 0
    fd = os.open(acked_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        while time.monotonic() < end and not os.path.exists(stop_path) and \
                (count is None or row < first + count):
            host = hosts[current]
            if insert(host, row, who):
                os.write(fd, f"{row} {host} {time.time():.3f}\n".encode())
                acked += 1
            else:
                failed += 1
                current = (current + 1) % len(hosts)
                pause.wait(RETRY_PAUSE)
            row += 1
    finally:
        os.close(fd)
    print(f"writer: {acked} acknowledged, {failed} failed/in doubt, last row {row - 1}")
    return 0


def read_acked(path: str) -> list[int]:
    return [row for row, _host, _t in read_acks(path)]


def read_acks(path: str) -> list[tuple[int, str, float]]:
    """(row, host, time) of every acknowledged insert so far (a torn last line skipped)."""
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3:
                    out.append((int(parts[0]), parts[1], float(parts[2])))
    except FileNotFoundError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hahooks-drill-writer")
    p.add_argument("--hosts", required=True, help="comma-separated node addresses")
    p.add_argument("--acked", required=True, help="file: one acknowledged row per line")
    p.add_argument("--stop", required=True, help="the writer stops when this file exists")
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--who", default="writer")
    p.add_argument("--count", type=int, default=None, help="stop after this many rows")
    args = p.parse_args(argv)
    return run(args.hosts.split(","), args.acked, args.stop, args.first, args.max_seconds,
               args.who, args.count)


if __name__ == "__main__":
    sys.exit(main())
