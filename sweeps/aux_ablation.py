"""OmniMER sweeps on Ray Tune: the auxiliary-task ablation grid, or an Optuna search.

On a cluster (the working dir travels with the job; omnimer need not be installed there):

    RAY_AUTH_MODE=token ray job submit --runtime-env cluster/runtime_env.yaml --working-dir . -- \\
        python sweeps/aux_ablation.py --mode ablation --config sweeps/configs/indomer_7b.yaml \\
        --name indomer-ablation --storage-path /mnt/shared/experiments --seeds 0,1,2

With the experiments in S3 instead (credentials and endpoint from the usual AWS_* variables or the
nodes' role; an S3-compatible store: AWS_ENDPOINT_URL, or ``?endpoint_override=host:9000&scheme=http``):

    RAY_AUTH_MODE=token ray job submit --runtime-env cluster/runtime_env.yaml --working-dir . -- \\
        python sweeps/aux_ablation.py --mode ablation --config sweeps/configs/indomer_7b.yaml \\
        --name indomer-ablation --storage-path s3://my-bucket/experiments --seeds 0,1,2

On a laptop or CI (embedded default: tiny Thinker + synthetic IndoMER-format shards, built on the fly):

    python sweeps/aux_ablation.py --mode ablation --smoke-test --name smoke --storage-path runs/sweeps
    python sweeps/aux_ablation.py --mode search --smoke-test --name smoke-search --storage-path runs/sweeps

Three layers, kept visible (STYLE: Ray examples):
  1. ``omnimer.train.train_loop_per_worker``: the per-worker training function (``ray.train.report``);
  2. :func:`train_driver`: one Tune trial; builds the run's ``TorchTrainer`` with ``TuneReportCallback``
     (``omnimer.train.run_training``) and writes the trial's ``record.json``;
  3. :func:`build_tuner`: the ``Tuner`` (grid over the 2³ aux subsets × seeds, or OptunaSearch + ASHA).

The experiment dir is ``<storage-path>/<name>``: Tune's state, ``sweep.json`` (the arguments, checked on
a re-run), ``runs/<run-name>/`` per trial (record.json, tensorboard/, best_adapter/, checkpoints) and,
for a search, the Optuna study in ``optuna.db``. Re-running the same command resumes the experiment
(finished trials are kept, the others continue from their last checkpoint).

``--storage-path`` is a local or shared (NFS) directory, or an object store URI (``s3://bucket/prefix``;
see :mod:`omnimer.storage`). With a URI, the JSON files are written as single objects, Ray gets the
pyarrow filesystem for Tune's state and the checkpoints, the trials upload their TensorBoard events
and best adapter from a local staging dir after every epoch, a search keeps its SQLite study on the
driver's disk (:func:`study_file`) and uploads it to ``<experiment>/optuna.db`` when the sweep ends,
and ``--smoke-test`` builds its embedded data in a local cache dir (:func:`embedded_root`).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout or a Ray job's working dir
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

import omnimer  # noqa: E402
from omnimer import provenance, storage  # noqa: E402
from omnimer.config import (  # noqa: E402
    LOSS_SCHEMES,
    TARGETS,
    TrainConfig,
    apply_overrides,
    load_train_config,
)
from omnimer.subsets import LATTICE, TASKS, Subset, SubsetError, parse_subset, subset_name  # noqa: E402

log = logging.getLogger("omnimer.sweeps")

MODES = ("ablation", "search")
SMOKE_CONFIG = REPO / "sweeps" / "configs" / "smoke.yaml"
# The Tune trial itself (this file's train_driver) only waits on its Train run.
DRIVER_CPUS = 0.125
# Kept free of trials: each Train worker reads its shards through Ray Data, whose file-listing task
# needs a whole CPU; with every CPU reserved by trials the reads never schedule and the sweep hangs.
DATA_CPUS = 1.0
SWEEP_FILE = "sweep.json"
INVOCATIONS_FILE = "invocations.json"
STUDY_FILE = "optuna.db"
# Settings a smoke test forces on top of the config: a few steps per trial, one worker per trial so
# two trials share a 2-core box.
SMOKE_OVERRIDES = [
    "train.epochs=2",
    "train.max_steps_per_epoch=2",
    "train.batch_size=4",
    "train.num_workers=1",
    "train.use_gpu=false",
    "train.cpus_per_worker=0.125",
    "model.dtype=float32",
]


class SweepError(ValueError):
    """A bad sweep request, reported before any trial starts."""


# ----------------------------------------------------------------------------------- the search space


def parse_subsets(text: str | None) -> list[str]:
    """``--subsets``: the names of the ablation cells to run, in lattice order (all 8 without it).

    Each item is ``none``, ``all`` or a ``+``-joined list of text, face, prosody (``text+prosody``),
    read as ``python -m analysis`` reads a subset name.
    """
    names = [subset_name(s) for s in LATTICE]
    if text is None:
        return names
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise SweepError(f"--subsets {text!r} is empty: give e.g. none,text,all")
    chosen = set()
    for item in items:
        try:
            chosen.add(subset_name(parse_subset(item)))
        except SubsetError as err:
            raise SweepError(f"--subsets: {err}") from None
    if len(chosen) != len(items):
        raise SweepError(f"--subsets {text!r} names a subset twice")
    return [name for name in names if name in chosen]


def ablation_overrides(base: dict, subset: Subset, seed: int) -> dict:
    """The trial config of one ablation cell: a disabled task gets λ = 0, an enabled one keeps its λ."""
    values = copy.deepcopy(base)
    for task, enabled in zip(TASKS, subset, strict=True):
        if not enabled:
            values["loss"][f"aux_weight_{task}"] = 0.0
    values["train"]["seed"] = seed
    return values


def search_space(trial, base_lr: float) -> None:
    """Define-by-run Optuna space (parameter names are the config keys they set).

    The rebalancing scheme's own parameter is suggested only for that scheme (focal γ, effective-number
    β, logit-adjustment τ). The learning rate spans a decade either side of the config's.
    """
    trial.suggest_categorical("model.lora.rank", [4, 8, 16, 32, 64])
    trial.suggest_categorical("lora_alpha_over_rank", [1, 2, 4])
    trial.suggest_float("train.lr", base_lr / 10, min(base_lr * 10, 0.5), log=True)
    for task in TASKS:
        trial.suggest_float(f"loss.aux_weight_{task}", 0.0, 1.0)
    scheme = trial.suggest_categorical("loss.scheme", list(LOSS_SCHEMES))
    if scheme == "effective_number":
        trial.suggest_float("loss.beta", 0.9, 0.9999, log=True)
    elif scheme == "focal":
        trial.suggest_float("loss.gamma", 0.5, 5.0)
    elif scheme == "logit_adjust":
        trial.suggest_float("loss.tau", 0.25, 2.0)


def define_space(trial, base_lr: float, constants: dict) -> dict:
    """The define-by-run function OptunaSearch calls: the space, plus the trial's constant params."""
    search_space(trial, base_lr)
    return constants


