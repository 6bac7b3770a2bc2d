"""The data layer: dataset manifests (``formats``) → decoded media and aux targets → Parquet shards
(``ingest``, read back by ``shards``), and the synthetic IndoMER-format corpus (``synthetic``).

Used by ``omnimer synth``, ``omnimer ingest`` and ``omnimer inspect`` (:mod:`omnimer.cli`), and by the
training run, which reads the shards.
"""
