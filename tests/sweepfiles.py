"""The arguments of the smoke sweeps and the Tune trial dirs a sweep leaves, for the sweep end-to-end
tests (tests/test_sweeps_e2e.py, tests/test_sweeps_cluster_e2e.py)."""

from __future__ import annotations

from pathlib import Path


def trial_dirs(experiment: Path) -> list[str]:
    return sorted(p.name for p in experiment.glob("train_driver_*"))


def smoke_ablation(name: str, storage_path: str, *extra: str) -> list[str]:
    """The arguments of a smoke ablation sweep over seed 0."""
    return [
        "--mode",
        "ablation",
        "--smoke-test",
        "--seeds",
        "0",
        "--name",
        name,
        "--storage-path",
        storage_path,
        *extra,
    ]
