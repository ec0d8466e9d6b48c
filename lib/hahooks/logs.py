"""Logging: JSON lines to a file, JSON to syslog, a short human line on stderr.

Set up by cli.main() only, never at import. Context fields (transition id, node, resource,
kind) ride on a ContextVar so the runner's records carry them too.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
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


def _json_formatter():
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "ts",
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
    root.addHandler(err)

    if log_file and json_file:
        from logging.handlers import WatchedFileHandler

        try:
            os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
            fh = WatchedFileHandler(log_file)
        except OSError as exc:
            root.warning("cannot open log file %s: %s", log_file, exc.strerror)
        else:
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(_json_formatter())
            fh.addFilter(ctx_filter)
            root.addHandler(fh)

    if syslog_socket and os.path.exists(syslog_socket):
        from logging.handlers import SysLogHandler

        sl = SysLogHandler(address=syslog_socket,
                           facility=SysLogHandler.facility_names.get(facility,
                                                                     SysLogHandler.LOG_LOCAL0))
        sl.ident = f"hahooks[{os.getpid()}]: "
        sl.setLevel(logging.INFO)
        sl.setFormatter(_json_formatter())
        sl.addFilter(ctx_filter)
        root.addHandler(sl)


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
