"""Logging: JSON lines to a file, one readable sentence per record to syslog, a short human
line on stderr.

Set up by cli.main() only, never at import. Context fields (transition id, node, resource,
kind) ride on a ContextVar so the runner's records carry them too.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.handlers
import os
import sys

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("hahooks_log", default={})

JSON_FIELDS = ["asctime", "levelname", "name", "message"]


@contextlib.contextmanager
def context(**fields):
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        where = getattr(record, "resource", None)
        prefix = f"hahooks[{where}]" if where else "hahooks"
        return f"{prefix}: {record.levelname.lower()}: {record.getMessage()}" \
            if record.levelno >= logging.WARNING else f"{prefix}: {record.getMessage()}"


class _SyslogFormatter(logging.Formatter):
    """One line a person reads in /var/log/messages; the JSON file keeps the fields."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{getattr(record, 'node', None) or 'hahooks'}:"]
        if getattr(record, "resource", None):
            parts.append(f"{record.resource}:")
        if record.levelno >= logging.WARNING:
            parts.append(f"{record.levelname.lower()}:")
        parts.append(record.getMessage())
        if getattr(record, "transition", None):
            parts.append(f"[transition {record.transition}]")
        if getattr(record, "dry_run", False):
            parts.append("(dry run)")
        return " ".join(" ".join(parts).split())


class _SyslogHandler(logging.handlers.SysLogHandler):
    """Syslog that may be gone (syslogd stopped during shutdown while keepalived or ucarp
    run `slave`, a socket path that is a directory): the first failure disables it with
    one warning on stderr and in the JSON file, instead of a traceback per record. A dry
    run's warnings and errors never reach it: they would page for something not done."""

    dead = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.dead or (getattr(record, "dry_run", False) and record.levelno >= logging.WARNING):
            return False
        return super().filter(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.dead:
            return
        self.dead = True
        import sys as _sys

        exc = _sys.exc_info()[1]
        logging.getLogger("hahooks").warning(
            "syslog at %s unavailable (%s): logging to the JSON file and stderr only",
            self.address, getattr(exc, "strerror", None) or exc, extra={"event": "syslog"})


class _PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """The JSON log holds every command's argv and stderr: created 0600 whatever the umask
    (also when newsyslog or logrotate moved it away and the handler reopens), and one that
    others can read (an older install's 0644) is narrowed to at most 0640."""

    def _open(self):
        fh = open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
                  opener=lambda path, flags: os.open(path, flags, 0o600))
        try:
            st = os.fstat(fh.fileno())
            if st.st_uid == os.geteuid() and st.st_mode & 0o137:
                os.fchmod(fh.fileno(), st.st_mode & 0o640)
        except OSError:
            pass     # not ours to fix (another owner); the file still logs
        return fh


def _json_formatter():
    # python-json-logger >= 3.1 has the formatter in .json; 2.x (Debian 12 ships 2.0.1, the
    # FreeBSD port 2.0.4) only in .jsonlogger, and takes the fields as a %-format string
    # alone (3.1+ also takes a list), so the string form serves both
    # (docs/reference/python-deps.md §4).
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        from pythonjsonlogger.jsonlogger import JsonFormatter

    fields = " ".join(f"%({name})s" for name in JSON_FIELDS)
    return JsonFormatter(fields, rename_fields={"levelname": "level", "asctime": "ts",
                                                "name": "logger"},
                         timestamp="time")


def setup(*, node: str | None = None, log_file: str | None = None,
          syslog_socket: str | None = None, facility: str = "local0",
          stderr_level: int = logging.INFO, json_file: bool = True) -> None:
    root = logging.getLogger("hahooks")
    root.setLevel(logging.DEBUG)
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    ctx_filter = _ContextFilter()
    if node:
        _context.set({**_context.get(), "node": node})
    logging.getLogger("sh").setLevel(logging.WARNING)  # ~25 DEBUG records per command

    err = logging.StreamHandler(sys.stderr)
    err.setLevel(stderr_level)
    err.setFormatter(_HumanFormatter())
    err.addFilter(ctx_filter)
    err.addFilter(_progress_on_a_terminal)
    root.addHandler(err)

    if log_file and json_file:
        try:
            os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
            fh = _PrivateFileHandler(log_file)
        except OSError as exc:
            root.warning("cannot open log file %s: %s", log_file, exc.strerror)
        else:
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(_json_formatter())
            fh.addFilter(ctx_filter)
            root.addHandler(fh)

    if syslog_socket and os.path.exists(syslog_socket):
        names = logging.handlers.SysLogHandler.facility_names
        sl = _SyslogHandler(address=syslog_socket,
                            facility=names.get(facility, names["local0"]))
        sl.ident = f"hahooks[{os.getpid()}]: "
        sl.setLevel(logging.INFO)
        sl.setFormatter(_SyslogFormatter())
        sl.addFilter(ctx_filter)
        sl.addFilter(lambda record: not getattr(record, "progress", False))
        root.addHandler(sl)


def _progress_on_a_terminal(record: logging.LogRecord) -> bool:
    """waits.Progress lines are for a person watching: on stderr only when it is a terminal
    (a daemon's captured stderr, Heartbeat's debug log, stays as it was); the JSON file
    keeps them all."""
    if not getattr(record, "progress", False):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def records(path: str):
    """The JSON records of a hahooks log file, in order; torn or foreign lines are skipped.
    Raises FileNotFoundError when there is no log yet."""
    import json

    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def setup_from_config(cfg, stderr_level: int = logging.INFO) -> None:
    node = cfg.node
    setup(node=node.name, log_file=node.log_file,
          syslog_socket=node.syslog_socket if node.syslog else None,
          facility=node.syslog_facility, stderr_level=stderr_level)
