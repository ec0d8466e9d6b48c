"""Whole stacks on real parts through `hahooks master` and `hahooks slave`:
filesystem -> links -> service (nginx on a loop ext4) on this host, and zpool -> service in
a sandbox node running its own zfs-fuse."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import require_tool, run_hahooks
from storage_helpers import (alive, fs_resource, http_get, is_mounted, lab, mounts,  # noqa: F401
                             pid_of, sh, toml_value)
from zfs_helpers import zlab  # noqa: F401

NGINX_CONF = """\
user root;
pid {run}/nginx.pid;
error_log {run}/error.log;
worker_processes 2;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/tmp;
    proxy_temp_path {run}/tmp;
    fastcgi_temp_path {run}/tmp;
    uwsgi_temp_path {run}/tmp;
    scgi_temp_path {run}/tmp;
    server {{ listen unix:{run}/nginx.sock; root {www}; }}
}}
"""


def table(name: str, kind: str, **params) -> str:
    return "\n".join(["[[resource]]", f'name = "{name}"', f'kind = "{kind}"',
                      *(f"{k} = {toml_value(v)}" for k, v in params.items())]) + "\n"


def nginx_stack(lab, tmp_path) -> dict:
    """A loop ext4 holding nginx's config and site; /etc-like paths linked onto it."""
    require_tool("nginx")
    dev = lab.image("stack")
    mp, run, etc = tmp_path / "srv", tmp_path / "run", tmp_path / "etc"
    for d in (mp, run / "tmp", etc / "nginx"):
        d.mkdir(parents=True)
    (etc / "nginx" / "nginx.conf").write_text("# the local, inactive copy\n")
    sh("mount", dev, mp)
    (mp / "etc" / "nginx").mkdir(parents=True)
    (mp / "www").mkdir()
    (mp / "etc" / "nginx" / "nginx.conf").write_text(
        NGINX_CONF.format(run=run, www=tmp_path / "www"))
    (mp / "www" / "index.html").write_text("hello from the shared filesystem\n")
    sh("umount", mp)
    conf = str(etc / "nginx" / "nginx.conf")          # read through the link
    nginx = ["nginx", "-e", str(run / "error.log"), "-c", conf]
    body = (fs_resource("data", dev, str(mp), fstype="ext4")
            + "\n" + table("links", "links", links={str(etc / "nginx"): str(mp / "etc" / "nginx"),
                                                    str(tmp_path / "www"): str(mp / "www")})
            + "\n" + table("web", "service", start=nginx, stop=[*nginx, "-s", "quit"],
                           pidfile=str(run / "nginx.pid"), process_match=conf))
    return {"dev": dev, "mp": str(mp), "run": run, "etc": etc, "body": body,
            "socket": str(run / "nginx.sock"), "pidfile": str(run / "nginx.pid")}


def test_filesystem_links_service_through_master_and_slave(lab, tmp_path, write_config):
    s = nginx_stack(lab, tmp_path)
    cfg = write_config(s["body"])
    try:
        run_hahooks("master", "-c", cfg, check=0)
        pid = pid_of(s["pidfile"])
        assert alive(pid)
        assert http_get(s["socket"], "/index.html") == (200, "hello from the shared filesystem\n")
        assert os.readlink(s["etc"] / "nginx") == f"{s['mp']}/etc/nginx"
        status = run_hahooks("status", "-c", cfg, check=0)
        assert status.stdout.startswith("OK: nodea: master: all 3 layer(s) held")
        assert "skip" in run_hahooks("master", "-c", cfg, check=0).stderr
        out = run_hahooks("slave", "-c", cfg, check=0)
        assert not alive(pid) and not is_mounted(s["mp"])
        assert (s["etc"] / "nginx" / "nginx.conf").read_text() == "# the local, inactive copy\n"
        assert not os.path.lexists(tmp_path / "www")
        assert "sending TERM" not in out.stderr        # nothing held the mount at umount time
        run_hahooks("status", "-c", cfg, check=0)
        # and back: the data is still there
        run_hahooks("master", "-c", cfg, check=0)
        assert http_get(s["socket"], "/index.html")[0] == 200
        run_hahooks("slave", "-c", cfg, check=0)
    finally:
        pid = pid_of(s["pidfile"])
        if pid:
            lab.adopt(pid)


