"""The probe of ``--plan`` and ``--runs-per-trial auto``: one Ray Train run of a sweep's costliest
trial (the all-aux cell), with the real config and layout, on the cluster the command runs on.

:func:`probe_loop_per_worker` does the run's own set-up, then a few optimizer steps and the scoring of
a few validation clips (twice: cold, then with their audio features cached), then the set-up of a
trial's later run; it reports tokens per clip of each task, seconds per step, scoring seconds per clip,
peak memory per device and the later run's set-up; :func:`run_probe` adds its wall time, whose rest
(less that work and the second set-up) is a trial's start-up.
:mod:`omnimer.sweep.plan` projects the sweep from them.
"""

from __future__ import annotations

import time

from omnimer import storage
from omnimer.aux_tasks import AUX_TASKS
from omnimer.config import TrainConfig
from omnimer.tasks import MAIN

PROBE_STEPS = 4


def probe_loop_per_worker(config: dict) -> None:
    """Ray Train worker function of the probe: what :func:`measure` measures of a first run, then a
    later run's set-up (:func:`time_later_setup`); reports them."""
    import tempfile

    import ray.train

    cfg, steps = TrainConfig.from_dict(config["train"]), int(config["steps"])
    measured = measure(cfg, steps)
    measured["later_setup_seconds"] = time_later_setup(cfg)
    # Ray Train keeps only the metrics reported with a checkpoint: rank 0 reports a tiny one.
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if ray.train.get_context().get_world_rank() == 0:
            storage.write_json(f"{tmp}/probe.json", measured)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(measured, checkpoint=checkpoint)


def measure(cfg: TrainConfig, steps: int) -> dict:
    """A first run's set-up, then ``steps`` optimizer steps (the first one, which pays for lazy
    initialisation, is not timed) and the scoring of a few validation clips, cold and again; what they
    took, the tokens per clip of each task and the peak memory. The run's engine is released on return."""
    import resource

    import torch

    from omnimer.aux_tasks import TASK_NAMES
    from omnimer.collate import collate
    from omnimer.tasks import build_task_batches
    from omnimer.training.engine import release_engine
    from omnimer.training.step import epoch_order, step_losses
    from omnimer.training.worker import set_up

    worker = set_up(cfg)
    # No more steps than an epoch has on every rank (each step runs collectives on all of them).
    steps = min(steps, worker.steps_per_epoch)
    ctx, engine, size = worker.step_context, worker.engine, cfg.train.batch_size
    order = epoch_order(worker.train_rows, cfg, 0, worker.labels, worker.class_counts)
    batches = [[worker.train_rows[i] for i in order[s * size : (s + 1) * size]] for s in range(steps)]
    tokens: dict[str, list[int]] = {}
    for rows in batches:
        media = {r["clip_id"]: r for r in rows}
        for task, convs in build_task_batches(rows, ctx.prompting, AUX_TASKS).items():
            in_video = ctx.prompting.audio_in_video
            batch = collate(ctx.processor, convs, media, frame_size=ctx.frame_size, audio_in_video=in_video)
            tokens.setdefault(task, []).extend([batch.num_tokens, len(convs)])
    engine.train()
    step_seconds = []
    for rows in batches:
        begun = time.time()
        total, _, _ = step_losses(engine, rows, cfg, ctx)
        engine.backward(total)
        engine.step()
        step_seconds.append(time.time() - begun)
    engine.eval()
    clips = worker.eval_rows["valid"][: 2 * cfg.train.eval_batch_size] or worker.train_rows[:size]
    eval_seconds = scoring_seconds(worker, clips)
    if cfg.train.use_gpu:
        peak = torch.cuda.max_memory_allocated(worker.device)
        capacity = torch.cuda.get_device_properties(worker.device).total_memory
    else:  # the worker process's peak resident memory, against the node's
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        capacity = _physical_memory()
    params = list(engine.module.parameters())
    measured = {
        "device": str(worker.device),
        "steps": len(step_seconds),
        "seconds_per_step": _median(step_seconds[1:] or step_seconds),
        "first_step_seconds": step_seconds[0],
        "eval_seconds_per_clip": eval_seconds[1] / max(1, len(clips)),
        "first_eval_seconds_per_clip": eval_seconds[0] / max(1, len(clips)),
        "work_seconds": sum(step_seconds) + sum(eval_seconds),
        "setup_seconds": worker.setup_seconds,
        "peak_memory_bytes": int(peak),
        "memory_capacity_bytes": int(capacity),
        "param_bytes": int(sum(_numel(p) * p.element_size() for p in params)),
        "trainable_param_bytes": int(sum(_numel(p) * p.element_size() for p in params if p.requires_grad)),
        "tokens_per_clip": {
            task: sum(tokens[task][0::2]) / sum(tokens[task][1::2])
            for task in (MAIN, *TASK_NAMES)
            if task in tokens
        },
    }
    release_engine(engine)
    return measured


