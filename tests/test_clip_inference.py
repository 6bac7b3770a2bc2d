"""The analysis reads the runs' per-clip predictions into the ablation table's clip-level columns
(interval vs no-aux over the test set's videos and the seeds, Holm p, resolved, MDE), the majority
baseline row and the words under the table; it refuses predictions whose hash is not the record's.

    .venv/bin/python -m pytest tests/test_clip_inference.py -q
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from recordfiles import make_record, write_record
from simulated_ablation import Population, draw

from analysis.records import AnalysisError
from analysis.report import ablation_summary, analyse
from omnimer.labels import INDOMER_EMOTION
from omnimer.subsets import LATTICE, subset_name
from omnimer.training.predictions import Predictions, parquet_bytes

SEEDS = (0, 1, 2)


def write_ablation_with_predictions(exp, effects, collapsed=()) -> None:
    """Eight cells × three seeds of records, each with the test predictions of a simulated lattice;
    the ``collapsed`` cells predict the majority class (netral) for every clip."""
    gold, video, predicted = draw(Population(effects=effects, seeds=len(SEEDS)), np.random.default_rng(5))
    predicted[list(collapsed)] = 0
    clip_ids = [f"clip_{v}_Sharing_{i}" for i, v in enumerate(video)]
    for cell, subset in enumerate(LATTICE):
        for index, seed in enumerate(SEEDS):
            predictions = Predictions(
                clip_id=tuple(clip_ids),
                video_id=tuple(str(v) for v in video),
                speaker_id=tuple(str(v) for v in video),
                gold=tuple(int(g) for g in gold),
                predicted=tuple(int(p) for p in predicted[cell, index]),
                scores=tuple(
                    tuple(0.0 if c == p else -1.0 for c in range(7)) for p in predicted[cell, index]
                ),
            )
            record = make_record(subset, seed, 0.3)
            metrics = predictions.metrics(INDOMER_EMOTION)
            record["test"] = {**record["test"], "macro_f1": metrics["macro_f1"]}
            data = parquet_bytes(predictions.table(INDOMER_EMOTION, epoch=3))
            name = f"{subset_name(subset)}-seed{seed}"
            path = write_record(exp, name, record).parent / "predictions" / "test.parquet"
            path.parent.mkdir()
            path.write_bytes(data)
            entry = {"path": "predictions/test.parquet", "sha256": hashlib.sha256(data).hexdigest()}
            record["predictions"] = {"test": {**entry, "epoch": 3, "clips": len(clip_ids)}}
            write_record(exp, name, record)


def test_the_table_shows_the_clip_level_columns_and_the_majority_row(tmp_path):
    exp = tmp_path / "abl"
    write_ablation_with_predictions(exp, effects=(0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0))
    experiment = analyse([exp], n_boot=300)
    clips = experiment.clips
    assert not isinstance(clips, str), clips
    assert (clips.clips, len(clips.seeds)) == (356, 3) and clips.majority_label == "netral"
    face = clips.vs_none(LATTICE[2])
    assert face.estimate > 0.05 and face.low < face.estimate < face.high
    text = ablation_summary([exp])
    assert "| 95% interval vs none | Holm p | resolved | MDE |" in text
    assert "| majority class (netral) |" in text
    assert "Shapley values at the clip level" in text and "Differences below " in text
    assert "not resolvable here" in text and ("seeds on this test set" in text or "larger test set" in text)
    csv = experiment.ablation
    assert {"vs_none_low", "vs_none_high", "holm_p", "resolved", "mde"} <= set(csv.columns)


def test_predictions_changed_after_the_run_are_refused(tmp_path):
    exp = tmp_path / "abl"
    write_ablation_with_predictions(exp, effects=(0.0,) * 8)
    target = exp / "runs" / "face-seed1" / "predictions" / "test.parquet"
    target.write_bytes(target.read_bytes() + b"\0")
    with pytest.raises(
        AnalysisError, match=r"face-seed1/predictions/test.parquet: its sha256 is not the one"
    ):
        analyse([exp], n_boot=50)


def test_records_without_predictions_say_why_there_is_no_clip_level_inference(tmp_path):
    exp = tmp_path / "abl"
    for subset in LATTICE:
        for seed in SEEDS:
            write_record(exp, f"{subset_name(subset)}-seed{seed}", make_record(subset, seed, 0.3))
    text = ablation_summary([exp])
    assert "Clip-level inference (intervals over the test set and the seeds) unavailable:" in text
    assert "names no test predictions (a run of an earlier version" in text


def test_the_report_says_in_words_what_the_table_can_conclude(tmp_path):
    from analysis.report import write_report

    exp = tmp_path / "abl"
    write_ablation_with_predictions(exp, effects=(0.0,) * 8)
    text = write_report(analyse([exp], n_boot=200), tmp_path / "report").read_text()
    section = text.split("## What this table can and cannot conclude", 1)[1].split("\n## ", 1)[0]
    assert "Differences below " in section and "not resolvable here" in section
    assert "the table's differences may be noise" in section  # nothing planted, nothing resolved


def test_cells_that_predict_alike_everywhere_get_no_mde(tmp_path):
    """No-aux and text both collapsed to the majority class (what the planted-effect bench saw): their
    difference has a zero-width interval, which is no evidence of precision: no MDE, and the median
    MDE in words leaves it out."""
    exp = tmp_path / "abl"
    write_ablation_with_predictions(exp, effects=(0.0,) * 8, collapsed=(0, 1))
    clips = analyse([exp], n_boot=300).clips
    text = clips.vs_none(LATTICE[1])
    assert text.degenerate and (text.low, text.high) == (0.0, 0.0) and np.isnan(text.mde)
    assert not text.resolved and np.isfinite(clips.mde)
    summary = ablation_summary([exp])
    row = next(line for line in summary.splitlines() if line.startswith("| ✓ | ✗ | ✗ |"))
    assert row.endswith("| [+0.000, +0.000] | 1.000 | no | — |")
    assert "1 subset(s) predicted exactly as no-aux did on every clip in every seed" in summary
