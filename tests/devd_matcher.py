"""A test stand-in for FreeBSD's devd: reads devd.conf files with devd's grammar and picks
the action devd would run for an event, so our rules are tested without FreeBSD.

Follows sbin/devd (token.l, parse.y, devd.cc):
- tokens: `;` `{` `}` numbers, "strings" (no embedded quote; backslash-newline plus the
  following blanks is dropped), keywords, ids `[A-Za-z][A-Za-z0-9_-]*`; comments `#`, `//`
  and `/* */`;
- statements `options { directory "d"; pid-file "f"; set id "re"; };` and
  `attach|detach|nomatch|notify <prio> { match "var" "re"; device-name "re"; class "re";
  subdevice "re"; media-type "t"; action "cmd"; };`;
- a match regex is the string with `$var` expanded from the `set` variables, wrapped in
  `^...$`, POSIX extended + REG_ICASE; a leading `!` inverts it;
- per event type, rules are stable-sorted by priority (highest first) and only the first
  rule whose matches all hold runs; all of its actions run, each through `sh -c`;
- an event `!k=v k="v w" ...` sets variables (plus `*`, `_`, `timestamp`); in an action,
  `$$` is `$`, `$(...)` passes through, `$` before anything but a letter, `_`, `-` or `*`
  stays, and `$name` (letters, digits, `_`, `-`) expands to the value, shell-quoted as
  `$'...'` by current devd (quote="modern") or raw by old devd (quote="legacy"); an unset
  variable expands to the empty string.
media-type needs an interface ioctl: this matcher treats it as "no match" unless the test
passes media={ifname: type}.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time

KEYWORDS = ("options", "set", "directory", "pid-file", "attach", "detach", "device-name",
            "media-type", "class", "subdevice", "action", "match", "nomatch", "notify")
BLOCKS = {"attach": "+", "detach": "-", "nomatch": "?", "notify": "!"}
SHORTHAND = {"device-name": "device-name", "class": "class", "subdevice": "subdevice"}

_TOKEN = re.compile(r"""
    (?P<ws>[ \t]+) | (?P<nl>\n) | (?P<semi>;) |
    (?P<comment>\#[^\n]*|//[^\n]*|/\*(?:[^*]|\*+[^*/])*\*+/) |
    (?P<begin>\{) | (?P<end>\}) | (?P<number>[0-9]+) |
    (?P<string>"[^"]+") | (?P<id>[A-Za-z][A-Za-z0-9_-]*)
""", re.VERBOSE)


def _ascii_alpha(c: str) -> bool:
    return c.isascii() and c.isalpha()


class ParseError(Exception):
    pass


def tokenize(text: str, name: str = "<devd.conf>"):
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseError(f"{name}:{line}: cannot parse at {text[pos:pos + 20]!r}")
        kind, value = m.lastgroup, m.group()
        pos = m.end()
        if kind == "string":
            inner = re.sub(r"\\\n[ \t\n]*", "", value[1:-1])
            yield "string", inner, line
        elif kind == "id":
            yield ("kw" if value in KEYWORDS else "id"), value, line
        elif kind == "number":
            yield "number", int(value), line
        elif kind not in ("ws", "nl", "comment"):
            yield kind, value, line
        line += value.count("\n")


@dataclasses.dataclass
class Match:
    var: str
    regex: str          # as devd compiles it: ^expanded$
    invert: bool

    def holds(self, value: str) -> bool:
        found = re.search(self.regex, value, re.IGNORECASE) is not None
        return found != self.invert


@dataclasses.dataclass
class Rule:
    kind: str           # "!", "+", "-", "?"
    priority: int
    matches: list[Match]
    media: list[str]
    actions: list[str]
    source: str         # file:line, for messages


class Devd:
    def __init__(self, quote: str = "modern", media: dict[str, str] | None = None):
        assert quote in ("modern", "legacy")
        self.quote = quote
        self.media = media or {}
        self.globals: dict[str, str] = {}
        self.rules: list[Rule] = []
        self.directories: list[str] = []

    # -- configuration ---------------------------------------------------------------
    def load(self, path: str) -> "Devd":
        with open(path, encoding="utf-8") as fh:
            return self.parse(fh.read(), path)

    def load_dir(self, path: str) -> "Devd":
        for name in sorted(os.listdir(path)):
            if name.endswith(".conf"):
                self.load(os.path.join(path, name))
        return self

    def parse(self, text: str, name: str = "<devd.conf>") -> "Devd":
        toks = list(tokenize(text, name))
        i = 0

        def expect(kind, value=None):
            nonlocal i
            if i >= len(toks):
                raise ParseError(f"{name}: unexpected end of file, wanted {value or kind}")
            k, v, line = toks[i]
            if k != kind or (value is not None and v != value):
                raise ParseError(f"{name}:{line}: syntax error at {v!r}, wanted {value or kind}")
            i += 1
            return v

        while i < len(toks):
            k, v, line = toks[i]
            if k == "kw" and v == "options":
                i += 1
                expect("begin")
                while toks[i][0] != "end":
                    opt = expect("kw")
                    if opt == "directory":
                        self.directories.append(expect("string"))
                    elif opt == "pid-file":
                        expect("string")
                    elif opt == "set":
                        var = toks[i][1]
                        if toks[i][0] not in ("id", "kw"):
                            raise ParseError(f"{name}:{toks[i][2]}: set needs a name")
                        i += 1
                        self.globals[var] = expect("string")
                    else:
                        raise ParseError(f"{name}:{toks[i - 1][2]}: {opt!r} not allowed in options")
                    expect("semi")
                expect("end")
                expect("semi")
            elif k == "kw" and v in BLOCKS:
                i += 1
                prio = expect("number")
                expect("begin")
                rule = Rule(BLOCKS[v], prio, [], [], [], f"{name}:{line}")
                while toks[i][0] != "end":
                    sub = expect("kw")
                    if sub == "match":
                        var = expect("string")
                        rule.matches.append(self._match(var, expect("string")))
                    elif sub in SHORTHAND:
                        rule.matches.append(self._match(SHORTHAND[sub], expect("string")))
                    elif sub == "media-type":
                        rule.media.append(expect("string"))
                    elif sub == "action":
                        rule.actions.append(expect("string"))
                    else:
                        raise ParseError(f"{name}:{toks[i - 1][2]}: {sub!r} not allowed in {v}")
                    expect("semi")
                expect("end")
                expect("semi")
                self.rules.append(rule)
            else:
                raise ParseError(f"{name}:{line}: syntax error at {v!r}")
        return self

    def _match(self, var: str, re_text: str) -> Match:
        invert = re_text.startswith("!")
        body = self.expand(re_text[1:] if invert else re_text, self.globals, shell=False)
        return Match(var, f"^{body}$", invert)

    # -- variable expansion (config::expand_string / expand_one) ----------------------
    def expand(self, text: str, variables: dict[str, str], *, shell: bool) -> str:
        out, i = [], 0
        while i < len(text):
            c = text[i]
            if c != "$":
                out.append(c)
                i += 1
                continue
            i += 1
            nxt = text[i] if i < len(text) else ""
            if nxt == "$":
                out.append("$")
                i += 1
            elif nxt == "(":
                depth, j = 1, i + 1
                while depth and j < len(text):
                    depth += {"(": 1, ")": -1}.get(text[j], 0)
                    j += 1
                out.append("$" + text[i:j])
                i = j
            elif not (_ascii_alpha(nxt) or nxt in "_-*"):
                out.append("$" + nxt)
                i += 1
            else:
                j = i + 1
                while j < len(text) and (_ascii_alpha(text[j]) or text[j].isdigit()
                                         or text[j] in "_-"):
                    j += 1
                value = variables.get(text[i:j], "")
                out.append(self._quote(value) if shell else value)
                i = j
        return "".join(out)

    def _quote(self, value: str) -> str:
        if self.quote == "legacy":
            return value
        return "$'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    # -- events -------------------------------------------------------------------------
    @staticmethod
    def event_variables(event: str) -> tuple[str, dict[str, str]]:
        """Parse a notify event line (`!k=v ...`) into its variables (process_event)."""
        if not event.startswith("!"):
            raise ValueError("only notify events (starting with '!') are modelled")
        variables = {"*": event, "_": event[1:], "timestamp": f"{time.time():.6f}"}
        rest = event[1:]
        pattern = re.compile(r'([A-Za-z0-9_-]*)=(?:"((?:\\"|[^"])*)"|(\S*))\s*')
        while rest:
            m = pattern.match(rest)
            if not m:
                break
            value = m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
            variables[m.group(1)] = value
            rest = rest[m.end():]
        return "!", variables

    def route(self, event: str) -> tuple[Rule | None, list[str]]:
        """The rule devd would run for `event` and its expanded action command lines."""
        kind, variables = self.event_variables(event)
        lookup = {**self.globals, **variables}
        ordered = sorted((r for r in self.rules if r.kind == kind),
                         key=lambda r: -r.priority)       # sorted() is stable, like devd's
        for rule in ordered:
            if all(m.holds(lookup.get(m.var, "")) for m in rule.matches) and \
                    all(self.media.get(lookup.get("subsystem", "")) == t for t in rule.media):
                return rule, [self.expand(a, lookup, shell=True) for a in rule.actions]
        return None, []
