"""`hahooks` command line: argument parsing and the one dispatcher that maps exceptions to
exit codes (as resource-agents' ocf.py does). Logging is set up here, never at import."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from hahooks import __version__
from hahooks.errors import ExitCode, HahooksError, NotInstalled

# Each module adds its subcommands with register(subparsers); importing them must stay
# cheap (no sh/psutil/json-logger at module level): hooks start on every CARP event.
COMMAND_MODULES = ("transition", "inspect", "operate", "entrypoints", "wiring",
                   "install_wiring")
# The lab (simulator, sandbox, drill) is development code the production wheel leaves out
# (setup.cfg). This is the one place production code names it: its subcommands are
# registered where importlib finds the lab, a stand-in that says what is missing elsewhere
# (tests/test_lab_contract.py). {command: module}
LAB_COMMAND_MODULES = {"drill": "hahooks.lab.drill.command"}
LAB_MISSING = ("the {command} needs a development install (scripts/bootstrap): the lab "
               "(hahooks.lab) is not installed")
# The hot paths build only the parser they need (importing and registering every module is
# a cost per hook call, docs/performance.md); any other word, and --help, build the whole
# parser.
FAST_PATHS = {"master": "transition", "slave": "transition", "worker": "transition",
              "agent": "transition",
              "status": "inspect", "check": "inspect", "plan": "inspect",
              "history": "inspect", "notify-send": "operate",
              # the daemons' own commands, run on every event (devd, keepalived, ucarp,
              # Heartbeat): the wiring parser alone, not every module's (~20 ms,
              # docs/performance.md)
              "devd-event": "wiring", "keepalived-notify": "wiring", "ucarp-up": "wiring",
              "ucarp-down": "wiring", "heartbeat": "wiring"}

# What the daemons run on every event (and the worker a hook detaches): these leave with
# os._exit (run()); every other command exits normally, atexit handlers and all.
HOT_COMMANDS = frozenset({"master", "slave", "worker", "mount", "import-pool"})

EPILOG = """\
exit codes (OCF numbers):
  0 ok   1 step failed (stack rolled back or left safe)   2 bad arguments
  3 unimplemented   4 permission / unsafe path / full state dir   5 tool not installed
  6 bad or missing config   7 not running (status of a single resource)
status exit codes (monitoring-plugin style): 0 OK  1 WARNING  2 CRITICAL  3 UNKNOWN
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, as documented
        raise _ArgError(f"{self.prog}: {message}")


class _ArgError(Exception):
    pass


def build_parser(only: str | tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The `hahooks` parser; `only` = modules of COMMAND_MODULES (their subcommands alone)."""
    parser = _Parser(prog="hahooks", description="Failover hooks for two-node HA storage "
                     "clusters: acquire the configured stack in order (master) or release it "
                     "in reverse (slave).", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hahooks {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", help="config file (default: $HAHOOKS_CONFIG, "
                        "/usr/local/etc/hahooks.toml on FreeBSD, /etc/hahooks.toml on Linux)")
    common.add_argument("-v", "--verbose", action="store_true", help="show commands on stderr")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in ((only,) if isinstance(only, str) else only) or COMMAND_MODULES:
        importlib.import_module(f"hahooks.commands.{name}").register(sub, common)
    if not only:
        _register_lab_commands(sub, common)
    return parser


def _register_lab_commands(sub, common) -> None:
    have_lab = importlib.util.find_spec("hahooks.lab") is not None
    for command, module in LAB_COMMAND_MODULES.items():
        if have_lab:
            importlib.import_module(module).register(sub, common)
            continue
        # no option parsing (prefix_chars NUL): whatever follows, say what is missing
        p = sub.add_parser(command, add_help=False, prefix_chars="\0",
                           help=f"(not installed: {command} needs a development install)")
        p.add_argument("ignored", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda args, command=command: _lab_missing(command))


def _lab_missing(command: str) -> int:
    raise NotInstalled(LAB_MISSING.format(command=command))


def _known_command(parser: argparse.ArgumentParser, word: str) -> None:
    """argparse's "invalid choice" lists every subcommand, the hidden `worker` included, and
    guesses nothing: one line with the nearest documented command instead."""
    import difflib

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if word in sub.choices:
        return
    shown = [a.dest for a in sub._choices_actions]   # those with help=: not `worker`
    close = difflib.get_close_matches(word, shown, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"commands: {', '.join(shown)}"
    raise _ArgError(f"hahooks: unknown command {word!r}; {hint} (hahooks --help)")


def _glue_ages(argv: list[str]) -> list[str]:
    """`history --since -2h`: argparse takes a word that starts with '-' (and is not a plain
    number) for an option and says "expected one argument"; glue it to its option."""
    out: list[str] = []
    for word in argv:
        if out and out[-1] == "--since" and word.startswith("-"):
            out[-1] = f"--since={word}"
        else:
            out.append(word)
    return out


def stderr_level(args) -> int:
    if getattr(args, "verbose", False):
        return logging.DEBUG
    if getattr(args, "quiet", False):
        return logging.WARNING
    return logging.INFO


def main(argv: list[str] | None = None, *, parser=None, check=None) -> int:
    """The command line `argv` run to its exit code. `parser`: one built already (the agent
    runs the daemons' commands with the one it built at start, spool.Spool.run_wiring);
    `check(args)`: called once the arguments parsed, before the command runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = parser or build_parser(FAST_PATHS.get(argv[0]) if argv else None)
        if argv and not argv[0].startswith("-"):
            _known_command(parser, argv[0])
        args = parser.parse_args(_glue_ages(argv))
        if not getattr(args, "func", None):
            print("hahooks: no command given (hahooks --help lists them)", file=sys.stderr)
            return ExitCode.ARGS
        if check:
            check(args)
        return int(args.func(args) or 0)
    except _ArgError as exc:
        print(str(exc), file=sys.stderr)
        return ExitCode.ARGS
    except HahooksError as exc:
        logging.getLogger("hahooks").debug("error", exc_info=True)
        print(f"hahooks: error: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:  # `hahooks status | head`: the reader went away
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except KeyboardInterrupt:
        print("hahooks: interrupted", file=sys.stderr)
        return ExitCode.GENERIC
    except Exception as exc:  # a bug: one line on stderr, the traceback in the log
        logging.getLogger("hahooks").error("unexpected error", exc_info=True)
        print(f"hahooks: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.GENERIC


def run() -> None:
    """The command line, after express.run offered the call to the express lane: main(); a
    hot command (HOT_COMMANDS) then leaves without the interpreter's teardown. Freeing every
    module is paid at each exit, on every CARP event (docs/performance.md); the log and
    stdio are flushed first. Any other command exits normally: its atexit handlers (the
    sandbox's net for labs nobody closed, under `hahooks drill`) run."""
    argv = sys.argv[1:]
    code = main(argv)
    if not argv or argv[0] not in HOT_COMMANDS:
        sys.exit(code)
    import os

    logging.shutdown()                # flushes and closes the JSON log and syslog handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say there
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
