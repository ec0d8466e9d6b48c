"""`command`: acquire / release / status given as argument lists.

status: exit 0 -> held, exit 1 (or `released_codes`) -> released, anything else -> broken.
Without a status command the kind is held exactly when `state_file` exists (touched on
acquire, removed on release); one of the two is required so re-runs stay idempotent.
"""
from __future__ import annotations

import os

from hahooks import schema
from hahooks.kinds.base import Observation, Resource, broken, held, released
from hahooks.schema import Invalid


class Command(Resource):
    KIND = "command"
    PARAMS = {
        "acquire": schema.Argv(doc="argv run to acquire; exit 0 = done"),
        "release": schema.Argv(doc="argv run to release; exit 0 = done"),
        "status": schema.Argv(None, "read-only probe: exit 0 = held, a code in released_codes "
                              "= released, anything else (or a timeout) = broken, with the "
                              "probe's last stderr line as the reason"),
        "released_codes": schema.Field(lambda v: _codes(v), [1], "the status probe's exit "
                                       "codes (1-255) meaning released", "[integers]"),
        "state_file": schema.Path(None, "without status: the layer is held exactly while this "
                                  "file exists (acquire creates it after its command "
                                  "succeeded, release removes it after its command "
                                  "succeeded); refused (exit 4, before the command runs) if "
                                  "another user could plant or swap it"),
    }

    @classmethod
    def validate(cls, spec) -> None:
        if not spec.params["status"] and not spec.params["state_file"]:
            raise Invalid("needs 'status' (an argv) or 'state_file' so that re-runs can tell "
                          "whether it is already held")

    def status(self) -> Observation:
        if self.p["status"]:
            r = self.ctx.run(self.p["status"], readonly=True, check=False)
            probe = os.path.basename(self.p["status"][0])
            if r.exit_code == 0:
                return held(f"{probe} exited 0")
            if r.exit_code in self.p["released_codes"]:
                return released(f"{probe} exited {r.exit_code}")
            tail = (r.stderr or r.stdout).strip().splitlines()
            return broken(f"{probe} exited {r.exit_code}" + (f": {tail[-1]}" if tail else ""))
        if os.path.exists(self.p["state_file"]):
            return held(f"{self.p['state_file']} exists")
        return released(f"{self.p['state_file']} absent")

    @classmethod
    def paths(cls, spec) -> list[tuple[str, str, dict]]:
        # root creates and removes it: another user must not be able to plant or swap it
        state_file = spec.params["state_file"]
        return [("state_file", state_file, {"follow_final": False})] if state_file else []

    def acquire(self) -> None:
        self.verify_paths()     # before the command: a refusal takes no action
        self.ctx.run(self.p["acquire"], readonly=False, what=f"acquire {self.name}")
        if self.p["state_file"]:
            self.ctx.effect(f"create {self.p['state_file']}", lambda: _touch(self.p["state_file"]))

    def release(self) -> None:
        self.verify_paths()
        self.ctx.run(self.p["release"], readonly=False, what=f"release {self.name}")
        if self.p["state_file"]:
            self.ctx.effect(f"remove {self.p['state_file']}",
                            lambda: _remove(self.p["state_file"]))


def _codes(v) -> list[int]:
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                          and 0 < x < 256 for x in v):
        raise Invalid(f"expected a list of exit codes 1..255, got {v!r}")
    return v


def _touch(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


RESOURCE = Command
