"""Simulated jot(1), the part the seed scripts use (`for i in $(jot 30)`): `jot reps
[begin [end]]` prints reps integers from begin (default 1), one per line. Linux has no jot,
and the baselines must run verbatim against the simulator."""
from __future__ import annotations

import sys


def main(ctx, args: list[str]) -> int:
    nums = [a for a in args if not a.startswith("-") or a[1:].isdigit()]
    if not nums or any(not a.lstrip("-").isdigit() for a in nums[:3]) or len(nums) > 4 \
            or len(nums) != len(args):
        sys.stderr.write("usage: jot [-cnr] [-b word] [-w word] [-s string] [-p precision] "
                         "[reps [begin [end [s]]]]\n")
        return 1
    reps = int(nums[0])
    begin = int(nums[1]) if len(nums) > 1 else 1
    step = 1
    if len(nums) > 2 and reps > 1:
        step = (int(nums[2]) - begin) // (reps - 1) or 1
    sys.stdout.write("".join(f"{begin + i * step}\n" for i in range(reps)))
    return 0
