"""``--plan``: what a sweep will cost, before it runs.

    python sweeps/aux_ablation.py --mode ablation --config sweeps/configs/demo.yaml --name demo \\
        --storage-path runs/demo/sweeps --seeds 0,1 data.path=runs/demo/shards \\
        model.name_or_path=runs/demo/tiny-model --plan

A probe (one Ray Train run of the sweep's costliest trial, the all-aux cell, with the real config and
layout, on the cluster the command runs on) takes a few optimizer steps and scores a few validation
clips, then sets up again as a trial's later run does; it measures (:mod:`omnimer.sweep.probe`) tokens
per clip of each task, seconds per step, scoring seconds per clip, peak memory per device and a later
run's set-up, and the probe's wall time less that work and the second set-up is a trial's start-up.
:func:`project` turns that into the sweep's trials, rounds, concurrency, wall time and
device-hours, for the chosen layout and for the others (workers per trial 1/2/4/8 × ZeRO-2/3) that
fit in memory, and, for an ablation, the wall time with other numbers of runs per trial
(``--runs-per-trial``: a trial trains its runs one after another in one worker group, paying the
start-up once and each further run's set-up), naming the fastest. Written to
``<experiment>/plan.json``; a sweep that finds one there prints planned vs actual at its end
(:func:`planned_vs_actual`). ``--runs-per-trial auto`` makes the plan at the fastest and runs the
sweep with it (:func:`choose_runs_per_trial`).

The projection's assumptions, printed with it: a trial's steps take as long per device whatever the
number of workers (per-worker batch kept, communication not modelled); a cell costs the all-aux
cell's step time scaled by its tokens per clip; valid and test are scored every epoch (an upper
bound: test is scored only when valid improves); a ZeRO stage other than the probe's has the probe's
step time (not measured); on CPU, trials running side by side slow each other down by the threads of
all their workers over the CPUs (:func:`cpu_contention`), while a trial's start-up, which runs
several processes at once, is counted at its wall time alone (so CPU sweeps come out optimistic).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time

from omnimer import storage
from omnimer.aux_tasks import AUX_TASKS
from omnimer.config import TrainConfig
from omnimer.subsets import LATTICE, subset_name
from omnimer.sweep.probe import PROBE_STEPS, run_probe
from omnimer.sweep.trial import chunks, grid_runs, group_name
from omnimer.tasks import MAIN

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
# Memory a layout may plan to use of a device (the rest: the allocator's fragmentation, NCCL buffers).
MEMORY_HEADROOM = 0.9
LAYOUT_WORKERS = (1, 2, 4, 8)
ZERO_STAGES = (2, 3)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one trial runs: workers (GPUs, when the config uses them) and the ZeRO stage."""

    workers: int
    zero_stage: int


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the sweep runs on: GPUs and CPUs Ray reports, with what each trial reserves besides."""

    gpus: int
    cpus: float
    driver_cpus: float
    data_cpus: float


def memory_per_device(probe: dict, measured: Layout, layout: Layout) -> int:
    """Peak memory per device of ``layout``: the probe's peak less its share of the frozen weights,
    plus ``layout``'s share (ZeRO-2 keeps every weight on every device, ZeRO-3 partitions them)."""

    def weights(lay: Layout) -> float:
        return probe["param_bytes"] / (lay.workers if lay.zero_stage == 3 else 1)

    return int(probe["peak_memory_bytes"] - weights(measured) + weights(layout))


