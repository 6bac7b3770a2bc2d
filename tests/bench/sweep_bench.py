"""Sweep efficiency of a finished sweep (the demo's, by default), from its records and invocations.json:

- slot occupancy: Σ trial wall time / (sweep wall × slots), how busy the sweep kept its trial slots;
- useful-work share: Σ epoch time (train + eval) / (sweep wall × slots);
- per-trial start-up overhead: a trial's wall time minus its epochs' (Ray Train controller, worker
  processes, model load, DeepSpeed init, checkpoints, shutdown), and of it what the workers' own
  set-up took (the records' ``setup_seconds``: model staging, model load, data, DeepSpeed).

    python -m tests.bench.sweep_bench runs/demo/sweeps/demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def sweep_efficiency(experiment: Path) -> dict:
    # An invocation whose driver was killed has no wall time: its share of the sweep is not known.
    timings = [
        t for t in json.loads((experiment / "invocations.json").read_text()) if t["wall_seconds"] is not None
    ]
    records = [json.loads(p.read_text()) for p in sorted((experiment / "runs").glob("*/record.json"))]
    finished = [r for r in records if r["status"] in ("finished", "stopped") and "wall_seconds" in r]
    if not finished:
        raise ValueError(f"{experiment}: no finished trial with timings")
    wall = sum(t["wall_seconds"] for t in timings)
    slots = max(t["slots"] for t in timings)
    trial_wall = np.array([r["wall_seconds"] for r in finished])
    epoch_time = np.array([sum(e["seconds"] for e in r["epochs"]) for r in finished])
    overhead = trial_wall - epoch_time
    # The first start of each trial's worker group (a restart adds another entry).
    setups = [r["setup_seconds"][0] for r in finished if r.get("setup_seconds")]
    setup = {key: float(np.mean([s.get(key, 0.0) for s in setups])) for key in (setups[0] if setups else {})}
    return {
        "setup": setup,
        "setup_trials": len(setups),
        "trials": len(finished),
        "invocations": len(timings),
        "wall": wall,
        "slots": slots,
        "occupancy": trial_wall.sum() / (wall * slots),
        "useful": epoch_time.sum() / (wall * slots),
        "startup_mean": float(overhead.mean()),
        "startup_min": float(overhead.min()),
        "startup_max": float(overhead.max()),
    }


def bench_sweep(experiment: Path) -> None:
    if not (experiment / "invocations.json").is_file():
        print(f"sweep efficiency: {experiment} has no finished sweep (run `make demo` first)")
        return
    e = sweep_efficiency(experiment)
    print(
        f"sweep efficiency of {experiment} ({e['trials']} trials, {e['slots']} slots, wall {e['wall']:.0f} s"
        f" over {e['invocations']} invocation(s)):"
    )
    print(f"  slot occupancy  Σ trial wall / (wall × slots)      : {e['occupancy']:6.2f}")
    print(f"  useful work     Σ epoch time / (wall × slots)      : {e['useful']:6.2f}")
    print(
        f"  per-trial start-up overhead (trial wall − epochs)  : {e['startup_mean']:6.1f} s"
        f"  (min {e['startup_min']:.1f}, max {e['startup_max']:.1f})"
    )
    if e["setup"]:
        parts = ", ".join(f"{key} {seconds:.1f} s" for key, seconds in e["setup"].items())
        rest = e["startup_mean"] - sum(e["setup"].values())
        print(
            f"    of which the workers' set-up (mean of {e['setup_trials']} trials): {parts}; the rest "
            f"{rest:.1f} s (Ray's actors and their imports, checkpoints, shutdown)"
        )
    else:
        print("    (these records predate setup_seconds: no breakdown of the start-up)")


if __name__ == "__main__":
    bench_sweep(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/sweeps/demo"))
