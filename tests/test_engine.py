"""The engine through the real CLI on a stack of `command` layers (real processes, the
layer script's trace and the runner's JSON log as evidence)."""
from __future__ import annotations

import os

from hypothesis import given, strategies as st

from core_support import Stack
from hahooks.steps import decide
from hahooks.kinds.base import Observation, State


def test_master_acquires_in_order_and_slave_releases_in_reverse(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    r = stack.hahooks("master")
    assert r.returncode == 0, r.stderr
    assert stack.steps() == ["acquire a", "acquire b", "acquire c"]
    assert stack.held() == ["a", "b", "c"]
    r = stack.hahooks("slave")
    assert r.returncode == 0, r.stderr
    assert stack.steps()[3:] == ["release c", "release b", "release a"]
    assert stack.held() == []


def test_rerun_issues_no_mutating_command(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    assert stack.hahooks("master").returncode == 0
    before_trace, before_cmds = len(stack.trace()), len(stack.mutating_commands())
    assert before_cmds == 3
    again = stack.hahooks("master")
    assert again.returncode == 0, again.stderr
    assert "0 acquired now, 3 already" in again.stdout
    assert len(stack.trace()) == before_trace
    assert len(stack.mutating_commands()) == before_cmds
    # the re-run did observe: its status probes are in the log, all read-only
    second = stack.json_records(event="transition_end")[-1]["transition"]
    probes = [r for r in stack.json_records(event="command") if r.get("transition") == second]
    assert len(probes) == 3 and all(r["readonly"] is True for r in probes)

    assert stack.hahooks("slave").returncode == 0
    count = len(stack.mutating_commands())
    assert stack.hahooks("slave").returncode == 0
    assert len(stack.mutating_commands()) == count


def test_failed_acquire_rolls_back_then_demotes_then_fails(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    stack.mark("c", "fail-acquire")
    r = stack.hahooks("master")
    assert r.returncode == 1
    assert "acquire c failed" in r.stderr and "cannot acquire c" in r.stderr
    assert "rolled back" in r.stderr
    # c never got held (its status says released): the rollback skips it, releases b, a,
    # and only then demotes
    assert stack.steps() == ["acquire a", "acquire b", "acquire c", "release b", "release a",
                             "demote -"]
    assert stack.held() == []
    done = stack.json_records(event="transition_end")[-1]
    assert done["ok"] is False and done["exit_code"] == 1


def test_half_acquired_layer_is_released_in_the_rollback(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    stack.mark("b", "fail-acquire")
    stack.mark("b", "half")       # acquire leaves b held although it fails
    r = stack.hahooks("master")
    assert r.returncode == 1
    assert stack.steps() == ["acquire a", "acquire b", "release b", "release a", "demote -"]
    assert stack.held() == []


def test_release_stops_before_pulling_a_lower_layer(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    assert stack.hahooks("master").returncode == 0
    stack.mark("b", "fail-release")
    r = stack.hahooks("slave")
    assert r.returncode == 1
    assert "release b failed" in r.stderr and "lower layers untouched" in r.stderr
    assert stack.steps()[3:] == ["release c", "release b"]   # a is never touched
    assert stack.held() == ["a", "b"]
    # once b can go, a re-run finishes the job from where it stopped
    stack.mark("b", "fail-release", False)
    assert stack.hahooks("slave").returncode == 0
    assert stack.steps()[5:] == ["release b", "release a"]
    assert stack.held() == []


def test_release_that_leaves_the_layer_held_stops_too(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    assert stack.hahooks("master").returncode == 0
    stack.mark("c", "stuck")        # release exits 0 but c is still held afterwards
    r = stack.hahooks("slave")
    assert r.returncode == 1
    assert "c is held after release" in r.stderr
    assert stack.steps()[3:] == ["release c"]
    assert stack.held() == ["a", "b", "c"]


def test_broken_layer_is_acquired_and_status_error_is_reported(tmp_path, write_config):
    stack = Stack(tmp_path, write_config, names=("a",))
    stack.mark("a", "broken")
    r = stack.hahooks("master")   # acquire runs, then status still says broken: refused
    assert r.returncode == 1
    assert "a is broken after acquire" in r.stderr and "a is in pieces" in r.stderr
    assert stack.steps() == ["acquire a", "release a", "demote -"]


def test_newer_desire_stops_the_walk_at_the_next_step(tmp_path, write_config):
    """Latest wins between steps: while b's acquire blocks, a slave request arrives; b's
    acquire finishes, c is never acquired, and the stack is released."""
    stack = Stack(tmp_path, write_config)
    stack.mark("b", "block")
    master = stack.popen("master")
    from hahooks import waits

    waits.wait_for(lambda: "acquire b" in stack.steps(), 30, "b's acquire to start")
    slave = stack.hahooks("slave", "--detach")
    assert slave.returncode == 0 and "running transition will converge" in slave.stdout
    stack.mark("b", "gate")
    out, err = master.communicate(timeout=60)
    assert master.returncode == 1 and "superseded by a newer slave request" in err
    assert stack.steps() == ["acquire a", "acquire b", "release b", "release a"]
    assert stack.held() == []
    assert stack.json_records(event="superseded")


def test_dry_run_prints_the_mutating_commands_and_runs_none(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    stack.mark("a", "held")          # a already held: only b and c would be acquired
    r = stack.hahooks("master", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines == [f"would run: {stack.script} acquire {n} {stack.dir}" for n in ("b", "c")]
    assert stack.trace() == [] and stack.held() == ["a"]
    assert stack.mutating_commands() == []
    assert not os.path.exists(os.path.join(stack.state_dir, "desire.json"))
    r = stack.hahooks("slave", "--dry-run")
    assert r.stdout.splitlines() == [f"would run: {stack.script} release a {stack.dir}"]
    assert stack.trace() == [] and stack.held() == ["a"]


def test_plan_lists_steps_with_their_commands(tmp_path, write_config):
    stack = Stack(tmp_path, write_config)
    stack.mark("b", "held")
    r = stack.hahooks("plan", "master")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "1. acquire  a (command): not held" in out
    assert "2. skip     b (command): already held" in out
    assert "3. acquire  c (command): not held" in out
    assert out.index("1. acquire  a") < out.index(f"would run: {stack.script} acquire a") < \
        out.index("skip     b") < out.index(f"would run: {stack.script} acquire c")
    assert stack.trace() == [] and stack.held() == ["b"]
    r = stack.hahooks("plan", "slave")
    assert "1. skip     c" in r.stdout and "2. release  b" in r.stdout and \
        "3. skip     a" in r.stdout


# -- the decision function -------------------------------------------------------------

observations = st.builds(Observation, st.sampled_from(list(State)), st.text(max_size=20))


@given(st.sampled_from(["master", "slave"]), observations)
def test_decide_acts_exactly_when_the_layer_is_not_where_the_role_wants_it(role, obs):
    action, reason = decide(role, obs)
    want = State.HELD if role == "master" else State.RELEASED
    if obs.state is want:
        assert action == "skip"
    else:
        assert action == ("acquire" if role == "master" else "release")
    # the reason always quotes what the kind observed, and a skip says the layer already is
    # where the role wants it (the old form parsed as (A and B) or C or D and could not fail)
    assert f"({obs.reason})" in reason
    assert reason.startswith("already ") == (action == "skip")


def test_decide_answers_one_of_the_three_actions_only():
    from hahooks.steps import Action
    assert {a.value for a in Action} == {"acquire", "release", "skip"}   # no "refuse"
    for role in ("master", "slave"):
        for state in State:
            action, _ = decide(role, Observation(state, "r"))
            assert isinstance(action, Action) and f"{action:8}" == f"{action.value:8}"
