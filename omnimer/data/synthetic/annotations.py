"""Annotation files: ``Annotations.csv`` and the four ``7_Class``/``3_Class`` split JSONs of a corpus, in
IndoMER's published layout and bytes (:func:`write_annotations`).

For ``omnimer synth --from-annotations`` the source's split JSONs are copied and its CSV is extended with
the columns the synthetic media define (speaker_id, aux_face, aux_prosody).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from omnimer.data.formats.indomer import IndomerAnnotations, clip_from_video_name
from omnimer.data.synthetic.planning import PUBLISHED_SPLITS, ClipPlan

ANNOTATION_COLUMNS: tuple[str, ...] = (
    "video_name", "audio_name", "emotion", "sentiment",
    "text_sentiment", "audio_sentiment", "video_sentiment", "text",
)  # fmt: skip
# Ground-truth columns appended after IndoMER's own (DESIGN §3, §4): targets of the auxiliary tasks.
EXTRA_COLUMNS: tuple[str, ...] = ("speaker_id", "aux_keywords", "aux_face", "aux_prosody")
# Key order of the published split files (they are JSON arrays of objects, indent 2, CRLF).
SEVEN_CLASS_KEYS: tuple[str, ...] = ("sample_id", "text", "sentiment_label", "label", "video", "audio")
THREE_CLASS_KEYS: tuple[str, ...] = (
    "sample_id", "text", "audio_label", "text_label", "video_label", "label", "video", "audio",
)  # fmt: skip


def split_json_bytes(items: list[dict[str, str]]) -> bytes:
    """A split file's bytes, as published: indent 2, raw UTF-8, CRLF, no final newline."""
    return json.dumps(items, indent=2, ensure_ascii=False).replace("\n", "\r\n").encode("utf-8")


def _seven_class_item(plan: ClipPlan) -> dict[str, str]:
    values = {
        "sample_id": plan.name,
        "text": plan.text,
        "sentiment_label": plan.sentiment,
        "label": plan.emotion,
        "video": f"{plan.name}.mp4",
        "audio": f"{plan.name}.wav",
    }
    return {key: values[key] for key in SEVEN_CLASS_KEYS}


def _three_class_item(plan: ClipPlan) -> dict[str, str]:
    values = {
        "sample_id": plan.name,
        "text": plan.text,
        "audio_label": plan.audio_sentiment,
        "text_label": plan.text_sentiment,
        "video_label": plan.video_sentiment,
        "label": plan.sentiment,
        "video": f"{plan.name}.mp4",
        "audio": f"{plan.name}.wav",
    }
    return {key: values[key] for key in THREE_CLASS_KEYS}


def _annotation_row(plan: ClipPlan) -> list[str]:
    return [
        f"{plan.name}.mp4",
        f"{plan.name}.wav",
        plan.emotion,
        plan.sentiment,
        plan.text_sentiment,
        plan.audio_sentiment,
        plan.video_sentiment,
        plan.text,
        plan.speaker_id,
        plan.aux_keywords,
        plan.aux_face,
        plan.aux_prosody,
    ]


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)  # excel dialect (CRLF, minimal quoting), as the published file
    return buffer.getvalue().encode("utf-8")


def write_annotations(
    directory: Path, plans: Sequence[ClipPlan], source: IndomerAnnotations | None = None
) -> None:
    """Write Annotations.csv and the four split JSONs of ``plans``.

    With a ``source``, its split JSONs are copied byte for byte and its Annotations.csv keeps every
    original row and column, with speaker_id, aux_keywords (empty: the text is real), aux_face and
    aux_prosody appended (or refreshed, where the source already has them).
    """
    (directory / "7_Class").mkdir(parents=True, exist_ok=True)
    (directory / "3_Class").mkdir(parents=True, exist_ok=True)
    by_split = {split: [p for p in plans if p.split == split] for split in PUBLISHED_SPLITS}
    for folder, stem, item, copies in (
        ("7_Class", "7_class", _seven_class_item, source.published_split_files("7") if source else {}),
        ("3_Class", "3_class", _three_class_item, source.published_split_files("3") if source else {}),
    ):
        for split in PUBLISHED_SPLITS:
            target = directory / folder / f"{stem}_{split}.json"
            if split in copies:
                shutil.copyfile(copies[split], target)
            else:
                target.write_bytes(split_json_bytes([item(p) for p in by_split[split]]))
    if source is None or source.csv_path is None:
        rows = [[*ANNOTATION_COLUMNS, *EXTRA_COLUMNS], *(_annotation_row(p) for p in plans)]
    else:
        by_name = {p.name: p for p in plans}
        with source.csv_path.open(encoding="utf-8", newline="") as handle:
            original = list(csv.reader(handle))
        header = list(original[0])
        header += [c for c in EXTRA_COLUMNS if c not in header]
        column = {name: i for i, name in enumerate(header)}
        rows = [header]
        for row in original[1:]:
            if not row:
                continue
            row = row + [""] * (len(header) - len(row))
            plan = by_name[clip_from_video_name(row[column["video_name"]])]
            row[column["speaker_id"]] = row[column["speaker_id"]] or plan.speaker_id
            row[column["aux_face"]] = plan.aux_face
            row[column["aux_prosody"]] = plan.aux_prosody
            rows.append(row)
    (directory / "Annotations.csv").write_bytes(_csv_bytes(rows))