def search_overrides(base: dict, params: dict) -> dict:
    """The trial config of one search trial: the sampled parameters set into the base config."""
    params = dict(params)
    ratio = params.pop("lora_alpha_over_rank", None)
    dotted = [f"{key}={json.dumps(value)}" for key, value in params.items()]
    values = apply_overrides(base, dotted)
    if ratio is not None:
        values["model"]["lora"]["alpha"] = float(ratio * values["model"]["lora"]["rank"])
    return values


def trial_config(params: dict) -> tuple[TrainConfig, dict]:
    """TrainConfig and sweep metadata of one trial, from the Tune param dict (pure: unit-tested)."""
    base = params["base"]
    if params["mode"] == "ablation":
        values = ablation_overrides(base, tuple(params["subset"]), params["seed"])
    else:
        values = search_overrides(base, params["search"])
        values["train"]["seed"] = params["seed"]
    run_name = run_name_of(params, params.get("trial_id"))
    values["run"] = {"output_dir": params["runs_dir"], "name": run_name}
    # A trial restored from the Tune state of an earlier version may hold the DeepSpeed config as a
    # path into that Ray session's working dir: this session resolves it in its own copy.
    values["train"]["deepspeed_config"] = provenance.repo_relative(values["train"]["deepspeed_config"])
    cfg = TrainConfig.from_dict(values)
    sweep = {
        "experiment": params["experiment"],
        "mode": params["mode"],
        "trial_id": params.get("trial_id", run_name),
        "seed": cfg.train.seed,
        "subset": {t: getattr(cfg.loss, f"aux_weight_{t}") > 0 for t in TASKS},
    }
    if params.get("invocation") is not None:
        sweep["invocation"] = params["invocation"]
    return cfg, sweep


