"""Run records for tests, in the format ``omnimer.training.driver.run_training`` writes (schema
version 1, config from ``omnimer.config.TrainConfig``, the ``sweep`` block of a sweep trial), with the
metrics the caller plants; and a check of the report's figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

from omnimer.config import TrainConfig
from omnimer.subsets import LATTICE, TASKS, subset_name

LABELS = ["netral", "senang_sekali", "sedih"]  # an underscore, to check LaTeX escaping
PER_CLASS_OFFSETS = [0.12, -0.04, -0.08]  # sum to 0: the per-class mean is the macro-F1


def metrics_block(macro_f1: float) -> dict:
    per_class = {label: macro_f1 + off for label, off in zip(LABELS, PER_CLASS_OFFSETS, strict=True)}
    return {
        "n": 40,
        "accuracy": macro_f1 + 0.10,
        "macro_f1": macro_f1,
        "weighted_f1": macro_f1 + 0.05,
        "macro_precision": macro_f1,
        "macro_recall": macro_f1,
        "per_class_f1": per_class,
        "per_class_precision": per_class,
        "per_class_recall": per_class,
        "per_class_support": {"netral": 20, "senang_sekali": 12, "sedih": 8},
        "confusion_matrix": [[15, 3, 2], [4, 6, 2], [2, 2, 4]],
        "labels": LABELS,
    }


def make_record(
    subset,
    seed: int,
    test_f1: float,
    status: str = "finished",
    mode: str = "ablation",
    target: str = "emotion",
    loss: dict | None = None,
    overrides: dict | None = None,
) -> dict:
    config = TrainConfig().to_dict()
    for task, on in zip(TASKS, subset, strict=True):
        config["loss"][f"aux_weight_{task}"] = 0.3 if on else 0.0
    config["loss"].update(loss or {})
    config["data"]["target"] = target
    config["train"]["seed"] = seed
    for dotted, value in (overrides or {}).items():
        section, *middle, leaf = dotted.split(".")
        node = config[section]
        for part in middle:
            node = node[part]
        node[leaf] = value
    record = {
        "schema_version": 1,
        "kind": "train",
        "status": status,
        "started": "2026-11-25T20:07:47+00:00",
        "config": config,
        "dataset": {"path": "/data/shards", "label_set": f"indomer-{target}", "counts": {"test": 40}},
        "git": {"sha": "be8cd316fa3d8286e41de15d5c49e0b86143574e", "dirty": False},
        "packages": {"optuna": "5.0.0"},
        "wall_seconds": 80.0,
        "sweep": {
            "experiment": "exp",
            "mode": mode,
            "trial_id": f"{subset_name(subset)}-{seed}",
            "seed": seed,
            # As the sweep writes it: λ > 0 (in a search too, where the λ are searched).
            "subset": {task: config["loss"][f"aux_weight_{task}"] > 0 for task in TASKS},
        },
    }
    if status == "failed":
        record["error"] = "RuntimeError: worker died"
        return record
    valid_f1 = test_f1 + 0.01
    curve = [valid_f1 - 0.1, valid_f1 - 0.03, valid_f1]
    record["epochs"] = [
        {
            "epoch": i + 1,
            "train_loss": {"main": 1.0},
            "valid": metrics_block(v),
            "test": metrics_block(test_f1),
        }
        for i, v in enumerate(curve)
    ]
    record.update(
        best_epoch=3, valid=metrics_block(valid_f1), test=metrics_block(test_f1), device_seconds=100.0
    )
    return record


def write_record(exp_dir: Path, run_name: str, record: dict) -> Path:
    path = exp_dir / "runs" / run_name / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    # A Ray checkpoint beside it may hold a stale copy; the loader must skip it.
    (path.parent / "checkpoint_000001").mkdir(exist_ok=True)
    (path.parent / "checkpoint_000001" / "record.json").write_text(json.dumps(record), encoding="utf-8")
    return path


SEARCH_SPACE = [
    # (rank, alpha, lr, scheme, gamma) per trial; valid macro-F1 rises with rank and focal loss.
    (4, 8.0, 1e-4, "none", None),
    (8, 16.0, 3e-4, "focal", 1.5),
    (16, 32.0, 2e-4, "focal", 2.5),
    (32, 32.0, 5e-4, "none", None),
    (64, 64.0, 1e-3, "inverse_freq", None),
    (8, 8.0, 2e-3, "focal", 1.0),
]


def search_score(rank: int, scheme: str) -> float:
    return 0.30 + 0.02 * math.log2(rank) + (0.05 if scheme == "focal" else 0.0)


def write_search_experiment(exp: Path) -> Path:
    """Search records plus the Optuna study in ``<exp>/optuna.db``, as the sweep writes them: valid
    macro-F1 rises with the LoRA rank and with focal loss (:func:`search_score`); one trial failed
    and one was stopped before it had metrics."""
    import optuna

    exp.mkdir(parents=True)
    study = optuna.create_study(
        study_name="search", storage=f"sqlite:///{exp / 'optuna.db'}", direction="maximize"
    )
    for number, (rank, alpha, lr, scheme, gamma) in enumerate(SEARCH_SPACE):
        params = {"model.lora.rank": rank, "model.lora.alpha": alpha, "train.lr": lr, "loss.scheme": scheme}
        distributions = {
            "model.lora.rank": optuna.distributions.IntDistribution(4, 64, log=True),
            "model.lora.alpha": optuna.distributions.FloatDistribution(4, 128, log=True),
            "train.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
            "loss.scheme": optuna.distributions.CategoricalDistribution(["none", "focal", "inverse_freq"]),
        }
        if gamma is not None:
            params["loss.gamma"] = gamma
            distributions["loss.gamma"] = optuna.distributions.FloatDistribution(0.5, 5.0)
        score = search_score(rank, scheme)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=score))
        loss = {"scheme": scheme, "aux_weight_text": 0.1 * number, "gamma": gamma or 2.0}
        overrides = {"model.lora.rank": rank, "model.lora.alpha": alpha, "train.lr": lr}
        record = make_record(LATTICE[-1], 0, score - 0.01, mode="search", loss=loss, overrides=overrides)
        record["valid"]["macro_f1"] = score
        status = "stopped" if number == 0 else "finished"
        record["status"] = status
        write_record(exp, f"trial_{number}", record)
    write_record(exp, "trial_failed", make_record(LATTICE[-1], 0, 0.0, status="failed", mode="search"))
    # Stopped by ASHA before its first checkpoint: a record without metrics.
    early = make_record(LATTICE[-1], 0, 0.0, status="failed", mode="search")
    early.update(status="stopped", error=None)
    write_record(exp, "trial_early", early)
    return exp


def assert_png(path: Path) -> None:
    """``path`` is a PNG with a real picture in it (not an empty canvas)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 5000, (path, len(data))
