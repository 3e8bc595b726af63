"""CPU seconds per process group, from /proc, to see where a benchmark's time goes.

Groups: each suite process by its pid-file name (with its children, e.g. gunicorn workers), the
store (FerretDB launcher), the broker (beam.smp) and everything else. Linux only.
"""
from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _procs() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command name, cpu seconds)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        out[int(d.name)] = (int(rest[1]), name, (int(rest[11]) + int(rest[12])) / TICK)
    return out


def snapshot(run_dir: Path) -> dict[str, float]:
    procs = _procs()
    roots = {int(f.read_text()): f.stem for f in run_dir.glob("*.pid") if f.read_text().strip().isdigit()}
    groups: dict[str, float] = {}
    for pid, (ppid, name, cpu) in procs.items():
        group = None
        p = pid
        for _ in range(5):  # walk up to a suite process
            if p in roots:
                group = roots[p]
                break
            p = procs.get(p, (0, "", 0))[0]
        if group is None:
            p, me = pid, os.getpid()
            for _ in range(3):
                if p == me:
                    group = "bench (with its sender)"
                    break
                p = procs.get(p, (0, "", 0))[0]
        if group is None:
            group = "rabbitmq" if name == "beam.smp" else "ferretdb" if name.startswith("ferretdb") else "other"
        groups[group] = groups.get(group, 0.0) + cpu
    return groups


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0) - before.get(k, 0), 2) for k in sorted(set(before) | set(after))
            if round(after.get(k, 0) - before.get(k, 0), 2) > 0}