# ------------------------------------------------------------------------------------ layer 2: trial


def train_driver(params: dict, dataset=None, invocation: int | None = None) -> None:
    """One Tune trial: the Ray Train run of one config, reporting each epoch to Tune.

    ``dataset`` is the sweep's shards, read once and shared by every trial, and ``invocation`` the
    number of the sweep invocation that runs the trial (both through ``tune.with_parameters``, so
    neither is kept in Tune's state: a resumed sweep passes its own).
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from omnimer.train import finished_record, run_training

    params = dict(params)
    params["trial_id"] = tune.get_context().get_trial_id()
    params["invocation"] = invocation
    if params["mode"] == "search":
        params["search"] = {k: v for k, v in params.items() if k not in TRIAL_KEYS}
    cfg, sweep = trial_config(params)
    previous = finished_record(cfg)
    if previous is not None:
        # The run finished but Tune did not hear of it (the sweep's driver died in between):
        # report its result once instead of training it again.
        tune.report(record_metrics(previous))
        return
    run_training(cfg, callbacks=[TuneReportCallback()], sweep=sweep, dataset=dataset)


def record_metrics(record: dict) -> dict:
    """The flat metrics of a finished record, as its last epoch reported them to Tune."""
    from omnimer.train import report_metrics

    state = {k: record[k] for k in ("best_epoch", "device_seconds")}
    state["history"] = record["epochs"]
    return report_metrics(record["epochs"][-1], state)


# Keys of the Tune param dict that are not search parameters.
TRIAL_KEYS = ("base", "mode", "experiment", "runs_dir", "subset", "seed", "trial_id", "invocation")


# ------------------------------------------------------------------------------------ layer 3: tuner


def parse_seeds(text: str) -> list[int]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise SweepError(f"--seeds {text!r} is empty: give a comma-separated list such as 0,1,2")
    try:
        seeds = [int(item) for item in items]
    except ValueError:
        raise SweepError(f"--seeds {text!r} must be comma-separated integers such as 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {text!r} repeats a seed")
    return seeds


def best_of(path: Path | str) -> dict:
    """Hyperparameters to reuse: a YAML file of config sections, or the best finished trial (valid
    macro-F1) of a search experiment dir (a local dir or a URI). Only model, train and loss sections
    are taken."""
    storage.check_location(path)
    if storage.is_file(path):
        loaded = yaml.safe_load(storage.read_text(path)) or {}
        if not isinstance(loaded, dict):
            raise SweepError(f"--best-of {path}: expected a mapping of config sections")
        return {k: v for k, v in loaded.items() if k in ("model", "train", "loss")}
    if not storage.is_dir(path):
        raise SweepError(f"--best-of {path}: no such file or experiment dir")
    best, best_score = None, -math.inf
    runs_dir = storage.join(path, "runs")
    for record_path in run_records(runs_dir):
        record = storage.read_json(record_path)
        if record.get("status") not in ("finished", "stopped") or not record.get("valid"):
            continue
        if record["valid"]["macro_f1"] > best_score:
            best, best_score = record, record["valid"]["macro_f1"]
    if best is None:
        raise SweepError(f"--best-of {path}: no finished trial with valid metrics under {runs_dir}")
    log.info("best-of: %s (valid macro-F1 %.4f)", best["config"]["run"]["name"], best_score)
    config = best["config"]
    keep_train = ("lr", "weight_decay", "warmup_ratio", "batch_size", "grad_accum", "epochs")
    return {
        "model": {"lora": config["model"]["lora"]},
        "train": {k: config["train"][k] for k in keep_train},
        "loss": config["loss"],
    }


def merge_best(base: dict, best: dict, mode: str) -> dict:
    """Base config with the best-of sections laid over it. In ablation mode an aux weight of 0 in the
    best config does not override the base: the grid decides which tasks are off."""
    values = copy.deepcopy(base)
    for section, entries in best.items():
        for key, value in entries.items():
            if section == "model" and key == "lora":
                values["model"].setdefault("lora", {}).update(value)
            elif mode == "ablation" and key.startswith("aux_weight_") and not value:
                continue
            else:
                values.setdefault(section, {})[key] = value
    return values


def _storage_dir(text: str) -> str:
    """The storage root, checked writable: an absolute local path, or an object store URI as given."""
    try:
        storage.check_location(text)
        if storage.is_remote(text):
            location = text.rstrip("/")
            storage.check_writable(location)
            return location
    except storage.StorageError as err:
        raise SweepError(f"--storage-path: {err}") from None
    path = Path(text).resolve()
    if provenance.inside_ray_package(path):
        raise SweepError(
            f"--storage-path {text!r} resolves to {path}, inside this Ray job's unpacked working dir, "
            "which the next Ray session does not have: give an absolute path on storage every node "
            "sees (e.g. /mnt/shared/experiments) or an s3:// URI"
        )
    try:
        storage.check_writable(path)
    except OSError as err:
        raise SweepError(
            f"--storage-path {text!r} is not writable ({err.strerror}): choose another"
        ) from None
    return str(path)


def embedded_root(storage_root: str) -> Path:
    """Where the smoke test's embedded data lives: ``<storage-path>/_embedded`` for a local storage
    path; for an object store, a local cache dir (the shards and the model are read with local paths),
    ``$OMNIMER_CACHE_DIR/embedded`` (default ``~/.cache/omnimer/embedded``)."""
    if storage.is_remote(storage_root):
        return storage.cache_dir() / "embedded"
    return Path(storage_root) / "_embedded"


def study_file(experiment_dir: str) -> Path:
    """The local SQLite file of a search's Optuna study: ``<experiment>/optuna.db`` for a local
    experiment dir; for an object store, a stable local copy under :func:`omnimer.storage.cache_dir`
    (uploaded to ``<experiment>/optuna.db`` after the sweep). Stable, because Tune pickles the
    searcher, and with it this path, into the experiment state that a resumed sweep restores."""
    if storage.is_remote(experiment_dir):
        return storage.local_mirror(storage.join(experiment_dir, STUDY_FILE), storage.cache_dir() / "studies")
    return Path(experiment_dir) / STUDY_FILE


def ensure_embedded_default(root: Path) -> tuple[Path, Path]:
    """The smoke test's tiny Thinker and synthetic shards under ``root``, built once and reused."""
    from omnimer.config import IngestConfig
    from omnimer.data.shards import ingest
    from omnimer.data.synthetic import SynthConfig, synthesize
    from omnimer.model.tiny import build_tiny_model

    corpus, shards, model = root / "corpus", root / "shards", root / "tiny-model"
    if not (shards / "dataset.json").is_file():
        if not (corpus / "Annotations.csv").is_file():
            log.info("smoke test: synthesizing a small corpus into %s", corpus)
            if corpus.exists():
                import shutil

                shutil.rmtree(corpus)
            synthesize(corpus, SynthConfig(clips=64, speakers=12, seed=0), progress=False)
        log.info("smoke test: ingesting %s into %s", corpus, shards)
        ingest(corpus, shards, IngestConfig(frames=4, size=56, max_audio_seconds=2.0), overwrite=True)
    if not (model / "config.json").is_file():
        build_tiny_model(model, seed=0)
    return shards, model


