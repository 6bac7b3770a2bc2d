"""The Ray Train worker function: for each of its runs in turn, set up, then per epoch train,
evaluate, checkpoint and report; at a run's end rank 0 settles its record as finished.

:func:`train_loop_per_worker` runs on every worker of the ``TorchTrainer`` that
:func:`omnimer.training.driver.build_trainer` builds (for ``omnimer train`` and for every trial of
``sweeps/aux_ablation.py``). A Train run trains one run, or, for a grid trial of several runs
(``--runs-per-trial``), those runs one after another in the same worker group: Ray's and the
workers' start-up are paid once per trial instead of once per run. Every rank trains on its slice of
the rows and takes part in every collective; rank 0 alone logs, writes TensorBoard events, saves the
best adapter (:class:`~omnimer.training.outputs.RankZeroOutputs`) and writes the finished record.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import time
import weakref
from pathlib import Path
from typing import Any

import torch

from omnimer import losses, metrics, storage
from omnimer.collate import AudioFeatureCache
from omnimer.config import TrainConfig
from omnimer.labels import LabelSet, class_counts, label_set_of
from omnimer.tasks import Prompting
from omnimer.training import checkpoint
from omnimer.training.dataset import worker_rows
from omnimer.training.engine import build_engine, release_engine, seed_everything
from omnimer.training.evaluate import Evaluator, resolve_scoring
from omnimer.training.outputs import RankZeroOutputs
from omnimer.training.predictions import Predictions
from omnimer.training.record import EpochResult, RunState, finish_run_dir
from omnimer.training.step import StepContext, epoch_order, step_losses

log = logging.getLogger(__name__)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker function: ``config["runs"]`` (run configs as dicts) trained in order, from the
    run of the newest checkpoint on; ``config["started"]``, the driver's clock when it started the fit
    (the first run's wall time counts from there, each later one's from the previous run's end).

    The runs share this worker's audio-feature caches (one per model and cache size): a clip's
    features depend only on its waveform and the extractor's settings, so a later run finds those an
    earlier one computed instead of computing them again in its first epoch."""
    runs = [TrainConfig.from_dict(values) for values in config["runs"]]
    first, resume = checkpoint.resume_index([cfg.run.name for cfg in runs])
    begun = config.get("started", time.time())
    feature_caches: dict[tuple, AudioFeatureCache] = {}
    for index in range(first, len(runs)):
        # What is alive now (the imported modules: torch, transformers, DeepSpeed, Ray; the earlier
        # runs' feature caches) lives as long as this process: frozen, it is out of the cyclic
        # collector's reach, whose collections during the epochs and between runs then scan only
        # what the run makes. The previous run's engine is already collected, so none of it is frozen.
        gc.freeze()
        released = train_run(runs[index], resume and index == first, begun, feature_caches)
        begun = time.time()
        # The run's engine (model, optimizer, ZeRO state) is released and gone with train_run's
        # frame: free it before the next run sets up.
        gc.collect()
        if released() is not None:
            log.warning(
                "%s: its DeepSpeed engine outlived the run (something still references it), so its model "
                "and optimizer state stay in memory beside the next run's: see "
                "omnimer.training.engine.release_engine",
                runs[index].run.name,
            )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def train_run(
    cfg: TrainConfig, resume: bool, begun: float, feature_caches: dict[tuple, AudioFeatureCache]
) -> weakref.ref:
    """One run: set up (from its newest checkpoint if ``resume``), its epochs, and its finished record.
    Returns a weak reference to its released engine, which nothing should hold any more."""
    # --------------------------------------------------------------------------------- set up
    worker = set_up(cfg, feature_caches)
    state = checkpoint.restore(worker.engine, worker.rank) if resume else RunState()
    state = state.started(worker.setup_seconds)
    outputs = RankZeroOutputs(cfg, worker.labels) if worker.rank == 0 else None
    if outputs is not None:
        log.info(
            "%s: worker ready: %s",
            cfg.run.name,
            ", ".join(f"{k} {v:.1f} s" for k, v in worker.setup_seconds.items()),
        )

    for epoch in range(state.epoch, cfg.train.epochs):
        started = (time.time(), time.process_time())
        # ----------------------------------------------------------------------------- train
        train_loss = train_epoch(worker, epoch, outputs)
        # ----------------------------------------------------------------------------- evaluate
        entry, best_epoch, predictions = evaluate_epoch(worker, state, epoch + 1, train_loss, started)
        state = state.after(entry, best_epoch, worker.world_size)
        if outputs is not None:
            announce(worker, entry)
            outputs.epoch(entry)
            if best_epoch in (None, entry.epoch):  # this epoch is the one the record reports
                state = state.with_predictions(outputs.predictions(predictions, entry.epoch))
        # ----------------------------------------------------------------------------- checkpoint, report
        checkpoint.save_and_report(worker.engine, state, worker.rank, cfg.run.name, outputs)
        if cfg.train.fail_at_epoch == epoch + 1:
            resilience_drill(cfg, worker.rank, worker.world_size, epoch + 1)

    # --------------------------------------------------------------------------------- finish
    if outputs is not None:
        outputs.close(state)
        finish_run_dir(outputs.run_dir, state, time.time() - begun)
    release_engine(worker.engine)
    return weakref.ref(worker.engine)


