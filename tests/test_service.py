"""service kind with a real daemon whose files live on a mounted loop filesystem."""
from __future__ import annotations

import json
import os
import signal

import pytest

from conftest import run_hahooks
from storage_helpers import (alive, daemon_script, engine, fs_resource, http_get, is_mounted,
                             lab, pid_of, ran, toml_value)  # noqa: F401

from hahooks import config as config_mod
from hahooks.kinds.base import Context, State
from hahooks.kinds.service import Service
from hahooks.runner import Runner


def service_resource(name: str = "web", **params) -> str:
    lines = ["[[resource]]", f'name = "{name}"', 'kind = "service"']
    lines += [f"{k} = {toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def site(lab, tmp_path):
    """A mounted-on-demand filesystem with a docroot, and the daemon's init script."""
    dev = lab.image("site")
    mp = str(tmp_path / "mnt")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    daemon = daemon_script(str(tmp_path / "init.d"), "st-httpd", f"{mp}/www", str(run_dir))
    yield {"dev": dev, "mp": mp, "daemon": daemon, "tmp": tmp_path}
    pid = pid_of(daemon["pidfile"])
    if pid:
        lab.adopt(pid)


def seed_docroot(site) -> None:
    """Put the site's files on the filesystem (mounted once by hand)."""
    from storage_helpers import sh

    os.makedirs(site["mp"], exist_ok=True)
    sh("mount", site["dev"], site["mp"])
    os.makedirs(f"{site['mp']}/www")
    with open(f"{site['mp']}/www/index.html", "w") as fh:
        fh.write("served from the replicated filesystem\n")
    sh("umount", site["mp"])


def commands_in_log(tmp_path) -> list[tuple[str, int]]:
    out = []
    for line in (tmp_path / "hahooks.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "command":
            argv = rec["argv"]
            out.append((" ".join([os.path.basename(argv[0]), *argv[1:]]), rec["exit_code"]))
    return out


def test_init_d_service_on_a_mounted_filesystem_start_and_stop_in_order(site, write_config):
    seed_docroot(site)
    d = site["daemon"]
    cfg = write_config(fs_resource("data", site["dev"], site["mp"]) + "\n" + service_resource(
        manager="init.d", service="st-httpd", script_dir=os.path.dirname(d["script"])))
    run_hahooks("master", "-c", cfg, check=0)
    assert is_mounted(site["mp"])
    assert http_get(d["socket"], "/index.html") == (200, "served from the replicated filesystem\n")
    pid = pid_of(d["pidfile"])
    assert os.readlink(f"/proc/{pid}/cwd") == f"{site['mp']}/www"   # it holds the mount
    again = run_hahooks("master", "-c", cfg, check=0)
    assert "skip web: already held (st-httpd: st-httpd is running as pid" in again.stderr
    out = run_hahooks("slave", "-c", cfg, check=0)
    assert not alive(pid) and not is_mounted(site["mp"])
    # the service stopped before the umount, so the umount met no holder: one plain umount
    assert "sending TERM" not in out.stderr
    cmds = [c for c, _ in commands_in_log(site["tmp"])]
    stop = cmds.index("st-httpd stop")
    umount = next(i for i, c in enumerate(cmds) if c.startswith("umount"))
    assert stop < umount
    assert [c for c in cmds if c.startswith("umount")] == [f"umount {site['mp']}"]


def test_rc_d_forms_on_freebsd(site, write_config):
    seed_docroot(site)
    d = site["daemon"]
    cfg = write_config(fs_resource("data", site["dev"], site["mp"], fstype="ext4") + "\n"
                       + service_resource(manager="rc.d", service="st-httpd",
                                          script_dir=os.path.dirname(d["script"])),
                       'platform = "freebsd"\n')
    eng, runner = engine(cfg)
    eng.run("master")
    assert ran(runner, "st-httpd") == [["st-httpd", "onestatus"], ["st-httpd", "onestart"],
                                       ["st-httpd", "onestatus"], ["st-httpd", "onestatus"]]
    assert http_get(d["socket"], "/index.html")[0] == 200
    obs = eng.resource(1).status()
    assert obs.state is State.HELD and "is running as pid" in obs.reason
    eng.run("slave")
    assert ["st-httpd", "onestop"] in ran(runner, "st-httpd")
    assert eng.resource(1).status().state is State.RELEASED   # onestatus exit 1 = not running
    assert not is_mounted(site["mp"])


def test_explicit_argv_with_pidfile_status(site, write_config):
    seed_docroot(site)
    d = site["daemon"]
    cfg = write_config(fs_resource("data", site["dev"], site["mp"]) + "\n" + service_resource(
        start=[d["script"], "start"], stop=[d["script"], "stop"], pidfile=d["pidfile"]))
    eng, runner = engine(cfg)
    eng.run("master")
    obs = eng.resource(1).status()
    assert obs.state is State.HELD and f"pid {pid_of(d['pidfile'])} running" == obs.reason
    assert ran(runner, "st-httpd", "status") == []      # pidfile status runs no command
    eng.run("slave")
    assert eng.resource(1).status().state is State.RELEASED


def test_a_stop_that_leaves_a_process_behind_fails_and_keeps_the_mount(site, write_config,
                                                                       lab):
    seed_docroot(site)
    d = daemon_script(os.path.dirname(site["daemon"]["script"]), "st-leaky",
                      f"{site['mp']}/www", str(site["tmp"] / "run"), leave_child=True)
    cfg = write_config(fs_resource("data", site["dev"], site["mp"]) + "\n" + service_resource(
        manager="init.d", service="st-leaky", script_dir=os.path.dirname(d["script"]),
        pidfile=d["pidfile"], exit_timeout="1s"))
    run_hahooks("master", "-c", cfg, check=0)
    main = pid_of(d["pidfile"])
    import psutil
    child = psutil.Process(main).children()[0].pid
    lab.adopt(child)
    out = run_hahooks("slave", "-c", cfg)
    assert out.returncode == 1
    assert f"stop of web left 1 process(es) behind: pid {child}" in out.stderr
    assert "lower layers untouched" in out.stderr
    assert is_mounted(site["mp"]) and alive(child) and not alive(main)
    os.kill(child, signal.SIGKILL)
    run_hahooks("slave", "-c", cfg, check=0)
    assert not is_mounted(site["mp"])


def test_failed_start_rolls_back_the_mount(site, write_config):
    # no docroot on the filesystem: the daemon cannot chdir there and never writes its pidfile
    d = site["daemon"]
    cfg = write_config(fs_resource("data", site["dev"], site["mp"]) + "\n" + service_resource(
        manager="init.d", service="st-httpd", script_dir=os.path.dirname(d["script"])))
    out = run_hahooks("master", "-c", cfg)
    assert out.returncode == 1 and "acquire web failed" in out.stderr
    assert "rolled back" in out.stderr and not is_mounted(site["mp"])


def test_status_exit_outside_the_stopped_codes_is_broken(tmp_path):
    script = tmp_path / "weird"
    script.write_text("#!/bin/sh\necho 'status unknown' >&2\nexit 4\n")
    script.chmod(0o755)
    svc = make(service="weird", manager="init.d", script_dir=str(tmp_path))
    obs = svc.status()
    assert obs.state is State.BROKEN and "exited 4: status unknown" in obs.reason


def make(platform: str = "linux", **params) -> Service:
    cfg = config_mod.parse({"node": {"platform": platform},
                            "resource": [{"name": "svc", "kind": "service", **params}]})
    return Service(cfg.resources[0], Context(runner=Runner(cfg.node.platform), node=cfg.node))


@pytest.mark.parametrize("platform,params,start,stop,status", [
    ("freebsd", {"service": "nginx"}, ["/usr/local/etc/rc.d/nginx", "onestart"],
     ["/usr/local/etc/rc.d/nginx", "onestop"], ["/usr/local/etc/rc.d/nginx", "onestatus"]),
    ("freebsd", {"service": "mysql-server", "manager": "service"},
     ["service", "mysql-server", "onestart"], ["service", "mysql-server", "onestop"],
     ["service", "mysql-server", "onestatus"]),
    ("linux", {"service": "nginx", "manager": "service"}, ["service", "nginx", "start"],
     ["service", "nginx", "stop"], ["service", "nginx", "status"]),
    ("linux", {"service": "mariadb", "manager": "systemd"}, ["systemctl", "start", "mariadb"],
     ["systemctl", "stop", "mariadb"], ["systemctl", "is-active", "mariadb"]),
    ("linux", {"service": "nginx", "manager": "init.d"}, ["/etc/init.d/nginx", "start"],
     ["/etc/init.d/nginx", "stop"], ["/etc/init.d/nginx", "status"]),
])
def test_command_forms(platform, params, start, stop, status):
    svc = make(platform, **params)
    assert [svc.argv("start"), svc.argv("stop"), svc.argv("status")] == [start, stop, status]


@pytest.mark.parametrize("params,message", [
    ({"manager": "init.d"}, "needs 'service'"),
    ({"start": ["x"]}, "need both 'start' and 'stop'"),
    ({"start": ["x"], "stop": ["y"]}, "needs 'status'"),
    ({"service": "x", "manager": "rc.d", "start": ["x"]}, "only with manager = \"command\""),
    ({"service": "x", "start": "nginx -s start", "stop": ["y"]}, "not a shell string"),
])
def test_bad_service_configs_are_refused_with_the_reason(write_config, params, message):
    out = run_hahooks("check", "-c", write_config(service_resource(**params)))
    assert out.returncode == 6 and message in out.stderr, out.stderr
