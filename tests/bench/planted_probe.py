"""Is the label in the pixels? A linear probe on a planted-effect corpus' shards.

    .venv/bin/python -m tests.bench.planted_probe runs/planted/shards

``make bench-planted`` runs it before the ablation: a logistic regression (balanced classes,
scikit-learn's default C) on each clip's mean frame, trained on the train split and scored on the
test split, next to the majority class. If the probe finds the label and the ablation's trials do
not, the limit is the model, not the corpus (``omnimer synth --label-in video``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def mean_frames(shards: Path, split: str) -> tuple[np.ndarray, list[str]]:
    """Each clip's frames averaged over time and flattened, in [0, 1]; and its emotion."""
    from omnimer.collate import rows_from_table
    from omnimer.data.shards import open_split

    rows = rows_from_table(open_split(shards, split).to_table())
    pixels = np.stack([r["frames"].astype(np.float32).mean(axis=0).ravel() / 255 for r in rows])
    return pixels, [r["emotion"] for r in rows]


def probe(shards: Path) -> dict[str, float]:
    """Test macro-F1 and accuracy of the pixel probe, and the majority class's macro-F1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from omnimer.data.shards import read_dataset_info
    from omnimer.labels import label_set_of
    from omnimer.metrics import classification_metrics

    labels = label_set_of(read_dataset_info(shards), "emotion").names
    x_train, y_train = mean_frames(shards, "train")
    x_test, y_test = mean_frames(shards, "test")
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(max_iter=3000, class_weight="balanced").fit(scaler.transform(x_train), y_train)
    found = classification_metrics(y_test, list(model.predict(scaler.transform(x_test))), labels)
    majority = max(set(y_test), key=y_test.count)
    return {
        "macro_f1": found["macro_f1"],
        "accuracy": found["accuracy"],
        "majority_macro_f1": classification_metrics(y_test, [majority] * len(y_test), labels)["macro_f1"],
        "train": len(y_train),
        "test": len(y_test),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.planted_probe")
    parser.add_argument("shards", type=Path, help="an ingested dataset (dataset.json + shards)")
    result = probe(parser.parse_args(argv).shards)
    print(
        f"linear probe on the mean frame ({result['train']} train clips): test macro-F1 "
        f"{result['macro_f1']:.3f}, accuracy {result['accuracy']:.3f}; majority class "
        f"{result['majority_macro_f1']:.3f} ({result['test']} test clips)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
