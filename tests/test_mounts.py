"""The mount table: mountinfo and FreeBSD `mount -p` parsing, consistent reads."""
from __future__ import annotations

import os

from hahooks import mounts


def test_mountinfo_parsing_with_escapes_and_optional_fields():
    text = ("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
            "61 36 7:3 / /srv/my\\040data rw,relatime shared:5 unbindable - ext4 /dev/loop3 rw\n"
            "62 36 0:41 / /tank rw,relatime - fuse.zfs tank rw,user_id=0\n")
    table = mounts.parse_mountinfo(text)
    assert table[0] == mounts.Mount("/dev/root", "/mnt2", "ext3", "rw,noatime", os.makedev(98, 0))
    assert table[1].mountpoint == "/srv/my data" and table[1].dev == os.makedev(7, 3)
    assert mounts.of_pool(table, "tank") == [table[2]]


def test_freebsd_mount_p_parsing():
    text = ("/dev/ada0p2\t\t/\t\t\tufs\trw\t\t1 1\n"
            "devfs\t\t\t/dev\t\t\tdevfs\trw\t\t0 0\n"
            "/dev/hast/data\t\t/data\t\t\tufs\trw,noatime\t2 2\n"
            "zroot/var/log\t\t/var/log\t\tzfs\trw,noatime,nfsv4acls\t0 0\n")
    table = mounts.parse_mount_p(text)
    assert [m.mountpoint for m in table] == ["/", "/dev", "/data", "/var/log"]
    assert mounts.at(table, "/data") == mounts.Mount("/dev/hast/data", "/data", "ufs",
                                                    "rw,noatime")
    assert mounts.below(table, "/var") == [table[3]]


def test_the_table_is_read_until_two_reads_agree(monkeypatch):
    """Without /proc/self/mountinfo (FreeBSD) `mount -p` runs until two outputs match."""
    monkeypatch.setattr(mounts, "MOUNTINFO", "/nonexistent/mountinfo")
    outputs = iter(["/dev/a\t/a\tufs\trw\t0 0\n",
                    "/dev/a\t/a\tufs\trw\t0 0\n/dev/b\t/b\tufs\trw\t0 0\n",
                    "/dev/a\t/a\tufs\trw\t0 0\n/dev/b\t/b\tufs\trw\t0 0\n"])
    calls = []

    def run(argv):
        calls.append(argv)
        return next(outputs)
    assert [m.mountpoint for m in mounts.read(run)] == ["/a", "/b"]
    assert calls == [["mount", "-p"]] * 3


def test_stacked_mounts_the_last_one_is_visible():
    table = mounts.parse_mountinfo("1 0 8:1 / /data rw - ext4 /dev/sda1 rw\n"
                                   "2 1 8:2 / /data rw - ext4 /dev/sdb1 rw\n")
    assert mounts.at(table, "/data/").source == "/dev/sdb1"
