"""gmirror, ggate-attach, ggate-export and md: parsers against the reference texts
(freebsd-tools.md §4 and seed 000's copies), then the kinds through master/slave/status on
the simulator (FreeBSD command forms forced)."""
from __future__ import annotations

import pytest

from hahooks import parsers

# §4 `gmirror status`: "%*s  %*s  %s", right-aligned Name and Status
REF_STATUS = ("      Name    Status  Components\n"
              "mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
              "                      ggate0 (SYNCHRONIZING, 42%)\n")
# §4 `gmirror status -s`: name and status repeated on every line
REF_STATUS_S = ("mirror/gm0  DEGRADED  ada0 (ACTIVE)\n"
                "mirror/gm0  DEGRADED  ggate0 (SYNCHRONIZING, 42%)\n")
# seed 000 (whitespace collapsed by the web page), FreeBSD 7's "(6%)" without a state
SEED_COMPLETE = "Name Status Components\nmirror/remotemirror COMPLETE md0\nggate0\n"
SEED_DEGRADED = "Name Status Components\nmirror/remotemirror DEGRADED ggate0\nmd0 (6%)\n"


@pytest.mark.parametrize("text", [REF_STATUS, REF_STATUS_S])
def test_gmirror_status_reference_forms(text):
    m = parsers.parse_gmirror_status(text)["gm0"]
    assert m.status == "DEGRADED"
    assert [(c.provider, c.state, c.percent) for c in m.components] == [
        ("ada0", "ACTIVE", None), ("ggate0", "SYNCHRONIZING", 42)]


def test_gmirror_status_seed000_forms():
    m = parsers.parse_gmirror_status(SEED_COMPLETE)["remotemirror"]
    assert m.status == "COMPLETE" and [c.provider for c in m.components] == ["md0", "ggate0"]
    m = parsers.parse_gmirror_status(SEED_DEGRADED)["remotemirror"]
    assert m.status == "DEGRADED"
    assert (m.components[1].provider, m.components[1].percent) == ("md0", 6)


def test_gmirror_status_several_mirrors_and_empty():
    text = ("      Name    Status  Components\n"
            "mirror/gm0  COMPLETE  ada0 (ACTIVE)\n"
            "                      ada1 (ACTIVE)\n"
            "mirror/big  STARTING  ada2 (ACTIVE)\n")
    got = parsers.parse_gmirror_status(text)
    assert [c.provider for c in got["gm0"].components] == ["ada0", "ada1"]
    assert got["big"].status == "STARTING"
    assert parsers.parse_gmirror_status("") == {}


def test_mdconfig_list_trailing_space():
    # §4: each name followed by a space, then a final newline; nothing at all when empty
    assert parsers.parse_mdconfig_list("md0 md1 \n") == ["md0", "md1"]
    assert parsers.parse_mdconfig_list("md0 \n") == ["md0"]      # seed 000 compared to "md0"
    assert parsers.parse_mdconfig_list("") == []


def test_mdconfig_verbose():
    old = "md0\tvnode\t  500M\t/root/images/sitesprimary.img\n"
    new = "md1\tvnode\t   64M\t/img/b.img\t-\t-\n"
    got = parsers.parse_mdconfig_verbose(old + new)
    assert (got["md0"].type, got["md0"].size.strip(), got["md0"].path) == \
        ("vnode", "500M", "/root/images/sitesprimary.img")
    assert got["md1"].path == "/img/b.img"


def test_ggatec_list_plain_and_verbose():
    assert parsers.parse_ggatec_list("ggate0\nggate1\n") == {
        "ggate0": {"NAME": "ggate0"}, "ggate1": {"NAME": "ggate1"}}
    verbose = ("       NAME: ggate0\n"
               "       info: 192.168.1.101:3080 /root/images/sitesbackup.img\n"
               "     access: r1w1e1\n"
               "    timeout: 0\n"
               "queue_count: 0\n"
               " queue_size: 1024\n"
               " references: 1\n"
               "  mediasize: 524288000 (500M)\n"
               " sectorsize: 512\n"
               "       mode: 600\n"
               "\n")
    got = parsers.parse_ggatec_list(verbose)
    assert got["ggate0"]["info"] == "192.168.1.101:3080 /root/images/sitesbackup.img"
    assert got["ggate0"]["mediasize"] == "524288000 (500M)"
