"""omnimer: the library of omnimer-sweeps (components; the only argument parsing is :mod:`omnimer.cli`).

The folders follow the pipeline: ``data/`` (manifests → shards), ``model/``, the conversations and
losses (``aux_tasks``, ``tasks``, ``collate``, ``losses``, ``metrics``), ``training/`` (one run on Ray
Train) and ``sweep/`` (Ray Tune). ``sweeps/aux_ablation.py`` and ``omnimer`` (the CLI) use them.
"""