def cluster_slots(cfg: TrainConfig) -> tuple[int, dict]:
    """How many trials run at once on this cluster, and the resources of one trial's driver.

    GPU: cluster GPUs / GPUs per trial (one per Train worker). CPUs are reserved fractionally (a
    driver takes DRIVER_CPUS, a worker ``train.cpus_per_worker``) so a 2-core box runs trials, and
    DATA_CPUS stay free for Ray Data's reads.
    """
    import ray

    resources = ray.cluster_resources()
    cpus = float(resources.get("CPU", 0)) - DATA_CPUS
    cpus_per_trial = DRIVER_CPUS + cfg.train.num_workers * cfg.train.cpus_per_worker
    if cpus_per_trial > cpus:
        raise SweepError(
            f"a trial needs {cpus_per_trial:g} CPUs ({DRIVER_CPUS:g} driver + train.num_workers="
            f"{cfg.train.num_workers} × train.cpus_per_worker={cfg.train.cpus_per_worker:g}) but the "
            f"cluster has {cpus:g} to give ({DATA_CPUS:g} more stay free for Ray Data's reads): lower "
            "train.cpus_per_worker or train.num_workers"
        )
    slots = int(cpus // cpus_per_trial)
    if cfg.train.use_gpu:
        gpus = int(resources.get("GPU", 0))
        per_trial = cfg.train.num_workers
        if per_trial > gpus:
            raise SweepError(
                f"a trial needs {per_trial} GPUs (train.num_workers={per_trial} with train.use_gpu=true) "
                f"but the cluster has {gpus}: lower train.num_workers or add GPU nodes (an autoscaling "
                "cluster must start with enough min_workers)"
            )
        slots = min(slots, gpus // per_trial)
    return slots, {"CPU": DRIVER_CPUS}


def plan(args: argparse.Namespace) -> dict:
    """Validate the request and resolve everything a trial needs; no Ray work is started here."""
    if args.mode not in MODES:
        raise SweepError(f"--mode {args.mode!r} is not one of {', '.join(MODES)}")
    if args.target not in TARGETS:
        raise SweepError(f"--target {args.target!r} is not one of {', '.join(TARGETS)}")
    seeds = parse_seeds(args.seeds)
    if args.subsets is not None and args.mode != "ablation":
        raise SweepError("--subsets picks cells of the ablation grid; it has no meaning with --mode search")
    subsets = parse_subsets(args.subsets)
    if args.num_samples < 1:
        raise SweepError(f"--num-samples must be >= 1, got {args.num_samples}")
    if not args.name or "/" in args.name:
        raise SweepError(f"--name {args.name!r} must be a plain name (the experiment dir's)")
    config_path = args.config or (str(SMOKE_CONFIG) if args.smoke_test else None)
    if config_path is None:
        raise SweepError("--config is required (e.g. sweeps/configs/demo.yaml), unless --smoke-test")
    if not Path(config_path).is_file():
        raise SweepError(f"--config {config_path}: no such file")
    overrides = list(args.overrides)
    if args.smoke_test:
        overrides = SMOKE_OVERRIDES + overrides
    overrides.append(f"data.target={args.target}")
    try:
        cfg = load_train_config(config_path, overrides)
        values = cfg.to_dict()
        if args.best_of:
            values = merge_best(values, best_of(args.best_of), args.mode)
            cfg = TrainConfig.from_dict(values)
    except (ValueError, TypeError) as err:
        raise SweepError(f"{config_path}: {err}") from None
    if args.mode == "ablation":
        off = [t for t in TASKS if getattr(cfg.loss, f"aux_weight_{t}") == 0]
        if off:
            raise SweepError(
                f"{config_path}: the ablation grid enables each aux task in turn, but loss.aux_weight_"
                f"{off[0]} is 0; set it to the weight the task should have when enabled (e.g. 0.3)"
            )
    root = _storage_dir(args.storage_path)  # last: a refused request creates nothing
    experiment_dir = storage.join(root, args.name)
    # Every trial's run section is the sweep's: runs/<run-name> under the experiment.
    values["run"] = {"output_dir": storage.join(experiment_dir, "runs"), "name": "run"}
    return {
        "mode": args.mode,
        "name": args.name,
        "storage": root,
        "experiment_dir": experiment_dir,
        "config_path": provenance.repo_relative(str(Path(config_path).resolve())),
        "target": args.target,
        "seeds": seeds,
        "subsets": subsets if args.mode == "ablation" else None,
        "num_samples": args.num_samples if args.mode == "search" else None,
        "smoke_test": bool(args.smoke_test),
        "base": values,
    }


# What makes two invocations the same sweep: what the user asked for. Not where the code was unpacked
# (repository paths are repo-relative), not the code's version (invocations.json records it), and not
# the base's run section (each trial's comes from the experiment dir).
REQUEST_KEYS = ("mode", "target", "seeds", "subsets", "num_samples", "base")


def request_view(sweep: dict) -> dict[str, object]:
    """The request of a sweep as flat ``key: value`` pairs, the base config's keys dotted (``train.lr``)."""
    from omnimer.train import comparable_config

    sweep = json.loads(json.dumps(sweep))
    if sweep.get("mode") == "ablation" and sweep.get("subsets") is None:  # written before --subsets
        sweep["subsets"] = parse_subsets(None)
    flat: dict[str, object] = {k: sweep.get(k) for k in REQUEST_KEYS if k != "base"}
    base = comparable_config(sweep.get("base") or {})
    flat.update({key: value for key, value in base.items() if not key.startswith("run.")})
    return flat


def check_same_sweep(experiment_dir: Path | str, sweep: dict) -> bool:
    """True if the experiment dir holds this very sweep (to resume); raise if it holds another.

    The same request from another copy of the code (a new Ray session's working dir, another machine
    that sees the same storage, a newer commit) is the same sweep.
    """
    path = storage.join(experiment_dir, SWEEP_FILE)
    if not storage.is_file(path):
        return False
    from omnimer.train import differences

    changed = differences(request_view(storage.read_json(path)), request_view(sweep))
    if changed:
        raise SweepError(
            f"{experiment_dir} holds a sweep started with a different request ({changed}); re-run the "
            "original command to resume it, or choose another --name"
        )
    return True


def build_tuner(sweep: dict, base: TrainConfig, slots: int, trainable):
    """The Tune layer: grid (ablation) or OptunaSearch + ASHA (search) over :func:`train_driver`."""
    from ray import tune

    experiment_dir = sweep["experiment_dir"]
    constant = {
        "base": sweep["base"],
        "mode": sweep["mode"],
        "experiment": sweep["name"],
        "runs_dir": storage.join(experiment_dir, "runs"),
    }
    storage_path, storage_filesystem = storage.ray_storage(sweep["storage"])
    run_config = tune.RunConfig(
        name=sweep["name"],
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        # A trial that fails (a lost node, an OOM) starts again; its Train run resumes from the
        # last checkpoint under runs/<run-name>.
        failure_config=tune.FailureConfig(max_failures=2),
        verbose=1,
    )
    if sweep["mode"] == "ablation":
        param_space = {
            **constant,
            "subset": tune.grid_search([list(s) for s in LATTICE if subset_name(s) in sweep["subsets"]]),
            "seed": tune.grid_search(sweep["seeds"]),
        }
        tune_config = tune.TuneConfig(max_concurrent_trials=slots, reuse_actors=False)
        return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)

    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    base_lr = base.train.lr
    study = optuna.storages.RDBStorage(f"sqlite:///{study_file(experiment_dir)}")
    seed = sweep["seeds"][0]

    searcher = OptunaSearch(
        # A partial of a module-level function: Tune pickles the searcher into the experiment state.
        space=functools.partial(define_space, base_lr=base_lr, constants={**constant, "seed": seed}),
        metric="valid_macro_f1",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=seed),
        study_name=sweep["name"],
        storage=study,
    )
    # ASHA compares trials at the same epoch (one Tune iteration per epoch). It also stops every trial
    # that reaches max_t, which would cut a trial off at its last report before its driver writes the
    # record: so max_t lies one epoch beyond the end.
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=base.train.epochs + 1,
        grace_period=max(1, base.train.epochs // 4),
        reduction_factor=2,
    )
    tune_config = tune.TuneConfig(
        metric="valid_macro_f1",
        mode="max",
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=sweep["num_samples"],
        max_concurrent_trials=slots,
        reuse_actors=False,
    )
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def run_records(runs_dir: Path | str) -> list[str]:
    """The ``record.json`` of every run under ``runs_dir`` (``runs/<run-name>/record.json``), sorted."""
    return storage.find_files(runs_dir, "record.json", max_depth=1)


