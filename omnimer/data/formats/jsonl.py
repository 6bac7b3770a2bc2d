"""Generic JSONL reader: ``manifest.jsonl``, one object per clip, media paths relative to the input dir.

Run through ``omnimer ingest --format jsonl --input DIR --out DIR [--label-sets indomer|chsims|meld]``.
"""

from __future__ import annotations

from pathlib import Path

from omnimer.config import IngestConfig
from omnimer.data.formats.manifest import (
    SPLITS,
    Manifest,
    ManifestError,
    Problem,
    RowChecker,
    empty_row,
    finish_manifest,
    read_jsonl_objects,
)
from omnimer.labels import FORMAT_LABEL_SETS

JSONL_REQUIRED = ("clip_id", "video_id", "split", "text", "video")


def read_jsonl(root: Path, cfg: IngestConfig) -> Manifest:
    """Generic ``manifest.jsonl``: one object per line with clip_id, video_id, split, text, video and labels.

    Optional keys: speaker_id, audio, emotion, sentiment, text/audio/video_sentiment, aux_keywords,
    aux_face, aux_prosody. Labels use the label sets of ``cfg.label_sets``. Media paths are relative
    to the input dir. A missing valid split is carved from train by video.
    """
    emotion_set, sentiment_set = FORMAT_LABEL_SETS[cfg.label_sets]
    language = {"indomer": "id", "chsims": "zh", "meld": "en"}[cfg.label_sets]
    manifest = Manifest(
        "jsonl", root, [], emotion_labels=emotion_set, sentiment_labels=sentiment_set, language=language
    )
    path = root / "manifest.jsonl"
    if not path.is_file():
        raise ManifestError([Problem(str(path), 0, "-", "manifest.jsonl not found in the input dir")])
    display = str(path)
    items = read_jsonl_objects(path, display)
    present = set().union(*(item.keys() for _, item in items)) if items else set()
    missing = [c for c in JSONL_REQUIRED if c not in present]
    if missing:
        raise ManifestError(
            [
                Problem(
                    display, 1, c, f"missing required key {c!r} (keys present: {', '.join(sorted(present))})"
                )
                for c in missing
            ]
        )
    rows = []
    for row, item in items:
        chk = RowChecker(display, row, manifest.problems)
        r = empty_row()
        r["clip_id"] = chk.clip_id = chk.text("clip_id", item.get("clip_id"))
        r["video_id"] = chk.text("video_id", item.get("video_id"))
        r["speaker_id"] = chk.text("speaker_id", item.get("speaker_id"), required=False)
        split = chk.text("split", item.get("split"))
        if split is not None and split not in SPLITS:
            chk.fail("split", f"unknown split {split!r}; expected train, valid or test")
        r["split"] = split
        r["text"] = chk.text("text", item.get("text"))
        r["emotion"] = chk.label("emotion", item.get("emotion"), emotion_set, required=False)
        r["sentiment"] = chk.label("sentiment", item.get("sentiment"), sentiment_set, required=False)
        for col in ("text_sentiment", "audio_sentiment", "video_sentiment"):
            r[col] = chk.label(col, item.get(col), sentiment_set, required=False)
        for col in ("aux_keywords", "aux_face", "aux_prosody"):
            r[col] = chk.text(col, item.get(col), required=False)
        if r["emotion"] is None and r["sentiment"] is None and chk.ok:
            chk.fail("emotion", "row has neither an emotion nor a sentiment label")
        r["manifest_file"], r["manifest_row"] = display, row
        r["source_video"] = chk.media("video", root, item.get("video"))
        if item.get("audio") not in (None, ""):
            r["source_audio"] = chk.media("audio", root, item.get("audio"))
        if chk.ok:
            rows.append(r)
    has_valid = any(r["split"] == "valid" for r in rows)
    has_test = any(r["split"] == "test" for r in rows)
    return finish_manifest(manifest, rows, cfg, has_valid=has_valid, has_test=has_test)
