"""MariaDB for the sandbox nodes: the instance config, first-time set-up, an rc.d-style
control command for the `service` layer, and the SQL client the drill writes through.

One instance per node: its datadir on the replicated filesystem/pool (so it moves with
the stack), its socket, pid file and error log in the node's private run dir, listening on
the node's own address. innodb_flush_log_at_trx_commit=1: an acknowledged autocommit
insert is on disk (fsync), which is what "no lost writes" is measured against.

Control (runs inside the node, like /usr/local/etc/rc.d/mysql-server):
    python3 -m hahooks.lab.drill.mariadb --defaults-file F start|stop|status
start returns once the server accepts connections, stop once the process is gone
(bounded); status exits 0 when running, 1 when not (rc.d `onestatus`).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

DATABASE = "drill"
TABLE = "acked"
USER = "drill"
PASSWORD = "drill"
PORT = 3306
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0

MY_CNF = """\
# MariaDB instance of sandbox node {node} (written by hahooks drill)
[mariadbd]
datadir = {datadir}
socket = {run}/mysqld.sock
pid-file = {run}/mysqld.pid
log-error = {run}/mysqld.err
port = {port}
bind-address = {ip}
user = root
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size = 16M
innodb_log_file_size = 8M
innodb_data_file_path = ibdata1:4M:autoextend
innodb_flush_log_at_trx_commit = 1
innodb_flush_method = fsync
innodb_use_native_aio = 0
max_connections = 50
"""


def my_cnf(node: str, ip: str, datadir: str, run: str, port: int = PORT) -> str:
    return MY_CNF.format(node=node, ip=ip, datadir=datadir, run=run, port=port)


def option(defaults_file: str, key: str) -> str:
    with open(defaults_file) as fh:
        for line in fh:
            k, sep, v = line.partition("=")
            if sep and k.strip() == key:
                return v.strip()
    raise KeyError(f"{defaults_file}: no {key}")


def _pid(defaults_file: str) -> int | None:
    try:
        with open(option(defaults_file, "pid-file")) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return None
    if argv and os.path.basename(argv[0]) in (b"mariadbd", b"mysqld"):
        return pid
    return None


def _ping(defaults_file: str) -> bool:
    r = subprocess.run(["mariadb-admin", "--no-defaults", "-S",
                        option(defaults_file, "socket"), "-uroot", "--connect-timeout=2",
                        "ping"], capture_output=True, text=True)
    return r.returncode == 0


def start(defaults_file: str) -> int:
    from hahooks import waits
    from hahooks.errors import WaitTimeout

    if _pid(defaults_file) and _ping(defaults_file):
        print("mariadb already running")
        return 0
    err = option(defaults_file, "log-error")
    with open(err, "ab") as log:
        proc = subprocess.Popen(["mariadbd", f"--defaults-file={defaults_file}"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)

    def ready():
        if proc.poll() is not None:
            return "died"
        return "up" if _ping(defaults_file) else None

    try:
        state = waits.wait_for(ready, START_TIMEOUT, "mariadbd to accept connections",
                               ceiling=0.1)
    except WaitTimeout as exc:
        print(f"mariadb: {exc.one_line()}", file=sys.stderr)
        return 1
    if state == "died":
        print(f"mariadb: mariadbd exited {proc.returncode} during start-up; see {err}: "
              + _tail(err), file=sys.stderr)
        return 1
    print(f"mariadb started (pid {proc.pid})")
    return 0


def stop(defaults_file: str) -> int:
    from hahooks import procs, waits
    from hahooks.errors import WaitTimeout

    pid = _pid(defaults_file)
    if not pid:
        print("mariadb not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    try:
        waits.wait_for(lambda: not procs.pid_running(pid),
                       STOP_TIMEOUT, f"mariadbd (pid {pid}) to shut down", ceiling=0.1)
    except WaitTimeout as exc:
        print(f"mariadb: {exc.one_line()}", file=sys.stderr)
        return 1
    print("mariadb stopped")
    return 0


def status(defaults_file: str) -> int:
    pid = _pid(defaults_file)
    if pid:
        print(f"mariadb is running as pid {pid}.")
        return 0
    print("mariadb is not running.")
    return 1


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.strip() for ln in fh if "ERROR" in ln]
    except OSError:
        return ""
    return lines[-1] if lines else ""


# -- set-up (once, on the node that holds the stack) -------------------------------------
SETUP_SQL = f"""\
CREATE DATABASE IF NOT EXISTS {DATABASE};
CREATE TABLE IF NOT EXISTS {DATABASE}.{TABLE} (id INT PRIMARY KEY, who VARCHAR(32),
  at DOUBLE) ENGINE=InnoDB;
CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';
FLUSH PRIVILEGES;
"""


def install_argv(defaults_file: str) -> list[str]:
    return ["mariadb-install-db", f"--defaults-file={defaults_file}",
            "--auth-root-authentication-method=normal", "--skip-test-db"]


def socket_sql_argv(defaults_file: str, sql: str) -> list[str]:
    return ["mariadb", "--no-defaults", "-S", option(defaults_file, "socket"), "-uroot",
            "--batch", "--skip-column-names", "-e", sql]


# -- the client (runs outside both nodes) -------------------------------------------------
def client_argv(host: str, sql: str, timeout: int = 2) -> list[str]:
    return ["mariadb", "--no-defaults", "-h", host, "-P", str(PORT), "-u", USER,
            f"-p{PASSWORD}", f"--connect-timeout={timeout}", "--batch",
            "--skip-column-names", DATABASE, "-e", sql]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mariadb-drill", description="rc.d-style control of "
                                "a sandbox node's MariaDB instance")
    p.add_argument("--defaults-file", required=True)
    p.add_argument("action", choices=("start", "stop", "status"))
    args = p.parse_args(argv)
    return {"start": start, "stop": stop, "status": status}[args.action](args.defaults_file)


if __name__ == "__main__":
    sys.exit(main())