def settle_records(results, runs_dir: Path | str, mode: str) -> dict[str, int]:
    """After the sweep, settle the records of trials that Tune ended from outside; count per status.

    A trial's driver writes ``finished`` at the end of its run and nothing when the run fails
    (:func:`omnimer.train.run_training`), so such records still say ``running``. A search trial
    that Tune ended without an error was stopped by ASHA; an errored trial failed. No trial runs
    any more, so a record still ``running`` failed.
    """
    from omnimer.train import close_record

    for result in results:
        name = run_name_of(result.config, (result.metrics or {}).get("trial_id"))
        run_dir = storage.join(runs_dir, name)
        if result.error is not None:
            close_record(run_dir, "failed", f"{type(result.error).__name__}: {result.error}")
        elif mode == "search":
            close_record(run_dir, "stopped")
    counts: dict[str, int] = {}
    for path in run_records(runs_dir):
        record = close_record(storage.parent(path), "failed", "the trial ended before its run finished")
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    return counts


def run_name_of(params: dict, trial_id: str | None) -> str:
    """A trial's run name from its Tune config (the same rule as :func:`trial_config`)."""
    if params.get("mode") == "ablation":
        return f"{subset_name(tuple(params['subset']))}-seed{params['seed']}"
    return f"trial-{trial_id}"


