"""The `vip` kind (kinds/vip.py) on real parts: Linux on a veth end (dum0, 10.99.33.1/24) in
a network namespace the test creates, through `ip -n NS` so the runner's own argv is what
runs; FreeBSD against a small fake `ifconfig` that keeps its addresses in a file and answers
as FreeBSD's does (`inet A netmask 0x... broadcast B`, sbin/ifconfig/af_inet.c in_status();
docs/reference/ucarp.md, docs/reference/lab.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hahooks import config as config_mod
from hahooks.errors import HahooksError
from hahooks.kinds.base import Context, State
from hahooks.kinds.vip import Vip
from hahooks.runner import Runner
from hahooks.schema import Invalid
from test_wiring_args import addresses, netns  # noqa: F401  (netns is a fixture)


def make(platform: str, tool_paths: dict[str, str], **params) -> Vip:
    cfg = config_mod.parse({"node": {"platform": platform},
                            "resource": [{"name": "vip", "kind": "vip", **params}]})
    runner = Runner(cfg.node.platform, tool_paths=tool_paths)
    return Vip(cfg.resources[0], Context(runner=runner, node=cfg.node))


@pytest.fixture
def ip_in(netns, tmp_path):   # noqa: F811
    """An `ip` that acts inside the namespace: the kind's argv, unchanged, after `-n NS`."""
    wrapper = tmp_path / "ip"
    wrapper.write_text(f"#!/bin/sh\nexec /usr/sbin/ip -n {netns} \"$@\"\n")
    wrapper.chmod(0o755)
    return {"ip": str(wrapper)}


def test_linux_acquire_release_status_idempotent(netns, ip_in):   # noqa: F811
    vip = make("linux", ip_in, address="10.99.33.100/24", interface="dum0")
    assert vip.status().state is State.RELEASED
    for _ in range(2):   # the second acquire finds the address and runs no `ip addr add`
        vip.acquire()
        assert addresses(netns) == {"10.99.33.1": 24, "10.99.33.100": 24}
        assert vip.status().state is State.HELD
    adds = [r for r in vip.ctx.runner.history if "add" in r.argv]
    assert len(adds) == 1
    for _ in range(2):
        vip.release()
        assert addresses(netns) == {"10.99.33.1": 24}
        assert vip.status().state is State.RELEASED


def test_linux_label_and_default_prefix(netns, ip_in):   # noqa: F811
    vip = make("linux", ip_in, address="10.99.33.101", interface="dum0", label="dum0:ha")
    vip.acquire()
    out = subprocess.run(["ip", "-n", netns, "-o", "-4", "addr", "show", "dev", "dum0"],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if "10.99.33.101/32" in x)
    assert "dum0:ha" in line
    vip.release()
    assert addresses(netns) == {"10.99.33.1": 24}


def test_linux_other_prefix_is_broken_and_released_with_its_prefix(netns, ip_in):  # noqa: F811
    subprocess.run(["ip", "-n", netns, "addr", "add", "10.99.33.100/32", "dev", "dum0"],
                   check=True)
    vip = make("linux", ip_in, address="10.99.33.100/24", interface="dum0")
    obs = vip.status()
    assert obs.state is State.BROKEN and "configured /24" in obs.reason
    vip.release()
    assert addresses(netns) == {"10.99.33.1": 24}


def test_linux_missing_interface(netns, ip_in):   # noqa: F811
    vip = make("linux", ip_in, address="10.99.33.100/24", interface="nosuch0")
    assert vip.status().state is State.BROKEN
    with pytest.raises(HahooksError):
        vip.acquire()


FAKE_IFCONFIG = r'''#!PYTHON
"""FreeBSD ifconfig, the forms the vip kind uses: IFACE inet | IFACE inet A/P alias |
IFACE inet A -alias. Addresses live in STATE as {iface: {address: prefix}}."""
import ipaddress, json, sys
state = json.load(open("STATE"))
iface, args = sys.argv[1], sys.argv[2:]
if iface not in state:
    sys.exit(f"ifconfig: interface {iface} does not exist")
addrs = state[iface]
if args == ["inet"]:
    print(f"{iface}: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500")
    for a, p in addrs.items():
        n = ipaddress.IPv4Interface(f"{a}/{p}").network
        print(f"\tinet {a} netmask 0x{int(n.netmask):08x} broadcast {n.broadcast_address}")
    sys.exit(0)
if len(args) == 3 and args[0] == "inet" and args[2] == "alias":
    i = ipaddress.IPv4Interface(args[1])
    addrs[str(i.ip)] = i.network.prefixlen
elif len(args) == 3 and args[0] == "inet" and args[2] == "-alias":
    if args[1] not in addrs:
        sys.exit("ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address")
    del addrs[args[1]]
else:
    sys.exit(f"fake ifconfig: unexpected {args}")
json.dump(state, open("STATE", "w"))
'''


@pytest.fixture
def fake_ifconfig(tmp_path):
    state = tmp_path / "ifconfig.json"
    state.write_text(json.dumps({"vtnet0": {"10.99.0.1": 24}}))
    tool = tmp_path / "ifconfig"
    tool.write_text(FAKE_IFCONFIG.replace("PYTHON", sys.executable)
                    .replace("STATE", str(state)))
    tool.chmod(0o755)
    return {"ifconfig": str(tool)}, state


def test_freebsd_acquire_release_status_idempotent(fake_ifconfig):
    tools, state = fake_ifconfig
    vip = make("freebsd", tools, address="10.99.0.100/24", interface="vtnet0")
    assert vip.status().state is State.RELEASED
    for _ in range(2):
        vip.acquire()
        assert json.loads(state.read_text()) == {"vtnet0": {"10.99.0.1": 24, "10.99.0.100": 24}}
        assert vip.status().state is State.HELD
    for _ in range(2):   # a second -alias would fail (EADDRNOTAVAIL): it must not be run
        vip.release()
        assert json.loads(state.read_text()) == {"vtnet0": {"10.99.0.1": 24}}
        assert vip.status().state is State.RELEASED
    ran = [r.argv[1:] for r in vip.ctx.runner.history if "inet" != r.argv[-1]]
    assert ran == [["vtnet0", "inet", "10.99.0.100/24", "alias"],
                   ["vtnet0", "inet", "10.99.0.100", "-alias"]]


def test_freebsd_missing_interface(fake_ifconfig):
    tools, _ = fake_ifconfig
    vip = make("freebsd", tools, address="10.99.0.100/24", interface="nosuch0")
    obs = vip.status()
    assert obs.state is State.BROKEN and "cannot read nosuch0" in obs.reason


@pytest.mark.parametrize("params", [
    {"address": "10.99.0.300/24", "interface": "em0"},
    {"address": "10.99.0.100/0", "interface": "em0"},
    {"address": "10.99.0.100/24", "interface": "bad name"},
    {"address": "10.99.0.100/24", "interface": "em0", "label": "eth0:x"},
])
def test_invalid_params(params):
    with pytest.raises((Invalid, HahooksError)):
        make("linux", {}, **params)
