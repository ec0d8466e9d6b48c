"""What running a command in a sandbox node gives back (`Result`), and the drill's own
error: the sandbox could not do what the drill asked (`DrillError`, not a hahooks
verdict). A leaf module: the cluster, the provisioning and the services all use it."""
from __future__ import annotations

from hahooks.errors import HahooksError


class DrillError(HahooksError):
    """The sandbox itself could not do what the drill asked (not a hahooks verdict)."""


class Result:
    def __init__(self, argv, returncode: int, stdout: str, stderr: str, duration: float):
        self.argv, self.returncode = list(argv), returncode
        self.stdout, self.stderr, self.duration = stdout, stderr, duration

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self) -> str:
        text = (self.stderr or self.stdout).strip().splitlines()
        return text[-1] if text else f"exit {self.returncode}"

    def check(self, what: str) -> "Result":
        """This result, or DrillError("<what>: <last line>") when the command failed."""
        if not self.ok:
            raise DrillError(f"{what}: {self.tail()}")
        return self


def text_of(data) -> str:
    """subprocess output as text (TimeoutExpired carries bytes or None)."""
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