def ablation_summary(experiment_dir: str, target: str) -> str:
    """The analysis package's ablation table and Shapley lines (``python -m analysis summary``)."""
    from analysis.records import AnalysisError
    from analysis.report import ablation_summary as summary

    try:
        return summary([experiment_dir], target)
    except AnalysisError as err:  # the trials' results stand; only the table cannot be made
        return f"no ablation table: {err}\n"


def make_trainable(base: TrainConfig, driver_resources: dict, invocation: int):
    """:func:`train_driver` with the sweep's shards read once into Ray's object store: every trial's
    workers stream them from there instead of each trial re-reading (and re-listing) the files."""
    from ray import tune

    from omnimer.data.shards import load_dataset
    from omnimer.train import TRAIN_COLUMNS

    dataset = load_dataset(Path(base.data.path), columns=TRAIN_COLUMNS).materialize()
    return tune.with_resources(
        tune.with_parameters(train_driver, dataset=dataset, invocation=invocation), driver_resources
    )


def run_sweep(sweep: dict):
    """Start or resume the sweep on the connected Ray cluster; returns Tune's ResultGrid and this
    invocation's entry of ``invocations.json``."""
    from ray import tune

    experiment_dir = sweep["experiment_dir"]
    remote = storage.is_remote(experiment_dir)
    base = TrainConfig.from_dict(sweep["base"])
    slots, driver_resources = cluster_slots(base)
    log.info("%s sweep %s: %d trial(s) at a time", sweep["mode"], experiment_dir, slots)
    experiment_path, experiment_filesystem = storage.ray_storage(experiment_dir)
    resuming = check_same_sweep(experiment_dir, sweep) and tune.Tuner.can_restore(
        experiment_path, storage_filesystem=experiment_filesystem
    )
    invocation = start_invocation(experiment_dir, slots, resuming)
    trainable = make_trainable(base, driver_resources, invocation["invocation"])
    if not remote:
        Path(experiment_dir).mkdir(parents=True, exist_ok=True)
    if remote and sweep["mode"] == "search":
        _fetch_study(experiment_dir, resuming)
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
        storage.write_json(storage.join(experiment_dir, SWEEP_FILE), sweep)
        tuner = build_tuner(sweep, base, slots, trainable)
    try:
        results = tuner.fit()
    finally:
        if remote and sweep["mode"] == "search" and study_file(experiment_dir).is_file():
            # Also when the sweep is interrupted: a resume on another machine starts from this copy.
            storage.upload_file(study_file(experiment_dir), storage.join(experiment_dir, STUDY_FILE))
    end_invocation(experiment_dir, invocation)
    return results, invocation


