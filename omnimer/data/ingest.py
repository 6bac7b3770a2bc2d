"""Ingest: a validated manifest → decoded media on Ray Data → sharded Parquet + ``dataset.json``.

    omnimer ingest --format indomer --input DIR --out DIR [--frames 8] [--size 224] [--quarantine]

Called by ``omnimer ingest`` (:mod:`omnimer.cli`) and the smoke test's embedded default
(:mod:`omnimer.sweep.embedded`). The stages, each with its progress bar: read the manifest
(:mod:`omnimer.data.formats`), decode every clip's frames, audio and prosody (one Ray Data task per
block), fill the aux-task targets, write each split's shards. Everything is written into a hidden
sibling temporary directory and renamed onto ``<out>`` only once every shard and ``dataset.json``
are complete, so a crash leaves ``<out>`` as it was. The layout and the reading side are
:mod:`omnimer.data.shards`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from omnimer.config import IngestConfig
from omnimer.data import aux_targets
from omnimer.data.formats import SPLITS, Manifest, Problem, read_manifest
from omnimer.data.media import MediaError, decode_audio, decode_frames
from omnimer.data.prosody import PROSODY_FIELDS, describe_dataset, prosody_features
from omnimer.data.shards import (
    DATASET_JSON,
    QUARANTINE_CSV,
    SCHEMA_VERSION,
    STRING_COLUMNS,
    sha256_file,
    shard_schema,
)

log = logging.getLogger(__name__)
# What a clip's decoded row carries besides its shard columns, until the shards are written.
BOOKKEEPING = ["manifest_file", "manifest_row", "error", "error_column"]


class IngestError(RuntimeError):
    """Ingest refused: lists every problem as ``file:row:column: reason``."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        self.problems = problems or []
        lines = "".join(f"\n  {p}" for p in self.problems)
        super().__init__(message + lines)


