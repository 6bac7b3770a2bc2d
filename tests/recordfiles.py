"""Run records for tests, in the format ``omnimer.training.driver.run_training`` writes (schema
version 1, config from ``omnimer.config.TrainConfig``, the ``sweep`` block of a sweep trial), with the
metrics the caller plants."""

from __future__ import annotations

import json
from pathlib import Path

from omnimer.config import TrainConfig
from omnimer.subsets import TASKS, subset_name

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
