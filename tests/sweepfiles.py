"""What the sweep tests share: the demo config's values (tests/test_sweeps.py,
tests/test_sweep_results.py), the arguments of the smoke sweeps and the Tune trial dirs a sweep leaves
(the sweep end-to-end tests, tests/test_sweeps_e2e.py and tests/test_sweeps_cluster_e2e.py)."""

from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "demo.yaml"


def base_values(**loss) -> dict:
    """The demo config as a sweep's base values, with ``loss`` weights replaced."""
    from omnimer.config import load_train_config

    values = load_train_config(str(DEMO)).to_dict()
    values["loss"].update(loss)
    return values


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
