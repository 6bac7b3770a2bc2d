"""The driver of one training run: validate the config before any worker starts, build the
``TorchTrainer``, fit, and write the run's ``record.json``.

    omnimer train --config sweeps/configs/smoke.yaml model.name_or_path=runs/demo/tiny-model \\
        data.path=runs/demo/shards run.output_dir=runs/train run.name=r0

Called by ``omnimer train`` (:mod:`omnimer.cli`) and by each trial of ``sweeps/aux_ablation.py``
(:func:`omnimer.sweep.trial.train_driver`). The workers run :mod:`omnimer.training.worker`.

Outputs of ``<run.output_dir>/<run.name>/``: ``record.json``
(:class:`~omnimer.training.record.RunRecord`), ``tensorboard/`` and ``best_adapter/`` (the LoRA adapter
of the epoch with the best valid macro-F1; :mod:`omnimer.training.outputs`), and Ray's checkpoints
(adapter + DeepSpeed optimizer state, :mod:`omnimer.training.checkpoint`) under ``checkpoint_*``: those
are the Train run's, which is the run dir itself unless a sweep trial trains several runs in one
worker group (:func:`run_trainings`; its checkpoints are then under the trial's ``group-*`` dir).
``run.output_dir`` may be an object store URI (``s3://bucket/runs``, see :mod:`omnimer.storage`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

from omnimer import storage
from omnimer.config import TrainConfig
from omnimer.labels import label_set_of
from omnimer.provenance import code_version, in_repo, package_versions, repo_relative
from omnimer.training.dataset import DATASET, load_shards
from omnimer.training.record import (
    RunRecord,
    Status,
    comparable_config,
    differences,
    read_record,
    settle,
    write_record,
)

# Ray Train's switch for its per-run preemption watcher (see build_trainer).
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"

log = logging.getLogger(__name__)


def train_loop_per_worker(config: dict) -> None:
    """The workers' function, :func:`omnimer.training.worker.train_loop_per_worker`, reached through
    here: Ray pickles a module's function by reference, so the process that builds the trainer (the
    CLI, or a sweep's Tune trial) imports this module only, and the training loop's torch,
    transformers, peft and DeepSpeed are imported by the workers, which run it (about 3 CPU-s less
    per trial)."""
    from omnimer.training import worker

    worker.train_loop_per_worker(config)


def run_location(cfg: TrainConfig) -> str:
    """``<run.output_dir>/<run.name>``: an absolute local path, or a URI under an object store."""
    if storage.is_remote(cfg.run.output_dir):
        return storage.join(cfg.run.output_dir, cfg.run.name)
    return str(Path(cfg.run.output_dir).resolve() / cfg.run.name)


def validate_run(cfg: TrainConfig) -> dict:
    """Checks that need files (dataset, model, DeepSpeed config), done before any worker starts."""
    from omnimer.data.shards import read_dataset_info
    from omnimer.model.source import resolve_checkpoint

    path = Path(cfg.data.path)
    if not path.is_dir():
        raise ValueError(f"data.path {cfg.data.path!r} does not exist; run `omnimer ingest` first")
    info = read_dataset_info(path)
    labels = label_set_of(info, cfg.data.target)
    if cfg.data.label_set and cfg.data.label_set != labels.key:
        raise ValueError(
            f"data.label_set {cfg.data.label_set!r} does not match the dataset's {cfg.data.target} label set "
            f"{labels.key!r} ({path / 'dataset.json'})"
        )
    if not info["counts"]["rows"].get("train"):
        raise ValueError(f"{path} has no train rows")
    try:
        resolve_checkpoint(cfg.model.name_or_path)
    except OSError as err:
        raise ValueError(f"model.name_or_path: {err}") from None
    if not in_repo(cfg.train.deepspeed_config).is_file():
        raise ValueError(f"train.deepspeed_config {cfg.train.deepspeed_config!r} does not exist")
    return info


def check_scoring(cfg: TrainConfig, info: dict, resolved: dict | None = None) -> dict:
    """The run's scoring (``eval.scoring`` resolved, verbalizers, token ids;
    :func:`omnimer.training.evaluate.resolve_scoring`) as its record keeps it, from the model's
    tokenizer: verbalizers it cannot tell apart are refused here, before any worker starts, and so is
    the logit_adjust loss when the verbalizers share a first token (it rebalances first tokens).

    ``resolved`` (:func:`resolved_scoring`) is taken as it is when it was resolved for this run's
    model, label set and ``eval.scoring``: a sweep resolves its scoring once, so that no trial's
    driver loads the tokenizer (the processor's imports cost about 6 CPU-s per trial).
    """
    if resolved is not None and resolved["for"] == scoring_key(cfg, info):
        scoring = resolved["scoring"]
    else:
        scoring = resolve_run_scoring(cfg, info)
    if cfg.loss.scheme == "logit_adjust" and scoring["first_token_ids"] is None:
        raise ValueError(
            "loss.scheme logit_adjust adjusts each label's first answer token, but with the tokenizer of "
            f"model.name_or_path {cfg.model.name_or_path!r} the verbalizers {scoring['verbalizers']} "
            "do not all start with different tokens; choose another loss.scheme"
        )
    return scoring


def resolve_run_scoring(cfg: TrainConfig, info: dict) -> dict:
    """The record's scoring entry of ``cfg``, from its model's tokenizer."""
    from omnimer.model.load import load_processor
    from omnimer.training.evaluate import resolve_scoring

    tokenizer = load_processor(cfg.model.name_or_path).tokenizer
    try:
        return resolve_scoring(tokenizer, label_set_of(info, cfg.data.target), cfg.eval.scoring).to_json()
    except ValueError as err:
        raise ValueError(
            f"model.name_or_path {cfg.model.name_or_path!r}, eval.scoring {cfg.eval.scoring}: {err}"
        ) from None


def scoring_key(cfg: TrainConfig, info: dict) -> list[str]:
    """What a run's scoring depends on: its model, its label set and ``eval.scoring``."""
    return [cfg.model.name_or_path, label_set_of(info, cfg.data.target).key, cfg.eval.scoring]


def resolved_scoring(cfg: TrainConfig) -> dict:
    """``cfg``'s scoring entry with what it was resolved for, for :func:`check_scoring` of runs that
    share ``cfg``'s model, data and ``eval.scoring`` (a sweep's, whose base config ``cfg`` is)."""
    from omnimer.data.shards import read_dataset_info

    info = read_dataset_info(Path(cfg.data.path))
    return {"for": scoring_key(cfg, info), "scoring": resolve_run_scoring(cfg, info)}


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Resolve the config's local paths on the driver: Ray workers run in another working directory.

    The data, the model and the output dir become absolute (relative ones are taken from the current
    directory). A repository file (``train.deepspeed_config``) becomes repo-relative instead: every
    process resolves it in its own copy of the code (:func:`omnimer.provenance.in_repo`), so a record
    or a sweep's Tune state holds no path into one Ray session's unpacked working dir.
    """
    model = cfg.model
    if Path(model.name_or_path).expanduser().exists():
        model = dataclasses.replace(model, name_or_path=str(Path(model.name_or_path).expanduser().resolve()))
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, path=str(Path(cfg.data.path).resolve())),
        model=model,
        train=dataclasses.replace(cfg.train, deepspeed_config=repo_relative(cfg.train.deepspeed_config)),
        run=dataclasses.replace(
            cfg.run,
            # An object store URI stays one; a local path (or file:// URI) becomes an absolute path.
            output_dir=cfg.run.output_dir
            if storage.is_remote(cfg.run.output_dir)
            else str(storage.local_path(cfg.run.output_dir).resolve()),
        ),
    )


def build_trainer(
    cfg: TrainConfig,
    *,
    callbacks: list | None = None,
    dataset=None,
    loop=train_loop_per_worker,
    loop_config: dict | None = None,
):
    """The ``TorchTrainer`` of one run: every worker gets the whole (unsplit) dataset.

    ``dataset`` is the shards as a Ray Dataset, read here from ``cfg.data.path`` if not given (a sweep
    passes one materialized dataset to all its trials, so no trial re-reads the files). ``loop`` and
    ``loop_config`` are the worker function and its argument: by default the training of ``cfg``
    alone (:func:`run_trainings` passes its runs); a sweep's ``--plan`` runs its probe
    (:mod:`omnimer.sweep.plan`) instead. The Train run is ``cfg.run.name`` under ``cfg.run.output_dir``.
    """
    import ray.train
    from ray.train.torch import TorchConfig

    from omnimer.training.trainer import Trainer

    if dataset is None:
        dataset = load_shards(cfg.data.path)
    # Every worker reads the whole dataset in a few seconds. Ray Data's progress bars for that, which
    # every worker of every trial forwards to the driver, made up 98% of a run's log (4234 lines for
    # a 2-step run, and most of a sweep's or a Ray job's log).
    dataset.context.enable_progress_bars = False
    output_dir = cfg.run.output_dir
    storage_path, storage_filesystem = storage.ray_storage(
        output_dir if storage.is_remote(output_dir) else str(Path(output_dir).resolve())
    )
    datasets = {DATASET: dataset}
    # Ray Train 2.60 starts a PreemptionWatcher actor per run by default: one more process importing
    # Ray Train per trial (about 3 CPU-s), for observability only (a lost node is handled by
    # failure_config and the checkpoints either way). Off unless the environment asks for it; the
    # trainer passes the variable on to its controller.
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    resources = {"CPU": cfg.train.cpus_per_worker}
    if cfg.train.use_gpu:
        resources["GPU"] = 1
    return Trainer(
        loop,
        train_loop_config={"runs": [cfg.to_dict()]} if loop_config is None else loop_config,
        torch_config=TorchConfig(backend="nccl" if cfg.train.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks,
        ),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
    )


def run_training(
    cfg: TrainConfig,
    *,
    callbacks: list | None = None,
    dataset=None,
    sweep: dict | None = None,
    record_failure: bool = True,
) -> RunRecord:
    """Validate, fit, and write ``record.json``; returns the record. A run that already finished with
    the same config is not run again: its record is returned as it is (:func:`run_trainings` with one
    run, whose Train run is the run dir itself)."""
    return run_trainings(
        [cfg], callbacks=callbacks, dataset=dataset, sweeps=[sweep], record_failure=record_failure
    )[0]


# What every run that one worker group trains must share: its layout and where its Train run lives.
SHARED_BY_A_GROUP = ("num_workers", "cpus_per_worker", "use_gpu", "max_failures")


def run_trainings(
    cfgs: list[TrainConfig],
    *,
    callbacks: list | None = None,
    dataset=None,
    sweeps: list[dict | None] | None = None,
    record_failure: bool = True,
    group_name: str | None = None,
    scoring: dict | None = None,
) -> list[RunRecord]:
    """Validate the runs, write their ``running`` records, and fit them one after another in one
    worker group (one Ray Train run, named ``group_name``, else the first run's name); returns their
    records in order. Runs that already finished with the same config are left out as they are.

    Rank 0 settles each run's record as finished at its end (:mod:`omnimer.training.worker`), so a
    fit that fails part-way keeps the runs it finished. ``callbacks`` and ``dataset`` go to
    :func:`build_trainer`; ``sweeps`` holds each run's ``sweep`` block (experiment, mode, trial id,
    seed, subset, invocation) for the analysis. A failed fit raises; with ``record_failure`` the
    records of the runs it did not finish first say ``failed``, else they stay ``running`` for the
    caller to settle (a sweep's trials: see :func:`omnimer.sweep.tuner.settle_records`).
    ``scoring``: the scoring already resolved for these runs, if any (:func:`check_scoring`).
    """
    sweeps = sweeps or [None] * len(cfgs)
    check_one_group(cfgs)
    runs: list[TrainConfig] = []  # every run, with absolute paths
    todo: list[TrainConfig] = []
    for cfg, sweep in zip(cfgs, sweeps, strict=True):
        info = validate_run(cfg)
        cfg = with_absolute_paths(cfg)
        runs.append(cfg)
        if finished_record(cfg) is not None:
            log.info("run %s already finished with this config; nothing to do", run_location(cfg))
            continue
        write_record(run_location(cfg), start_record(cfg, info, sweep, scoring))
        todo.append(cfg)
    if todo:
        fit_group(todo, group_name or cfgs[0].run.name, callbacks, dataset, record_failure)
    return [read_record(run_location(cfg)) for cfg in runs]


def check_one_group(cfgs: list[TrainConfig]) -> None:
    """Refuse runs that one worker group cannot train: another layout, or another output dir."""
    if not cfgs:
        raise ValueError("no run to train")
    first = cfgs[0]
    for cfg in cfgs[1:]:
        for key in SHARED_BY_A_GROUP:
            if getattr(cfg.train, key) != getattr(first.train, key):
                raise ValueError(
                    f"run {cfg.run.name!r} has train.{key} {getattr(cfg.train, key)!r} but "
                    f"{first.run.name!r} has {getattr(first.train, key)!r}: runs trained by one worker "
                    "group share its layout; train them separately"
                )
        if cfg.run.output_dir != first.run.output_dir:
            raise ValueError(
                f"run {cfg.run.name!r} writes under {cfg.run.output_dir!r} but {first.run.name!r} under "
                f"{first.run.output_dir!r}: runs trained by one worker group share run.output_dir"
            )


def start_record(cfg: TrainConfig, info: dict, sweep: dict | None, scoring: dict | None = None) -> RunRecord:
    """The ``running`` record of a run about to start: config, dataset, code, packages, scoring
    (``scoring``: as resolved already, see :func:`check_scoring`)."""
    scoring = check_scoring(cfg, info, scoring)
    dataset_entry = {
        "path": str(Path(cfg.data.path).resolve()),
        "label_set": info["label_sets"][cfg.data.target]["key"],
        "counts": info["counts"]["rows"],
        # The same shards wherever they lie: what the analysis compares before it averages experiments.
        "fingerprint": hashlib.sha256(
            "\n".join(sorted(s["sha256"] for s in info["shards"])).encode()
        ).hexdigest(),
    }
    return RunRecord.start(cfg.to_dict(), dataset_entry, code_version(), package_versions(), sweep, scoring)


def fit_group(
    cfgs: list[TrainConfig], group_name: str, callbacks: list | None, dataset, record_failure: bool
) -> None:
    """Fit one Train run over ``cfgs`` (absolute paths, records written); raise if it fails or ends
    without finishing them all."""
    started = time.time()
    trainer = build_trainer(
        dataclasses.replace(cfgs[0], run=dataclasses.replace(cfgs[0].run, name=group_name)),
        callbacks=callbacks,
        dataset=dataset,
        loop_config={"runs": [cfg.to_dict() for cfg in cfgs], "started": started},
    )
    try:
        result = fit_releasing_controller(trainer)
        error = result.error
    except Exception as err:  # the records must say the runs failed, then the error propagates
        error = err
    records = [(cfg, read_record(run_location(cfg))) for cfg in cfgs]
    unfinished = [(cfg, record) for cfg, record in records if record.status != Status.FINISHED]
    if error is None and unfinished:
        error = RuntimeError(f"the worker group ended without finishing run {unfinished[0][0].run.name}")
    if error is None:
        return
    if record_failure:
        wall_seconds = time.time() - started
        for cfg, record in unfinished:
            failed = settle(
                record, Status.FAILED, error=f"{type(error).__name__}: {error}", wall_seconds=wall_seconds
            )
            write_record(run_location(cfg), failed)
    raise RuntimeError(f"training failed: {error}") from error


def fit_releasing_controller(trainer):
    """``trainer.fit()``, after which its TrainController actor (and the DatasetManager it owns) exit.

    Ray Train 2.60's fit in the main thread installs a SIGINT handler that holds the controller's
    actor handle, and so keeps the actor (a process that wakes every 10 ms) alive until the process
    exits: after a ``--runs-per-trial auto`` probe it idled beside every trial of the sweep, and a
    script that trains runs one after another kept one per run. The handler that was there before
    comes back when the fit ends. (A sweep's trials fit in Tune's threads, where Ray installs none.)
    """
    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()
    previous = signal.getsignal(signal.SIGINT)
    try:
        return trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)


def finished_record(cfg: TrainConfig) -> RunRecord | None:
    """The record of this run if it already finished with this very config, else None.

    Raises if the run dir holds a run with another config: Ray Train resumes a run from the
    checkpoints under the same storage path and name, so a different config there would silently
    continue someone else's run. ``cfg`` must have absolute paths (:func:`with_absolute_paths`).
    """
    run_dir = run_location(cfg)
    previous = read_record(run_dir)
    if previous is None:
        return None
    changed = differences(comparable_config(previous.config), comparable_config(cfg.to_dict()))
    if changed:
        raise ValueError(
            f"{run_dir} already holds a run with a different config ({changed}); choose "
            "another run.name or remove that directory"
        )
    return previous if previous.status == Status.FINISHED else None
