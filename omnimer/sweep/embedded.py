"""The smoke test's embedded default: a tiny random-init Thinker and synthetic IndoMER-format shards,
built once under the sweep's storage path (no model hub, no dataset download).

Used by ``sweeps/aux_ablation.py --smoke-test``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omnimer import storage

log = logging.getLogger(__name__)


def embedded_root(storage_root: str) -> Path:
    """Where the smoke test's embedded data lives: ``<storage-path>/_embedded`` for a local storage
    path; for an object store, a local cache dir (the shards and the model are read with local paths),
    ``$OMNIMER_CACHE_DIR/embedded`` (default ``~/.cache/omnimer/embedded``)."""
    if storage.is_remote(storage_root):
        return storage.cache_dir() / "embedded"
    return Path(storage_root) / "_embedded"


def ensure_embedded_default(root: Path) -> tuple[Path, Path]:
    """The smoke test's tiny Thinker and synthetic shards under ``root``, built once and reused."""
    corpus, shards, model = root / "corpus", root / "shards", root / "tiny-model"
    if not (shards / "dataset.json").is_file():
        # Imported only to build: rendering and ingest need PyAV and decord, training does not.
        from omnimer.config import IngestConfig
        from omnimer.data.ingest import ingest
        from omnimer.data.synthetic import SynthConfig, synthesize

        if not (corpus / "Annotations.csv").is_file():
            log.info("smoke test: synthesizing a small corpus into %s", corpus)
            if corpus.exists():
                shutil.rmtree(corpus)
            synthesize(corpus, SynthConfig(clips=64, speakers=12, seed=0), progress=False)
        log.info("smoke test: ingesting %s into %s", corpus, shards)
        ingest(corpus, shards, IngestConfig(frames=4, size=56, max_audio_seconds=2.0), overwrite=True)
    if not (model / "config.json").is_file():
        from omnimer.model.tiny import build_tiny_model

        build_tiny_model(model, seed=0)
    return shards, model
