"""IndoMER reader: ``Annotations.csv`` and/or ``7_Class``/``3_Class`` split JSONs; media in videos/, audios/.

Two steps. :func:`read_indomer_annotations` reads the annotation files and merges them per clip: every
field keeps the file and row it came from, and every problem is recorded (a bad label, a duplicate
clip, files that disagree, a clip name that is not ``clip_<video>_<topic>_<index>``). :func:`read_indomer`
turns the merged clips into manifest rows (media paths, splits). ``omnimer synth --from-annotations``
(:func:`omnimer.data.synthetic.planning.plan_from_annotations`) reads real annotations through the first
step too, so both commands apply the same rules.

Run through ``omnimer ingest --format indomer --input DIR --out DIR``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from omnimer.config import IngestConfig
from omnimer.data.formats.manifest import (
    ROW_FIELDS,
    Manifest,
    ManifestError,
    Problem,
    RowChecker,
    empty_row,
    finish_manifest,
    read_csv_rows,
    read_json_list,
)
from omnimer.labels import FORMAT_LABEL_SETS

INDOMER_CLIP = re.compile(r"^clip_(?P<video>\d+)_(?P<topic>[^_/\\]+)_(?P<index>\d+)$")
INDOMER_SPLIT_FILES = {
    "7": ("7_Class", "7_class_{}.json"),
    "3": ("3_Class", "3_class_{}.json"),
}
# Published split name -> manifest split: published train becomes train (+ a carved valid), val is test.
INDOMER_PUBLISHED = {"train": "train", "val": "test"}
# Fields where the split JSONs (read first) win over Annotations.csv without a disagreement check: the
# JSON transcripts are the clean ones (the published CSV has mojibake in 15 rows), and the JSONs may
# give media paths where the CSV only has file names.
FIRST_SOURCE_WINS = ("text", "video_file", "audio_file")
SPLIT_JSON_REQUIRED = ("sample_id", "text", "label", "video")
ANNOTATIONS_CSV_REQUIRED = ("video_name", "emotion", "sentiment", "text")


def clip_from_video_name(video_name: str) -> str:
    """The clip id of an ``Annotations.csv`` video_name: the name without its ``.mp4``."""
    name = video_name.strip()
    return name[:-4] if name.lower().endswith(".mp4") else name


class Sourced(NamedTuple):
    """One merged field value and the file and row it was read from."""

    value: object
    file: str
    row: int


@dataclass
class IndomerAnnotations:
    """The annotation files found under ``root`` and the clips merged from them.

    ``fields`` maps each clip, in the order first read (split JSONs, 3-class before 7-class, then the
    CSV), to its columns: split (the manifest's name: ``train``, or ``test`` for published val), text,
    emotion, sentiment, text/audio/video_sentiment, video_file, audio_file and, from the CSV only,
    speaker_id, aux_keywords, aux_face, aux_prosody. Absent or empty values are left out.
    """

    root: Path
    csv_path: Path | None  # Annotations.csv, when it exists
    split_files: dict[tuple[str, str], Path]  # (kind "7" or "3", published split) -> file, those present
    fields: dict[str, dict[str, Sourced]] = field(default_factory=dict)
    first_seen: dict[str, tuple[str, int]] = field(default_factory=dict)  # clip -> (file, row)
    rejected: set[str] = field(default_factory=set)  # clips with a bad value or disagreeing files
    clip_names: dict[str, re.Match[str]] = field(default_factory=dict)  # parsed names of the other clips
    # Problems of the files' rows: unreadable values, duplicates, disagreements between files.
    problems: list[Problem] = field(default_factory=list)
    # Clip names that do not parse, kept per clip so that a reader can report them in clip order.
    bad_names: dict[str, Problem] = field(default_factory=dict)

    def all_problems(self) -> list[Problem]:
        """Every problem found: those of the files' rows, then the bad clip names."""
        return [*self.problems, *self.bad_names.values()]

    def published_split_files(self, kind: str) -> dict[str, Path]:
        """Published split ("train", "val") -> file of the 7- or 3-class split JSONs that exist."""
        return {published: path for (k, published), path in self.split_files.items() if k == kind}


class _Merger:
    """Merges the rows of each annotation file into ``annotations``, in reading order."""

    def __init__(self, annotations: IndomerAnnotations) -> None:
        self.annotations = annotations
        self.problems = annotations.problems
        self.duplicates: list[Problem] = []  # reported after every file's own problems
        self.emotion_set, self.sentiment_set = FORMAT_LABEL_SETS["indomer"]

    def put(self, clip: str, column: str, value: object, file: str, row: int) -> None:
        """Record a clip's field; a value that disagrees with an earlier file's rejects the clip."""
        if value is None or (isinstance(value, str) and value == ""):
            return
        fields = self.annotations.fields.setdefault(clip, {})
        previous = fields.get(column)
        if previous is not None and previous.value != value and column not in FIRST_SOURCE_WINS:
            self.problems.append(
                Problem(
                    file,
                    row,
                    column,
                    f"{column} {value!r} disagrees with {previous.value!r} at {previous.file}:{previous.row}",
                    clip,
                )
            )
            self.annotations.rejected.add(clip)
            return
        if previous is None:
            fields[column] = Sourced(value, file, row)

    def reject(self, clip: str) -> None:
        """A clip with a bad value in some file gives no row."""
        self.annotations.fields.setdefault(clip, {})
        self.annotations.rejected.add(clip)

    def first_in_file(self, clip: str, seen_here: set[str], display: str, row: int, column: str) -> bool:
        """False (and a duplicate reported) when ``clip`` was already in this file."""
        if clip in seen_here:
            first = self.annotations.first_seen.get(clip, (display, 0))
            self.duplicates.append(
                Problem(
                    display, row, column, f"duplicate clip id {clip!r} (first at {first[0]}:{first[1]})", clip
                )
            )
            return False
        seen_here.add(clip)
        self.annotations.first_seen.setdefault(clip, (display, row))
        return True

    def read_split_json(self, kind: str, published: str, path: Path) -> None:
        """One ``7_class_*.json`` or ``3_class_*.json``: split, text, labels and media file names."""
        display = str(path)
        seen_here: set[str] = set()
        for row, item in read_json_list(path, SPLIT_JSON_REQUIRED, display):
            chk = RowChecker(display, row, self.problems)
            clip = chk.text("sample_id", item.get("sample_id"))
            if clip is None:
                continue
            chk.clip_id = clip
            if not self.first_in_file(clip, seen_here, display, row, "sample_id"):
                continue
            self.put(clip, "split", INDOMER_PUBLISHED[published], display, row)
            self.put(clip, "text", chk.text("text", item.get("text")), display, row)
            if kind == "7":
                emotion = chk.label("label", item.get("label"), self.emotion_set, required=True)
                self.put(clip, "emotion", emotion, display, row)
                sentiment = chk.label(
                    "sentiment_label", item.get("sentiment_label"), self.sentiment_set, required=False
                )
                self.put(clip, "sentiment", sentiment, display, row)
            else:
                sentiment = chk.label("label", item.get("label"), self.sentiment_set, required=True)
                self.put(clip, "sentiment", sentiment, display, row)
                for col, key in (
                    ("text_sentiment", "text_label"),
                    ("audio_sentiment", "audio_label"),
                    ("video_sentiment", "video_label"),
                ):
                    value = chk.label(key, item.get(key), self.sentiment_set, required=False)
                    self.put(clip, col, value, display, row)
            self.put(clip, "video_file", chk.text("video", item.get("video")), display, row)
            self.put(clip, "audio_file", chk.text("audio", item.get("audio"), required=False), display, row)
            if not chk.ok:
                self.reject(clip)

    def read_csv(self, path: Path) -> None:
        """``Annotations.csv``: labels, text, media file names and the optional extra columns."""
        display = str(path)
        has_split_files = bool(self.annotations.split_files)
        seen_here: set[str] = set()
        for row, rec in read_csv_rows(path, ANNOTATIONS_CSV_REQUIRED, display):
            chk = RowChecker(display, row, self.problems)
            name = chk.text("video_name", rec.get("video_name"))
            if name is None:
                continue
            clip = clip_from_video_name(name)
            chk.clip_id = clip
            if not self.first_in_file(clip, seen_here, display, row, "video_name"):
                continue
            if has_split_files and clip not in self.annotations.fields:
                chk.fail(
                    "video_name",
                    f"clip {clip!r} is in Annotations.csv but in none of the split JSONs, so it has no split",
                )
                continue
            self.put(clip, "text", chk.text("text", rec.get("text")), display, row)
            emotion = chk.label("emotion", rec.get("emotion"), self.emotion_set, required=True)
            self.put(clip, "emotion", emotion, display, row)
            sentiment = chk.label("sentiment", rec.get("sentiment"), self.sentiment_set, required=True)
            self.put(clip, "sentiment", sentiment, display, row)
            for col in ("text_sentiment", "audio_sentiment", "video_sentiment"):
                value = chk.label(col, rec.get(col), self.sentiment_set, required=False)
                self.put(clip, col, value, display, row)
            self.put(clip, "video_file", name, display, row)
            audio = chk.text("audio_name", rec.get("audio_name"), required=False)
            self.put(clip, "audio_file", audio, display, row)
            for col in ("speaker_id", "aux_keywords", "aux_face", "aux_prosody"):
                self.put(clip, col, chk.text(col, rec.get(col), required=False), display, row)
            if not chk.ok:
                self.reject(clip)


def read_indomer_annotations(root: Path) -> IndomerAnnotations:
    """Read and merge ``Annotations.csv`` and the ``7_Class``/``3_Class`` split JSONs under ``root``.

    The split JSONs are read first (their transcripts are the clean ones), then the CSV; a clip whose
    files disagree on a label or split, or that has a bad value, is rejected with a problem located as
    ``file:row:column``. Raises :class:`ManifestError` when there is no annotation file at all, or a
    file cannot be read (not JSON, a missing required column).
    """
    root = Path(root)
    csv_path = root / "Annotations.csv"
    json_paths = {
        (kind, published): root / folder / pattern.format(published)
        for kind, (folder, pattern) in INDOMER_SPLIT_FILES.items()
        for published in INDOMER_PUBLISHED
    }
    present_json = {k: p for k, p in sorted(json_paths.items()) if p.is_file()}
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
    annotations = IndomerAnnotations(root, csv_path if csv_path.is_file() else None, present_json)
    merger = _Merger(annotations)
    for (kind, published), path in present_json.items():
        merger.read_split_json(kind, published, path)
    if annotations.csv_path is not None:
        merger.read_csv(annotations.csv_path)
    annotations.problems.extend(merger.duplicates)
    for clip in annotations.fields:
        if clip in annotations.rejected:
            continue
        match = INDOMER_CLIP.match(clip)
        if match:
            annotations.clip_names[clip] = match
            continue
        file, row = annotations.first_seen[clip]
        reason = f"clip name {clip!r} does not follow clip_<video>_<topic>_<index>"
        annotations.bad_names[clip] = Problem(file, row, "sample_id", reason, clip)
    return annotations


def _manifest_rows(annotations: IndomerAnnotations, cfg: IngestConfig, problems: list[Problem]) -> list[dict]:
    """Rows of the good clips: ids from the clip name, media paths inside the media dirs, checks."""
    video_root = annotations.root / cfg.video_dir
    audio_root = annotations.root / cfg.audio_dir
    rows = []
    for clip, fields in annotations.fields.items():
        if clip in annotations.rejected:
            continue
        if clip in annotations.bad_names:
            problems.append(annotations.bad_names[clip])
            continue
        file, row = annotations.first_seen[clip]
        chk = RowChecker(file, row, problems)
        chk.clip_id = clip
        video = annotations.clip_names[clip]["video"]
        r = empty_row()
        r.update({k: v.value for k, v in fields.items() if k in ROW_FIELDS})
        r["clip_id"] = clip
        r["video_id"] = video
        r["speaker_id"] = r["speaker_id"] or video
        r["split"] = r["split"] or "train"
        r["manifest_file"], r["manifest_row"] = file, row
        r["source_video"] = chk.media("video", video_root, fields["video_file"].value)
        if "audio_file" in fields:
            # A missing wav is not an error: the audio then comes from the mp4's own track.
            r["source_audio"] = chk.media("audio", audio_root, fields["audio_file"].value, required=False)
        if r["text"] is None:
            chk.fail("text", "no transcript for this clip")
        if r["emotion"] is None and r["sentiment"] is None:
            chk.fail("label", "clip has neither an emotion nor a sentiment label")
        if chk.ok:
            rows.append(r)
    return rows


def read_indomer(root: Path, cfg: IngestConfig) -> Manifest:
    """IndoMER: ``Annotations.csv`` and/or ``7_Class``/``3_Class`` split JSONs; media in videos/, audios/.

    Published train becomes train + a video-disjoint valid; published val becomes test. When only
    ``Annotations.csv`` exists, test is carved by video too (and noted in dataset.json).
    """
    emotion_set, sentiment_set = FORMAT_LABEL_SETS["indomer"]
    annotations = read_indomer_annotations(root)
    manifest = Manifest(
        "indomer",
        root,
        [],
        problems=list(annotations.problems),
        emotion_labels=emotion_set,
        sentiment_labels=sentiment_set,
        language="id",
    )
    rows = _manifest_rows(annotations, cfg, manifest.problems)
    return finish_manifest(manifest, rows, cfg, has_valid=False, has_test=bool(annotations.split_files))
