"""Exception hierarchy and the exit codes they map to (one dispatcher: cli.main).

Exit codes follow the OCF resource-agent numbers, so Heartbeat, Pacemaker and people
read the same meaning from them.
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    GENERIC = 1          # a step failed (the stack was rolled back / left safe)
    ARGS = 2             # bad command-line arguments
    UNIMPLEMENTED = 3
    PERM = 4             # not root, an unsafe or full state dir, a path others could redirect
    NOT_INSTALLED = 5    # a needed tool is missing
    NOT_CONFIGURED = 6   # the config file is invalid
    NOT_RUNNING = 7      # status: the stack (or resource) is not held


# The same codes under the OCF spec's names (docs/reference/pacemaker.md, OCF return codes),
# for the OCF agent (wiring/ocf.py). ocf/hahooks alone keeps its own 5: it answers with it
# when hahooks cannot be imported (tests/test_exit_codes.py holds it equal).
OCF_SUCCESS = ExitCode.OK
OCF_ERR_GENERIC = ExitCode.GENERIC
OCF_ERR_ARGS = ExitCode.ARGS
OCF_ERR_UNIMPLEMENTED = ExitCode.UNIMPLEMENTED
OCF_ERR_PERM = ExitCode.PERM
OCF_ERR_INSTALLED = ExitCode.NOT_INSTALLED
OCF_ERR_CONFIGURED = ExitCode.NOT_CONFIGURED
OCF_NOT_RUNNING = ExitCode.NOT_RUNNING
# A promotable clone's monitor only (wiring/ocf_promotable.py): no hahooks command exits so.
OCF_RUNNING_PROMOTED = 8
OCF_FAILED_PROMOTED = 9


class HahooksError(Exception):
    """Base of every error hahooks reports as one line and an exit code."""

    exit_code = ExitCode.GENERIC

    def one_line(self) -> str:
        return " ".join(str(self).split())


class UsageError(HahooksError):
    exit_code = ExitCode.ARGS


class PermissionProblem(HahooksError):
    exit_code = ExitCode.PERM


class NotInstalled(HahooksError):
    exit_code = ExitCode.NOT_INSTALLED


class ConfigError(HahooksError):
    """An invalid config: the message starts with file:line."""

    exit_code = ExitCode.NOT_CONFIGURED


class ConfigUnsafe(ConfigError):
    """The config's owner or mode would let someone else make hahooks run anything. The CLI
    still exits 6; the OCF agent says 4 (OCF_ERR_PERM: this node only)."""


class CommandFailed(HahooksError):
    """A command exited with a code the caller did not accept."""

    def __init__(self, result, what: str = ""):
        self.result = result
        tail = [line for line in (result.stderr or result.stdout or "").strip().splitlines()
                if not line.startswith("       dmesg(1) may have more")]  # util-linux mount's hint
        detail = tail[-1].strip() if tail else f"exit {result.exit_code}"
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}{result.display()} failed (exit {result.exit_code}): {detail}")


class CommandTimeout(HahooksError):
    def __init__(self, result):
        self.result = result
        super().__init__(f"{result.display()} timed out after {result.timeout:g}s (process group killed)")


class WaitTimeout(HahooksError):
    def __init__(self, what: str, timeout: float):
        super().__init__(f"timed out after {timeout:g}s waiting for {what}")


class StepFailed(HahooksError):
    """Acquiring a resource failed; the engine has already rolled back."""


class UnsafeToRelease(HahooksError):
    """A release could not make a layer safe; lower layers were left untouched."""


class Refused(HahooksError):
    """A kind refused an action because it would be unsafe (split brain, double mount...)."""


class Superseded(Exception):
    """A newer desire arrived; the transition stops at a safe point (not an error)."""
