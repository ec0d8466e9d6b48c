"""`status` perfdata from real layer observations on the simulator: HAST's dirty bytes
(docs/reference/hast.md §2, `dirty: N (xB)`) and a gmirror rebuild's percent
(docs/reference/gmirror.md, `(SYNCHRONIZING, NN%)`), with thresholds on them (issue 20)."""
from __future__ import annotations

import re

from replication_helpers import SimCluster, layer, unique, world  # noqa: F401


def _perf(stdout: str) -> dict[str, str]:
    return dict(f.split("=", 1) for f in stdout.splitlines()[0].split(" | ")[1].split())


def test_hast_dirty_bytes_in_perfdata_and_thresholds(tmp_path, world):
    r = unique()
    world.add_hast(r, size_mb=8)
    c = SimCluster(tmp_path, world)
    for n in c.nodes:
        c.write(n, layer("disks", "hast", resources=[r], secondary_wait="1s"))
    c.hh("nodea", "master", check=0)
    assert _perf(c.hh("nodea", "status").stdout)["hast_dirty_bytes"] == "0B;;;0"
    world.crash("nodeb")
    world.set_hast(r, dirty=4 << 20)
    st = c.hh("nodea", "status", "-w", "hast_dirty_bytes=1m", "-C", "hast_dirty_bytes=1g")
    assert st.returncode == 1, st.stdout            # degraded, and 4 MiB is above 1m
    assert _perf(st.stdout)["hast_dirty_bytes"] == f"{4 << 20}B;1m;1g;0"
    assert f"hast_dirty_bytes={4 << 20}B (warning 1m)" in st.stdout
    st = c.hh("nodea", "status", "-C", "hast_dirty_bytes=2m")
    assert st.returncode == 2 and st.stdout.startswith("CRITICAL"), st.stdout
    c.assert_no_violations()


def test_gmirror_rebuild_percent_in_perfdata(tmp_path, world):
    world.configure(gmirror_sync_rate=1024)       # a rebuild that lasts: SYNCHRONIZING
    img0, img1 = world.image(unique("img"), 8), world.image(unique("img"), 8)
    name = unique("gm")
    c = SimCluster(tmp_path, world)
    c.write("nodea", layer("img0", "md", file=img0, unit=0) +
            layer("img1", "md", file=img1, unit=1) +
            layer("mirror", "gmirror", mirror=name, components=["md0", "md1"]))
    c.hh("nodea", "master", check=0)
    st = c.hh("nodea", "status", "-C", "mirror_sync=100:")
    assert st.returncode == 2, st.stdout            # below 100 % while it rebuilds
    shown = re.search(r"md1 SYNCHRONIZING (\d+)%", st.stdout)
    m = re.fullmatch(r"(\d+)%;;100:;0;100", _perf(st.stdout)["mirror_sync"])
    assert shown and m and int(m.group(1)) < 100, st.stdout
    c.hh("nodea", "slave", check=0)
    c.assert_no_violations()
