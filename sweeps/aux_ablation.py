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

What a sweep will cost, before it runs (one probe trial on the cluster; see :mod:`omnimer.sweep.plan`):

    python sweeps/aux_ablation.py --mode ablation --smoke-test --name smoke --storage-path runs/sweeps --plan

An ablation with ``--runs-per-trial auto`` probes the same way first, then runs with the runs per
trial the plan finds fastest on this cluster (a resumed sweep keeps the one it was started with).

This script parses the arguments and calls the library (STYLE: Ray examples' three layers):

  1. :func:`omnimer.training.worker.train_loop_per_worker`: the per-worker training function;
  2. :func:`omnimer.sweep.trial.train_driver`: one Tune trial, which runs one training run
     (:func:`omnimer.training.driver.run_training`) reporting each epoch to Tune;
  3. :func:`omnimer.sweep.tuner.run_sweep`: the ``Tuner`` (grid over the 2³ aux subsets × seeds, or
     OptunaSearch + ASHA), started or resumed.

The experiment dir is ``<storage-path>/<name>``: Tune's state, ``sweep.json`` (the request, checked
on a re-run), ``invocations.json``, ``runs/<run-name>/`` per trial (record.json, tensorboard/,
best_adapter/, checkpoints) and, for a search, the Optuna study in ``optuna.db``. Re-running the same
command resumes the experiment (finished trials are kept, the others continue from their last
checkpoint). ``--storage-path`` is a local or shared (NFS) directory, or an object store URI
(``s3://bucket/prefix``; see :mod:`omnimer.storage` and :mod:`omnimer.sweep.search` for the study).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout or a Ray job's working dir
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

import omnimer  # noqa: E402
from omnimer import provenance, storage  # noqa: E402
from omnimer.config import TrainConfig, apply_overrides  # noqa: E402
from omnimer.sweep.request import SweepError, SweepRequest, plan_sweep  # noqa: E402

log = logging.getLogger("omnimer.sweeps")

# The sections of a best configuration that --best-of lays over the base config.
BEST_OF_SECTIONS = ("model", "train", "loss")
AUTO = "auto"


def best_of(path: Path | str) -> dict:
    """``--best-of``: the hyperparameters to reuse, from a ``best_config.yaml`` (which ``python -m
    analysis report`` writes for a search) or from a search's experiment dir, whose best trial the
    analysis picks (valid macro-F1, as its summary ranks them). Only model, train and loss sections
    are taken."""
    from analysis.records import AnalysisError
    from analysis.report import best_config_of

    storage.check_location(path)
    if storage.is_file(path):
        loaded = yaml.safe_load(storage.read_text(path)) or {}
        if not isinstance(loaded, dict):
            raise SweepError(f"--best-of {path}: expected a mapping of config sections")
    elif storage.is_dir(path):
        try:
            loaded = best_config_of(path)
        except AnalysisError as err:
            raise SweepError(f"--best-of {path}: {err}") from None
        if not loaded:
            raise SweepError(f"--best-of {path}: no finished search trial with valid metrics")
    else:
        raise SweepError(f"--best-of {path}: no such file or experiment dir")
    return {k: v for k, v in loaded.items() if k in BEST_OF_SECTIONS}


def ablation_summary(experiment_dir: str, target: str) -> str:
    """The analysis package's ablation table and Shapley lines (``python -m analysis summary``)."""
    from analysis.records import AnalysisError
    from analysis.report import ablation_summary as summary

    try:
        return summary([experiment_dir], target)
    except AnalysisError as err:  # the trials' results stand; only the table cannot be made
        return f"no ablation table: {err}\n"


def request_from_args(args: argparse.Namespace) -> SweepRequest:
    """The request the arguments make, validated; nothing is created for a refused one."""
    return plan_sweep(
        mode=args.mode,
        name=args.name,
        storage_path=args.storage_path,
        config=args.config,
        target=args.target,
        seeds=args.seeds,
        subsets=args.subsets,
        num_samples=args.num_samples,
        smoke_test=args.smoke_test,
        best=best_of(args.best_of) if args.best_of else None,
        overrides=list(args.overrides),
        runs_per_trial=1 if args.runs_per_trial == AUTO else args.runs_per_trial,
    )


def prepare(args: argparse.Namespace) -> SweepRequest:
    """The validated request, on the connected cluster, with its base config's paths resolved."""
    from omnimer.cluster import connect
    from omnimer.sweep.embedded import embedded_root, ensure_embedded_default
    from omnimer.sweep.resources import cluster_slots
    from omnimer.training.driver import check_scoring, validate_run, with_absolute_paths

    request = request_from_args(args)
    connect(args.num_cpus, worker_logs=False)
    cluster_slots(TrainConfig.from_dict(request.base))  # refuse a trial the cluster cannot hold
    base = request.base
    if args.smoke_test:
        shards, model = ensure_embedded_default(embedded_root(request.storage))
        base = apply_overrides(base, [f"data.path={shards}", f"model.name_or_path={model}"])
    cfg = with_absolute_paths(TrainConfig.from_dict(base))
    check_scoring(cfg, validate_run(cfg))  # verbalizers the model cannot tell apart: refused here
    return request.with_base(cfg.to_dict())


def runs_per_trial_arg(text: str) -> int | str:
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of runs or {AUTO!r}, got {text!r}") from None


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
    parser.add_argument(
        "--runs-per-trial",
        type=runs_per_trial_arg,
        default=1,
        help="ablation: runs (cell × seed, seed-major) each trial trains one after another in one worker "
        "group, paying Ray's and the workers' start-up once per trial (default 1; --plan names the "
        "fastest; 'auto': probe as --plan does and take it, or, resuming, keep the sweep's)",
    )
    parser.add_argument(
        "--best-of", help="a search's experiment dir, or its best_config.yaml: hyperparameters to reuse"
    )
    parser.add_argument(
        "--smoke-test", action="store_true", help="embedded tiny model + synthetic shards, a few steps"
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all)")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="run no trial: probe one on this cluster and print the sweep's projected cost, for this "
        "layout and the others that fit (also <storage-path>/<name>/plan.json)",
    )
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.lr=1e-4")
    return parser


