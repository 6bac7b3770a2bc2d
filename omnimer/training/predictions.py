"""Per-clip predictions of a run: for the selected epoch, ``predictions/valid.parquet`` and
``predictions/test.parquet`` in the run dir, so that the analysis compares cells clip by clip.

Columns: ``clip_id``, ``video_id``, ``speaker_id``, ``gold`` and ``predicted`` (label names), ``epoch``,
and ``score_<label>`` per label (the closed-set score: a log-probability). Rows are sorted by clip id.

Made by the evaluation (:meth:`omnimer.training.evaluate.Evaluator.score`) on every worker and
gathered; rank 0 writes them (:class:`omnimer.training.outputs.RankZeroOutputs`) whenever an epoch
becomes the best, and the run's record names them with their hashes (:mod:`omnimer.training.record`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq

from omnimer import metrics
from omnimer.labels import LabelSet

PREDICTIONS_DIR = "predictions"


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The closed-set predictions of one split: per clip its ids, gold and predicted class indices and
    the score of every label."""

    clip_id: tuple[str, ...] = ()
    video_id: tuple[str, ...] = ()
    speaker_id: tuple[str, ...] = ()
    gold: tuple[int, ...] = ()
    predicted: tuple[int, ...] = ()
    scores: tuple[tuple[float, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.clip_id)

    @classmethod
    def merge(cls, parts: list[Predictions]) -> Predictions:
        """Every worker's predictions as one, sorted by clip id (the same order however many workers)."""
        rows = sorted(
            (row for part in parts for row in zip(*dataclasses.astuple(part), strict=True)),
            key=lambda row: row[0],
        )
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(dataclasses.fields(cls))
        return cls(*(tuple(column) for column in columns))

    def metrics(self, labels: LabelSet) -> dict | None:
        """The split's classification metrics (None without a clip)."""
        if not len(self):
            return None
        return metrics.classification_metrics(list(self.gold), list(self.predicted), labels.names)

    def table(self, labels: LabelSet, epoch: int) -> pa.Table:
        """The predictions as the Parquet table the run writes."""
        columns = {
            "clip_id": pa.array(self.clip_id, pa.string()),
            "video_id": pa.array(self.video_id, pa.string()),
            "speaker_id": pa.array(self.speaker_id, pa.string()),
            "gold": pa.array([labels.names[i] for i in self.gold], pa.string()),
            "predicted": pa.array([labels.names[i] for i in self.predicted], pa.string()),
            "epoch": pa.array([epoch] * len(self), pa.int32()),
        }
        for index, name in enumerate(labels.names):
            columns[f"score_{name}"] = pa.array([row[index] for row in self.scores], pa.float32())
        return pa.table(columns)


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as Parquet bytes (zstd): written whole, and hashed as written."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