def ingest(
    input_dir: Path, out: Path, cfg: IngestConfig, *, quarantine: bool = False, overwrite: bool = False
) -> dict:
    """Validate, decode and shard a dataset; returns the ``dataset.json`` content.

    Strict (default): any problem raises :class:`IngestError` listing all of them and nothing is
    written. With ``quarantine=True`` the good rows are written and the bad ones listed in
    ``dataset.json`` and ``quarantine.csv``.
    """
    import ray

    input_dir, out = Path(input_dir).resolve(), Path(out).resolve()
    _check_out(out, overwrite)
    manifest = read_manifest(input_dir, cfg)
    if not manifest.rows and not manifest.problems:
        raise IngestError(f"no clips found in {input_dir} ({cfg.format} layout)")
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # reproducible shards

    decoded, summaries = decode(manifest, cfg)
    problems = list(manifest.problems) + decode_problems(summaries)
    if problems and not quarantine:
        raise IngestError(
            f"ingest refused: {len(problems)} problem(s); nothing was written. Fix them, or pass "
            "--quarantine to write the good rows and list the bad ones",
            problems,
        )
    good = [r for r in summaries if not r["error"]]
    if not good:
        raise IngestError("no clip survived validation; nothing was written", problems)
    descriptors = describe_dataset([(r["clip_id"], r["speaker_id"], r["prosody"]) for r in good])
    with_targets = decoded.map_batches(
        add_aux_targets,
        batch_format="pyarrow",
        fn_kwargs={"descriptors": descriptors, "use_lexicon": manifest.language == "id"},
    )

    _clean_stale_tmp(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(out, "ingest")
    try:
        tmp.mkdir()
        shards = write_splits(with_targets, good, cfg, tmp)
        written_rows = sum(s["rows"] for s in shards)
        if written_rows != len(good):
            raise IngestError(f"internal error: wrote {written_rows} rows, expected {len(good)}")
        info = _dataset_info(manifest, cfg, input_dir, good, shards, problems)
        if problems:
            _write_quarantine(tmp / QUARANTINE_CSV, problems)
        # dataset.json last: its presence means every shard above is complete.
        (tmp / DATASET_JSON).write_text(
            json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %d clips in %d shards to %s (%d quarantined)", len(good), len(shards), out, len(problems))
    return info


def decode(manifest: Manifest, cfg: IngestConfig):
    """Every clip's media decoded on Ray Data (kept in its object store), and a light summary row per
    clip (ids, labels, prosody, the decode error if any) for the driver."""
    import ray

    table = pa.Table.from_pylist(manifest.rows, schema=manifest_schema()) if manifest.rows else None
    if table is None:
        return None, []
    block_rows = max(cfg.decode_batch_size, 4 * cfg.decode_batch_size)
    blocks = [table.slice(i, block_rows) for i in range(0, table.num_rows, block_rows)]
    lazy = ray.data.from_arrow(blocks).map_batches(
        decode_batch,
        batch_size=cfg.decode_batch_size,
        batch_format="pyarrow",
        fn_kwargs={
            "frames": cfg.frames,
            "size": cfg.size,
            "sample_rate": cfg.sample_rate,
            "max_audio_seconds": cfg.max_audio_seconds,
        },
        num_cpus=1,
    )
    refs = []
    with _bar(table.num_rows, "decode", "clip") as bar:
        # Blocks as they finish (references only: the decoded media stay in the object store).
        for bundle in lazy.iter_internal_ref_bundles():
            for entry, piece in zip(bundle.blocks, bundle.slices, strict=True):
                if piece is not None:  # a block's slice: its ref holds rows of other bundles too
                    raise RuntimeError("Ray Data handed the decode stage a sliced block; cannot collect it")
                refs.append(entry.ref)
                bar.update(entry.metadata.num_rows or 0)
    decoded = ray.data.from_arrow_refs(refs)
    summary_columns = ["clip_id", "video_id", "speaker_id", "split", "emotion", "sentiment", "prosody"]
    return decoded, decoded.select_columns(summary_columns + BOOKKEEPING).take_all()


def decode_problems(summaries: list[dict]) -> list[Problem]:
    """A :class:`Problem` for every clip whose media could not be decoded."""
    return [
        Problem(r["manifest_file"], r["manifest_row"], r["error_column"], r["error"], r["clip_id"])
        for r in summaries
        if r["error"]
    ]


def write_splits(decoded, good: list[dict], cfg: IngestConfig, tmp: Path) -> list[dict]:
    """Each split's good rows as ~``cfg.shard_mb`` zstd Parquet shards under ``tmp/<split>/``; returns
    the shard entries of ``dataset.json`` (path, split, rows, bytes, sha256)."""
    rows_per_shard = _rows_per_shard(decoded, cfg)
    shards = []
    with _bar(len(good), "write shards", "clip") as bar:
        for split in SPLITS:
            n_split = sum(r["split"] == split for r in good)
            split_dir = tmp / split
            split_dir.mkdir()
            if n_split == 0:
                continue
            part = decoded.map_batches(
                _keep_split, batch_format="pyarrow", fn_kwargs={"split": split, "drop": BOOKKEEPING}
            )
            # One block per shard: an order-preserving repartition (no shuffle) gives ~shard_mb files.
            part.repartition(math.ceil(n_split / rows_per_shard)).write_parquet(
                str(split_dir), compression="zstd"
            )
            for index, written in enumerate(sorted(split_dir.glob("*.parquet"))):
                final = split_dir / f"part-{index:05d}.parquet"
                written.rename(final)
                shards.append(
                    {
                        "path": f"{split}/{final.name}",
                        "split": split,
                        "rows": pq.ParquetFile(final).metadata.num_rows,
                        "bytes": final.stat().st_size,
                        "sha256": sha256_file(final),
                    }
                )
            bar.update(n_split)
    return shards


def _bar(total: int, stage: str, unit: str) -> tqdm:
    """One stage's progress bar (none when the output is not a terminal: a log gets the stage's line)."""
    return tqdm(total=total, desc=f"ingest: {stage}", unit=unit, disable=None, leave=False)


def manifest_schema() -> pa.Schema:
    """Arrow schema of the rows handed to the decoders."""
    return pa.schema(
        [(c, pa.string()) for c in STRING_COLUMNS]
        + [("manifest_file", pa.string()), ("manifest_row", pa.int64())]
    )


def _decoded_schema(frames: int, size: int) -> pa.Schema:
    schema = shard_schema(frames, size)
    for name, typ in (
        ("manifest_file", pa.string()),
        ("manifest_row", pa.int64()),
        ("error_column", pa.string()),
        ("error", pa.string()),
    ):
        schema = schema.append(pa.field(name, typ))
    return schema


def _tensor_array(pixels: np.ndarray, typ: pa.FixedShapeTensorType) -> pa.ExtensionArray:
    flat = pa.array(pixels.reshape(-1), type=pa.uint8())
    storage = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(typ.shape)))
    return pa.ExtensionArray.from_storage(typ, storage)


def decode_batch(
    batch: pa.Table, frames: int, size: int, sample_rate: int, max_audio_seconds: float
) -> pa.Table:
    """Ray Data ``map_batches`` function: decode the media of a batch of manifest rows.

    A row whose media cannot be used keeps zero-filled media and says why in ``error`` and
    ``error_column``; the driver decides (strict or quarantine) what happens to it.
    """
    schema = _decoded_schema(frames, size)
    rows = batch.to_pylist()
    pixels = np.zeros((len(rows), frames, size, size, 3), dtype=np.uint8)
    out: dict[str, list] = {name: [] for name in schema.names if name != "frames"}
    for i, row in enumerate(rows):
        error = error_column = None
        audio = np.zeros(0, np.float32)
        prosody = {k: 0.0 for k in PROSODY_FIELDS}
        fps, digest = 0.0, None
        try:
            error_column = "video"
            decoded = decode_frames(row["source_video"], frames, size)
            pixels[i], fps = decoded.pixels, decoded.sample_fps
            error_column = "audio" if row["source_audio"] else "video"
            audio = decode_audio(row["source_audio"] or row["source_video"], sample_rate, max_audio_seconds)
            prosody = prosody_features(audio, sample_rate)
            digest = sha256_file(row["source_video"])
            error_column = None
        except MediaError as err:
            error = str(err)
        for name in STRING_COLUMNS + ("manifest_file", "manifest_row"):
            out[name].append(row[name])
        out["source_sha256"].append(digest)
        out["frame_fps"].append(fps)
        out["audio"].append(audio)
        out["prosody"].append(prosody)
        out["error_column"].append(error_column if error else None)
        out["error"].append(error)
    columns = {}
    for field in schema:
        if field.name == "frames":
            columns["frames"] = _tensor_array(pixels, field.type)
        else:
            columns[field.name] = pa.array(out[field.name], type=field.type)
    return pa.table(columns, schema=schema)


