"""The sharded dataset: its layout, its row schema, and reading it back (``dataset.json``, splits as
pyarrow or Ray Datasets, a human summary).

    omnimer inspect DIR

Layout (DESIGN §3), written by :mod:`omnimer.data.ingest`::

    <out>/<split>/part-00000.parquet ...   zstd Parquet, one row per clip, frames as a fixed-shape tensor
    <out>/dataset.json                     written last: the commit marker
    <out>/quarantine.csv                   rows left out (only with --quarantine)

Read by the training run (:mod:`omnimer.training`), the benches and ``omnimer inspect``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from omnimer.data.formats import SHARD_STRING_COLUMNS, SPLITS
from omnimer.data.prosody import PROSODY_FIELDS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DATASET_JSON = "dataset.json"
QUARANTINE_CSV = "quarantine.csv"
STRING_COLUMNS = SHARD_STRING_COLUMNS
PROSODY_TYPE = pa.struct([(name, pa.float32()) for name in PROSODY_FIELDS])


def shard_schema(frames: int, size: int) -> pa.Schema:
    """Arrow schema of a shard row (DESIGN §3 plus frame_fps, the sampling rate of ``frames``)."""
    return pa.schema(
        [(c, pa.string()) for c in STRING_COLUMNS]
        + [
            ("source_sha256", pa.string()),
            ("frames", pa.fixed_shape_tensor(pa.uint8(), (frames, size, size, 3))),
            ("frame_fps", pa.float32()),
            ("audio", pa.list_(pa.float32())),
            ("prosody", PROSODY_TYPE),
        ]
    )


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ reading


def read_dataset_info(path: Path) -> dict:
    """``dataset.json`` of a finished dataset; refuses a directory without one (an unfinished ingest)."""
    path = Path(path)
    marker = path / DATASET_JSON
    if not marker.is_file():
        raise FileNotFoundError(
            f"{path} is not a finished dataset: {DATASET_JSON} is missing (run `omnimer ingest`)"
        )
    info = json.loads(marker.read_text(encoding="utf-8"))
    if info.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{marker}: schema_version {info.get('schema_version')!r} is not supported "
            f"(expected {SCHEMA_VERSION}); re-ingest"
        )
    return info


def split_files(path: Path, split: str) -> list[str]:
    """Shard paths of one split, in order, as listed in ``dataset.json``."""
    info = read_dataset_info(path)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [str(Path(path) / s["path"]) for s in info["shards"] if s["split"] == split]


def open_split(path: Path, split: str) -> pds.Dataset:
    """A split as a plain ``pyarrow.dataset`` (no Ray needed)."""
    files = split_files(path, split)
    if not files:
        raise ValueError(f"split {split!r} of {path} has no rows")
    return pds.dataset(files, format="parquet")


def load_split(path: Path, split: str, columns: list[str] | None = None):
    """A split as a Ray Dataset (for ``ray.train``'s ``datasets=``)."""
    import ray

    files = split_files(path, split)
    if not files:
        raise ValueError(f"split {split!r} of {path} has no rows")
    return ray.data.read_parquet(files, columns=columns)


def load_dataset(path: Path, columns: list[str] | None = None):
    """Every split's shards as one Ray Dataset, each row with the ``path`` of its shard file (whose
    folder names the split): one streaming execution instead of one per split."""
    import ray

    info = read_dataset_info(path)
    files = [str(Path(path) / s["path"]) for s in info["shards"] if s["rows"]]
    if not files:
        raise ValueError(f"{path} has no rows")
    return ray.data.read_parquet(files, columns=columns, include_paths=True)


def load_splits(path: Path, columns: list[str] | None = None) -> dict:
    """Every non-empty split as a Ray Dataset, keyed by split name."""
    info = read_dataset_info(path)
    present = [s for s in SPLITS if info["counts"]["rows"].get(s)]
    return {s: load_split(path, s, columns) for s in present}


def inspect_dataset(path: Path) -> str:
    """Human summary: counts per split x class, tensor shapes, and one decoded sample."""
    path = Path(path)
    info = read_dataset_info(path)
    lines = [
        f"dataset {path}",
        f"  format {info['format']}  schema v{info['schema_version']}  language {info['language']}  "
        f"created {info['created']}",
        "  rows: "
        + ", ".join(f"{s} {n}" for s, n in info["counts"]["rows"].items())
        + f"  (total {sum(info['counts']['rows'].values())}; quarantined {len(info['quarantined'])})",
    ]
    for task in ("emotion", "sentiment"):
        label_set = info["label_sets"][task]
        if not label_set:
            continue
        counts = info["counts"][task]
        lines.append(f"  {task} ({label_set['key']}):")
        header = f"    {'label':<14}" + "".join(f"{s:>8}" for s in SPLITS) + f"{'total':>8}"
        lines.append(header)
        for name, display in zip(label_set["names"], label_set["display"], strict=True):
            per = [counts[s].get(name, 0) for s in SPLITS]
            lines.append(f"    {name:<14}" + "".join(f"{n:>8}" for n in per) + f"{sum(per):>8}  {display}")
    first = next((s for s in info["shards"] if s["rows"]), None)
    fr = info["frames"]
    lines.append(
        f"  frames: uint8 [{fr['count']}, {fr['height']}, {fr['width']}, {fr['channels']}]  audio: float32 "
        f"{info['audio']['sample_rate']} Hz mono, <= {info['audio']['max_seconds']} s"
    )
    lines.append(f"  shards: {len(info['shards'])}, {sum(s['bytes'] for s in info['shards']) / 1e6:.1f} MB")
    if first is not None:
        row = pq.ParquetFile(path / first["path"]).read_row_group(0).slice(0, 1)
        frames = row.column("frames").combine_chunks().to_numpy_ndarray()[0]
        audio = np.asarray(row.column("audio")[0].as_py(), dtype=np.float32)
        sample = row.to_pylist()[0]
        prosody = ", ".join(f"{k} {v:.2f}" for k, v in sample["prosody"].items())
        lines += [
            f"  sample {first['path']} row 0: clip {sample['clip_id']} (video {sample['video_id']}, "
            f"speaker {sample['speaker_id']}, split {sample['split']})",
            f"    text: {sample['text'][:100]}",
            f"    emotion {sample['emotion']}  sentiment {sample['sentiment']}  text/audio/video sentiment "
            f"{sample['text_sentiment']}/{sample['audio_sentiment']}/{sample['video_sentiment']}",
            f"    frames {list(frames.shape)} {frames.dtype} mean {frames.mean():.1f} "
            f"at {sample['frame_fps']:.2f} fps; "
            f"audio {audio.size} samples ({audio.size / info['audio']['sample_rate']:.2f} s, "
            f"rms {math.sqrt(float((audio**2).mean())) if audio.size else 0.0:.3f})",
            f"    prosody: {prosody}",
            f"    aux_keywords: {sample['aux_keywords']}",
            f"    aux_face: {sample['aux_face']}",
            f"    aux_prosody: {sample['aux_prosody']}",
        ]
    for note in info.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
