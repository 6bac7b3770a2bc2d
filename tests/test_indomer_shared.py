"""The real IndoMER annotations (../shared/datasets/indomer) with synthetic media, end to end.

``omnimer synth --from-annotations`` + ``omnimer ingest`` must reproduce IndoMER's published numbers
exactly: 1,588 clips in train + valid, 356 in test, the per-class counts of both label sets, and no
source video shared between splits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from conftest import SHARED

from omnimer.data.shards import open_split, read_dataset_info

INDOMER = SHARED / "datasets" / "indomer"
pytestmark = [
    pytest.mark.shared,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (INDOMER / "Annotations.csv").is_file(),
        reason=f"the published IndoMER annotations are not at {INDOMER}",
    ),
]


def published(kind: str, split: str) -> Counter:
    folder, name = {"7": ("7_Class", "7_class_{}.json"), "3": ("3_Class", "3_class_{}.json")}[kind]
    return Counter(
        r["label"] for r in json.loads((INDOMER / folder / name.format(split)).read_text(encoding="utf-8"))
    )


def test_reproduces_published_indomer_numbers(tmp_path, cli_env):
    corpus, out = tmp_path / "corpus", tmp_path / "shards"
    cmd = [sys.executable, "-m", "omnimer.cli"]
    synth = subprocess.run(
        cmd
        + [
            "synth",
            "--out",
            str(corpus),
            "--from-annotations",
            str(INDOMER),
            "--seconds",
            "1",
            "--size",
            "64",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert synth.returncode == 0, synth.stderr[-3000:]
    ingest = subprocess.run(
        cmd
        + [
            "ingest",
            "--format",
            "indomer",
            "--input",
            str(corpus),
            "--out",
            str(out),
            "--frames",
            "2",
            "--size",
            "28",
            "--max-audio-seconds",
            "1",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]

    info = read_dataset_info(out)
    rows = info["counts"]["rows"]
    assert rows["train"] + rows["valid"] == 1588 and rows["test"] == 356 and not info["quarantined"]
    for task, kind in (("emotion", "7"), ("sentiment", "3")):
        counts = info["counts"][task]
        train_valid = Counter(counts["train"]) + Counter(counts["valid"])
        assert train_valid == published(kind, "train")
        assert Counter(counts["test"]) == published(kind, "val")
    assert sum(info["counts"]["emotion"]["test"].values()) == 356

    videos = {
        s: set(open_split(out, s).to_table(columns=["video_id"]).column("video_id").to_pylist())
        for s in ("train", "valid", "test")
    }
    assert not videos["train"] & videos["valid"]
    assert not videos["train"] & videos["test"]
    assert not videos["valid"] & videos["test"]
    # valid is ~10% of published train, by whole videos
    assert 0.07 < rows["valid"] / 1588 < 0.13
