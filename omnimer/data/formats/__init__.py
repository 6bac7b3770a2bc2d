"""Manifest readers: IndoMER, CH-SIMS, MELD and a generic JSONL layout into the common row schema.

Each reader validates every row, resolves media paths inside the dataset's media root and returns a
:class:`Manifest`: the good rows (without decoded media) plus every problem found, each located as
``file:row:column: reason``. Splits are made video-disjoint here: a published train split gives
``train`` + a ``valid`` carved by whole source video with a seed; a source video found in two
published splits is refused.

Run through ``omnimer ingest --format indomer|chsims|meld|jsonl --input DIR --out DIR``, which calls
:func:`read_manifest`. One module per concept:

- :mod:`~omnimer.data.formats.manifest`: what every reader shares: the row schema (``ROW_FIELDS``,
  ``SHARD_STRING_COLUMNS``, ``SPLITS``), :class:`Problem`, :class:`ManifestError`, :class:`Manifest`,
  the CSV/JSON/JSONL row readers, the per-row checker, :func:`resolve_media`, :func:`carve_split`,
  :func:`check_video_disjoint` and the shared tail of every reader (``finish_manifest``);
- :mod:`~omnimer.data.formats.indomer`: IndoMER (``read_indomer_annotations`` merges the annotation
  files, also for ``omnimer synth --from-annotations``; ``read_indomer`` makes the rows);
- :mod:`~omnimer.data.formats.chsims`, :mod:`~omnimer.data.formats.meld`,
  :mod:`~omnimer.data.formats.jsonl`: one reader each.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omnimer.config import IngestConfig
from omnimer.data.formats.chsims import read_chsims
from omnimer.data.formats.indomer import (
    INDOMER_CLIP,
    IndomerAnnotations,
    read_indomer,
    read_indomer_annotations,
)
from omnimer.data.formats.jsonl import read_jsonl
from omnimer.data.formats.manifest import (
    ROW_FIELDS,
    SHARD_STRING_COLUMNS,
    SPLITS,
    Manifest,
    ManifestError,
    Problem,
    assert_video_disjoint,
    carve_split,
    check_video_disjoint,
    resolve_media,
)
from omnimer.data.formats.meld import read_meld

log = logging.getLogger(__name__)

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


__all__ = [
    "INDOMER_CLIP",
    "READERS",
    "ROW_FIELDS",
    "SHARD_STRING_COLUMNS",
    "SPLITS",
    "IndomerAnnotations",
    "Manifest",
    "ManifestError",
    "Problem",
    "assert_video_disjoint",
    "carve_split",
    "check_video_disjoint",
    "read_chsims",
    "read_indomer",
    "read_indomer_annotations",
    "read_jsonl",
    "read_manifest",
    "read_meld",
    "resolve_media",
]
