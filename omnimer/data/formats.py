"""Manifest readers: IndoMER, CH-SIMS, MELD and a generic JSONL layout into the common row schema.

Each reader validates every row, resolves media paths inside the dataset's media root and returns a
:class:`Manifest`: the good rows (without decoded media) plus every problem found, each located as
``file:row:column: reason``. Splits are made video-disjoint here: a published train split gives
``train`` + a ``valid`` carved by whole source video with a seed; a source video found in two
published splits is refused.

Run through ``omnimer ingest --format indomer|chsims|meld|jsonl --input DIR --out DIR``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnimer.config import IngestConfig
from omnimer.labels import (
    CHSIMS_SENTIMENT,
    FORMAT_LABEL_SETS,
    LabelSet,
    chsims_sentiment,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# The string columns a shard row shares with a manifest row (DESIGN §3).
SHARD_STRING_COLUMNS = (
    "clip_id",
    "video_id",
    "speaker_id",
    "split",
    "text",
    "emotion",
    "sentiment",
    "text_sentiment",
    "audio_sentiment",
    "video_sentiment",
    "aux_keywords",
    "aux_face",
    "aux_prosody",
    "source_video",
    "source_audio",
)
# A manifest row: those columns plus where it came from (for file:row messages); no media yet.
ROW_FIELDS = (*SHARD_STRING_COLUMNS, "manifest_file", "manifest_row")
INDOMER_CLIP = re.compile(r"^clip_(?P<video>\d+)_(?P<topic>[^_/\\]+)_(?P<index>\d+)$")


@dataclass(frozen=True)
class Problem:
    """One rejected input, located precisely enough to fix it."""

    file: str
    row: int
    column: str
    reason: str
    clip_id: str | None = None

    def __str__(self) -> str:
        clip = f" (clip {self.clip_id})" if self.clip_id and self.clip_id not in self.reason else ""
        return f"{self.file}:{self.row}:{self.column}: {self.reason}{clip}"

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "row": self.row,
            "column": self.column,
            "reason": self.reason,
            "clip_id": self.clip_id,
        }


class ManifestError(ValueError):
    """A manifest that cannot be read at all (missing file, missing required column, ...)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the manifest:\n{lines}")


@dataclass
class Manifest:
    """Validated rows of one dataset, ready for media decoding."""

    format: str
    root: Path
    rows: list[dict]
    problems: list[Problem] = field(default_factory=list)
    emotion_labels: LabelSet | None = None
    sentiment_labels: LabelSet | None = None
    language: str = "id"
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- file reading


def _read_text(path: Path) -> str:
    """Read a manifest file; invalid UTF-8 bytes survive as surrogates so each bad field is reported."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def _bad_utf8(value: str) -> str | None:
    """Describe the first undecodable byte of a field read with ``surrogateescape``, or None."""
    for i, ch in enumerate(value):
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            byte = ord(ch) - 0xDC00
            return f"text is not valid UTF-8 (byte 0x{byte:02x} at character {i}); re-save the file as UTF-8"
    return None


def _read_csv(path: Path, required: tuple[str, ...], display: str) -> list[tuple[int, dict]]:
    """Rows of a CSV as (line number, dict); a missing required column is fatal."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(
            [
                Problem(
                    display,
                    1,
                    c,
                    f"missing required column {c!r} (columns present: {', '.join(header) or 'none'})",
                )
                for c in missing
            ]
        )
    rows = []
    for record in reader:
        # DictReader's line_num is the line the record ends on; records here are single-line or quoted.
        rows.append(
            (reader.line_num, {k: (v if v is not None else "") for k, v in record.items() if k is not None})
        )
    return rows


