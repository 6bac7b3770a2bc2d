"""The Tune layer of a sweep: the grid (ablation) or OptunaSearch + ASHA (search) over
:func:`omnimer.sweep.trial.train_driver`, started or resumed in ``<storage-path>/<name>``, and the
records of its trials settled once Tune has ended them.

Called by ``sweeps/aux_ablation.py`` (:func:`run_sweep`, then :func:`settle_records`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omnimer import storage
from omnimer.config import TrainConfig
from omnimer.subsets import LATTICE, subset_name
from omnimer.sweep import search
from omnimer.sweep.invocations import end_invocation, invocation_log, start_invocation
from omnimer.sweep.progress import TrialLines
from omnimer.sweep.request import SWEEP_FILE, SweepRequest, check_same_sweep
from omnimer.sweep.resources import cluster_slots
from omnimer.sweep.trial import run_groups, train_driver, trial_specs
from omnimer.training.dataset import SharedShards
from omnimer.training.record import RECORD_FILE, Status, settle_run_dir

log = logging.getLogger(__name__)


def run_sweep(request: SweepRequest, shards: SharedShards | None = None):
    """Start or resume the sweep on the connected Ray cluster; returns Tune's ResultGrid and this
    invocation's entry of ``invocations.json``. ``shards``: the sweep's data, if this command has
    already read them (the probe of ``--runs-per-trial auto``)."""
    from ray import tune

    experiment_dir = request.experiment_dir
    base = TrainConfig.from_dict(request.base)
    slots, driver_resources = cluster_slots(base)
    trials = total_trials(request)
    log.info(
        "%s sweep %s: %d trial(s), %d at a time", request.mode, experiment_dir, trials, min(slots, trials)
    )
    experiment_path, experiment_filesystem = storage.ray_storage(experiment_dir)
    resuming = check_same_sweep(experiment_dir, request) and tune.Tuner.can_restore(
        experiment_path, storage_filesystem=experiment_filesystem
    )
    invocation = start_invocation(experiment_dir, slots, resuming)
    with invocation_log(experiment_dir, invocation["invocation"]):
        shards = shards or SharedShards(base.data.path)
        results = _fit(request, base, slots, driver_resources, invocation["invocation"], resuming, shards)
    end_invocation(experiment_dir, invocation)
    return results, invocation


def _fit(
    request: SweepRequest,
    base: TrainConfig,
    slots: int,
    driver_resources: dict,
    invocation: int,
    resuming: bool,
    shards: SharedShards,
):
    """Build or restore the Tuner and fit it (the trials run here)."""
    from ray import tune

    experiment_dir = request.experiment_dir
    remote = storage.is_remote(experiment_dir)
    experiment_path, experiment_filesystem = storage.ray_storage(experiment_dir)
    trainable = make_trainable(base, shards, driver_resources, invocation)
    if remote and request.mode == "search":
        search.fetch_study(experiment_dir, resuming)
    if resuming:
        log.info("resuming %s: finished trials are kept, the others continue", experiment_dir)
        tuner = tune.Tuner.restore(
            experiment_path,
            trainable=trainable,
            resume_unfinished=True,
            restart_errored=True,
            storage_filesystem=experiment_filesystem,
        )
    else:
        storage.write_json(storage.join(experiment_dir, SWEEP_FILE), request.to_json())
        tuner = build_tuner(request, base, slots, trainable)
    try:
        return tuner.fit()
    finally:
        if remote and request.mode == "search":
            search.upload_study(experiment_dir)


def make_trainable(base: TrainConfig, shards: SharedShards, driver_resources: dict, invocation: int):
    """:func:`train_driver` with what every trial shares, prepared once here: the shards read into
    Ray's object store (:class:`~omnimer.training.dataset.SharedShards`), the scoring of the base
    config (:func:`~omnimer.training.driver.resolved_scoring`) and the queues that carry each Train
    run's reports to its trial (:class:`~omnimer.sweep.relay.ReportQueues`, owned by this process)."""
    from ray import tune

    from omnimer.sweep.relay import report_queues
    from omnimer.training.driver import resolved_scoring

    shared = {
        "dataset": shards.dataset(),
        "invocation": invocation,
        "scoring": resolved_scoring(base),
        "reports": report_queues(),
    }
    return tune.with_resources(tune.with_parameters(train_driver, **shared), driver_resources)


