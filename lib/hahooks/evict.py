"""Releasing something processes may hold (umount, zpool export): try plainly first, then
stop the holders and try again, within one budget.

The plain attempt comes first because scanning /proc before it made stops ~10x slower
(resource-agents #1907). Holders are found by holderscan.holders, which matches exactly
the given mounts (path prefix *and* st_dev), never their parent filesystem
(resource-agents #1304, #1944), and never signals this process or its ancestors. The
budget is the step's deadline, shared by every round ("bounded overall, not per attempt");
the forced attempt, if the config allows one, keeps a reserve of it.
"""
from __future__ import annotations

import logging
from typing import Callable

from hahooks import procs, schema, waits
from hahooks.errors import CommandTimeout, HahooksError, Refused

log = logging.getLogger("hahooks.evict")

FORCE_RESERVE = 5.0     # seconds kept back for the forced attempt (at most a quarter)


# keys shared by the kinds that release through here (filesystem, zpool)
PARAMS = {
    "stop_grace": schema.Duration("5s", "how long processes holding it get between TERM "
                                  "and KILL"),
    "kill_holders": schema.Bool(True, "stop the processes that keep the release from "
                                "succeeding (TERM, then KILL); false: report them and fail"),
}


class StillBusy(HahooksError):
    pass


def release(ctx, *, what: str, attempt: Callable[[], "object"],
            holders: Callable[[], dict], grace: float, kill: bool = True,
            force: Callable[[], "object"] | None = None,
            gone: Callable[[], bool] = lambda: False) -> None:
    """attempt() / force() run a command with check=False and return its Result.
    holders() -> {psutil.Process: reason} for what is to be released. gone() -> True when
    it was released meanwhile by someone else (a failed attempt then counts as done)."""
    attempt, force = _patient(attempt), force and _patient(force)
    first = attempt()
    if first.ok or gone():
        return
    log.info("%s is busy (%s): looking for the processes holding it", what,
             _tail(first) or f"exit {first.exit_code}")
    last = [first]
    remaining = ctx.deadline.remaining()
    budget = remaining - min(FORCE_RESERVE, remaining / 4) if force else remaining

    def round_() -> None:
        found = holders() if kill else {}
        if found:
            listing = ", ".join(_who(p, why) for p, why in found.items())
            left = ctx.effect(f"stop {len(found)} process(es) holding {what}: {listing}",
                              lambda: procs.terminate_then_kill(
                                  list(found), min(grace, ctx.deadline.remaining(0.05))))
            if left:
                log.error("still alive after KILL: %s", ", ".join(str(p.pid) for p in left))
        result = attempt()
        last[0] = result
        if not result.ok and not gone():
            raise StillBusy(f"{what} still busy")

    try:
        waits.retry(round_, max(budget, 0.0), f"release of {what}", retry_on=(StillBusy,),
                    first=0.05, ceiling=0.5)
        return
    except StillBusy:
        pass
    if force:
        log.warning("%s: plain attempts failed; forcing (configured)", what)
        result = force()
        if result.ok or gone():
            return
        last[0] = result
    left = holders()
    final = last[0]
    detail = _tail(final)
    raise Refused(f"could not release {what} within {ctx.deadline.seconds:g}s: "
                  f"{final.display()} "
                  + ("timed out" if final.timed_out else f"exit {final.exit_code}")
                  + (f" ({detail})" if detail else "")
                  + ("; still held by " + ", ".join(_who(p, why) for p, why in left.items())
                     if left else
                     "; no holder process found (this hook and its parents are never signalled)"))


def _patient(command: Callable[[], "object"]) -> Callable[[], "object"]:
    """A command cut short by the budget is one more failed attempt: the refusal that
    follows still says who holds the mount instead of only "timed out"."""
    def run():
        try:
            return command()
        except CommandTimeout as exc:
            return exc.result
    return run


def _who(proc, why: str) -> str:
    return f"pid {proc.pid} ({' '.join(procs.title(proc).split())[:60]}: {why})"


def _tail(result) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1].strip() if lines else ""
