"""The manifest machinery every reader shares: the row schema, problems, file readers, checks, splits.

A reader (:mod:`~omnimer.data.formats.indomer`, ``chsims``, ``meld``, ``jsonl``) reads its files with
:func:`read_csv_rows`, :func:`read_json_list` or :func:`read_jsonl_objects`, checks every field with a
:class:`RowChecker` (which records each rejected value as a :class:`Problem` located as
``file:row:column: reason``), resolves media paths with :func:`resolve_media` and hands its rows to
:func:`finish_manifest`: duplicates, video-disjoint splits (:func:`check_video_disjoint`) and the
valid/test splits carved by whole source video (:func:`carve_split`).

Used by every reader of this package (``omnimer ingest --format ...``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnimer.config import IngestConfig
from omnimer.labels import LabelSet

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


def read_csv_rows(path: Path, required: tuple[str, ...], display: str) -> list[tuple[int, dict]]:
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


def read_json_list(path: Path, required: tuple[str, ...], display: str) -> list[tuple[int, dict]]:
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


def read_jsonl_objects(path: Path, display: str) -> list[tuple[int, dict]]:
    """Objects of a JSON-lines file as (line number, dict); blank lines are skipped, bad lines fatal."""
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


class RowChecker:
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


def empty_row() -> dict:
    """A manifest row with every field of :data:`ROW_FIELDS` unset."""
    return {k: None for k in ROW_FIELDS}


def finish_manifest(
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
