"""The reliability figures, for real, in their reduced CI form (bench/reliability.py
--quick): the fault matrix of the default scenario, a 500-event flap storm, lost writes
through a graceful and a crash failover, and the whole bad-input suite. Each figure must be
at its target; the table is printed (pytest -s, or the CI log on failure)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, hahooks_env, require_root, require_tool


def test_reliability_figures_quick(tmp_path):
    require_root()
    require_tool("ip", "unshare", "nsenter", "zfs-fuse", "zpool", "mariadbd", "mkfs.ext4")
    out = tmp_path / "reliability.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "reliability.py"),
                           "--quick", "--json", str(out)], capture_output=True, text=True,
                          env=hahooks_env(), timeout=3600)
    print(proc.stdout)
    print(proc.stderr[-5000:], file=sys.stderr)
    rows = {r["figure"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"bad input", "fault matrix", "flap storm", "no lost writes"}, rows
    assert rows["bad input"]["tried"] >= 50
    assert rows["fault matrix"]["tried"] >= 9          # >= 3 mutating steps x 3 faults
    assert rows["fault matrix"]["tried"] == rows["fault matrix"]["safe"], \
        [t for t in rows["fault matrix"]["trials"] if not t["safe"]]
    # issue 17: a holder hidden from the node's own mount table before its `slave`
    hidden = {t["fault"] for t in rows["fault matrix"]["trials"]}
    from hahooks.lab.drill import holders

    assert set(holders.CASES) <= hidden, (holders.CASES, hidden)
    for name, row in rows.items():
        assert row["met"], (name, row.get("result"), row.get("failed") or row.get("unsafe"))
    assert proc.returncode == 0, proc.stderr[-2000:]
