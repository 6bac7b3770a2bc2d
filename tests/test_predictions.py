"""Per-clip predictions (omnimer.training.predictions): gathered from workers in one order, written as
the Parquet table the analysis reads, and the metrics they give are the run's."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from omnimer.labels import INDOMER_SENTIMENT
from omnimer.metrics import classification_metrics
from omnimer.training.predictions import Predictions, parquet_bytes, sha256


def worker(ids: list[str], gold: list[int], predicted: list[int]) -> Predictions:
    scores = tuple(tuple(0.0 if c == p else -1.0 - c for c in range(3)) for p in predicted)
    return Predictions(
        clip_id=tuple(ids),
        video_id=tuple(i.split("_")[1] for i in ids),
        speaker_id=tuple(f"s{i.split('_')[1]}" for i in ids),
        gold=tuple(gold),
        predicted=tuple(predicted),
        scores=scores,
    )


def test_the_workers_predictions_merge_in_clip_order_whatever_the_ranks():
    rank0 = worker(["clip_3_a_1", "clip_1_a_1"], [0, 2], [0, 1])
    rank1 = worker(["clip_2_a_1"], [1], [1])
    merged = Predictions.merge([rank0, rank1])
    assert merged == Predictions.merge([rank1, rank0])
    assert merged.clip_id == ("clip_1_a_1", "clip_2_a_1", "clip_3_a_1")
    assert (merged.gold, merged.predicted, merged.video_id) == ((2, 1, 0), (1, 1, 0), ("1", "2", "3"))
    assert len(Predictions.merge([Predictions(), Predictions()])) == 0
    assert Predictions().metrics(INDOMER_SENTIMENT) is None
    expected = classification_metrics([2, 1, 0], [1, 1, 0], INDOMER_SENTIMENT.names)
    assert merged.metrics(INDOMER_SENTIMENT) == expected


def test_the_table_names_labels_and_holds_every_score():
    merged = Predictions.merge([worker(["clip_1_a_1", "clip_2_a_1"], [0, 2], [0, 1])])
    data = parquet_bytes(merged.table(INDOMER_SENTIMENT, epoch=3))
    assert sha256(data) == sha256(parquet_bytes(merged.table(INDOMER_SENTIMENT, epoch=3)))  # deterministic
    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    assert rows[1] == {
        "clip_id": "clip_2_a_1",
        "video_id": "2",
        "speaker_id": "s2",
        "gold": "positif",
        "predicted": "netral",
        "epoch": 3,
        "score_negatif": pytest.approx(-1.0),
        "score_netral": 0.0,
        "score_positif": pytest.approx(-3.0),
    }