def _fetch_study(experiment_dir: str, resuming: bool) -> None:
    """Before a search on an object store: the local copy of its Optuna study, as the sweep needs it.

    A new sweep starts from no study (a stale local copy is removed). A resumed one keeps a local copy
    this machine already has (it is at least as new as the uploaded one, which is written after the
    sweep), else downloads ``<experiment>/optuna.db``.
    """
    local = study_file(experiment_dir)
    remote_copy = storage.join(experiment_dir, STUDY_FILE)
    if not resuming:
        local.unlink(missing_ok=True)
    elif not local.is_file() and storage.is_file(remote_copy):
        log.info("fetching the Optuna study %s to %s", remote_copy, local)
        storage.download_file(remote_copy, local)
    local.parent.mkdir(parents=True, exist_ok=True)


def start_invocation(experiment_dir: Path | str, slots: int, resumed: bool) -> dict:
    """Append this invocation of the sweep to ``invocations.json``, before any trial starts.

    One entry per invocation: its number (trials record it in their ``sweep`` block), when and where
    it ran (host and the driver's process id), which code (:func:`omnimer.provenance.code_version`;
    a resumed sweep may run newer code), its trial slots, and, once it ends, its wall time. An
    invocation whose driver died keeps ``wall_seconds: null``.
    """
    import socket

    path = storage.join(experiment_dir, INVOCATIONS_FILE)
    invocations = storage.read_json(path) if storage.is_file(path) else []
    entry = {
        "invocation": len(invocations) + 1,
        "started": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **provenance.code_version(),
        "slots": slots,
        "resumed": resumed,
        "wall_seconds": None,
    }
    storage.write_json(path, [*invocations, entry])
    log.info("invocation %d of %s (%s)", entry["invocation"], experiment_dir, provenance.short_version(entry))
    return entry


