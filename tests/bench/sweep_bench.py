"""Sweep efficiency of a finished sweep (the demo's, by default), from its records and invocations.json,
calibrated by one of its trials run alone on the same machine:

- useful share: Σ each run's epoch time alone / (sweep wall × CPUs), the machine's time that went
  into training. A run's epoch time alone is the CPU-seconds its worker spent in its epochs in the
  sweep (the records' ``cpu_seconds``) times the wall seconds per CPU-second of the calibration run
  (the all-aux cell of the sweep's first seed, run alone by this bench with the sweep's own config).
  A worker that waits for a core beside other trials spends wall time but no CPU time, so this
  compares like with like even though this machine's speed drifts by a third within the hour: the
  calibration, minutes after the sweep, may run on a faster or slower machine than the sweep did,
  and both clocks of a run drift together. (Two single-thread torch loops side by side spent 5% more
  CPU-s on the same work than one alone, within this machine's noise: what sharing the caches costs
  is counted as useful.) Records from before ``cpu_seconds``: the sweep's epochs / the calibration
  run's slowdown (its epochs in the sweep / alone), as printed beside it either way;
- slot occupancy: Σ run wall time / (sweep wall × trials at once), how busy the sweep kept its
  trial slots (trials at once: its slots, or fewer when it has fewer trials, e.g. with
  ``--runs-per-trial``);
- per-run start-up: a run's wall time minus its epochs' (Ray Train controller, worker processes,
  model load, DeepSpeed init, checkpoints, shutdown; in a trial of several runs, the first run's
  includes the trial's start-up and each later one's is its own set-up), in the sweep and alone, and
  of it what the workers' own set-up took (the records' ``setup_seconds``: model staging, model,
  data, DeepSpeed);
- the calibration run's CPU-seconds per kind of process (tests/bench/process_cpu.py).

    python -m tests.bench.sweep_bench runs/demo/sweeps/demo
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from .process_cpu import ProcessCPU, print_cost, run_sampled

REPO = Path(__file__).resolve().parents[2]
# The costliest cell of the grid, so that the slowdown is measured where the sweep spends most.
CALIBRATION_CELL = "text+face+prosody"
USEFUL_SHARE_GOAL = 0.8


def epoch_seconds(record: dict) -> float:
    return sum(e["seconds"] for e in record["epochs"])


def epoch_cpu_seconds(record: dict) -> float | None:
    """The CPU-seconds rank 0's process spent in the run's epochs; None for records from before."""
    values = [e.get("cpu_seconds") for e in record["epochs"]]
    return sum(values) if values and None not in values else None


def first_setup(record: dict) -> dict:
    """The first start of the run's worker group (a restart adds another entry)."""
    return record["setup_seconds"][0] if record.get("setup_seconds") else {}


