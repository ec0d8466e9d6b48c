"""Config validation: every bad config is one line on stderr naming file:line (or the file
when there is no line), exit 6, and no command run."""
from __future__ import annotations

import os
import pwd
import re

import pytest
from hypothesis import given, strategies as st

from conftest import require_root, ROOT, run_hahooks
from hahooks import config, schema
from hahooks.errors import ConfigError

# A layer whose commands would leave a trace if anything ran.
GOOD_LAYER = """
[[resource]]
name = "{name}"
kind = "command"
acquire = ["sh", "-c", "echo ran >> {trace}"]
release = ["sh", "-c", "echo ran >> {trace}"]
status = ["sh", "-c", "echo ran >> {trace}; exit 1"]
"""

NODE = """[node]
name = "nodea"
state_dir = "{state}"
log_file = "{log}"
syslog = false
"""

# (id, config text, expected line or None, a fragment the message must contain)
BAD = [
    ("toml-syntax", NODE + "[[resource]\nname = 'x'\n", 6, "TOML syntax error"),
    ("toml-duplicate-key", NODE + 'name = "again"\n', 6, "TOML syntax error"),
    ("unknown-top-key", NODE + "[nodes]\nx = 1\n", 6, "did you mean 'node'"),
    ("unknown-node-key", NODE + 'stat_dir = "/x"\n' + GOOD_LAYER, 6, "did you mean 'state_dir'"),
    ("unknown-resource-key", NODE + GOOD_LAYER + 'stauts = ["true"]\n', 13,
     "did you mean 'status'"),
    ("wrong-type-bool", NODE.replace("syslog = false", 'syslog = "no"') + GOOD_LAYER, 5,
     "expected true or false, got str 'no'"),
    ("wrong-type-name", NODE.replace('name = "nodea"', "name = 42") + GOOD_LAYER, 2,
     "42 is not a safe name"),
    ("relative-state-dir", NODE.replace('state_dir = "', 'state_dir = "rel/') + GOOD_LAYER, 3,
     "expected an absolute path"),
    ("bad-duration-unit", NODE + 'command_timeout = "30 sec"\n' + GOOD_LAYER, 6,
     "expected a duration like \"500ms\" or \"30s\", got '30 sec'"),
    ("zero-timeout", NODE + GOOD_LAYER + 'timeout = "0s"\n', 13, "'0s' is too short"),
    ("negative-duration", NODE + "wait_timeout = -5\n" + GOOD_LAYER, 6, "got -5"),
    ("shell-string-command", NODE + GOOD_LAYER.replace(
        'acquire = ["sh", "-c", "echo ran >> {trace}"]', 'acquire = "touch /tmp/x && rm -rf /"'),
     10, "not a shell string"),
    ("empty-argv", NODE + GOOD_LAYER.replace(
        'release = ["sh", "-c", "echo ran >> {trace}"]', "release = []"), 11,
     "expected a non-empty list of strings"),
    ("hostile-name-path", NODE + GOOD_LAYER.replace('name = "{name}"', 'name = "../x"'), 8,
     "'../x' is not a safe name"),
    ("hostile-name-shell", NODE + GOOD_LAYER.replace('name = "{name}"', 'name = "a;b"'), 8,
     "'a;b' is not a safe name"),
    ("unknown-kind", NODE + GOOD_LAYER.replace('kind = "command"', 'kind = "comand"'), 9,
     "did you mean 'command'"),
    ("missing-kind", NODE + GOOD_LAYER.replace('kind = "command"\n', ""), 7,
     "missing key 'kind'"),
    ("missing-required", NODE + GOOD_LAYER.replace(
        'release = ["sh", "-c", "echo ran >> {trace}"]\n', ""), 7,
     "missing required key 'release'"),
    ("empty-stack", NODE, None, "the stack is empty"),
    ("duplicate-resources", NODE + GOOD_LAYER + GOOD_LAYER, 15,
     "duplicate resource name 'layer' (first at line 8)"),
    ("resource-not-array", NODE + '[resource]\nname = "x"\n', 6,
     "resources are written as [[resource]] tables"),
    ("node-not-table", "node = 5\n" + GOOD_LAYER, 1, "[node] must be a table"),
    ("bad-choice", NODE.replace('name = "nodea"', 'platform = "solaris"') + GOOD_LAYER, 2,
     "'solaris' is not one of: auto, freebsd, linux"),
    ("paths-relative", NODE + 'paths = {{ zfs = "sbin/zfs" }}\n' + GOOD_LAYER, 6,
     "expected an absolute path, got 'sbin/zfs'"),
    ("command-needs-status", NODE + GOOD_LAYER.replace(
        'status = ["sh", "-c", "echo ran >> {trace}; exit 1"]\n', ""), 7,
     "needs 'status' (an argv) or 'state_file'"),
    ("released-codes", NODE + GOOD_LAYER + "released_codes = [0]\n", 13,
     "expected a list of exit codes 1..255"),
    ("demote-string", NODE + 'demote = "sysctl net.inet.carp.demotion=240"\n' + GOOD_LAYER,
     6, "not a shell string"),
    ("relative-command-path", NODE + GOOD_LAYER.replace('acquire = ["sh", "-c",',
                                                        'acquire = ["bin/sh", "-c",'),
     10, "must be a bare name (looked up) or an absolute path"),
    ("nul-in-string", NODE + GOOD_LAYER.replace('acquire = ["sh", "-c",', 'acquire = ["sh\\u0000x", "-c",'),
     10, "bad command"),
]