def end_invocation(experiment_dir: Path | str, entry: dict) -> None:
    """Set this invocation's wall time in ``invocations.json``."""
    path = storage.join(experiment_dir, INVOCATIONS_FILE)
    invocations = storage.read_json(path)
    done = {**entry, "wall_seconds": time.time() - entry["started"]}
    storage.write_json(path, [done if i["invocation"] == entry["invocation"] else i for i in invocations])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweeps/aux_ablation.py",
        description="OmniMER aux-task ablation grid or Optuna search on Ray Tune (resumable).",
    )
    parser.add_argument("--mode", required=True, help="ablation (2³ aux subsets × seeds) or search")
    parser.add_argument("--config", help="train config YAML (sweeps/configs/*.yaml)")
    parser.add_argument("--name", required=True, help="experiment name: <storage-path>/<name>")
    parser.add_argument(
        "--storage-path", required=True, help="dir of experiments: local, shared (NFS) or s3://bucket/prefix"
    )
    parser.add_argument("--target", default="emotion", help="emotion or sentiment")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (ablation: grid axis)")
    parser.add_argument(
        "--subsets",
        help="ablation: only these cells of the grid, e.g. none,text,all (default: all 8 subsets)",
    )
    parser.add_argument("--num-samples", type=int, default=16, help="search: number of Optuna trials")
    parser.add_argument("--best-of", help="search experiment dir or YAML whose hyperparameters to reuse")
    parser.add_argument(
        "--smoke-test", action="store_true", help="embedded tiny model + synthetic shards, a few steps"
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.lr=1e-4")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    log.info("omnimer from %s", Path(omnimer.__file__).parent)
    try:
        sweep = plan(args)
        from omnimer.cli import _init_ray

        _init_ray(args.num_cpus)
        cluster_slots(TrainConfig.from_dict(sweep["base"]))  # refuse a trial the cluster cannot hold
        if args.smoke_test:
            shards, model = ensure_embedded_default(embedded_root(sweep["storage"]))
            sweep["base"] = apply_overrides(
                sweep["base"], [f"data.path={shards}", f"model.name_or_path={model}"]
            )
        from omnimer.train import validate_run, with_absolute_paths

        base = with_absolute_paths(TrainConfig.from_dict(sweep["base"]))
        validate_run(base)
        sweep["base"] = base.to_dict()
        results, invocation = run_sweep(sweep)
    except SweepError as err:
        sys.stderr.write(f"aux_ablation: {err}\n")
        return 2
    except (ValueError, FileNotFoundError, storage.StorageError) as err:
        sys.stderr.write(f"aux_ablation: {err}\n")
        return 2
    runs_dir = storage.join(sweep["experiment_dir"], "runs")
    counts = settle_records(results, runs_dir, sweep["mode"])
    ran = [
        path
        for path in run_records(runs_dir)
        if (storage.read_json(path).get("sweep") or {}).get("invocation") == invocation["invocation"]
    ]
    sys.stdout.write(
        f"experiment {sweep['experiment_dir']}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + f"; invocation {invocation['invocation']} ({provenance.short_version(invocation)}) ran "
        f"{len(ran)} trial(s)\n"
    )
    if sweep["mode"] == "ablation":
        sys.stdout.write(ablation_summary(sweep["experiment_dir"], sweep["target"]))
    errors = [r for r in results if r.error is not None]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