def test_failed_service_start_rolls_the_whole_stack_back(lab, tmp_path, write_config):
    s = nginx_stack(lab, tmp_path)
    # a config nginx rejects: the start fails, links and mount are undone in reverse
    body = s["body"].replace('process_match = "', 'start_timeout = "2s"\nprocess_match = "')
    cfg = write_config(body)
    sh("mount", s["dev"], s["mp"])
    with open(os.path.join(s["mp"], "etc", "nginx", "nginx.conf"), "a") as fh:
        fh.write("this is not nginx syntax;\n")
    sh("umount", s["mp"])
    out = run_hahooks("master", "-c", cfg)
    assert out.returncode == 1 and "acquire web failed" in out.stderr and "rolled back" in out.stderr
    assert not is_mounted(s["mp"]) and not os.path.islink(s["etc"] / "nginx")
    assert (s["etc"] / "nginx" / "nginx.conf").read_text() == "# the local, inactive copy\n"


@pytest.mark.parametrize("example", ["filesystem-links-service.toml", "zpool-service.toml"])
def test_examples_are_valid(example, tmp_path):
    from conftest import ROOT
    import shutil

    path = tmp_path / example
    shutil.copy(os.path.join(ROOT, "examples", example), path)
    path.chmod(0o600)
    out = run_hahooks("check", "-c", path, check=0)
    assert "ok: node" in out.stdout


def test_zpool_service_through_master_and_slave(zlab):
    """A daemon serving files from a ZFS dataset, inside a sandbox node with its own
    zfs-fuse: master imports then starts, slave stops then exports (plainly: nothing holds
    the dataset any more), and the other node takes over after a clean handover."""
    from storage_helpers import daemon_script
    from zfs_helpers import POOL, hahooks_in, node_config, pools

    a, b, mp = zlab["a"], zlab["b"], zlab["mp"]
    run = zlab["tmp"] / "run"
    run.mkdir()
    daemon = daemon_script(str(zlab["tmp"] / "rc.d"), "st-zhttpd", f"{mp}/www", str(run))
    a.run(["zpool", "import", "-d", zlab["dir"], POOL])
    a.run(["sh", "-c", f"mkdir {mp}/www && echo 'from the pool' > {mp}/www/index.html"])
    a.run(["zpool", "export", POOL])
    configs = {node: node_config(
        str(zlab["tmp"] / node), node,
        table("pool", "zpool", pool=POOL, import_dirs=[zlab["dir"]]) + "\n"
        + table("web", "service", manager="init.d", service="st-zhttpd",
                script_dir=os.path.dirname(daemon["script"]), pidfile=daemon["pidfile"]))
        for node in ("nodea", "nodeb")}
    for node, other in ((a, b), (b, a)):
        cfg = configs[node.name]
        hahooks_in(node, "master", "-c", cfg, check=0)
        assert pools(node) == {POOL: "ONLINE"} and pools(other) == {}
        assert http_get(daemon["socket"], "/index.html") == (200, "from the pool\n")
        status = hahooks_in(node, "status", "-c", cfg, check=0)
        assert "master: all 2 layer(s) held" in status.stdout
        out = hahooks_in(node, "slave", "-c", cfg, check=0)
        assert pools(node) == {} and "sending TERM" not in out.stderr
        assert not os.path.exists(daemon["pidfile"])


def test_dry_run_of_the_whole_stack_prints_every_step_and_changes_nothing(lab, tmp_path,
                                                                         write_config):
    s = nginx_stack(lab, tmp_path)
    cfg = write_config(s["body"])
    out = run_hahooks("master", "--dry-run", "-c", cfg, check=0)
    lines = out.stdout.splitlines()
    assert lines[0] == f"would run: mount -t ext4 {s['dev']} {s['mp']}"
    assert f"would link {s['etc'] / 'nginx'} -> {s['mp']}/etc/nginx" in lines
    assert lines[-1].startswith("would run: nginx -e ")
    assert not is_mounted(s["mp"]) and not os.path.islink(s["etc"] / "nginx")
    assert pid_of(s["pidfile"]) is None