def _write(tmp_path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "hahooks.toml"
    path.write_text(text.format(state=tmp_path / "state", log=tmp_path / "log.jsonl",
                                trace=tmp_path / "trace", name="layer"))
    os.chmod(path, mode)
    return str(path)


def _assert_refused(r, path: str, line, fragment: str, tmp_path) -> None:
    assert r.returncode == 6, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    where = f"{path}:{line}:" if line else f"{path}:"
    assert where in lines[0], (where, lines[0])
    assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "trace").exists(), "a command ran"
    assert not (tmp_path / "state").exists(), "a desire was recorded"


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_config_is_one_line_exit_6_and_runs_nothing(tmp_path, case):
    _, text, line, fragment = case
    path = _write(tmp_path, text)
    _assert_refused(run_hahooks("master", "-c", path), path, line, fragment, tmp_path)
    _assert_refused(run_hahooks("check", "-c", path), path, line, fragment, tmp_path)


def test_the_bad_configs_are_many_kinds():
    assert len(BAD) >= 20


def test_good_config_passes_check(tmp_path):
    path = _write(tmp_path, NODE + GOOD_LAYER)
    r = run_hahooks("check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "1 layer(s): layer (command)" in r.stdout
    assert not (tmp_path / "trace").exists()


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_config_writable_by_others_is_refused(tmp_path, mode):
    path = _write(tmp_path, NODE + GOOD_LAYER, mode)
    r = run_hahooks("master", "-c", path)
    _assert_refused(r, path, None, "writable by group or others", tmp_path)
    assert f"chmod go-w {path}" in r.stderr


def test_config_owned_by_another_user_is_refused(tmp_path):
    require_root()      # chown to nobody: a skip locally, a failure in CI
    path = _write(tmp_path, NODE + GOOD_LAYER)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(path, nobody, -1)
    _assert_refused(run_hahooks("master", "-c", path), path, None,
                    f"owned by uid {nobody}", tmp_path)


def _config_in(tmp_path, parent_mode: int, parent_owner: int = 0) -> str:
    """A good 0600 root config in tmp_path/etc (mode parent_mode, owned by parent_owner);
    state and trace stay in tmp_path."""
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "hahooks.toml"
    path.write_text((NODE + GOOD_LAYER).format(state=tmp_path / "state",
                                                log=tmp_path / "log.jsonl",
                                                trace=tmp_path / "trace", name="layer"))
    os.chmod(path, 0o600)
    os.chown(etc, parent_owner, -1)
    os.chmod(etc, parent_mode)
    return str(path)


def test_config_in_a_world_writable_parent_is_refused(tmp_path):
    """Issue 17 item 3: anyone can swap the file out of a 0777 directory without the
    sticky bit, however safe the file's own mode is."""
    path = _config_in(tmp_path, 0o777)
    for command in ("master", "check"):
        _assert_refused(run_hahooks(command, "-c", path), path, None,
                        f"{tmp_path / 'etc'} is writable by group or others without the "
                        "sticky bit (mode 0777)", tmp_path)


def test_config_in_a_parent_owned_by_another_user_is_refused(tmp_path):
    require_root()      # chown to nobody: a skip locally, a failure in CI
    nobody = pwd.getpwnam("nobody").pw_uid
    path = _config_in(tmp_path, 0o755, nobody)
    _assert_refused(run_hahooks("master", "-c", path), path, None,
                    f"{tmp_path / 'etc'} is owned by uid {nobody}", tmp_path)


def test_config_in_a_group_writable_grandparent_is_refused(tmp_path):
    """Every component up to / counts, not only the file's own directory."""
    path = _config_in(tmp_path, 0o755)
    os.chmod(tmp_path, 0o775)
    _assert_refused(run_hahooks("check", "-c", path), path, None,
                    f"{tmp_path} is writable by group or others without the sticky bit",
                    tmp_path)


def test_config_of_root_in_a_sticky_world_writable_dir_is_accepted(tmp_path):
    """/tmp-like (1777): the sticky bit keeps others from replacing root's entries."""
    path = _config_in(tmp_path, 0o1777)
    r = run_hahooks("check", "-c", path)
    assert r.returncode == 0, r.stderr


def test_config_symlink_planted_in_a_sticky_dir_is_refused(tmp_path):
    """A symlink owned by another user in a sticky world-writable dir: its owner can
    point it anywhere (at a config of theirs) at any moment."""
    require_root()      # chown to nobody: a skip locally, a failure in CI
    real = _config_in(tmp_path, 0o755)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    os.chmod(shared, 0o1777)
    link = shared / "hahooks.toml"
    os.symlink(real, link)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.lchown(link, nobody, -1)
    _assert_refused(run_hahooks("check", "-c", link), str(link), None,
                    f"the symlink {link} is owned by uid {nobody}", tmp_path)


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nowhere.toml")
    r = run_hahooks("master", "-c", path)
    _assert_refused(r, path, None, "config file not found", tmp_path)


def test_config_from_environment_variable(tmp_path):
    from conftest import hahooks_env

    path = str(tmp_path / "from-env.toml")
    r = run_hahooks("check", env=hahooks_env(HAHOOKS_CONFIG=path))
    _assert_refused(r, path, None, "config file not found", tmp_path)


def test_config_that_is_a_directory(tmp_path):
    path = tmp_path / "dir.toml"
    path.mkdir(mode=0o700)
    _assert_refused(run_hahooks("check", "-c", path), str(path), None,
                    "not a regular file", tmp_path)


def test_config_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[node]\nname = \"n\xe9\"\n")
    os.chmod(path, 0o600)
    _assert_refused(run_hahooks("check", "-c", path), str(path), None, "not UTF-8",
                    tmp_path)