def terminal_logging() -> None:
    """INFO and above go to the invocation's log file (omnimer.sweep.invocations.invocation_log); the
    terminal gets this sweep's own lines (``omnimer`` loggers) and everyone's warnings."""
    console = logging.StreamHandler()
    console.addFilter(lambda record: record.levelno >= logging.WARNING or record.name.startswith("omnimer"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[console]
    )


def main(argv: list[str] | None = None) -> int:
    terminal_logging()
    args = build_parser().parse_args(argv)
    log.info("omnimer from %s", Path(omnimer.__file__).parent)
    from omnimer.sweep.plan import choose_runs_per_trial, describe, make_plan, planned_vs_actual
    from omnimer.sweep.request import check_same_sweep
    from omnimer.sweep.tuner import run_records, run_sweep, settle_records
    from omnimer.training.dataset import SharedShards

    try:
        request = prepare(args)
        auto = args.runs_per_trial == AUTO
        # The shards are read once, by the probe if there is one, and handed on to the sweep's trials:
        # a probe's workers read them as a trial's do.
        shards = SharedShards(request.base["data"]["path"])
        if args.plan:
            check_same_sweep(request.experiment_dir, request)  # another sweep's dir is refused
            sys.stdout.write(describe(make_plan(request, choose=auto, shards=shards)))
            return 0
        if auto:
            request, _ = choose_runs_per_trial(request, shards)
        results, invocation = run_sweep(request, shards)
    except (SweepError, ValueError, FileNotFoundError, storage.StorageError) as err:
        sys.stderr.write(f"aux_ablation: {err}\n")
        return 2
    counts = settle_records(results, request.runs_dir, request.mode)
    records = [storage.read_json(path) for path in run_records(request.runs_dir)]
    ran = [r for r in records if (r.get("sweep") or {}).get("invocation") == invocation["invocation"]]
    sys.stdout.write(
        f"experiment {request.experiment_dir}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + f"; invocation {invocation['invocation']} ({provenance.short_version(invocation)}) ran "
        f"{len(ran)} run(s)\n"
    )
    if request.mode == "ablation":
        sys.stdout.write(ablation_summary(request.experiment_dir, request.target))
    sys.stdout.write(planned_vs_actual(request.experiment_dir, invocation["invocation"], records) or "")
    errors = [r for r in results if r.error is not None]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
