"""The dataset a run's workers read: one Ray Dataset of every split's shards, the columns training
needs, and each worker's rows of it.

The driver (:func:`omnimer.training.driver.build_trainer`) and a sweep (:class:`SharedShards`) build
the Dataset; every Ray Train worker
(:mod:`omnimer.training.worker`) takes its rows with :func:`worker_rows`.
"""

from __future__ import annotations

from pathlib import Path

from omnimer.aux_tasks import TARGET_COLUMNS

DATASET = "shards"  # the name of the one Ray Dataset a run's workers read (all splits)
# Columns the training loop reads (the shards also hold provenance and raw prosody).
TRAIN_COLUMNS = [
    "clip_id",
    "video_id",  # the evaluation's per-clip predictions name the clip's video and speaker
    "speaker_id",
    "emotion",
    "sentiment",
    "text",
    "frames",
    "frame_fps",
    "audio",
    *TARGET_COLUMNS,
]
SPLITS = ("train", "valid", "test")


def load_shards(path: Path | str):
    """The shards under ``path`` (all splits) as one Ray Dataset of :data:`TRAIN_COLUMNS`."""
    from omnimer.data.shards import load_dataset

    return load_dataset(Path(path), columns=TRAIN_COLUMNS)


class SharedShards:
    """A sweep's shards read into Ray's object store once, when first needed, then handed to every
    Train run of the command: the probe of ``--runs-per-trial auto`` (:mod:`omnimer.sweep.probe`) and
    every trial (:func:`omnimer.sweep.tuner.make_trainable`), whose workers stream them from there
    instead of re-reading (and re-listing) the files."""

    def __init__(self, path: Path | str):
        self.path = path
        self._dataset = None

    def dataset(self):
        if self._dataset is None:
            self._dataset = load_shards(self.path).materialize()
        return self._dataset


def worker_rows(rank: int, world_size: int) -> dict[str, list[dict]]:
    """This worker's rows of each split, in a deterministic order (sorted by clip_id, then strided).

    Every worker receives the whole (unsplit) dataset and takes ``rows[rank::world_size]``, so a
    rerun or a restarted worker group sees exactly the same rows in the same order. The split of a
    row is the folder of its shard file (one Ray Data execution for all splits: each execution costs
    seconds of start-up).
    """
    import ray.train

    from omnimer.collate import rows_from_numpy  # torch and transformers: the workers', not the driver's

    shard = ray.train.get_dataset_shard(DATASET)
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for batch in shard.iter_batches(batch_size=64, batch_format="numpy"):
        splits = [Path(str(p)).parent.name for p in batch.pop("path")]
        for split, row in zip(splits, rows_from_numpy(batch), strict=True):
            rows[split].append(row)
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: str(r["clip_id"]))
        rows[split] = split_rows[rank::world_size]
    return rows
