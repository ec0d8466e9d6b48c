"""Small pieces of FreeBSD libc/libutil behaviour the simulated tools share."""
from __future__ import annotations

import sys


class Usage(Exception):
    """getopt(3) rejected the arguments: the tool prints its usage text."""


def getopt(args: list[str], optstring: str, prog: str) -> tuple[list[tuple[str, str]], list[str]]:
    """BSD getopt(3): options up to the first operand or "--"; diagnostics as FreeBSD's
    libc prints them ("prog: illegal option -- x", "prog: option requires an argument -- c")."""
    opts: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            ch = arg[j]
            pos = optstring.find(ch)
            if ch == ":" or pos < 0:
                sys.stderr.write(f"{prog}: illegal option -- {ch}\n")
                raise Usage(ch)
            if pos + 1 < len(optstring) and optstring[pos + 1] == ":":
                if j + 1 < len(arg):
                    opts.append((ch, arg[j + 1:]))
                elif i + 1 < len(args):
                    i += 1
                    opts.append((ch, args[i]))
                else:
                    sys.stderr.write(f"{prog}: option requires an argument -- {ch}\n")
                    raise Usage(ch)
                break
            opts.append((ch, ""))
            j += 1
        i += 1
    return opts, args[i:]


def humanize_number(value: int, length: int = 5, suffix: str = "", decimal: bool = True,
                    nospace: bool = True, divisor: int = 1024, b: bool = False) -> str:
    """libutil humanize_number(buf, len, n, suffix, HN_AUTOSCALE, flags), 1024-based; `b` is
    HN_B ("B" at scale 0). hastd prints "%NB" with len 5 and HN_NOSPACE|HN_DECIMAL: 0B,
    2.0MB, 128MB; mdconfig -lv uses len 6 with HN_B, ggatec list -v len 5 with HN_B."""
    prefixes = ["B" if b else "", "K", "M", "G", "T", "P", "E"]
    deccut = 973 if divisor == 1024 else 950
    sign = -1 if value < 0 else 1
    quotient = abs(value)
    baselen = 1 + (2 if sign < 0 else 1) + (0 if nospace else 1) + len(suffix)
    if length < baselen + 1:
        return ""
    maxval = 10 ** (length - baselen)
    remainder = 0
    i = 0
    while ((quotient >= maxval or (quotient == maxval - 1 and
            (remainder >= deccut or remainder >= divisor // 2))) and i < len(prefixes) - 1):
        remainder = quotient % divisor
        quotient //= divisor
        i += 1
    sep = "" if nospace else " "
    if ((quotient == 9 and remainder < deccut) or quotient < 9) and i > 0 and decimal:
        s1 = quotient + ((remainder * 10 + divisor // 2) // divisor // 10)
        s2 = ((remainder * 10 + divisor // 2) // divisor) % 10
        return f"{sign * s1}.{s2}{sep}{prefixes[i]}{suffix}"
    return f"{sign * (quotient + (remainder + divisor // 2) // divisor)}{sep}{prefixes[i]}{suffix}"