def test_example_configs_pass_check(tmp_path):
    examples = os.path.join(ROOT, "examples")
    for name in sorted(os.listdir(examples)):
        if not name.endswith(".toml"):
            continue
        copy = tmp_path / name        # the checkout's mode may be group-writable
        copy.write_text(open(os.path.join(examples, name)).read())
        os.chmod(copy, 0o600)
        r = run_hahooks("check", "-c", copy)
        assert r.returncode == 0, (name, r.stderr)


def test_parse_gives_typed_values_and_defaults(tmp_path):
    path = _write(tmp_path, NODE + 'command_timeout = "500ms"\nwait_timeout = "2m"\n'
                  'paths = {{ zfs = "/opt/zfs/bin/zfs" }}\nsearch_path = ["/opt/bin"]\n'
                  + GOOD_LAYER + 'timeout = "1.5s"\n')
    cfg = config.load(path)
    assert cfg.node.command_timeout == 0.5 and cfg.node.wait_timeout == 120.0
    assert cfg.node.paths == {"zfs": "/opt/zfs/bin/zfs"} and cfg.node.search_path == ["/opt/bin"]
    assert cfg.node.syslog_facility == "local0"
    spec = cfg.resources[0]
    assert (spec.name, spec.kind, spec.timeout, spec.line) == ("layer", "command", 1.5, 11)
    assert spec.params["released_codes"] == [1]


def test_error_lines_for_inline_and_later_resources(tmp_path):
    text = NODE + GOOD_LAYER.replace("{name}", "one") + GOOD_LAYER.replace("{name}", "two") + \
        'timeout = "soon"\n'
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert re.match(rf"{re.escape(path)}:20: resource 'two': timeout: ", str(err.value))


# -- durations ------------------------------------------------------------------------

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS)))
def test_duration_parses_integer_amounts_of_every_unit(amount, unit):
    assert schema.parse_duration(f"{amount}{unit}") == pytest.approx(amount * UNITS[unit])


@given(st.decimals(min_value=0, max_value=10**4, places=3, allow_nan=False,
                   allow_infinity=False), st.sampled_from(sorted(UNITS)))
def test_duration_parses_decimal_amounts(amount, unit):
    text = f"{amount:f}{unit}"
    assert schema.parse_duration(text) == pytest.approx(float(amount) * UNITS[unit])


@given(st.text(max_size=12).filter(lambda s: not re.fullmatch(
    r"\s*\d+(\.\d+)?\s*(ms|s|m|h)\s*", s)))
def test_duration_refuses_everything_else(text):
    with pytest.raises(schema.Invalid) as err:
        schema.parse_duration(text)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize("value", [True, None, [], {}, -1, float("nan"), float("inf")])
def test_duration_refuses_non_strings(value):
    with pytest.raises(schema.Invalid):
        schema.parse_duration(value)


@given(st.text(min_size=1, max_size=20))
def test_safe_names_never_contain_path_or_shell_characters(name):
    try:
        ok = schema.safe_name(name)
    except schema.Invalid:
        return
    assert ok == name and "/" not in name and ".." not in name
    assert not set(name) & set(" ;&|$`'\"\\<>(){}*?[]!#~\n\t")


def test_docs_describe_every_node_key_and_command_key():
    text = open(os.path.join(ROOT, "docs", "config.md")).read()
    from hahooks.kinds.command import Command

    for key in [*config.NODE_FIELDS, *config.RESOURCE_COMMON, *Command.PARAMS]:
        assert f"| `{key}` |" in text, key
    wiring = open(os.path.join(ROOT, "docs", "wiring.md")).read()
    for key in config.WIRING_FIELDS:
        assert f"`{key}`" in wiring, key
