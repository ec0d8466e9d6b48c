"""fsck policy and the meaning of each checker's exit codes, per platform.

Policies (the `fsck` key of a filesystem):
  preen  run the checker in preen mode (`fsck -p`); "needs a manual fsck" is a failure
  force  preen first; if preen cannot fix it, repair (`fsck -y`), as FreeBSD's rc.d/fsck
         does with fsck_y_enable. A clean filesystem costs one fast preen, not a full check.
  never  do not check
  auto   like resource-agents' run_fsck=auto: skip journaled and network filesystems
         (ext3/ext4/xfs/zfs/...), preen the rest (ext2, btrfs, ufs, unknown type)

Linux `fsck` returns a bit mask (fsck(8), e2fsck(8)): 0 clean, 1 corrected, 2 corrected and
a reboot is advised, 4 errors left uncorrected, 8 operational error, 16 usage, 32 cancelled,
128 library error. Linux's fsck.xfs is a no-op by design, so xfs is checked with
`xfs_repair -n` (0 clean, 1 corruption found) and repaired with `xfs_repair` (0 repaired,
1 could not repair, 2 dirty log: mounting replays it).

FreeBSD `fsck -p -t ufs DEV` runs fsck_ufs (= fsck_ffs) and exits with its status
(sbin/fsck/fsck.c checkfs()). fsck_ffs (docs/reference/fsck.md; sbin/fsck_ffs/main.c main(),
checkfilesys(); fsck.h; utilities.c catch(), catchquit()):
  0   clean, or repaired while unmounted
  2   SIGQUIT during a preen: "return to single user" (returntosingle)
  3   the superblock cannot be read (the -p/-C and -F probes exit(3))
  4   a *mounted* filesystem was modified and its reload failed (REBOOT NOW)
  5-7 answers of the -F background-check probe only (never with -p)
  8   EEXIT: preen met an inconsistency it may not fix (pfatal): run fsck by hand
  12  SIGINT (catch())
  16  ERERUN: "***** PLEASE RERUN FSCK *****". checkfilesys() returns it in FreeBSD 14
      (`return (rerun ? ERERUN : 0)`); older releases print the same banner and exit 0.
Either form means the check is not finished: fsck runs once more and that result counts;
asked to rerun twice, the filesystem is reported not clean and is not mounted.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from hahooks.errors import CommandFailed, Refused

log = logging.getLogger("hahooks.fsck")

POLICIES = ("auto", "preen", "force", "never")

# resource-agents heartbeat/Filesystem is_fsck_needed(): types `auto` skips
AUTO_SKIP = ("ext4", "ext4dev", "ext3", "reiserfs", "reiser4", "nss", "xfs", "jfs", "vfat",
             "fat", "nfs", "nfs4", "cifs", "smbfs", "ocfs2", "gfs2", "none", "lustre",
             "glusterfs", "ceph", "tmpfs", "overlay", "rozofs", "zfs", "cvfs")

OK, WARN, MANUAL, RERUN, ERROR = "ok", "warn", "manual", "rerun", "error"


@dataclasses.dataclass(frozen=True)
class Checker:
    name: str
    preen: Callable[[str, str], list[str]]
    repair: Callable[[str, str], list[str]]
    judge: Callable[[int, str], tuple[str, str]]   # exit code, stdout -> (verdict, meaning)


def _typed(mode: str):
    return lambda dev, fstype: ["fsck", mode, *(["-t", fstype] if fstype else []), dev]


def judge_linux(code: int, output: str = "") -> tuple[str, str]:
    if code == 0:
        return OK, "clean"
    if code >= 8:
        bits = {8: "operational error", 16: "usage or syntax error",
                32: "cancelled by user request", 128: "shared-library error"}
        return ERROR, ", ".join(text for bit, text in bits.items() if code & bit) or \
            f"exit {code}"
    if code & 4:
        return MANUAL, "errors left uncorrected: needs a manual fsck"
    if code & 2:
        return WARN, "errors corrected; a reboot is advised"
    return OK, "errors corrected"


# fsck_ffs checkfilesys(): printed when the check must be repeated (see the docstring)
RERUN_BANNER = "***** PLEASE RERUN FSCK *****"
FREEBSD_CODES = {
    0: (OK, "clean"),
    2: (ERROR, "SIGQUIT: return to single-user after the check"),
    3: (ERROR, "cannot read the superblock"),
    4: (ERROR, "a mounted filesystem was modified and its reload failed; reboot"),
    8: (MANUAL, "UNEXPECTED INCONSISTENCY: needs a manual fsck"),
    12: (ERROR, "interrupted (SIGINT)"),
    16: (RERUN, "fsck asked to be run again (ERERUN)"),
}


def judge_freebsd(code: int, output: str = "") -> tuple[str, str]:
    if code == 0 and RERUN_BANNER in output:
        return RERUN, "fsck asked to be run again (PLEASE RERUN FSCK, exit 0)"
    return FREEBSD_CODES.get(code, (ERROR, f"exit {code}"))


def judge_xfs(code: int, output: str = "") -> tuple[str, str]:
    return {0: (OK, "clean"),
            1: (MANUAL, "corruption found (or left unrepaired)"),
            2: (WARN, "the log is dirty; the mount replays it")}.get(code, (ERROR, f"exit {code}"))


LINUX = Checker("fsck", _typed("-p"), _typed("-y"), judge_linux)
FREEBSD = Checker("fsck", _typed("-p"), _typed("-y"), judge_freebsd)
XFS = Checker("xfs_repair", lambda dev, _t: ["xfs_repair", "-n", dev],
              lambda dev, _t: ["xfs_repair", dev], judge_xfs)


def checker_for(freebsd: bool, fstype: str) -> Checker:
    if freebsd:
        return FREEBSD
    return XFS if fstype == "xfs" else LINUX


def needed(policy: str, fstype: str) -> bool:
    if policy == "never":
        return False
    if policy == "auto":
        return not (fstype in AUTO_SKIP or fstype.startswith(("nfs", "overlay")))
    return True


def check(ctx, device: str, fstype: str, policy: str) -> str:
    """Run the policy on `device` (not mounted). Returns a one-line summary; raises Refused
    when the filesystem needs a repair the policy does not allow, CommandFailed on errors."""
    if not needed(policy, fstype):
        return f"fsck skipped (policy {policy}, type {fstype or 'unknown'})"
    checker = checker_for(ctx.freebsd, fstype)
    verdict, meaning, result = _run_twice_if_asked(ctx, checker.preen(device, fstype), checker)
    if verdict == MANUAL and policy == "force":
        log.warning("fsck of %s: %s; repairing (fsck = \"force\")", device, meaning)
        verdict, meaning, result = _run_twice_if_asked(ctx, checker.repair(device, fstype),
                                                       checker)
    if verdict == OK:
        return f"fsck {device}: {meaning}"
    if verdict == WARN:
        log.warning("fsck of %s: %s", device, meaning)
        return f"fsck {device}: {meaning}"
    detail = _tail(result)
    if verdict == MANUAL:
        raise Refused(f"fsck of {device} (exit {result.exit_code}): {meaning}"
                      + (f": {detail}" if detail else "")
                      + ("; not mounted. Repair it by hand or set fsck = \"force\""
                         if policy != "force" else "; not mounted"))
    raise CommandFailed(result, f"fsck of {device}: {meaning}")


def _run_twice_if_asked(ctx, argv: list[str], checker: Checker):
    """fsck once more when it asks to be rerun, and only once: a second request means the
    filesystem is still not known to be consistent, an error (nothing is mounted)."""
    verdict, meaning, result = _run(ctx, argv, checker)
    if verdict != RERUN:
        return verdict, meaning, result
    log.warning("fsck %s: %s; running it once more", argv[-1], meaning)
    verdict, meaning, result = _run(ctx, argv, checker)
    if verdict == RERUN:
        return ERROR, f"{meaning}, twice in a row: not known to be clean", result
    return verdict, meaning, result


def _run(ctx, argv: list[str], checker: Checker):
    # fsck may take long on a big filesystem: allow it the step's whole remaining budget
    result = ctx.run(argv, readonly=argv[:2] == ["xfs_repair", "-n"], check=False,
                     timeout=ctx.deadline.remaining(floor=0.05))
    if result.dry_run:
        return OK, "dry-run", result
    return (*checker.judge(result.exit_code, result.stdout), result)


def _tail(result) -> str:
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()
             if line.strip() and not line.startswith(("fsck from", "e2fsck "))]
    return " ".join(lines[-3:])
