"""devd wiring: the devd-event decision table, its input validation, our devd/ rules read
with devd's grammar (tests/devd_matcher.py) for every event form of the reference, and the
routed command lines run through `sh -c` as devd runs them, against a real command stack."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT, run_hahooks
from devd_matcher import Devd
from hahooks.wiring import devd
from wiring_support import (MINIMAL_ENV, commands_log, hahooks_command, stack_config,
                            wait_converged)

HAHOOKS = "/usr/local/sbin/hahooks"
CONFIG = "/usr/local/etc/hahooks.toml"
MODERN = os.path.join(ROOT, "devd", "hahooks-carp.conf")
LEGACY = os.path.join(ROOT, "devd", "hahooks-carp-legacy.conf")

# The exact event strings of docs/reference/carp-devd.md §1 (and the forms we must not act on).
EVENTS = {
    "!system=CARP subsystem=1@em0 type=MASTER": "CARP 1@em0 MASTER",
    "!system=CARP subsystem=1@em0 type=BACKUP": "CARP 1@em0 BACKUP",
    "!system=CARP subsystem=1@em0 type=INIT": "CARP 1@em0 INIT",
    "!system=IFNET subsystem=carp0 type=LINK_UP": "IFNET carp0 LINK_UP",
    "!system=IFNET subsystem=carp0 type=LINK_DOWN": "IFNET carp0 LINK_DOWN",
}
NOT_OURS = [
    "!system=CARP subsystem=2@em0 type=MASTER",          # another vhid
    "!system=CARP subsystem=1@em1 type=MASTER",          # another interface
    "!system=CARP subsystem=11@em0 type=MASTER",         # anchored: 1 is not 11
    "!system=CARP subsystem=1@em00 type=MASTER",
    "!system=IFNET subsystem=em0 type=LINK_DOWN",        # the carrier itself, not CARP
    "!system=IFNET subsystem=carp0 type=ATTACH",
    "!system=IFNET subsystem=carp1 type=LINK_UP",
    "!system=ACPI subsystem=ACAD notify=0x00",
]


# -- decision table ------------------------------------------------------------------------
CONFIGURED = {"vhid": 1, "interface": "em0", "legacy_interface": "carp0"}


@pytest.mark.parametrize("event, wiring, role", [
    (("CARP", "1@em0", "MASTER"), {}, "master"),
    (("CARP", "1@em0", "BACKUP"), {}, "slave"),
    (("CARP", "1@em0", "INIT"), {}, "slave"),            # link loss: the handbook rule misses it
    (("carp", "1@em0", "master"), {}, "master"),         # devd matches case-insensitively
    (("CARP", "1@em0", "MASTER"), CONFIGURED, "master"),
    (("CARP", "2@em0", "MASTER"), CONFIGURED, None),
    (("CARP", "1@em1", "BACKUP"), CONFIGURED, None),
    (("CARP", "1@em0", "UNKNOWN"), CONFIGURED, None),
    (("IFNET", "carp0", "LINK_UP"), {}, "master"),
    (("IFNET", "carp0", "LINK_DOWN"), {}, "slave"),
    (("IFNET", "carp0", "LINK_UP"), CONFIGURED, "master"),
    (("IFNET", "carp1", "LINK_UP"), CONFIGURED, None),
    (("IFNET", "carp0", "ATTACH"), {}, None),
    (("IFNET", "em0", "LINK_DOWN"), {}, None),           # a physical link is not CARP
    (("IFNET", "em0", "LINK_DOWN"), {"legacy_interface": "carp0"}, None),
    (("GEOM", "DEV", "CREATE"), {}, None),
])
def test_decision_table(event, wiring, role):
    devd.validate(*event)
    decision = devd.decide(*event, wiring)
    assert decision.role == role, decision
    assert event[1] in decision.reason


@pytest.mark.parametrize("args, culprit", [
    (("CARP", "1@em0;reboot", "MASTER"), "subsystem"),
    (("CARP", "1@em0 reboot", "MASTER"), "subsystem"),
    (("CARP", "$(reboot)@em0", "MASTER"), "subsystem"),
    (("CARP", "1@em0`id`", "MASTER"), "subsystem"),
    (("CARP", "1@em0\nreboot", "MASTER"), "subsystem"),
    (("CARP", "0@em0", "MASTER"), "subsystem"),
    (("CARP", "256@em0", "MASTER"), "subsystem"),
    (("CARP", "1@", "MASTER"), "subsystem"),
    (("CARP", "@em0", "MASTER"), "subsystem"),
    (("CARP", "1@averyveryverylongifname0", "MASTER"), "subsystem"),
    (("CARP", "1@em0", "MASTER;reboot"), "type"),
    (("CARP", "1@em0", "$type"), "type"),
    (("CARP|x", "1@em0", "MASTER"), "system"),
    (("", "1@em0", "MASTER"), "system"),
    (("IFNET", "carp0;reboot", "LINK_UP"), "subsystem"),
    (("IFNET", "carp0>/etc/passwd", "LINK_UP"), "subsystem"),
])
def test_bad_event_is_rejected_and_nothing_recorded(write_config, tmp_path, args, culprit):
    cfg = stack_config(write_config, tmp_path)
    proc = run_hahooks("devd-event", "-c", cfg, *args)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"bad {culprit}" in lines[0] and "nothing recorded" in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "state" / "desire.json").exists()
    assert commands_log(tmp_path) == []


def test_ignored_event_records_nothing(write_config, tmp_path):
    cfg = stack_config(write_config, tmp_path, wiring="[wiring]\nvhid = 1\ninterface = \"em0\"\n")
    proc = run_hahooks("devd-event", "-c", cfg, "CARP", "2@em0", "MASTER", check=0)
    assert proc.stdout.startswith("ignore: CARP 2@em0 MASTER: not the configured 1@em0")
    assert not (tmp_path / "state" / "desire.json").exists()


# -- our rules, read the way devd reads them -------------------------------------------------
def expected_line(fields: str) -> str:
    return f"{HAHOOKS} devd-event --detach -c {CONFIG} {fields}"


@pytest.mark.parametrize("quote", ["modern", "legacy"])
@pytest.mark.parametrize("event, fields", EVENTS.items())
def test_shipped_rules_route_every_reference_event(quote, event, fields):
    rules = Devd(quote=quote).load(MODERN).load(LEGACY)
    rule, commands = rules.route(event)
    assert rule is not None, f"no rule for {event}"
    # Literal words only: old devd (raw $var) and new devd ($'...') run the same line.
    assert commands == [expected_line(fields)]


@pytest.mark.parametrize("event", NOT_OURS)
def test_shipped_rules_ignore_other_events(event):
    rule, commands = Devd().load(MODERN).load(LEGACY).route(event)
    assert rule is None and commands == []


def test_shipped_rules_carry_no_devd_variable():
    for path in (MODERN, LEGACY):
        for rule in Devd().load(path).rules:
            assert rule.priority == devd.PRIORITY
            assert all("$" not in action for action in rule.actions), rule


def test_shipped_rules_equal_render_output():
    """devd/*.conf are what `hahooks render` prints for vhid 1 on em0 / carp0."""
    def shape(devd_conf):
        return [(r.kind, r.priority, r.matches, r.actions) for r in devd_conf.rules]

    for path, wiring in ((MODERN, {"vhid": 1, "interface": "em0"}),
                         (LEGACY, {"legacy_interface": "carp0"})):
        rendered = devd.render_rules(wiring, HAHOOKS, CONFIG)
        assert shape(Devd().load(path)) == shape(Devd().parse(rendered)), path


def test_ours_win_over_the_handbook_rules():
    """With the handbook's carp0 rules (notify 30) installed as well, devd runs only ours;
    and the carp(4) example rule never sees INIT, the transition ours must not miss."""
    handbook = """
notify 30 {
	match "system" "IFNET";
	match "subsystem" "carp0";
	match "type" "LINK_UP";
	action "/usr/local/sbin/carp-hast-switch master";
};
notify 0 {
	match "system"          "CARP";
	match "subsystem"       "[0-9]+@[0-9a-z.]+";
	match "type"            "(MASTER|BACKUP)";
	action "/root/carpcontrol.sh $subsystem $type";
};
"""
    alone = Devd().parse(handbook)
    assert alone.route("!system=CARP subsystem=1@em0 type=INIT") == (None, [])
    assert alone.route("!system=CARP subsystem=1@em0 type=MASTER")[1] == \
        ["/root/carpcontrol.sh $'1@em0' $'MASTER'"]
    both = Devd().parse(handbook).load(MODERN).load(LEGACY)
    for event, fields in EVENTS.items():
        assert both.route(event)[1] == [expected_line(fields)]


def test_render_refuses_paths_devd_would_expand():
    for bad in ("/etc/ha$x.toml", '/etc/a"b.toml', "/etc/a`b`.toml"):
        with pytest.raises(Exception, match="devd action"):
            devd.render_rules({"vhid": 1, "interface": "em0"}, HAHOOKS, bad)


# -- routed command lines, run through sh -c, against a real command stack -----------------
def run_as_devd(rules: Devd, event: str) -> subprocess.CompletedProcess:
    rule, commands = rules.route(event)
    assert rule is not None and len(commands) == 1, event
    # devd: execl(_PATH_BSHELL, "sh", "-c", command), then wait4() for it
    return subprocess.run(["/bin/sh", "-c", commands[0]], env=MINIMAL_ENV,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("wiring, sequence", [
    ({"vhid": 1, "interface": "em0"}, [
        ("!system=CARP subsystem=1@em0 type=MASTER", "master"),
        ("!system=CARP subsystem=1@em0 type=BACKUP", "slave"),
        ("!system=CARP subsystem=1@em0 type=MASTER", "master"),
        ("!system=CARP subsystem=1@em0 type=INIT", "slave"),       # link loss releases
    ]),
    ({"legacy_interface": "carp0"}, [
        ("!system=IFNET subsystem=carp0 type=LINK_UP", "master"),
        ("!system=IFNET subsystem=carp0 type=LINK_DOWN", "slave"),
    ]),
], ids=["carp-10+", "carp0-legacy"])
def test_events_drive_the_stack_through_sh(write_config, tmp_path, wiring, sequence):
    cfg = stack_config(write_config, tmp_path)
    hahooks = hahooks_command(tmp_path / "bin")
    rules = Devd().parse(devd.render_rules(wiring, hahooks, cfg))
    expected_log: list[str] = []
    for event, role in sequence:
        proc = run_as_devd(rules, event)
        assert proc.returncode == 0, proc
        assert f"{role} #" in proc.stdout and "recorded" in proc.stdout
        done = wait_converged(cfg, role)
        assert done["exit_code"] == 0, done
        held = role == "master"
        assert (tmp_path / "replication.held").exists() is held
        assert (tmp_path / "filesystem.held").exists() is held
        expected_log += (["acquire replication", "acquire filesystem"] if held else
                         ["release filesystem", "release replication"])
        assert commands_log(tmp_path) == expected_log
    # the JSON log keeps the argv devd's shell really passed, one record per call
    calls = [r["argv"] for r in log_records(tmp_path) if r.get("event") == "hook"]
    assert calls == [[v["system"], v["subsystem"], v["type"]]
                     for v in (Devd.event_variables(e)[1] for e, _ in sequence)]


def log_records(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "hahooks.jsonl").read_text().splitlines()]


def test_boot_flap_master_then_backup_ends_released(write_config, tmp_path):
    """docs/reference/carp-devd.md §5: CARP comes up MASTER at boot, then drops to BACKUP. devd runs
    both actions back to back; the newest request wins and nothing stays held."""
    cfg = stack_config(write_config, tmp_path)
    rules = Devd().parse(devd.render_rules({"vhid": 1, "interface": "em0"},
                                           hahooks_command(tmp_path / "bin"), cfg))
    for event in ("!system=CARP subsystem=1@em0 type=MASTER",
                  "!system=CARP subsystem=1@em0 type=BACKUP"):
        assert run_as_devd(rules, event).returncode == 0
    wait_converged(cfg, "slave")
    assert not (tmp_path / "replication.held").exists()
    assert not (tmp_path / "filesystem.held").exists()
    log = commands_log(tmp_path)
    assert log.count("acquire replication") == log.count("release replication")