@dataclasses.dataclass(frozen=True)
class Worker:
    """One worker's part of the run: where it is in the group, its rows and its engine."""

    cfg: TrainConfig
    rank: int
    world_size: int
    device: Any
    labels: LabelSet
    class_counts: list[int]
    engine: Any
    scheduler: Any
    train_rows: list[dict]
    eval_rows: dict[str, list[dict]]
    steps_per_epoch: int
    evaluator: Evaluator
    step_context: StepContext
    feature_cache: AudioFeatureCache | None
    setup_seconds: dict[str, float]


def set_up(cfg: TrainConfig, feature_caches: dict[tuple, AudioFeatureCache] | None = None) -> Worker:
    """Load the processor and the model with its LoRA adapter, take this worker's rows, and wrap the
    model in a DeepSpeed engine. The processor's audio-feature cache is taken from ``feature_caches``
    (those of this worker's earlier runs) when one for the same model and size is there, else made
    and put there."""
    import ray.train

    from omnimer.data.shards import read_dataset_info
    from omnimer.model.load import apply_lora, load_processor, load_thinker
    from omnimer.model.staging import stage_checkpoint

    entered = time.time()
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if cfg.train.use_gpu else torch.device("cpu")
    if cfg.train.use_gpu:
        # cuDNN's attention backward returns NaN gradients on some left-padded bf16 batches (H100,
        # torch 2.11 + CUDA 13): DeepSpeed then skips ~10% of the steps without a word.
        torch.backends.cuda.enable_cudnn_sdp(False)
    seed_everything(cfg.train.seed)

    info = read_dataset_info(Path(cfg.data.path))
    labels = label_set_of(info, cfg.data.target)
    counts = class_counts(info, cfg.data.target, labels)
    frame_size = int(info["frames"]["height"])

    model_cfg, staging = cfg.model, time.time()
    if cfg.model.stage_dir:  # the first worker on this node copies the checkpoint, the others wait
        staged = stage_checkpoint(cfg.model.name_or_path, cfg.model.stage_dir)
        model_cfg = dataclasses.replace(cfg.model, name_or_path=staged.path)
    staged_model = time.time()
    processor = load_processor(model_cfg.name_or_path)
    caches = {} if feature_caches is None else feature_caches
    feature_cache = shared_feature_cache(
        processor, model_cfg.name_or_path, cfg.data.audio_feature_cache_mb, caches
    )
    scoring = resolve_scoring(processor.tokenizer, labels, cfg.eval.scoring)
    model = apply_lora(load_thinker(model_cfg), cfg.model.lora)
    model.train()
    loaded_model = time.time()

    rows = worker_rows(rank, world_size)
    loaded_data = time.time()
    steps_per_epoch = agreed_steps_per_epoch(cfg, len(rows["train"]), world_size)
    optimizer_steps = max(1, cfg.train.epochs * steps_per_epoch // cfg.train.grad_accum)
    engine, scheduler = build_engine(model, cfg, world_size, optimizer_steps)
    setup_seconds = {
        "model staging": staged_model - staging,
        "model": loaded_model - entered - (staged_model - staging),
        "data": loaded_data - loaded_model,
        "DeepSpeed": time.time() - loaded_data,
    }
    filler = rows["train"][0] if rows["train"] else None
    rebalancing = losses.build_rebalancing(cfg.loss, counts)
    prompting = Prompting(
        cfg.data.target, labels, scoring.verbalizers, cfg.data.language, cfg.data.audio_in_video
    )
    return Worker(
        cfg=cfg,
        rank=rank,
        world_size=world_size,
        device=device,
        labels=labels,
        class_counts=counts,
        engine=engine,
        scheduler=scheduler,
        train_rows=rows["train"],
        eval_rows={split: rows[split] for split in ("valid", "test")},
        steps_per_epoch=steps_per_epoch,
        evaluator=Evaluator(processor, prompting, scoring, frame_size, cfg.train.eval_batch_size, filler),
        step_context=StepContext(processor, prompting, scoring.first_ids, rebalancing, frame_size, device),
        feature_cache=feature_cache,
        setup_seconds=setup_seconds,
    )


def shared_feature_cache(
    processor, checkpoint: str, size_mb: int, caches: dict[tuple, AudioFeatureCache]
) -> AudioFeatureCache | None:
    """The audio-feature cache put in front of ``processor`` (a processor of ``checkpoint``): the one
    in ``caches`` for the same checkpoint and size (this worker's earlier runs), else a new one, kept
    there. None, and nothing kept, when the config turns the cache off (``size_mb`` 0)."""
    key = (checkpoint, size_mb)
    if key in caches:
        caches[key].install_into(processor)
        return caches[key]
    cache = AudioFeatureCache.install(processor, size_mb * 2**20)
    if cache is not None:
        caches[key] = cache
    return cache


def agreed_steps_per_epoch(cfg: TrainConfig, train_rows: int, world_size: int) -> int:
    """Steps per epoch: every rank must take the same number (collectives); the shortest slice decides."""
    steps = math.ceil(train_rows / cfg.train.batch_size)
    if cfg.train.max_steps_per_epoch:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    if world_size > 1:
        shared = torch.tensor([steps])
        torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MIN)
        steps = int(shared)
    return steps