def time_later_setup(cfg: TrainConfig) -> float:
    """Seconds a trial's later run takes before its first epoch, as the worker runs it
    (:func:`omnimer.training.worker.train_loop_per_worker`): the earlier run's released engine
    collected, then the run's own set-up. What a first run's set-up pays once (imports, the model's
    staging, DeepSpeed's first initialisation) it does not: on the demo 0.4-0.6 s against 1.8 s."""
    import gc

    from omnimer.training.engine import release_engine
    from omnimer.training.worker import set_up

    begun = time.time()
    gc.collect()
    worker = set_up(cfg)
    seconds = time.time() - begun
    release_engine(worker.engine)
    return seconds


def scoring_seconds(worker, clips: list[dict]) -> list[float]:
    """Seconds the worker's engine (in eval mode) takes to score ``clips``, twice: a run's first
    scoring also extracts the clips' audio features, which its later epochs find in the worker's
    cache (on the demo the first call took about 4x the second)."""
    seconds = []
    for _ in range(2):
        begun = time.time()
        worker.evaluator.predict(worker.engine, clips, worker.device, worker.world_size)
        seconds.append(time.time() - begun)
    return seconds


def _numel(param) -> int:
    return int(getattr(param, "ds_numel", param.numel()))  # ZeRO-3 leaves an empty local tensor


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _physical_memory() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def run_probe(request, steps: int = PROBE_STEPS, dataset=None) -> dict:
    """The probe on the connected cluster: its measurements plus its wall time and start-up.

    ``dataset``: the sweep's shards already read into the object store (what its trials get), else
    the probe's workers read the files."""
    from omnimer.sweep.trial import ablation_overrides
    from omnimer.training.driver import build_trainer, fit_releasing_controller

    values = ablation_overrides(request.base, (True,) * len(AUX_TASKS), request.seeds[0])
    values["run"] = {"output_dir": storage.join(request.experiment_dir, "plan"), "name": "probe"}
    cfg = TrainConfig.from_dict(values)
    # A fresh probe each time: Ray Train would otherwise resume an earlier probe's run of that name.
    storage.delete_dir(storage.join(cfg.run.output_dir, cfg.run.name))
    started = time.time()
    trainer = build_trainer(
        cfg, dataset=dataset, loop=probe_loop_per_worker, loop_config={"train": values, "steps": steps}
    )
    result = fit_releasing_controller(trainer)
    if result.error is not None:
        raise RuntimeError(f"the plan's probe failed: {result.error}")
    probe = dict(result.metrics)
    probe["wall_seconds"] = time.time() - started
    # What a trial pays besides its epochs: Ray Train's start-up, the workers' (first) set-up, the shutdown.
    probe["startup_seconds"] = probe["wall_seconds"] - probe["work_seconds"] - probe["later_setup_seconds"]
    return probe
