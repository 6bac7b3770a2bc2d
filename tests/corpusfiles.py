"""Readers of an IndoMER-layout corpus's files for the synthetic corpus's tests: the annotation files,
the CSV as dicts, and an mp4's decoded frames and audio."""

from __future__ import annotations

import csv
from pathlib import Path

import decord
import numpy as np

from omnimer.data.synthetic import SAMPLE_RATE

JSON_FILES = (
    "7_Class/7_class_train.json",
    "7_Class/7_class_val.json",
    "3_Class/3_class_train.json",
    "3_Class/3_class_val.json",
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frames = decord.VideoReader(str(path))
    audio = decord.AudioReader(str(path), sample_rate=SAMPLE_RATE, mono=True)
    return frames.get_batch(list(range(len(frames)))).asnumpy(), audio[:].asnumpy()


def annotation_bytes(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in ("Annotations.csv", *JSON_FILES)}
