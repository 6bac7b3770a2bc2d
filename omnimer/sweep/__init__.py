"""Sweeps of OmniMER training runs on Ray Tune: the aux-task ablation grid and the Optuna search.

    python sweeps/aux_ablation.py --mode ablation --smoke-test --name smoke --storage-path runs/sweeps

The script parses its arguments and calls these, in order:

- :mod:`~omnimer.sweep.request`: the request, validated before any Ray work (``sweep.json``);
- :mod:`~omnimer.sweep.resources`: how many trials fit on the cluster at once;
- :mod:`~omnimer.sweep.embedded`: the smoke test's tiny model and synthetic shards;
- :mod:`~omnimer.sweep.tuner`: the Tuner, started or resumed, and the trials' records settled;
- :mod:`~omnimer.sweep.trial`: one trial (its spec, its run config, the function Tune runs);
- :mod:`~omnimer.sweep.search`: the Optuna space, ASHA and the study of a search;
- :mod:`~omnimer.sweep.invocations`: ``invocations.json``, one entry per invocation.
"""