def calibrate(experiment: Path, workdir: Path) -> dict:
    """Run the sweep's calibration trial alone: the all-aux cell at the sweep's first seed, with the
    sweep's base config, as a one-trial sweep on a local Ray of its own. Returns the trial's name,
    its record and what its processes cost."""
    request = json.loads((experiment / "sweep.json").read_text())
    seed = request["seeds"][0]
    config = workdir / "calibration.yaml"
    config.write_text(yaml.safe_dump(request["base"]))
    command = [sys.executable, "sweeps/aux_ablation.py", "--mode", "ablation", "--config", str(config)]
    command += ["--name", "alone", "--storage-path", str(workdir), "--seeds", str(seed), "--subsets", "all"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = workdir / "alone.log"
    with open(log, "w") as out:
        code, cost = run_sampled(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    records = list((workdir / "alone" / "runs").glob("*/record.json"))
    if code != 0 or not records:
        raise RuntimeError(f"the calibration trial failed (exit code {code}): see {log}")
    record = json.loads(records[0].read_text())
    return {"name": f"{CALIBRATION_CELL}-seed{seed}", "record": record, "cost": cost}


def sweep_efficiency(experiment: Path, alone: dict | None = None, cpus: int | None = None) -> dict:
    """The figures above; ``alone`` is :func:`calibrate`'s result (without it, no useful share)."""
    # An invocation whose driver was killed has no wall time: its share of the sweep is not known.
    timings = [
        t for t in json.loads((experiment / "invocations.json").read_text()) if t["wall_seconds"] is not None
    ]
    paths = sorted((experiment / "runs").glob("*/record.json"))
    records = {p.parent.name: json.loads(p.read_text()) for p in paths}
    finished = {
        n: r for n, r in records.items() if r["status"] in ("finished", "stopped") and "wall_seconds" in r
    }
    if not finished:
        raise ValueError(f"{experiment}: no finished trial with timings")
    wall = sum(t["wall_seconds"] for t in timings)
    slots = max(t["slots"] for t in timings)
    request_file = experiment / "sweep.json"
    size = json.loads(request_file.read_text()).get("runs_per_trial", 1) if request_file.is_file() else 1
    trials = math.ceil(len(finished) / size)
    at_once = min(slots, trials)
    run_wall = np.array([r["wall_seconds"] for r in finished.values()])
    epoch_time = np.array([epoch_seconds(r) for r in finished.values()])
    overhead = run_wall - epoch_time
    setups = [first_setup(r) for r in finished.values() if r.get("setup_seconds")]
    setup = {key: float(np.mean([s.get(key, 0.0) for s in setups])) for key in (setups[0] if setups else {})}
    out = {
        "setup": setup,
        "setup_trials": len(setups),
        "runs": len(finished),
        "trials": trials,
        "runs_per_trial": size,
        "invocations": len(timings),
        "wall": wall,
        "slots": slots,
        "at_once": at_once,
        "occupancy": run_wall.sum() / (wall * at_once),
        "startup_mean": float(overhead.mean()),
        "startup_min": float(overhead.min()),
        "startup_max": float(overhead.max()),
    }
    if alone is not None:
        if alone["name"] not in finished:
            raise ValueError(f"{experiment}: its trial {alone['name']} did not finish: no calibration")
        cpus = cpus or os.cpu_count()
        alone_epochs = epoch_seconds(alone["record"])
        same_run = epoch_seconds(finished[alone["name"]]) / alone_epochs
        alone_cpu = epoch_cpu_seconds(alone["record"])
        in_sweep = [epoch_cpu_seconds(r) for r in finished.values()]
        per_cpu = alone_epochs / alone_cpu if alone_cpu and None not in in_sweep else None
        each_alone = np.array(in_sweep) * per_cpu if per_cpu else epoch_time / same_run
        out |= {
            "cpus": cpus,
            "slowdown": float(epoch_time.sum() / each_alone.sum()),
            "same_run_slowdown": same_run,
            "alone_epochs": alone_epochs,
            "alone_cpu": alone_cpu,
            "wall_per_cpu": per_cpu,
            "useful": float(each_alone.sum() / (wall * cpus)),
            "alone_startup": alone["record"]["wall_seconds"] - alone_epochs,
            "alone_setup": first_setup(alone["record"]),
        }
    return out


def print_useful_share(e: dict, name: str) -> None:
    # Three decimals: the goal is a threshold (issue 15: >= 0.8), and 0.797 is not 0.80.
    share = (
        f"  useful share    Σ epoch time alone / (wall × {e['cpus']} CPUs) : {e['useful']:6.3f} "
        f"(goal >= {USEFUL_SHARE_GOAL})"
    )
    if e["wall_per_cpu"]:
        print(
            f"  calibration: {name} alone on this machine, epochs {e['alone_epochs']:.1f} s for "
            f"{e['alone_cpu']:.1f} CPU-s of its worker ({e['wall_per_cpu']:.2f} s per CPU-s)"
        )
        print(
            f"{share}   (each run's epochs alone = its worker's CPU-s in them × {e['wall_per_cpu']:.2f}; "
            f"in the sweep they took {e['slowdown']:.2f}× that)"
        )
        print(
            f"    (by the wall clock, {name}'s epochs took {e['same_run_slowdown']:.2f}× as long in the "
            "sweep as alone: minutes apart, this machine's own drift included)"
        )
    else:
        print(
            f"  calibration: {name} alone on this machine, epochs {e['alone_epochs']:.1f} s; in the "
            f"sweep {e['slowdown']:.2f}× that"
        )
        print(f"{share}   (each run's epochs alone = its epochs in the sweep / {e['slowdown']:.2f})")
        print("    (these records predate cpu_seconds: the machine's drift between the two is in it)")


def print_setup(setup: dict, startup: float, indent: str) -> None:
    parts = ", ".join(f"{key} {seconds:.1f} s" for key, seconds in setup.items())
    print(
        f"{indent}of which the workers' set-up: {parts}; the rest {startup - sum(setup.values()):.1f} s "
        "(Ray's actors and their imports, dataset handoff, checkpoints, shutdown)"
    )


def bench_sweep(experiment: Path, alone: dict | None = None, cpus: int | None = None) -> None:
    if not (experiment / "invocations.json").is_file():
        print(f"sweep efficiency: {experiment} has no finished sweep (run `make demo` first)")
        return
    e = sweep_efficiency(experiment, alone, cpus)
    print(
        f"sweep efficiency of {experiment} ({e['runs']} runs in {e['trials']} trial(s) of up to "
        f"{e['runs_per_trial']}, {e['at_once']} at once, wall {e['wall']:.0f} s over {e['invocations']} "
        "invocation(s)):"
    )
    if alone is not None:
        print_useful_share(e, alone["name"])
    print(f"  slot occupancy  Σ run wall / (wall × trials at once)  : {e['occupancy']:6.2f}")
    print(
        f"  per-run start-up in the sweep (run wall − epochs)     : {e['startup_mean']:6.1f} s"
        f"  (min {e['startup_min']:.1f}, max {e['startup_max']:.1f})"
    )
    if e["setup"]:
        print_setup(e["setup"], e["startup_mean"], f"    (mean of {e['setup_trials']} runs) ")
    else:
        print("    (these records predate setup_seconds: no breakdown of the start-up)")
    if alone is not None:
        print(f"  per-run start-up alone (a trial of one run)           : {e['alone_startup']:6.1f} s")
        if e["alone_setup"]:
            print_setup(e["alone_setup"], e["alone_startup"], "    ")
        cost: ProcessCPU = alone["cost"]
        print("  the calibration run's processes (a one-trial sweep: its driver and local Ray included):")
        print_cost(cost)


def main(experiment: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="omnimer-calibration-") as workdir:
        alone = calibrate(experiment, Path(workdir)) if (experiment / "sweep.json").is_file() else None
        bench_sweep(experiment, alone)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/sweeps/demo"))
