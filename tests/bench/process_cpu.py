"""CPU-seconds per kind of process while a command runs: where a sweep trial's machine time goes.

Every process started after the command (its children and the local Ray it starts: the trial's
actors, Ray's daemons) is sampled every ``interval`` seconds and counted under its kind: a Ray actor
by its class (``ray::TrainController``), any other process by its program. A process that exits
between two samples loses at most ``interval`` of CPU time.

    python -m tests.bench.process_cpu -- .venv/bin/python sweeps/aux_ablation.py ...
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

# Ray's own daemons: a process whose command line holds one of these is counted under its name.
RAY_DAEMONS = ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env", "monitor.py")


@dataclass
class ProcessCPU:
    """What a command cost: its wall time, the machine's busy CPU-seconds meanwhile, and the
    CPU-seconds and process count of each kind of process it started."""

    wall: float
    busy: float
    kinds: dict[str, tuple[int, float]] = field(default_factory=dict)

    def total(self) -> float:
        return sum(cpu for _, cpu in self.kinds.values())


def process_kind(cmdline: list[str]) -> str:
    """``ray::TrainController`` for an actor (whatever method it runs), a daemon's name, else the
    program and its first argument (``python aux_ablation.py``)."""
    if not cmdline:
        return "?"
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split(".", 1)[0]
    line = " ".join(cmdline)
    for daemon in RAY_DAEMONS:
        if daemon in line:
            return daemon
    return " ".join(os.path.basename(part) for part in cmdline[:2])


def busy_cpu_seconds() -> float:
    """The machine's non-idle CPU-seconds since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def run_sampled(command: list[str], interval: float = 0.3, **popen) -> tuple[int, ProcessCPU]:
    """Run ``command`` to its end; its exit code and what its processes cost."""
    import psutil

    me = os.getpid()
    started, busy = time.time(), busy_cpu_seconds()
    process = subprocess.Popen(command, **popen)
    seen: dict[int, tuple[str, float]] = {}
    while process.poll() is None:
        for proc in psutil.process_iter():
            try:
                if proc.pid == me or proc.create_time() < started - 1:
                    continue
                times = proc.cpu_times()
                kind = process_kind(proc.cmdline())
            except (psutil.Error, OSError):
                continue
            previous = seen.get(proc.pid)
            # A Ray worker is first seen as ray::IDLE (or before it has named itself), then as the actor.
            if previous is not None and not kind.startswith("ray::") and previous[0] != "?":
                kind = previous[0]
            seen[proc.pid] = (kind, times.user + times.system)
        time.sleep(interval)
    kinds: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for kind, cpu in seen.values():
        kinds[kind][0] += 1
        kinds[kind][1] += cpu
    cost = ProcessCPU(
        wall=time.time() - started,
        busy=busy_cpu_seconds() - busy,
        kinds={k: (n, cpu) for k, (n, cpu) in sorted(kinds.items(), key=lambda kv: -kv[1][1])},
    )
    return process.returncode, cost


def print_cost(cost: ProcessCPU, top: int = 14) -> None:
    print(
        f"  wall {cost.wall:.1f} s; the machine was busy {cost.busy:.1f} CPU-s, {cost.total():.1f} of them "
        "in the processes below"
    )
    for kind, (n, cpu) in list(cost.kinds.items())[:top]:
        print(f"  {cpu:8.1f} CPU-s  {n:3d} process(es)  {kind}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    code, cost = run_sampled(argv[1:] if argv[:1] == ["--"] else argv)
    print_cost(cost, top=40)
    sys.exit(code)
