"""MELD reader: ``{train,dev,test}_sent_emo.csv``, media ``<split media dir>/dia{D}_utt{U}.mp4``.

Run through ``omnimer ingest --format meld --input DIR --out DIR``.
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
from omnimer.labels import FORMAT_LABEL_SETS

MELD_REQUIRED = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
MELD_FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
MELD_MEDIA_DIRS = {
    "train": ("train_splits", "train"),
    "valid": ("dev_splits_complete", "dev_splits", "dev"),
    "test": ("output_repeated_splits_test", "test_splits", "test"),
}


def read_meld(root: Path, cfg: IngestConfig) -> Manifest:
    """MELD: ``{train,dev,test}_sent_emo.csv``; media ``<split media dir>/dia{D}_utt{U}.mp4``.

    Dialogue ids restart in every MELD split, so the source video is ``<split>_dia<D>``.
    """
    emotion_set, sentiment_set = FORMAT_LABEL_SETS["meld"]
    manifest = Manifest(
        "meld", root, [], emotion_labels=emotion_set, sentiment_labels=sentiment_set, language="en"
    )
    present = {s: root / f for s, f in MELD_FILES.items() if (root / f).is_file()}
    if "train" not in present:
        raise ManifestError(
            [
                Problem(
                    str(root / MELD_FILES["train"]),
                    0,
                    "-",
                    "MELD train_sent_emo.csv not found in the input dir",
                )
            ]
        )
    rows = []
    for split, path in present.items():
        display = str(path)
        media_root = next(
            (root / d for d in MELD_MEDIA_DIRS[split] if (root / d).is_dir()),
            root / MELD_MEDIA_DIRS[split][0],
        )
        for row, rec in read_csv_rows(path, MELD_REQUIRED, display):
            chk = RowChecker(display, row, manifest.problems)
            dia = chk.text("Dialogue_ID", rec.get("Dialogue_ID"))
            utt = chk.text("Utterance_ID", rec.get("Utterance_ID"))
            if dia is None or utt is None:
                continue
            r = empty_row()
            r["clip_id"] = chk.clip_id = f"{split}_dia{dia}_utt{utt}"
            r["video_id"] = f"{split}_dia{dia}"
            r["split"] = split
            r["manifest_file"], r["manifest_row"] = display, row
            r["speaker_id"] = chk.text("Speaker", rec.get("Speaker"))
            r["text"] = chk.text("Utterance", rec.get("Utterance"))
            emotion = chk.text("Emotion", rec.get("Emotion"))
            sentiment = chk.text("Sentiment", rec.get("Sentiment"))
            r["emotion"] = chk.label(
                "Emotion", emotion.lower() if emotion else None, emotion_set, required=True
            )
            r["sentiment"] = chk.label(
                "Sentiment", sentiment.lower() if sentiment else None, sentiment_set, required=True
            )
            r["source_video"] = chk.media("video", media_root, f"dia{dia}_utt{utt}.mp4")
            if chk.ok:
                rows.append(r)
    return finish_manifest(manifest, rows, cfg, has_valid="valid" in present, has_test="test" in present)
