"""The real services on top of the sandbox stacks, and how the drill writes and reads data
through them: MariaDB (rows inserted over TCP from the client namespace, autocommit, each
acknowledged) and nginx with WebDAV (files PUT and read back over HTTP)."""
from __future__ import annotations

import os
import sys

from hahooks.lab.drill import mariadb, stacks
from hahooks.lab.drill.provision import must
from hahooks.lab.drill.result import DrillError
from hahooks.lab.drill.writer import read_acked


def service_for(scenario):
    return MariaDB() if scenario.service == "mariadb" else Nginx()


class MariaDB:
    name = "mariadb"

    def cnf(self, cluster, node: str) -> str:
        return os.path.join(cluster.places[node].private, "etc", "my.cnf")

    def _ctl(self, cluster, node: str, action: str) -> list[str]:
        """The rc.d-style command (cluster.bin/mariadb-drill runs hahooks.lab.drill.mariadb)."""
        return ["mariadb-drill", "--defaults-file", self.cnf(cluster, node), action]

    def layer(self, cluster, node: str) -> dict:
        """The `service` layer of the node's config (manager = "command", rc.d-like)."""
        return {"kind": "service", "manager": "command",
                "start": self._ctl(cluster, node, "start"),
                "stop": self._ctl(cluster, node, "stop"),
                "status": self._ctl(cluster, node, "status"),
                "process_match": f"--defaults-file={self.cnf(cluster, node)}",
                "start_timeout": "60s", "exit_timeout": "60s", "timeout": "120s"}

    def prepare(self, cluster, node: str) -> None:
        place = cluster.places[node]
        os.makedirs(place.run_dir, exist_ok=True)
        try:
            datadir = os.path.join(stacks.data_dir(place), "mysql")
        except (FileNotFoundError, ValueError, KeyError):
            datadir = os.path.join(cluster.root, "mysql")   # before the config exists
        with open(self.cnf(cluster, node), "w") as fh:
            fh.write(mariadb.my_cnf(node, place.ip, datadir, place.run_dir))

    def install(self, cluster, node: str, data_dir: str) -> None:
        self.prepare(cluster, node)
        cnf = self.cnf(cluster, node)
        must(cluster, node, ["mkdir", "-p", os.path.join(data_dir, "mysql")])
        must(cluster, node, mariadb.install_argv(cnf))
        must(cluster, node, self._ctl(cluster, node, "start"))
        try:
            must(cluster, node, mariadb.socket_sql_argv(cnf, mariadb.SETUP_SQL))
        finally:
            must(cluster, node, self._ctl(cluster, node, "stop"))

    def write(self, cluster, node: str, count: int, tag: str) -> list[int]:
        """Insert `count` rows through node's server from the client namespace; the ids
        of the acknowledged ones."""
        first = cluster.next_row(count)
        acked = os.path.join(cluster.workdir, f"acked-{tag}.txt")
        r = cluster.run("client", [sys.executable, "-m", "hahooks.lab.drill.writer", "--hosts",
                                   cluster.ips[node], "--acked", acked, "--stop",
                                   acked + ".stop", "--first", str(first), "--count",
                                   str(count), "--who", tag], timeout=120)
        ids = read_acked(acked)
        if not r.ok:
            cluster.mark(f"writer: {r.tail()}")
        return ids

    def read(self, cluster, node: str) -> set[int]:
        sql = f"SELECT id FROM {mariadb.DATABASE}.{mariadb.TABLE}"
        r = cluster.run(node, mariadb.socket_sql_argv(self.cnf(cluster, node), sql))
        if not r.ok:
            raise DrillError(f"{node}: reading the rows: {r.tail()}")
        return {int(x) for x in r.stdout.split()}

    def stop_client(self, cluster) -> None:
        return None


class Nginx:
    """nginx serving (and accepting WebDAV PUTs into) the replicated filesystem."""

    name = "nginx"

    def conf(self, cluster, node: str) -> str:
        return os.path.join(cluster.places[node].private, "etc", "nginx.conf")

    def docroot(self, cluster, node: str) -> str:
        place = cluster.places[node]
        for layer in stacks.layers(place):
            if layer["kind"] == "links":      # served through a link: /var/www -> /drbd/...
                paths = sorted(layer["links"])
                return next((p for p in paths if p.endswith("/www")),
                            next((p for p in paths if p.endswith("/mail")), paths[0]))
        return os.path.join(stacks.data_dir(place), "www")

    def layer(self, cluster, node: str) -> dict:
        conf = self.conf(cluster, node)
        run = cluster.places[node].run_dir
        return {"kind": "service", "manager": "command",
                "start": ["nginx", "-c", conf],
                "stop": ["nginx", "-c", conf, "-s", "quit"],
                "pidfile": os.path.join(run, "nginx.pid"),
                "process_match": f"-c {conf}", "start_timeout": "20s", "exit_timeout": "20s"}

    def prepare(self, cluster, node: str) -> None:
        place = cluster.places[node]
        os.makedirs(place.run_dir, exist_ok=True)
        try:
            root = self.docroot(cluster, node)
        except (FileNotFoundError, ValueError, KeyError):
            root = os.path.join(cluster.root, "www")
        run = place.run_dir
        with open(self.conf(cluster, node), "w") as fh:
            fh.write(f"""\
# nginx of sandbox node {node} (written by hahooks drill)
daemon on;
user root;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/nginx.err;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen {place.ip}:80;
        root {root};
        location / {{ dav_methods PUT DELETE; create_full_put_path on; autoindex on; }}
    }}
}}
""")

    def install(self, cluster, node: str, data_dir: str) -> None:
        self.prepare(cluster, node)
        must(cluster, node, ["mkdir", "-p", os.path.join(data_dir, "www")])
        must(cluster, node, ["mkdir", "-p", os.path.join(data_dir, "var", "www")])

    def write(self, cluster, node: str, count: int, tag: str) -> list[int]:
        first = cluster.next_row(count)
        code = ("import sys,urllib.request\n"
                "ok=[]\n"
                f"for i in range({first},{first + count}):\n"
                f"  r=urllib.request.Request('http://{cluster.ips[node]}/rows/%d' % i, "
                "data=(b'row %d\\n' % i), method='PUT')\n"
                "  try:\n"
                "    urllib.request.urlopen(r, timeout=5); ok.append(i)\n"
                "  except Exception as e:\n"
                "    print(e, file=sys.stderr)\n"
                "print(' '.join(map(str, ok)))\n")
        r = cluster.run("client", [sys.executable, "-c", code], timeout=120)
        return [int(x) for x in r.stdout.split()]

    def read(self, cluster, node: str) -> set[int]:
        code = ("import urllib.request,re\n"
                f"t=urllib.request.urlopen('http://{cluster.ips[node]}/rows/', timeout=5)"
                ".read().decode()\n"
                "print(' '.join(re.findall(r'href=\"(\\d+)\"', t)))\n")
        r = cluster.run("client", [sys.executable, "-c", code], timeout=60)
        if not r.ok:
            raise DrillError(f"{node}: reading the rows over HTTP: {r.tail()}")
        return {int(x) for x in r.stdout.split()}

    def stop_client(self, cluster) -> None:
        return None
