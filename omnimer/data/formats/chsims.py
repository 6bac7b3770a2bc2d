"""CH-SIMS reader: ``label.csv`` (scores in [-1, 1] → 3 classes); media ``Raw/<video>/<clip>.mp4``.

Run through ``omnimer ingest --format chsims --input DIR --out DIR``.
"""

from __future__ import annotations

from pathlib import Path

from omnimer.config import IngestConfig
from omnimer.data.formats.manifest import (
    Manifest,
    ManifestError,
    Problem,
    RowChecker,
    empty_row,
    finish_manifest,
    read_csv_rows,
)
from omnimer.labels import CHSIMS_SENTIMENT, chsims_sentiment

CHSIMS_REQUIRED = ("video_id", "clip_id", "text", "label", "mode")
CHSIMS_MODES = {"train": "train", "valid": "valid", "test": "test"}


def read_chsims(root: Path, cfg: IngestConfig) -> Manifest:
    """CH-SIMS: ``label.csv`` (scores in [-1, 1] → 3 classes), media ``Raw/<video_id>/<clip_id>.mp4``."""
    manifest = Manifest(
        "chsims", root, [], emotion_labels=None, sentiment_labels=CHSIMS_SENTIMENT, language="zh"
    )
    path = root / "label.csv"
    if not path.is_file():
        raise ManifestError([Problem(str(path), 0, "-", "CH-SIMS label.csv not found in the input dir")])
    display = str(path)
    rows = []
    for row, rec in read_csv_rows(path, CHSIMS_REQUIRED, display):
        chk = RowChecker(display, row, manifest.problems)
        video = chk.text("video_id", rec.get("video_id"))
        clip = chk.text("clip_id", rec.get("clip_id"))
        if video is None or clip is None:
            continue
        r = empty_row()
        r["clip_id"] = chk.clip_id = f"{video}_{clip}"
        r["video_id"] = r["speaker_id"] = video
        r["manifest_file"], r["manifest_row"] = display, row
        mode = chk.text("mode", rec.get("mode"))
        if mode is not None and mode not in CHSIMS_MODES:
            chk.fail("mode", f"unknown split {mode!r}; expected train, valid or test")
        r["split"] = CHSIMS_MODES.get(mode or "")
        r["text"] = chk.text("text", rec.get("text"))
        for column, target in (
            ("label", "sentiment"),
            ("label_T", "text_sentiment"),
            ("label_A", "audio_sentiment"),
            ("label_V", "video_sentiment"),
        ):
            raw = chk.text(column, rec.get(column), required=column == "label")
            if raw is None:
                continue
            try:
                r[target] = chsims_sentiment(float(raw))
            except ValueError:
                chk.fail(column, f"unknown label {raw!r}; expected a sentiment score in [-1, 1]")
        r["source_video"] = chk.media("video", root / "Raw", f"{video}/{clip}.mp4")
        if chk.ok:
            rows.append(r)
    has_valid = any(r["split"] == "valid" for r in rows)
    has_test = any(r["split"] == "test" for r in rows)
    return finish_manifest(manifest, rows, cfg, has_valid=has_valid, has_test=has_test)