def add_aux_targets(batch: pa.Table, descriptors: dict[str, str], use_lexicon: bool) -> pa.Table:
    """Ray Data ``map_batches`` function: fill aux_keywords/aux_face/aux_prosody (DESIGN §4)."""
    rows = batch.select(
        [
            "clip_id",
            "text",
            "aux_keywords",
            "aux_face",
            "aux_prosody",
            "text_sentiment",
            "audio_sentiment",
            "video_sentiment",
        ]
    ).to_pylist()
    keywords = [
        aux_targets.keywords_target(
            r["text"], r["aux_keywords"], r["text_sentiment"], use_lexicon=use_lexicon
        )
        for r in rows
    ]
    face = [aux_targets.face_target(r["aux_face"], r["video_sentiment"]) for r in rows]
    prosody = [
        aux_targets.prosody_target(r["aux_prosody"], descriptors.get(r["clip_id"]), r["audio_sentiment"])
        for r in rows
    ]
    for name, values in (("aux_keywords", keywords), ("aux_face", face), ("aux_prosody", prosody)):
        batch = batch.set_column(batch.schema.get_field_index(name), name, pa.array(values, type=pa.string()))
    return batch


def _keep_split(batch: pa.Table, split: str, drop: list[str]) -> pa.Table:
    kept = batch.filter(pc.and_(pc.equal(batch["split"], split), pc.is_null(batch["error"])))
    return kept.drop_columns(drop)


def _tmp_sibling(out: Path, kind: str) -> Path:
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _clean_stale_tmp(out: Path) -> None:
    """Remove temporary dirs of earlier ingests into ``out`` whose process no longer runs."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(ingest|old)-(\d+)-[0-9a-f]{{8}}$")
    if not out.parent.is_dir():
        return
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if not match:
            continue
        pid = int(match[2])
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            log.info("removing stale temporary dir %s of a crashed ingest", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise IngestError(f"output path {out} exists and is not a directory")
    if (out / DATASET_JSON).exists() and not overwrite:
        raise IngestError(
            f"output dir {out} already holds a dataset ({DATASET_JSON}); pass --overwrite to replace it"
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise IngestError(
            f"output dir {out} exists and is not empty; choose another --out or pass --overwrite"
        )


def _label_counts(rows: list[dict], column: str) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    for r in rows:
        if r[column] is not None:
            counts[r["split"]][r[column]] += 1
    return {s: dict(sorted(c.items())) for s, c in counts.items()}


def _rows_per_shard(ds, cfg: IngestConfig) -> int:
    total_rows = ds.count()
    total_bytes = ds.size_bytes() or 1
    return max(1, int(cfg.shard_mb * 1024 * 1024 / max(total_bytes / max(total_rows, 1), 1)))


def _commit(tmp: Path, out: Path) -> None:
    """Put the finished dataset in place with renames; an old dataset is removed only afterwards."""
    old = None
    if out.exists():
        old = _tmp_sibling(out, "old")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_quarantine(path: Path, problems: list[Problem]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "row", "column", "clip_id", "reason"])
        for p in problems:
            writer.writerow([p.file, p.row, p.column, p.clip_id or "", p.reason])


def _dataset_info(
    manifest: Manifest,
    cfg: IngestConfig,
    input_dir: Path,
    good: list[dict],
    shards: list[dict],
    problems: list[Problem],
) -> dict:
    schema = shard_schema(cfg.frames, cfg.size)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "format": manifest.format,
        "input": str(input_dir),
        "language": manifest.language,
        "ingest": cfg.to_json(),
        "frames": {"count": cfg.frames, "height": cfg.size, "width": cfg.size, "channels": 3},
        "audio": {"sample_rate": cfg.sample_rate, "max_seconds": cfg.max_audio_seconds, "dtype": "float32"},
        "label_sets": {
            "emotion": manifest.emotion_labels.to_json() if manifest.emotion_labels else None,
            "sentiment": manifest.sentiment_labels.to_json() if manifest.sentiment_labels else None,
        },
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "counts": {
            "rows": {s: sum(r["split"] == s for r in good) for s in SPLITS},
            "emotion": _label_counts(good, "emotion"),
            "sentiment": _label_counts(good, "sentiment"),
            "videos": {s: len({r["video_id"] for r in good if r["split"] == s}) for s in SPLITS},
        },
        "shards": shards,
        "quarantined": [p.to_json() for p in problems],
        "notes": manifest.notes,
    }