def train_epoch(worker: Worker, epoch: int, outputs: RankZeroOutputs | None) -> dict[str, float]:
    """One epoch of optimizer steps; returns the mean loss of each part over the steps that had it (a
    task without targets in a step has no part in that step)."""
    cfg, engine = worker.cfg, worker.engine
    engine.train()
    order = epoch_order(worker.train_rows, cfg, epoch, worker.labels, worker.class_counts)
    sums: dict[str, float] = {}
    steps: dict[str, int] = {}
    size = cfg.train.batch_size
    for step in range(worker.steps_per_epoch):
        rows = [worker.train_rows[i] for i in order[step * size : (step + 1) * size]]
        total, parts, _ = step_losses(engine, rows, cfg, worker.step_context)
        engine.backward(total)
        engine.step()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value)
            steps[key] = steps.get(key, 0) + 1
        if outputs is not None:
            outputs.step(parts, worker.scheduler.get_last_lr()[0], epoch * worker.steps_per_epoch + step)
    return {key: value / steps[key] for key, value in sums.items()}


def evaluate_epoch(
    worker: Worker, state: RunState, epoch: int, train_loss: dict[str, float], started: tuple[float, float]
) -> tuple[EpochResult, int | None, dict[str, Predictions]]:
    """Valid metrics of ``epoch`` and the best epoch so far (valid macro-F1); test metrics only when
    ``epoch`` is that best epoch, which is all the record reports (a run without valid rows selects
    its last epoch). Also the per-clip predictions behind them, by split. ``started``: the epoch's
    start, wall and process CPU clocks."""
    worker.engine.eval()
    score, labels = worker.evaluator.score, worker.labels
    predictions = {"valid": score(worker.engine, worker.eval_rows["valid"], worker.device, worker.world_size)}
    valid = predictions["valid"].metrics(labels)
    entry = EpochResult(epoch, train_loss, valid, None, time.time() - started[0])
    scored = [h for h in [*state.history, entry] if h.valid]
    best = scored[metrics.best_epoch([h.to_json() for h in scored])].epoch if scored else None
    test = None
    if best in (None, epoch):
        predictions["test"] = score(worker.engine, worker.eval_rows["test"], worker.device, worker.world_size)
        test = predictions["test"].metrics(labels)
    entry = dataclasses.replace(
        entry, test=test, seconds=time.time() - started[0], cpu_seconds=time.process_time() - started[1]
    )
    return entry, best, predictions


def announce(worker: Worker, entry: EpochResult) -> None:
    """Rank 0's log line of an epoch."""
    cache = worker.feature_cache
    log.info(
        "epoch %d/%d: %.1f s, valid macro-F1 %s%s",
        entry.epoch,
        worker.cfg.train.epochs,
        entry.seconds,
        f"{entry.valid['macro_f1']:.3f}" if entry.valid else "n/a",
        f"; audio features cached for {len(cache.entries)} clips "
        f"({cache.bytes / 2**20:.0f} MiB, {cache.hits} reuses)"
        if cache is not None
        else "",
    )


def resilience_drill(cfg: TrainConfig, rank: int, world_size: int, epoch: int) -> None:
    """``train.fail_at_epoch``: kill the last rank's process once, after every rank has reported
    ``epoch``'s checkpoint.

    The barrier makes the kill land between epochs (as a lost node would), and the marker file makes
    the drill happen once per run, so the restarted worker group runs to the end. Ray Train's
    controller takes each rank's report, and so registers the epoch's checkpoint, when it polls the
    workers (every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default): the rank waits for three
    polls before it dies, or its report would die with it and the group would restart from scratch
    instead of resuming from this checkpoint.
    """
    if world_size > 1:
        torch.distributed.barrier()
    marker = storage.join(cfg.run.output_dir, cfg.run.name, ".resilience-drill-done")
    if rank == world_size - 1 and not storage.exists(marker):
        storage.write_text(marker, "")
        time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")))
        log.warning("resilience drill: rank %d exits after epoch %d", rank, epoch)
        os._exit(1)
