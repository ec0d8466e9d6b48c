"""`hahooks check`: a stack in the wrong order fails or warns with file:line, and `check
--deep` (read-only) finds missing tools, init scripts and devices (issue 20, review F9/F10)."""
from __future__ import annotations

import os
import textwrap

from conftest import run_hahooks
from zfs_helpers import zlab  # noqa: F401

REVERSED = """
    [[resource]]
    name = "sendmail"
    kind = "service"
    manager = "init.d"
    service = "sendmail"
    script_dir = "{dir}/init.d"

    [[resource]]
    name = "mail"
    kind = "filesystem"
    device = "{dev}"
    mountpoint = "{dir}/mail"
    fstype = "ext4"

    [[resource]]
    name = "r0"
    kind = "drbd"
    resource = "r0"
    minor = 0
    """


def _line(path: str, text: str) -> int:
    return next(no for no, line in enumerate(open(path), 1) if text in line)


def test_check_fails_a_filesystem_on_a_replication_device_defined_above_it(tmp_path,
                                                                           write_config):
    path = write_config(REVERSED.format(dir=tmp_path, dev="/dev/drbd0"))
    r = run_hahooks("check", "-c", path)
    assert r.returncode == 6, (r.stdout, r.stderr)
    fs_line, svc_line = _line(path, 'name = "mail"') - 1, _line(path, 'name = "sendmail"') - 1
    r0_line = _line(path, 'name = "r0"') - 1
    assert (f"{path}:{fs_line}: error: filesystem 'mail' mounts /dev/drbd0, which 'r0' "
            f"(drbd, line {r0_line}) above it provides") in r.stderr
    assert f"{path}:{svc_line}: warning: service 'sendmail' is below filesystem 'mail'" \
        in r.stderr
    assert "ok" not in r.stdout


def test_check_warns_on_a_service_below_a_filesystem_but_passes(tmp_path, write_config):
    body = REVERSED.format(dir=tmp_path, dev="/dev/hh-data").split("[[resource]]")
    path = write_config("[[resource]]".join(body[:3]))          # without the drbd layer
    r = run_hahooks("check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "warning: service 'sendmail' is below filesystem 'mail'" in r.stderr
    assert ": ok: node nodea" in r.stdout and "1 warning" in r.stdout


def test_check_deep_finds_missing_tools_scripts_and_devices_and_changes_nothing(
        tmp_path, write_config):
    marker = tmp_path / "acquired"
    prep = f"""
        [[resource]]
        name = "prep"
        kind = "command"
        acquire = ["touch", "{marker}"]
        release = ["{{release}}"]
        state_file = "{tmp_path}/prep.held"
        """
    sendmail = REVERSED.format(dir=tmp_path, dev="").split("[[resource]]")[1]
    body = prep.format(release="hh-no-such-release-tool") + f"""
        [[resource]]
        name = "mail"
        kind = "filesystem"
        device = "{tmp_path}/no-such-disk"
        mountpoint = "{tmp_path}/mail"
        fstype = "ext4"
        """ + "\n[[resource]]" + sendmail
    path = write_config(body)
    assert run_hahooks("check", "-c", path).returncode == 0       # the schema is happy
    r = run_hahooks("check", "--deep", "-c", path)
    assert r.returncode == 5, (r.stdout, r.stderr)
    err = r.stderr
    prep_line = _line(path, 'name = "prep"') - 1
    assert f"{path}:{prep_line}: error: prep: command not found: hh-no-such-release-tool" \
        in err
    assert f"error: sendmail: command not found: {tmp_path}/init.d/sendmail is not" in err
    assert f"{tmp_path}/no-such-disk does not exist" in err
    assert not marker.exists() and not os.path.exists(tmp_path / "mail")
    (tmp_path / "init.d").mkdir()
    script = tmp_path / "init.d" / "sendmail"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    good = write_config(prep.format(release="true") + "\n[[resource]]" + sendmail,
                        name="good.toml")
    r = run_hahooks("check", "--deep", "-c", good)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "deep: tools, scripts and devices found" in r.stdout
    assert not marker.exists()


def test_check_deep_finds_a_pool_that_is_neither_imported_nor_importable(zlab):
    from zfs_helpers import POOL, hahooks_in, node_config, pools

    a = zlab["a"]
    body = """
        [[resource]]
        name = "data"
        kind = "zpool"
        pool = "{pool}"
        import_dirs = ["{dir}"]
        """
    good = node_config(zlab["tmp"] / "good", "nodea",
                       textwrap.dedent(body.format(pool=POOL, dir=zlab["dir"])))
    r = hahooks_in(a, "check", "--deep", "-c", good)
    assert r.returncode == 0 and "warning" not in r.stderr, (r.stdout, r.stderr)
    bad = node_config(zlab["tmp"] / "bad", "nodea",
                      textwrap.dedent(body.format(pool="nosuchpool", dir=zlab["dir"])))
    r = hahooks_in(a, "check", "--deep", "-c", bad)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (f"warning: data: pool nosuchpool is neither imported nor importable from "
            f"{zlab['dir']}") in r.stderr
    assert pools(a) == {}                                  # read-only: nothing imported
