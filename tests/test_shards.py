"""Ingest on Ray Data into Parquet shards: layout, contents, strict vs quarantine, atomicity, reading back."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from mediafiles import indomer_rows, tone, write_indomer, write_mp4, write_wav

from omnimer.collate import rows_from_numpy, rows_from_table
from omnimer.config import IngestConfig
from omnimer.data.ingest import IngestError, ingest
from omnimer.data.shards import (
    DATASET_JSON,
    inspect_dataset,
    load_splits,
    open_split,
    read_dataset_info,
)

CFG = IngestConfig(frames=4, size=56, max_audio_seconds=1.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_indomer(tmp_path_factory.mktemp("corpus") / "indomer", indomer_rows())


@pytest.fixture(scope="module")
def dataset(ray_local, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "ds"
    info = ingest(corpus, out, CFG)
    return out, info


def test_layout_and_dataset_json(dataset):
    out, info = dataset
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "test", "train", "valid"]
    assert info["counts"]["rows"] == {"train": 12, "valid": 4, "test": 8}
    assert info["counts"]["emotion"]["test"] == {
        "kebahagiaan": 2,
        "kemarahan": 2,
        "kesedihan": 2,
        "netral": 2,
    }
    assert info["frames"] == {"count": 4, "height": 56, "width": 56, "channels": 3}
    assert info["label_sets"]["emotion"]["key"] == "indomer-emotion"
    assert info["quarantined"] == []
    for shard in info["shards"]:
        path = out / shard["path"]
        assert path.name.startswith("part-") and path.suffix == ".parquet"
        assert pq.ParquetFile(path).metadata.num_rows == shard["rows"]
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert read_dataset_info(out)["schema_version"] == 1


def test_rows_open_with_plain_pyarrow(dataset):
    out, _ = dataset
    table = open_split(out, "train").to_table()
    assert table.num_rows == 12
    frames = table.column("frames").combine_chunks().to_numpy_ndarray()
    assert frames.shape == (12, 4, 56, 56, 3) and frames.dtype == np.uint8
    assert frames.std() > 10  # real decoded pixels, not the zero fill of a failed row
    row = table.slice(0, 1).to_pylist()[0]
    assert len(row["audio"]) == int(1.5 * 16000)  # clipped to max_audio_seconds
    assert row["frame_fps"] == pytest.approx(2.0)  # 4 frames over a 2 s clip
    assert set(row["prosody"]) == {
        "f0_mean",
        "f0_std",
        "f0_slope",
        "energy_mean",
        "energy_std",
        "speaking_rate",
        "voiced_fraction",
    }
    assert 100 < row["prosody"]["f0_mean"] < 200  # the wav is a 120-190 Hz voice
    assert row["source_sha256"] and len(row["source_sha256"]) == 64
    assert row["aux_prosody"].startswith("prosodi: nada ") and row["aux_prosody"].endswith(
        f"sentimen suara: {row['audio_sentiment']}"
    )
    happy = [r for r in table.to_pylist() if r["emotion"] == "kebahagiaan"]
    assert happy and all(r["aux_keywords"].startswith("kata emosi: senang") for r in happy)


def test_rows_from_table_match_the_rows_a_ray_worker_gets(dataset):
    out, _ = dataset
    table = open_split(out, "test").to_table()
    rows = rows_from_table(table)
    batch = next(iter(load_splits(out)["test"].iter_batches(batch_size=8, batch_format="numpy")))
    from_ray = {r["clip_id"]: r for r in rows_from_numpy(batch)}
    assert len(rows) == len(from_ray) == 8
    plain = {r["clip_id"]: r for r in table.to_pylist()}
    for row in rows:
        ray_row = from_ray[row["clip_id"]]
        assert row["audio"].dtype == ray_row["audio"].dtype == np.float32
        np.testing.assert_array_equal(row["audio"], ray_row["audio"])
        np.testing.assert_array_equal(row["audio"], np.asarray(plain[row["clip_id"]]["audio"], np.float32))
        np.testing.assert_array_equal(row["frames"], ray_row["frames"])
        assert row["text"] == ray_row["text"] and row["emotion"] == ray_row["emotion"]


def test_splits_read_back_on_ray(dataset):
    out, _ = dataset
    splits = load_splits(out)
    assert {k: v.count() for k, v in splits.items()} == {"train": 12, "valid": 4, "test": 8}
    batch = next(iter(splits["test"].iter_batches(batch_size=3, batch_format="numpy")))
    assert batch["frames"].shape == (3, 4, 56, 56, 3)
    videos = {s: set(ds.unique("video_id")) for s, ds in splits.items()}
    assert not (videos["train"] & videos["valid"]) and not (videos["train"] & videos["test"])


def test_inspect(dataset):
    text = inspect_dataset(dataset[0])
    assert "rows: train 12, valid 4, test 8" in text
    assert "frames: uint8 [4, 56, 56, 3]" in text
    assert "kebahagiaan" in text and "happiness" in text
    assert "sample train/part-00000.parquet row 0" in text


def test_ingest_is_deterministic(ray_local, corpus, dataset, tmp_path):
    info = ingest(corpus, tmp_path / "again", CFG)
    first = {s["path"]: s["sha256"] for s in dataset[1]["shards"]}
    assert {s["path"]: s["sha256"] for s in info["shards"]} == first


def test_small_shards(ray_local, corpus, tmp_path):
    info = ingest(
        corpus, tmp_path / "small", IngestConfig(frames=4, size=56, max_audio_seconds=1.5, shard_mb=1)
    )
    train = [s for s in info["shards"] if s["split"] == "train"]
    assert len(train) > 1 and sum(s["rows"] for s in train) == 12


def test_refuses_existing_dataset_unless_overwrite(ray_local, corpus, dataset, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(dataset[0], out)
    with pytest.raises(
        IngestError, match=r"already holds a dataset \(dataset.json\); pass --overwrite to replace it"
    ):
        ingest(corpus, out, CFG)
    info = ingest(corpus, out, IngestConfig(frames=2, size=56), overwrite=True)
    assert read_dataset_info(out)["frames"]["count"] == 2 and info["counts"]["rows"]["train"] == 12
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy.")]  # no temp dirs left


def test_refuses_non_empty_dir(ray_local, corpus, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(IngestError, match="exists and is not empty"):
        ingest(corpus, tmp_path / "busy", CFG)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A corpus with one instance of each media problem (and one manifest problem)."""
    root = write_indomer(tmp_path_factory.mktemp("broken") / "indomer", indomer_rows())
    videos, audios = root / "videos", root / "audios"
    data = (videos / "clip_1_Sharing_1.mp4").read_bytes()
    (videos / "clip_1_Sharing_2.mp4").write_bytes(b"\x00garbage" * 100)  # corrupt
    (videos / "clip_1_Sharing_3.mp4").write_bytes(data[: len(data) // 3])  # truncated
    (videos / "clip_1_Sharing_4.mp4").write_bytes(b"")  # zero-length
    write_mp4(videos / "clip_2_Sharing_1.mp4", n_frames=1)  # one frame
    write_mp4(videos / "clip_2_Sharing_2.mp4", audio=False)  # no audio track ...
    os.remove(audios / "clip_2_Sharing_2.wav")  # ... and no wav
    bad = tone(1.0)
    bad[50], bad[99] = np.nan, np.inf
    write_wav(audios / "clip_2_Sharing_3.wav", bad, float32=True)  # NaN/inf audio
    os.remove(videos / "clip_2_Sharing_4.mp4")  # missing media
    return root


EXPECTED_PROBLEMS = {
    "clip_1_Sharing_2": ("video", "cannot decode video (corrupt or not a video file)"),
    "clip_1_Sharing_3": ("video", "cannot decode video (corrupt or not a video file)"),
    "clip_1_Sharing_4": ("video", "video file is empty (0 bytes)"),
    "clip_2_Sharing_1": ("video", "video has a single frame"),
    "clip_2_Sharing_2": ("video", "no audio track in"),
    "clip_2_Sharing_3": ("audio", "audio has 2 non-finite samples (NaN/inf), first at 0.003 s"),
    "clip_2_Sharing_4": ("video", "missing media file"),
}


def test_strict_reports_every_problem_and_writes_nothing(ray_local, broken, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(IngestError) as err:
        ingest(broken, out, CFG)
    text = str(err.value)
    assert "ingest refused: 7 problem(s); nothing was written" in text
    for clip, (column, reason) in EXPECTED_PROBLEMS.items():
        line = next(line for line in text.splitlines() if clip in line)
        assert "_class_train.json:" in line and f":{column}: {reason}" in line, line
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_quarantine_writes_good_rows_and_lists_bad(ray_local, broken, tmp_path):
    out = tmp_path / "out"
    info = ingest(broken, out, CFG, quarantine=True)
    assert sum(info["counts"]["rows"].values()) == 24 - 7
    assert {q["clip_id"] for q in info["quarantined"]} == set(EXPECTED_PROBLEMS)
    with open(out / "quarantine.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["clip_id"]: r["column"] for r in rows} == {c: col for c, (col, _) in EXPECTED_PROBLEMS.items()}
    table = pds.dataset(str(out), format="parquet", exclude_invalid_files=True).to_table(columns=["clip_id"])
    assert not set(table.column("clip_id").to_pylist()) & set(EXPECTED_PROBLEMS)
    assert json.loads((out / DATASET_JSON).read_text())["quarantined"][0]["reason"]