def build_tuner(request: SweepRequest, base: TrainConfig, slots: int, trainable):
    """The ``Tuner``: grid over the chosen aux subsets × seeds, or OptunaSearch + ASHA."""
    from ray import tune

    constant = {
        "base": request.base,
        "mode": request.mode,
        "experiment": request.name,
        "runs_dir": request.runs_dir,
    }
    storage_path, storage_filesystem = storage.ray_storage(request.storage)
    run_config = tune.RunConfig(
        name=request.name,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        # A trial that fails (a lost node, an OOM) starts again; its Train run resumes from the
        # last checkpoint under runs/<run-name>.
        failure_config=tune.FailureConfig(max_failures=2),
        # One line per ended trial (omnimer.sweep.progress) instead of Tune's repeated status table.
        callbacks=[TrialLines(total_trials(request))],
        verbose=0,
    )
    if request.mode == "ablation":
        cells = [list(s) for s in LATTICE if subset_name(s) in request.subsets]
        if request.runs_per_trial > 1:  # each trial trains a group of runs in one worker group
            groups = run_groups(cells, request.seeds, request.runs_per_trial)
            param_space = {**constant, "runs": tune.grid_search(groups)}
        else:
            param_space = {
                **constant,
                "subset": tune.grid_search(cells),
                "seed": tune.grid_search(request.seeds),
            }
        # A grid trial's process (Tune's function actor: Python, Ray, torch and omnimer imported,
        # about 8 CPU-s on the demo's 2 cores) takes the next trial once its Train run has ended; a
        # grid trial ends only when its run did. Not in a search: ASHA stops a trial while its Train
        # run is still going, Tune cannot reset that actor (its thread outlives
        # TUNE_FUNCTION_THREAD_TIMEOUT_S) and would fail the next trial it hands to it.
        tune_config = tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=True)
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    searcher, scheduler = search.build_search(
        request.name, request.experiment_dir, base.train.lr, base.train.epochs, request.seeds[0], constant
    )
    tune_config = tune.TuneConfig(
        metric=search.METRIC,
        mode="max",
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=request.num_samples,
        max_concurrent_trials=slots,
        reuse_actors=False,
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def total_trials(request: SweepRequest) -> int:
    """How many trials the sweep has: cells × seeds in groups of ``runs_per_trial``, or the search's
    samples."""
    if request.mode == "ablation":
        return math.ceil(len(request.subsets) * len(request.seeds) / request.runs_per_trial)
    return request.num_samples


def run_records(runs_dir: Path | str) -> list[str]:
    """The ``record.json`` of every run under ``runs_dir`` (``runs/<run-name>/record.json``), sorted."""
    return storage.find_files(runs_dir, RECORD_FILE, max_depth=1)


def settle_records(results, runs_dir: Path | str, mode: str) -> dict[str, int]:
    """After the sweep, settle the records of trials that Tune ended from outside; count per status.

    A trial's driver writes ``finished`` at the end of its run and nothing when the run fails
    (:func:`omnimer.sweep.trial.train_driver`), so such records still say ``running``. A search trial
    that Tune ended without an error was stopped by ASHA; an errored trial failed. No trial runs
    any more, so a record still ``running`` failed.
    """
    for result in results:
        for spec in trial_specs(result.config, (result.metrics or {}).get("trial_id")):
            run_dir = storage.join(runs_dir, spec.run_name)
            if result.error is not None:
                settle_run_dir(run_dir, Status.FAILED, f"{type(result.error).__name__}: {result.error}")
            elif mode == "search":
                settle_run_dir(run_dir, Status.STOPPED)
    counts: dict[str, int] = {}
    for path in run_records(runs_dir):
        record = settle_run_dir(
            storage.parent(path), Status.FAILED, "the trial ended before its run finished"
        )
        counts[str(record.status)] = counts.get(str(record.status), 0) + 1
    return counts