def concurrent_trials(cfg: TrainConfig, cluster: Cluster, workers: int) -> int:
    """Trials at once with ``workers`` per trial: the GPUs allow it and so do the CPUs (the sweep's
    own rule, :func:`omnimer.sweep.resources.cluster_slots`)."""
    per_trial = cluster.driver_cpus + workers * cfg.train.cpus_per_worker
    slots = int((cluster.cpus - cluster.data_cpus) // per_trial)
    if cfg.train.use_gpu:
        slots = min(slots, cluster.gpus // workers)
    return max(0, slots)


def run_seconds(cfg: TrainConfig, probe: dict, counts: dict, workers: int, factor: float) -> float:
    """One run's epochs: each epoch's steps (per worker, at the all-aux step time × ``factor``) and
    the scoring of valid and test, the first epoch's at the probe's first (cold) scoring rate, the
    later ones' at its second (a plan of an earlier version has one rate for all)."""
    steps = math.ceil(counts.get("train", 0) / (workers * cfg.train.batch_size))
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    scored = math.ceil(counts.get("valid", 0) / workers) + math.ceil(counts.get("test", 0) / workers)
    warm = probe["eval_seconds_per_clip"]
    cold = probe.get("first_eval_seconds_per_clip", warm)
    scoring = scored * (cold + (cfg.train.epochs - 1) * warm)  # train.epochs >= 1 (TrainConfig)
    return cfg.train.epochs * steps * probe["seconds_per_step"] * factor + scoring


def trial_seconds(cfg: TrainConfig, probe: dict, counts: dict, workers: int, factors: list[float]) -> float:
    """One trial's wall time, for runs of these ``factors`` trained one after another by its worker
    group: the probe's start-up once, each later run's set-up, and every run's epochs."""
    work = sum(run_seconds(cfg, probe, counts, workers, factor) for factor in factors)
    return probe["startup_seconds"] + (len(factors) - 1) * later_setup_seconds(probe) + work


def later_setup_seconds(probe: dict) -> float:
    """A trial's later run's set-up, as the probe measured it; a plan of an earlier version measured
    none and charges each later run the probe's first set-up (imports and staging included)."""
    return probe.get("later_setup_seconds", sum(probe["setup_seconds"].values()))


def cell_factors(request, tokens: dict[str, float]) -> dict[str, float]:
    """Each run's cost relative to the all-aux cell, by its tokens per clip (main + enabled aux), in
    the order the grid groups its runs (seed-major: :func:`omnimer.sweep.trial.run_groups`)."""
    every = tokens.get(MAIN, 0.0) + sum(tokens.get(t.name, 0.0) for t in AUX_TASKS)
    if request.mode != "ablation" or every <= 0:
        return {f"trial-{i}": 1.0 for i in range(request.num_samples)}
    factors = {}
    for subset, seed in grid_runs([s for s in LATTICE if subset_name(s) in request.subsets], request.seeds):
        enabled = tokens.get(MAIN, 0.0) + sum(
            tokens.get(t.name, 0.0) for t, on in zip(AUX_TASKS, subset, strict=True) if on
        )
        factors[f"{subset_name(subset)}-seed{seed}"] = enabled / every
    return factors


def trial_groups(runs: list[str], size: int) -> dict[str, list[str]]:
    """The trials of ``runs`` in groups of ``size`` (the sweep's ``--runs-per-trial``), by the name of
    each trial's Train run: the run's own for one run, ``group-<first run>`` for several."""
    return {group_name(group): group for group in chunks(runs, size)}


def project(
    request, probe: dict, counts: dict, cluster: Cluster, measured: Layout, choose: bool = False
) -> dict:
    """The sweep's projection for the measured layout, and for every other layout that fits, at the
    request's runs per trial; for the measured layout also the wall time of other runs per trial.
    ``choose`` (an ablation's ``--runs-per-trial auto``): at the fastest of those instead."""
    cfg = TrainConfig.from_dict(request.base)
    factors = cell_factors(request, probe["tokens_per_clip"])
    walls = {}
    if request.mode == "ablation":
        sizes = sorted({1, 2, 4, 8, len(request.subsets), len(factors)} & set(range(1, len(factors) + 1)))
        walls = {
            str(k): projection(cfg, probe, counts, cluster, measured.workers, factors, k)["wall_seconds"]
            for k in sizes
        }
    size = fastest_runs_per_trial(walls) if choose and walls else request.runs_per_trial
    limit = MEMORY_HEADROOM * probe["memory_capacity_bytes"]
    layouts = [measured] + [
        Layout(w, z)
        for w in LAYOUT_WORKERS
        for z in ZERO_STAGES
        if Layout(w, z) != measured and (not cfg.train.use_gpu or w <= cluster.gpus)
    ]
    rows = []
    for layout in layouts:
        memory = memory_per_device(probe, measured, layout)
        projected = projection(cfg, probe, counts, cluster, layout.workers, factors, size)
        if layout != measured and (memory > limit or projected["concurrent_trials"] < 1):
            continue
        rows.append(
            {
                "workers": layout.workers,
                "zero_stage": layout.zero_stage,
                "measured": layout == measured,
                "memory_bytes": memory,
                "fits": memory <= limit,
                **projected,
            }
        )
    groups = trial_groups(list(factors), size)
    plan = {
        "runs": len(factors),
        "runs_per_trial": size,
        "trials": len(groups),
        "groups": groups,
        "layouts": rows,
    }
    if walls:
        plan["runs_per_trial_walls"] = walls
        plan["runs_per_trial_chosen"] = bool(choose)
    return plan


def fastest_runs_per_trial(walls: dict[str, float]) -> int:
    """The runs per trial of the shortest projected wall time (of equals, the fewest)."""
    return int(min(walls, key=lambda k: (walls[k], int(k))))


def projection(
    cfg: TrainConfig, probe: dict, counts: dict, cluster: Cluster, workers: int, factors: dict, size: int
) -> dict:
    """Trials at once, rounds, CPU contention, each trial's seconds, wall and device-hours of the sweep
    with ``workers`` per trial and ``size`` runs per trial."""
    groups = trial_groups(list(factors), size)
    slots = concurrent_trials(cfg, cluster, workers)
    # On CPU, concurrent trials share the cores: each worker computes with at least one thread.
    share = 1.0 if cfg.train.use_gpu else cpu_contention(cfg, cluster, workers, min(slots, len(groups)))
    times = {
        name: share * trial_seconds(cfg, probe, counts, workers, [factors[run] for run in runs])
        for name, runs in groups.items()
    }
    return {
        "concurrent_trials": slots,
        "rounds": math.ceil(len(times) / slots) if slots else 0,
        "cpu_contention": share,
        "trial_seconds": times,
        "wall_seconds": max(sum(times.values()) / slots, max(times.values())) if slots else math.inf,
        "device_hours": sum(times.values()) * workers * device_share(cfg) / 3600,
    }


def cpu_contention(cfg: TrainConfig, cluster: Cluster, workers: int, slots: int) -> float:
    """How much slower a CPU trial runs beside the others: the threads of every running worker (at
    least one each: Ray gives a fractional-CPU worker one) over the cluster's CPUs, at least 1."""
    threads = slots * workers * max(1.0, cfg.train.cpus_per_worker)
    return max(1.0, threads / cluster.cpus) if cluster.cpus else 1.0


def device_share(cfg: TrainConfig) -> float:
    """Devices one worker holds: a GPU, or its CPUs."""
    return 1.0 if cfg.train.use_gpu else cfg.train.cpus_per_worker


def zero_stage(cfg: TrainConfig) -> int:
    from omnimer import provenance

    path = provenance.in_repo(cfg.train.deepspeed_config)
    return int(json.loads(path.read_text()).get("zero_optimization", {}).get("stage", 0))


def make_plan(request, steps: int = PROBE_STEPS, choose: bool = False, shards=None) -> dict:
    """Probe, project (``choose``: at the fastest runs per trial), and write ``plan.json`` in the
    experiment dir; returns the plan. ``shards``: the sweep's
    (:class:`~omnimer.training.dataset.SharedShards`), when a sweep follows the probe."""
    import ray

    from omnimer.data.shards import read_dataset_info
    from omnimer.sweep import resources

    cfg = TrainConfig.from_dict(request.base)
    probe = run_probe(request, steps, dataset=shards.dataset() if shards is not None else None)
    counts = read_dataset_info(cfg.data.path)["counts"]["rows"]
    available = ray.cluster_resources()
    cluster = Cluster(
        gpus=int(available.get("GPU", 0)),
        cpus=float(available.get("CPU", 0)),
        driver_cpus=resources.DRIVER_CPUS,
        data_cpus=resources.DATA_CPUS,
    )
    measured = Layout(cfg.train.num_workers, zero_stage(cfg))
    plan = {
        "created": time.time(),
        "mode": request.mode,
        "layout": dataclasses.asdict(measured) | {"use_gpu": cfg.train.use_gpu},
        "cluster": dataclasses.asdict(cluster),
        "clips": counts,
        "epochs": cfg.train.epochs,
        "probe": probe,
        **project(request, probe, counts, cluster, measured, choose),
    }
    storage.write_json(storage.join(request.experiment_dir, PLAN_FILE), plan)
    return plan


def describe(plan: dict) -> str:
    """The plan in words: what the probe measured, then one line per layout."""
    probe = plan["probe"]
    device = "GPU" if plan["layout"]["use_gpu"] else "CPU worker"
    tokens = ", ".join(f"{task} {n:.0f}" for task, n in probe["tokens_per_clip"].items())
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in probe["setup_seconds"].items())
    cold = probe.get("first_eval_seconds_per_clip")
    first_scoring = f" (first {cold:.3f})" if cold is not None else ""
    lines = [
        f"plan of {plan['runs']} run(s) in {plan['trials']} trial(s) of up to {plan['runs_per_trial']}, "
        f"{plan['epochs']} epochs each, on "
        f"{plan['clips'].get('train', 0)} training clips (probe: the all-aux cell, {probe['steps']} steps "
        f"on {probe['device']}):",
        f"  tokens per clip: {tokens}",
        f"  seconds per step {probe['seconds_per_step']:.2f} (first {probe['first_step_seconds']:.2f}); "
        f"scoring {probe['eval_seconds_per_clip']:.3f} s per clip{first_scoring}",
        f"  peak memory per device {_gib(probe['peak_memory_bytes'])} of "
        f"{_gib(probe['memory_capacity_bytes'])}; "
        f"weights {_gib(probe['param_bytes'])} ({_gib(probe['trainable_param_bytes'])} trainable)",
        f"  a trial's start-up {probe['startup_seconds']:.1f} s (the workers' set-up: {setup}); each further "
        f"run of a trial sets up again in {later_setup_seconds(probe):.1f} s",
        f"  {'workers':>7} {'ZeRO':>4} {'memory/dev':>10} {'at once':>7} {'rounds':>6} {'wall':>9} "
        f"{device + '-hours':>14}",
    ]
    for row in plan["layouts"]:
        lines.append(
            f"  {row['workers']:>7} {row['zero_stage']:>4} {_gib(row['memory_bytes']):>10} "
            f"{row['concurrent_trials']:>7} {row['rounds']:>6} {_duration(row['wall_seconds']):>9} "
            f"{row['device_hours']:>14.2f}"
            + ("   <- the config's layout (measured)" if row["measured"] else "")
        )
    walls = plan.get("runs_per_trial_walls")
    if walls:
        lines.append(
            "  runs per trial, the config's layout: "
            + ", ".join(f"{k} → {_duration(w)}" for k, w in walls.items())
            + f"; fastest: --runs-per-trial {fastest_runs_per_trial(walls)}"
            + (" (taken: --runs-per-trial auto)" if plan.get("runs_per_trial_chosen") else "")
        )
    lines.append(
        "  (per-device step time kept whatever the workers, communication not modelled; cells scaled by "
        "their tokens; valid and test scored every epoch; another ZeRO stage at the probe's step time;"
        " on CPU, trials slowed by the threads of those running beside them)"
    )
    return "\n".join(lines) + "\n"


def choose_runs_per_trial(request, shards=None):
    """``--runs-per-trial auto``: the request with the runs per trial measured to be fastest here.

    A sweep resumed in its experiment dir keeps the runs per trial it was started with (another would
    be refused); a new ablation is probed first (:func:`make_plan`, which writes ``plan.json``, whose
    description is logged) and takes the fastest; a search trains one run per trial. Returns the
    request and the plan (None when nothing was probed). ``shards`` go to the probe (:func:`make_plan`)."""
    from omnimer.sweep.request import SWEEP_FILE, request_view

    started = storage.join(request.experiment_dir, SWEEP_FILE)
    if request.mode != "ablation":
        return dataclasses.replace(request, runs_per_trial=1), None
    if storage.is_file(started):
        size = request_view(storage.read_json(started))["runs_per_trial"]
        log.info("--runs-per-trial auto: %d, as %s was started", size, request.experiment_dir)
        return dataclasses.replace(request, runs_per_trial=size), None
    plan = make_plan(request, choose=True, shards=shards)
    log.info("%s--runs-per-trial auto: %d", describe(plan), plan["runs_per_trial"])
    return dataclasses.replace(request, runs_per_trial=plan["runs_per_trial"]), plan


def planned_vs_actual(experiment_dir: str, invocation: int, records: list[dict]) -> str | None:
    """Planned (``plan.json``) against actual for one invocation of the sweep: its wall time and its
    trials' mean; None if the experiment has no plan."""
    from omnimer.sweep.invocations import INVOCATIONS_FILE

    path = storage.join(experiment_dir, PLAN_FILE)
    if not storage.is_file(path):
        return None
    plan = storage.read_json(path)
    row = next(r for r in plan["layouts"] if r["measured"])
    entries = storage.read_json(storage.join(experiment_dir, INVOCATIONS_FILE))
    wall = next((e.get("wall_seconds") for e in entries if e["invocation"] == invocation), None)
    ran = {
        r["config"]["run"]["name"]: r["wall_seconds"]
        for r in records
        if r.get("wall_seconds") is not None and (r.get("sweep") or {}).get("invocation") == invocation
    }
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan["created"]))
    lines = [
        f"planned vs actual ({PLAN_FILE} of {when}):",
        f"  sweep wall: planned {_duration(row['wall_seconds'])} for {plan['trials']} trial(s); invocation "
        f"{invocation}: "
        + (f"{_duration(wall)} for {len(ran)} run(s)" if wall is not None else "no wall time"),
    ]
    # A trial's actual time: its runs' (the first counts from its Train run's start, each later one
    # from the previous run's end), for the trials whose every run this invocation trained.
    groups = plan.get("groups") or {name: [name] for name in row["trial_seconds"]}
    actual = {
        name: sum(ran[run] for run in runs)
        for name, runs in groups.items()
        if name in row["trial_seconds"] and all(run in ran for run in runs)
    }
    if actual:
        mean_planned = sum(row["trial_seconds"][name] for name in actual) / len(actual)
        mean_actual = sum(actual.values()) / len(actual)
        lines.append(
            f"  mean trial: planned {mean_planned:.0f} s, actual {mean_actual:.0f} s ({len(actual)} trial(s))"
        )
    return "\n".join(lines) + "\n"


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "—"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"
