#!/usr/bin/env python3
"""CPU seconds used so far by groups of processes, one line per call, for CPU-per-GB figures.

    cpu.py NAME=PID[,PID...][+] ...

prints `EPOCH NAME=SECONDS ...`: user + system time of the listed processes (and, with a
trailing `+`, of their direct children, e.g. a postmaster's backends), read from /proc. Two
snapshots around a run give each group's CPU seconds for it; a process gone meanwhile counts 0.
"""
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    ticks = int(fields[11]) + int(fields[12])
    return ppid, ticks


def children(parents):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = stat(int(entry))
            if s and s[0] in parents:
                out.append(int(entry))
    return out


def main():
    parts = [f"{time.time():.3f}"]
    for arg in sys.argv[1:]:
        name, spec = arg.split("=", 1)
        with_children = spec.endswith("+")
        pids = [int(p) for p in spec.rstrip("+").split(",") if p]
        if with_children:
            pids += children(set(pids))
        ticks = sum((stat(p) or (0, 0))[1] for p in pids)
        parts.append(f"{name}={ticks / TICK:.2f}")
    print(" ".join(parts))


if __name__ == "__main__":
    main()