def _read_json_list(path: Path, required: tuple[str, ...], display: str) -> list[tuple[int, dict]]:
    """Rows of a JSON list file as (1-based index, dict); a missing required key is reported per row."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ManifestError([Problem(display, err.lineno, "-", f"not valid JSON: {err.msg}")]) from None
    if not isinstance(data, list):
        raise ManifestError(
            [Problem(display, 1, "-", f"expected a JSON list of samples, got {type(data).__name__}")]
        )
    out = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise ManifestError([Problem(display, i, "-", f"expected an object, got {type(item).__name__}")])
        out.append((i, item))
    if out:
        present = set().union(*(item.keys() for _, item in out))
        missing = [c for c in required if c not in present]
        if missing:
            raise ManifestError(
                [
                    Problem(
                        display,
                        1,
                        c,
                        f"missing required key {c!r} (keys present: {', '.join(sorted(present))})",
                    )
                    for c in missing
                ]
            )
    return out


def _read_jsonl(path: Path, display: str) -> list[tuple[int, dict]]:
    out = []
    problems = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(Problem(display, lineno, "-", f"not valid JSON: {err.msg}"))
            continue
        if not isinstance(item, dict):
            problems.append(
                Problem(display, lineno, "-", f"expected a JSON object, got {type(item).__name__}")
            )
            continue
        out.append((lineno, item))
    if problems:
        raise ManifestError(problems)
    return out


# ------------------------------------------------------------------------------------------ row checks


class _RowChecker:
    """Collects problems of one row; turns field values into validated strings."""

    def __init__(self, file: str, row: int, problems: list[Problem]):
        self.file, self.row, self.problems = file, row, problems
        self.ok = True
        self.clip_id: str | None = None

    def fail(self, column: str, reason: str) -> None:
        self.ok = False
        self.problems.append(Problem(self.file, self.row, column, reason, self.clip_id))

    def text(self, column: str, value: object, *, required: bool = True) -> str | None:
        if (
            value is None
            or (isinstance(value, str) and not value.strip())
            or (isinstance(value, float) and math.isnan(value))
        ):
            if required:
                self.fail(column, "empty value; every row needs one")
            return None
        value = str(value)
        bad = _bad_utf8(value)
        if bad:
            self.fail(column, bad)
            return None
        return value.strip()

    def label(self, column: str, value: object, labels: LabelSet | None, *, required: bool) -> str | None:
        name = self.text(column, value, required=required)
        if name is None or labels is None:
            return name
        if name not in labels:
            self.fail(column, f"unknown label {name!r}; expected one of {', '.join(labels.names)}")
            return None
        return name

    def media(self, column: str, root: Path, relative: object, *, required: bool = True) -> str | None:
        rel = self.text(column, relative, required=required)
        if rel is None:
            return None
        path, reason = resolve_media(root, rel)
        if reason:
            if required:
                self.fail(column, reason)
            return None
        return str(path)


def resolve_media(root: Path, relative: str) -> tuple[Path | None, str | None]:
    """Resolve a manifest media path inside ``root``; returns (path, None) or (None, reason).

    Absolute paths and paths that resolve outside the media root (``..`` or a symlink pointing out)
    are refused: a manifest must not make ingest read arbitrary files of the machine.
    """
    if Path(relative).is_absolute() or re.match(r"^[A-Za-z]:[\\/]", relative):
        return None, f"media path {relative!r} is absolute; give it relative to the media root {root}"
    root_resolved = root.resolve()
    candidate = root / relative
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root_resolved):
        return None, f"media path {relative!r} resolves to {resolved}, outside the media root {root_resolved}"
    if not resolved.is_file():
        return None, f"missing media file {candidate}"
    return resolved, None


# ------------------------------------------------------------------------------------------ splitting


def carve_split(
    rows: list[dict], fraction: float, seed: int, *, source: str, target: str, stratify: str
) -> list[str]:
    """Move whole source videos from split ``source`` to ``target`` until ~``fraction`` of its clips moved.

    Deterministic per seed. Among 256 seeded video orders it keeps the one whose carved class mix is
    closest to the source split's (IndoMER's rare classes have under 10 clips, so a single random
    draw often leaves a class out of valid). Returns the moved video ids.
    """
    pool = [r for r in rows if r["split"] == source]
    if fraction <= 0 or not pool:
        return []
    clips_per_video: dict[str, list[dict]] = defaultdict(list)
    for r in pool:
        clips_per_video[r["video_id"]].append(r)
    videos = sorted(clips_per_video)
    if len(videos) < 2:
        raise ValueError(
            f"cannot carve a video-disjoint {target} split from {len(videos)} source video(s) in {source}"
        )
    want = max(1, round(fraction * len(pool)))
    classes = sorted({r[stratify] for r in pool if r[stratify] is not None})
    overall = np.array([sum(r[stratify] == c for r in pool) for c in classes], dtype=float)
    overall /= max(overall.sum(), 1.0)
    rng = np.random.default_rng(seed)
    best: tuple[float, list[str]] | None = None
    for _ in range(256):
        order = [videos[i] for i in rng.permutation(len(videos))]
        chosen, count = [], 0
        for v in order:
            if count >= want or len(chosen) == len(videos) - 1:
                break
            chosen.append(v)
            count += len(clips_per_video[v])
        counts = Counter(r[stratify] for v in chosen for r in clips_per_video[v])
        mix = np.array([counts.get(c, 0) for c in classes], dtype=float)
        mix /= max(mix.sum(), 1.0)
        missing = sum(counts.get(c, 0) == 0 for c in classes)
        score = float(np.abs(mix - overall).sum()) + missing + abs(count - want) / want
        if best is None or score < best[0]:
            best = (score, chosen)
    assert best is not None
    moved = set(best[1])
    for r in pool:
        if r["video_id"] in moved:
            r["split"] = target
    return sorted(moved)


def check_video_disjoint(rows: list[dict], problems: list[Problem]) -> list[dict]:
    """Refuse source videos that occur in more than one published split.

    The rows of such a video in its smaller split are reported (and dropped from the returned rows).
    """
    splits_of: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        splits_of[r["video_id"]][r["split"]] += 1
    bad_rows = set()
    for video, counts in splits_of.items():
        if len(counts) < 2:
            continue
        keep = max(counts, key=lambda s: (counts[s], -SPLITS.index(s)))
        listing = ", ".join(f"{s} ({n} clips)" for s, n in sorted(counts.items()))
        for r in rows:
            if r["video_id"] == video and r["split"] != keep:
                problems.append(
                    Problem(
                        r["manifest_file"],
                        r["manifest_row"],
                        "video",
                        f"source video {video!r} appears in several published splits: {listing}; "
                        "splits must not share a video (fix the split assignment)",
                        r["clip_id"],
                    )
                )
                bad_rows.add(r["clip_id"])
    return [r for r in rows if r["clip_id"] not in bad_rows]


def assert_video_disjoint(rows: list[dict]) -> None:
    """Proof obligation after every split operation: no video_id in two splits."""
    seen: dict[str, str] = {}
    for r in rows:
        prev = seen.setdefault(r["video_id"], r["split"])
        if prev != r["split"]:
            raise AssertionError(f"video {r['video_id']!r} is in both {prev} and {r['split']}")


def _empty_row() -> dict:
    return {k: None for k in ROW_FIELDS}


def _finish(
    manifest: Manifest, rows: list[dict], cfg: IngestConfig, *, has_valid: bool, has_test: bool
) -> Manifest:
    """Shared tail of every reader: duplicates, disjointness, carving valid/test, final proof."""
    first: dict[str, dict] = {}
    unique = []
    for r in rows:
        if r["clip_id"] in first:
            f = first[r["clip_id"]]
            manifest.problems.append(
                Problem(
                    r["manifest_file"],
                    r["manifest_row"],
                    "clip_id",
                    f"duplicate clip id {r['clip_id']!r} (first at {f['manifest_file']}:{f['manifest_row']})",
                    r["clip_id"],
                )
            )
            continue
        first[r["clip_id"]] = r
        unique.append(r)
    rows = check_video_disjoint(unique, manifest.problems)
    stratify = "emotion" if any(r["emotion"] for r in rows) else "sentiment"
    if not has_test:
        moved = carve_split(
            rows, cfg.test_fraction, cfg.seed + 1, source="train", target="test", stratify=stratify
        )
        manifest.notes.append(
            f"no published test split: carved {len(moved)} source videos into test "
            f"(test_fraction={cfg.test_fraction}, seed={cfg.seed + 1})"
        )
    if not has_valid:
        moved = carve_split(
            rows, cfg.valid_fraction, cfg.seed, source="train", target="valid", stratify=stratify
        )
        manifest.notes.append(
            f"valid carved from train by whole source video: {len(moved)} videos "
            f"(valid_fraction={cfg.valid_fraction}, seed={cfg.seed})"
        )
    assert_video_disjoint(rows)
    manifest.rows = rows
    return manifest


# --------------------------------------------------------------------------------------------- IndoMER

INDOMER_SPLIT_FILES = {
    "7": ("7_Class", "7_class_{}.json"),
    "3": ("3_Class", "3_class_{}.json"),
}
INDOMER_PUBLISHED = {"train": "train", "val": "test"}
# Fields where the split JSONs (read first) win over Annotations.csv without a disagreement check: the
# JSON transcripts are the clean ones (the published CSV has mojibake in 15 rows), and the JSONs may
# give media paths where the CSV only has file names.
FIRST_SOURCE_WINS = ("text", "video_file", "audio_file")


def read_indomer(root: Path, cfg: IngestConfig) -> Manifest:
    """IndoMER: ``Annotations.csv`` and/or ``7_Class``/``3_Class`` split JSONs; media in videos/, audios/.

    Published train becomes train + a video-disjoint valid; published val becomes test. When only
    ``Annotations.csv`` exists, test is carved by video too (and noted in dataset.json).
    """
    emotion_set, sentiment_set = FORMAT_LABEL_SETS["indomer"]
    manifest = Manifest(
        "indomer", root, [], emotion_labels=emotion_set, sentiment_labels=sentiment_set, language="id"
    )
    problems = manifest.problems
    csv_path = root / "Annotations.csv"
    json_paths = {
        (kind, published): root / folder / pattern.format(published)
        for kind, (folder, pattern) in INDOMER_SPLIT_FILES.items()
        for published in INDOMER_PUBLISHED
    }
    present_json = {k: p for k, p in json_paths.items() if p.is_file()}
    if not csv_path.is_file() and not present_json:
        raise ManifestError(
            [
                Problem(
                    str(csv_path),
                    0,
                    "-",
                    "no IndoMER annotations: expected Annotations.csv and/or 7_Class/, 3_Class/ split JSONs",
                )
            ]
        )
    # clip -> merged fields, each value with the (file,row) it came from, to report disagreements.
    merged: dict[str, dict[str, tuple[object, str, int]]] = defaultdict(dict)
    first_seen: dict[str, tuple[str, int]] = {}
    duplicates: list[Problem] = []

    def put(clip: str, column: str, value: object, file: str, row: int) -> None:
        if value is None or (isinstance(value, str) and value == ""):
            return
        previous = merged[clip].get(column)
        if previous is not None and previous[0] != value and column not in FIRST_SOURCE_WINS:
            problems.append(
                Problem(
                    file,
                    row,
                    column,
                    f"{column} {value!r} disagrees with {previous[0]!r} at {previous[1]}:{previous[2]}",
                    clip,
                )
            )
            merged[clip]["_conflict"] = (True, file, row)
            return
        if previous is None:
            merged[clip][column] = (value, file, row)

    for (kind, published), path in sorted(present_json.items()):
        display = str(path)
        required = ("sample_id", "text", "label", "video")
        seen_here: set[str] = set()
        for row, item in _read_json_list(path, required, display):
            chk = _RowChecker(display, row, problems)
            clip = chk.text("sample_id", item.get("sample_id"))
            if clip is None:
                continue
            chk.clip_id = clip
            if clip in seen_here:
                first = first_seen.get(clip, (display, 0))
                duplicates.append(
                    Problem(
                        display,
                        row,
                        "sample_id",
                        f"duplicate clip id {clip!r} (first at {first[0]}:{first[1]})",
                        clip,
                    )
                )
                continue
            seen_here.add(clip)
            first_seen.setdefault(clip, (display, row))
            put(clip, "split", INDOMER_PUBLISHED[published], display, row)
            text = chk.text("text", item.get("text"))
            put(clip, "text", text, display, row)
            if kind == "7":
                put(
                    clip,
                    "emotion",
                    chk.label("label", item.get("label"), emotion_set, required=True),
                    display,
                    row,
                )
                put(
                    clip,
                    "sentiment",
                    chk.label("sentiment_label", item.get("sentiment_label"), sentiment_set, required=False),
                    display,
                    row,
                )
            else:
                put(
                    clip,
                    "sentiment",
                    chk.label("label", item.get("label"), sentiment_set, required=True),
                    display,
                    row,
                )
                for col, key in (
                    ("text_sentiment", "text_label"),
                    ("audio_sentiment", "audio_label"),
                    ("video_sentiment", "video_label"),
                ):
                    put(clip, col, chk.label(key, item.get(key), sentiment_set, required=False), display, row)
            put(clip, "video_file", chk.text("video", item.get("video")), display, row)
            put(clip, "audio_file", chk.text("audio", item.get("audio"), required=False), display, row)
            if not chk.ok:
                merged[clip]["_bad"] = (True, display, row)

    if csv_path.is_file():
        display = str(csv_path)
        required = ("video_name", "emotion", "sentiment", "text")
        seen_here = set()
        for row, rec in _read_csv(csv_path, required, display):
            chk = _RowChecker(display, row, problems)
            name = chk.text("video_name", rec.get("video_name"))
            if name is None:
                continue
            clip = name[:-4] if name.lower().endswith(".mp4") else name
            chk.clip_id = clip
            if clip in seen_here:
                first = first_seen.get(clip, (display, 0))
                duplicates.append(
                    Problem(
                        display,
                        row,
                        "video_name",
                        f"duplicate clip id {clip!r} (first at {first[0]}:{first[1]})",
                        clip,
                    )
                )
                continue
            seen_here.add(clip)
            first_seen.setdefault(clip, (display, row))
            if present_json and clip not in merged:
                chk.fail(
                    "video_name",
                    f"clip {clip!r} is in Annotations.csv but in none of the split JSONs, so it has no split",
                )
                continue
            put(clip, "text", chk.text("text", rec.get("text")), display, row)
            put(
                clip,
                "emotion",
                chk.label("emotion", rec.get("emotion"), emotion_set, required=True),
                display,
                row,
            )
            put(
                clip,
                "sentiment",
                chk.label("sentiment", rec.get("sentiment"), sentiment_set, required=True),
                display,
                row,
            )
            for col in ("text_sentiment", "audio_sentiment", "video_sentiment"):
                put(clip, col, chk.label(col, rec.get(col), sentiment_set, required=False), display, row)
            put(clip, "video_file", name, display, row)
            put(
                clip,
                "audio_file",
                chk.text("audio_name", rec.get("audio_name"), required=False),
                display,
                row,
            )
            for col in ("speaker_id", "aux_keywords", "aux_face", "aux_prosody"):
                put(clip, col, chk.text(col, rec.get(col), required=False), display, row)
            if not chk.ok:
                merged[clip]["_bad"] = (True, display, row)
    problems.extend(duplicates)

    video_root = root / cfg.video_dir
    audio_root = root / cfg.audio_dir
    rows = []
    for clip, fields in merged.items():
        file, row = first_seen[clip]
        if "_bad" in fields or "_conflict" in fields:
            continue
        chk = _RowChecker(file, row, problems)
        chk.clip_id = clip
        match = INDOMER_CLIP.match(clip)
        if not match:
            chk.fail("sample_id", f"clip name {clip!r} does not follow clip_<video>_<topic>_<index>")
            continue
        r = _empty_row()
        r.update({k: v[0] for k, v in fields.items() if k in ROW_FIELDS})
        r["clip_id"] = clip
        r["video_id"] = match["video"]
        r["speaker_id"] = r["speaker_id"] or match["video"]
        r["split"] = r["split"] or "train"
        r["manifest_file"], r["manifest_row"] = file, row
        r["source_video"] = chk.media("video", video_root, fields["video_file"][0])
        if "audio_file" in fields:
            # A missing wav is not an error: the audio then comes from the mp4's own track.
            r["source_audio"] = chk.media("audio", audio_root, fields["audio_file"][0], required=False)
        if r["text"] is None:
            chk.fail("text", "no transcript for this clip")
        if r["emotion"] is None and r["sentiment"] is None:
            chk.fail("label", "clip has neither an emotion nor a sentiment label")
        if chk.ok:
            rows.append(r)
    return _finish(manifest, rows, cfg, has_valid=False, has_test=bool(present_json))


# --------------------------------------------------------------------------------------------- CH-SIMS

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
    for row, rec in _read_csv(path, CHSIMS_REQUIRED, display):
        chk = _RowChecker(display, row, manifest.problems)
        video = chk.text("video_id", rec.get("video_id"))
        clip = chk.text("clip_id", rec.get("clip_id"))
        if video is None or clip is None:
            continue
        r = _empty_row()
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
    return _finish(manifest, rows, cfg, has_valid=has_valid, has_test=has_test)


# ------------------------------------------------------------------------------------------------ MELD

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
        for row, rec in _read_csv(path, MELD_REQUIRED, display):
            chk = _RowChecker(display, row, manifest.problems)
            dia = chk.text("Dialogue_ID", rec.get("Dialogue_ID"))
            utt = chk.text("Utterance_ID", rec.get("Utterance_ID"))
            if dia is None or utt is None:
                continue
            r = _empty_row()
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
    return _finish(manifest, rows, cfg, has_valid="valid" in present, has_test="test" in present)


# ----------------------------------------------------------------------------------------------- JSONL

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
    items = _read_jsonl(path, display)
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
        chk = _RowChecker(display, row, manifest.problems)
        r = _empty_row()
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
    return _finish(manifest, rows, cfg, has_valid=has_valid, has_test=has_test)


READERS = {"indomer": read_indomer, "chsims": read_chsims, "meld": read_meld, "jsonl": read_jsonl}


def read_manifest(root: Path, cfg: IngestConfig) -> Manifest:
    """Read and validate the manifest of ``cfg.format`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError([Problem(str(root), 0, "-", "input dir does not exist")])
    manifest = READERS[cfg.format](root, cfg)
    for note in manifest.notes:
        log.info(note)
    log.info("%s manifest: %d good rows, %d problems", cfg.format, len(manifest.rows), len(manifest.problems))
    return manifest
