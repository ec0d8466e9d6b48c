"""Context.query: a step asks a read-only question once and reuses the answer, but never past
a change it made, nor in a wait's or retry's second poll or attempt for the questions that
poll asks (each must see the world afresh, or a wait for a device or a peer would spin on a
stale answer until its timeout)."""
from __future__ import annotations

import sys

import pytest

from hahooks import config as config_mod
from hahooks.answers import Answers
from hahooks.errors import HahooksError, WaitTimeout
from hahooks.kinds.base import Context
from hahooks.runner import Runner

COUNT = "import sys; f = open(sys.argv[1], 'a+'); f.write('.'); f.seek(0); print(len(f.read()))"


@pytest.fixture
def ctx():
    cfg = config_mod.parse({"node": {"platform": "linux"},
                            "resource": [{"name": "x", "kind": "command", "acquire": ["true"],
                                          "release": ["true"], "status": ["true"]}]})
    return Context(runner=Runner(cfg.node.platform), node=cfg.node)


def counter(tmp_path, name="calls"):
    """argv of a real command that counts its own runs and prints the count."""
    return [sys.executable, "-c", COUNT, str(tmp_path / name)]


def runs(tmp_path, name="calls") -> int:
    path = tmp_path / name
    return len(path.read_text()) if path.exists() else 0


def test_the_same_question_runs_once(ctx, tmp_path):
    ask = counter(tmp_path)
    first, second = ctx.query(ask), ctx.query(ask)
    assert second is first and first.stdout.strip() == "1"
    assert runs(tmp_path) == 1
    assert ctx.query(counter(tmp_path, "other")).stdout.strip() == "1"   # another question
    assert runs(tmp_path) == 1 and runs(tmp_path, "other") == 1


def test_a_change_drops_the_answers(ctx, tmp_path):
    ask = counter(tmp_path)
    ctx.query(ask)
    ctx.run(["true"], readonly=False)
    assert ctx.query(ask).stdout.strip() == "2"
    ctx.effect("touch nothing", lambda: None)
    assert ctx.query(ask).stdout.strip() == "3"
    ctx.run(["true"], readonly=True)           # a read-only command changes nothing
    assert ctx.query(ask).stdout.strip() == "3"


def test_every_poll_of_a_wait_asks_afresh(ctx, tmp_path):
    ask = counter(tmp_path)
    ctx.query(ask)
    # the first poll starts where the step is: a condition already true costs no question
    ctx.wait_for(lambda: int(ctx.query(ask).stdout) >= 1, "the first run", timeout=10)
    assert runs(tmp_path) == 1
    ctx.wait_for(lambda: int(ctx.query(ask).stdout) >= 4, "the fourth run", timeout=10)
    assert runs(tmp_path) == 4
    assert ctx.query(ask).stdout.strip() == "4"   # after the wait: the last poll's answer


def test_a_wait_drops_only_the_answers_its_polls_ask(ctx, tmp_path):
    kept, polled = counter(tmp_path, "kept"), counter(tmp_path)
    ctx.query(kept)
    polls = []

    def device_after_three_polls():        # asks nothing, like a wait for a device node
        polls.append(None)
        return len(polls) >= 3
    ctx.wait_for(device_after_three_polls, "the device", timeout=10)
    ctx.wait_for(lambda: int(ctx.query(polled).stdout) >= 3, "the third run", timeout=10)
    assert runs(tmp_path) == 3
    assert ctx.query(kept).stdout.strip() == "1" and runs(tmp_path, "kept") == 1


def test_a_wait_that_times_out_still_polled_afresh(ctx, tmp_path):
    ask = counter(tmp_path)
    with pytest.raises(WaitTimeout):
        ctx.wait_for(lambda: int(ctx.query(ask).stdout) < 0, "never", timeout=0.3)
    assert runs(tmp_path) > 1


def test_every_attempt_of_a_retry_asks_afresh(ctx, tmp_path):
    ask = counter(tmp_path)

    def attempt():
        if int(ctx.query(ask).stdout) < 3:
            raise HahooksError("not yet")
        return "done"
    assert ctx.retry(attempt, 10, "three runs", first=0.01) == "done"
    assert runs(tmp_path) == 3


def test_a_failed_question_is_not_kept(ctx, tmp_path):
    ask = [sys.executable, "-c", COUNT + "; sys.exit(3)", str(tmp_path / "calls")]
    with pytest.raises(HahooksError):
        ctx.query(ask)
    assert ctx.query(ask, check=False).exit_code == 3
    assert runs(tmp_path) == 2


# Answers alone (hahooks.answers): the keeping rule without a runner, a node or a process.

def asker(log):
    """ask() for Answers.get that records each asking and answers with its number."""
    def ask():
        log.append(None)
        return len(log)
    return ask


def test_answers_ask_once_per_question_until_dropped():
    answers, asked = Answers(), []
    assert answers.get("q", asker(asked)) == 1 and answers.get("q", asker(asked)) == 1
    assert answers.get("other", asker(asked)) == 2 and len(answers) == 2
    answers.drop_all()
    assert len(answers) == 0 and answers.get("q", asker(asked)) == 3


def test_answers_afresh_keeps_the_first_poll_and_drops_only_what_polls_ask():
    answers, asked, kept = Answers(), [], []
    answers.get("kept", asker(kept))
    answers.get("q", asker(asked))
    poll = answers.afresh(lambda: answers.get("q", asker(asked)))
    assert poll() == 1                      # the first poll: the step's own answer
    assert poll() == 2 and poll() == 3      # later polls ask again
    assert answers.get("kept", asker(kept)) == 1 and len(kept) == 1


def test_answers_nested_polls_each_record_the_question():
    answers, asked = Answers(), []
    inner = answers.afresh(lambda: answers.get("q", asker(asked)))
    outer = answers.afresh(inner)
    assert outer() == 1
    assert outer() == 2      # the outer poll's second call drops what the inner one asked


def test_answers_an_ask_that_raises_keeps_nothing():
    answers = Answers()

    def fails():
        raise HahooksError("no answer")
    with pytest.raises(HahooksError):
        answers.get("q", fails)
    assert len(answers) == 0
