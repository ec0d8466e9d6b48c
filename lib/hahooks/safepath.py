"""Paths root may trust: no component that a non-root user can replace or redirect.

hahooks runs as root and mounts over, renames, links and reads paths from the config
(mountpoints, `links` paths and targets, pidfiles, the config file itself). If any
component of such a path sits in a directory another user can write, that user can swap
it for a symlink between the check and the use and make root mount over, rename or read
something else (issue 17: a mountpoint under /tmp replaced by `nobody` with a symlink to a
root-owned directory). verify() walks the path from / one component at a time with
openat-style calls (fstatat without following, an O_NOFOLLOW directory fd per step, the
fd's inode compared with what was stat'ed), follows a symlink only when nobody but root
(or us) can replace it, and refuses with a one-line reason otherwise.

A directory entry can be replaced by another user when (the rule of OpenSSH's
StrictModes, auth.c auth_secure_path(), with the sticky bit's protection added):
  - the directory is owned by a uid other than root or ours, or
  - the directory is writable by group or others without the sticky bit, or
  - the directory is writable by group or others with the sticky bit (/tmp) and the entry
    is owned by another uid (the sticky bit protects only entries of root or ours).
An entry that does not exist yet is acceptable in a sticky directory: hahooks creates it
itself (mkdir fails if someone else was first) and verifies again before using it.

Once every component passes, no other user can change what the path names, so a check
right before the use is not a race: only root (or we) could change it in between.
"""
from __future__ import annotations

import dataclasses
import os
import stat

from hahooks.errors import PermissionProblem

_DIR_FLAGS = (getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW
              | os.O_CLOEXEC)
MAX_SYMLINKS = 40          # as the kernel's MAXSYMLINKS / ELOOP limit


class UnsafePath(PermissionProblem):
    """A path another user could redirect (exit 4, like an unsafe state dir)."""


@dataclasses.dataclass(frozen=True)
class Verified:
    path: str          # as given
    resolved: str      # symlinks (trusted ones) resolved: what the kernel will use
    exists: bool       # False: the components from the first missing one on are absent


def trusted_uids() -> tuple[int, ...]:
    return (0, os.geteuid())


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def replace_risk(dir_path: str, dir_st: os.stat_result, entry: str,
                 entry_st: os.stat_result | None) -> str | None:
    """Why another user could replace `entry` in the directory, or None if nobody can."""
    trusted = trusted_uids()
    noun = f"the symlink {entry}" if entry_st and stat.S_ISLNK(entry_st.st_mode) else entry
    if dir_st.st_uid not in trusted:
        return f"{dir_path} is owned by uid {dir_st.st_uid}, who can replace {noun}"
    if not dir_st.st_mode & 0o022:
        return None
    if not dir_st.st_mode & stat.S_ISVTX:
        return (f"{dir_path} is writable by group or others without the sticky bit (mode "
                f"{_mode(dir_st)}): anyone can replace {noun}")
    if entry_st is not None and entry_st.st_uid not in trusted:
        return (f"{noun} is owned by uid {entry_st.st_uid} in the world-writable directory "
                f"{dir_path}: its owner can replace it")
    return None


def _unsafe(path: str, reason: str) -> UnsafePath:
    """One line that starts with the configured path, as every hahooks error does."""
    return UnsafePath(f"{path}: {reason}")


def verify(path: str, *, follow_final: bool = True, final_replaceable: bool = False) -> Verified:
    """Walk `path` from /; raise UnsafePath (one line) if another user could redirect it.

    follow_final=False: a final symlink is not followed (a `links` path that is our own
    link). final_replaceable=True: the final entry may be replaceable because the caller
    opens it with O_NOFOLLOW and only reads it (a pidfile in a daemon's own run dir)."""
    if not path.startswith("/"):
        raise UnsafePath(f"{path}: not an absolute path")
    todo = [c for c in path.split("/") if c]
    done: list[str] = []
    hops = 0
    fd = os.open("/", _DIR_FLAGS)
    try:
        dir_st = os.fstat(fd)
        while todo:
            name = todo.pop(0)
            if name == ".":
                continue
            if name == "..":          # only from a symlink's target: the schema refuses ..
                done = done[:-1]
                todo = done + todo
                done = []
                os.close(fd)
                fd = os.open("/", _DIR_FLAGS)
                dir_st = os.fstat(fd)
                continue
            here = "/" + "/".join(done)
            entry = os.path.join(here, name)
            final = not todo
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                risk = replace_risk(here, dir_st, entry, None)
                if risk:
                    raise _unsafe(path, risk) from None
                return Verified(path, os.path.join(here, name, *todo), False)
            except OSError as exc:
                raise UnsafePath(f"{path}: {entry}: {exc.strerror}") from None
            risk = replace_risk(here, dir_st, entry, st)
            if stat.S_ISLNK(st.st_mode):
                if final and not follow_final:
                    if risk and not final_replaceable:
                        raise _unsafe(path, risk)
                    return Verified(path, entry, True)
                if risk:
                    raise _unsafe(path, f"{risk}; refusing to follow it")
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise UnsafePath(f"{path}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=fd)
                todo = [c for c in target.split("/") if c] + todo
                if target.startswith("/"):
                    done = []
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                    dir_st = os.fstat(fd)
                continue
            if risk and not (final and final_replaceable):
                raise _unsafe(path, risk)
            if not final:
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafePath(f"{path}: {entry} is not a directory")
                fd, dir_st = _descend(fd, name, st, entry, path)
            done.append(name)
        return Verified(path, "/" + "/".join(done), True)
    finally:
        os.close(fd)


def _descend(fd: int, name: str, st: os.stat_result, entry: str, path: str):
    """Open the directory just stat'ed without following links; it must be the same inode
    (it was not swapped in between: only a trusted user could have)."""
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise UnsafePath(f"{path}: {entry}: {exc.strerror}") from None
    os.close(fd)
    child_st = os.fstat(child)
    if (child_st.st_dev, child_st.st_ino) != (st.st_dev, st.st_ino):
        os.close(child)
        raise UnsafePath(f"{path}: {entry} changed while it was being checked")
    return child, child_st


def problem(path: str, **kw) -> str | None:
    """verify()'s refusal as a string, or None: for config checks that add file:line."""
    try:
        verify(path, **kw)
    except UnsafePath as exc:
        return exc.one_line()
    return None


def open_nofollow(path: str, flags: int = os.O_RDONLY) -> int:
    """Open a file whose directories verify() accepted; a symlink as the last component
    (someone who can write its directory planted it) fails with ELOOP."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
