"""One OmniMER training run: Ray Train workers fine-tune the Thinker's LoRA adapter with DeepSpeed.

    omnimer train --config sweeps/configs/smoke.yaml model.name_or_path=runs/demo/tiny-model \\
        data.path=runs/demo/shards run.output_dir=runs/train run.name=r0

Three layers, kept visible (STYLE: Ray examples): :func:`train_loop_per_worker` runs on every Ray
Train worker, :func:`build_trainer` wraps it in a ``TorchTrainer``, and :func:`run_training` is the
driver that validates the config before any worker starts and writes the run's ``record.json``.

Per worker, one explicit loop:
  rows of the worker's slice → conversations per enabled task → processor batches → Thinker+LoRA
  forward per task → ``L = w_c·L_main + Σ λ·L_aux`` → DeepSpeed backward/step; each epoch
  closed-set evaluation on valid and test, TensorBoard, a checkpoint through ``ray.train.report``.

Outputs of ``<run.output_dir>/<run.name>/``: ``record.json``, ``tensorboard/`` (events), and
``best_adapter/`` (the LoRA adapter of the epoch with the best valid macro-F1); Ray's own
checkpoints (adapter + DeepSpeed optimizer state) under ``checkpoint_*``. ``run.output_dir`` may be
an object store URI (``s3://bucket/runs``, see :mod:`omnimer.storage`): then rank 0 writes the events
and the adapter into a local staging dir and uploads them after every epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnimer import losses, metrics, storage
from omnimer.collate import (
    IGNORE_INDEX,
    AudioFeatureCache,
    Batch,
    collate,
    merge_batches,
    pack_batches,
    rows_from_numpy,
)
from omnimer.config import TrainConfig
from omnimer.labels import LabelSet
from omnimer.provenance import code_version, in_repo, package_versions, repo_relative
from omnimer.tasks import AUX_COLUMNS, MAIN, aux_conversation, build_task_batches, main_conversation

log = logging.getLogger(__name__)

RECORD_SCHEMA_VERSION = 1
STATE_FILE = "omnimer_state.json"
DATASET = "shards"  # the one Ray Dataset a run's workers read (all splits)
DS_TAG = "deepspeed"
# Columns the training loop reads (the shards also hold provenance and raw prosody).
TRAIN_COLUMNS = [
    "clip_id",
    "emotion",
    "sentiment",
    "text",
    "frames",
    "frame_fps",
    "audio",
    *AUX_COLUMNS.values(),
]


# ------------------------------------------------------------------------------------ shared helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_location(cfg: TrainConfig) -> str:
    """``<run.output_dir>/<run.name>``: an absolute local path, or a URI under an object store."""
    if storage.is_remote(cfg.run.output_dir):
        return storage.join(cfg.run.output_dir, cfg.run.name)
    return str(Path(cfg.run.output_dir).resolve() / cfg.run.name)


def label_set_of(info: dict, target: str) -> LabelSet:
    entry = info["label_sets"][target]
    if entry is None:
        raise ValueError(
            f"the dataset has no {target} labels (format {info['format']}); use data.target=sentiment"
        )
    return LabelSet(entry["key"], entry["task"], tuple(entry["names"]), tuple(entry["display"]))


def class_counts(info: dict, target: str, labels: LabelSet) -> list[int]:
    counts = info["counts"][target]["train"]
    return [int(counts.get(name, 0)) for name in labels.names]


def choose_verbalizers(tokenizer, labels: LabelSet) -> tuple[tuple[str, ...], list[int]]:
    """Verbalizers whose first tokens differ, so one forward pass scores every label.

    The canonical names are tried first, then the English display names; the loop refuses to train
    with verbalizers that first-token scoring could not tell apart.
    """
    errors = []
    for candidate in (labels.verbalizers, labels.display):
        ids = [tokenizer(word, add_special_tokens=False).input_ids for word in candidate]
        try:
            return tuple(candidate), metrics.check_distinct_first_tokens(ids, list(candidate))
        except ValueError as err:
            errors.append(str(err))
    raise ValueError("no verbalizers with distinct first tokens for this tokenizer: " + "; ".join(errors))


def lr_lambda(total_steps: int, warmup_ratio: float):
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict:
    """The ZeRO config from ``cluster/deepspeed``, completed with this run's batch sizes and precision."""
    ds = json.loads(in_repo(cfg.train.deepspeed_config).read_text())
    ds["train_micro_batch_size_per_gpu"] = cfg.train.batch_size
    ds["gradient_accumulation_steps"] = cfg.train.grad_accum
    ds["train_batch_size"] = cfg.train.batch_size * cfg.train.grad_accum * world_size
    ds["gradient_clipping"] = cfg.train.max_grad_norm
    # bf16 on GPU; fp32 on CPU, where DeepSpeed picks its CPU accelerator and gloo by itself.
    ds["bf16"] = {"enabled": bool(cfg.train.use_gpu)}
    ds.pop("fp16", None)
    # Our optimizer is torch's AdamW; with optimizer offload DeepSpeed would otherwise insist on its own.
    ds["zero_force_ds_cpu_optimizer"] = False
    return ds


# ------------------------------------------------------------------------------------ per worker


class Evaluator:
    """Closed-set evaluation: one forward pass per batch of prompts, scored on the label tokens.

    With several workers every one runs the same number of forward passes: under ZeRO-3 each forward
    gathers the partitioned weights with collectives, so a worker whose slice of a split needs one
    batch fewer (13 test clips on 2 workers: 7 and 6) would leave the others waiting in a collective
    that never matches (gloo aborts, NCCL hangs). A worker short of batches runs filler forwards on
    rows it already has (``filler``: a row to use when its slice is empty) and discards them.
    """

    def __init__(
        self,
        processor,
        cfg: TrainConfig,
        labels: LabelSet,
        verbalizers,
        first_ids,
        frame_size: int,
        filler: dict | None = None,
    ):
        self.processor, self.cfg, self.labels = processor, cfg, labels
        self.verbalizers, self.first_ids, self.frame_size = verbalizers, first_ids, frame_size
        self.filler = filler

    @torch.no_grad()
    def evaluate(self, model, rows: list[dict], device, world_size: int) -> dict | None:
        """Metrics over every rank's rows (None if the split is empty)."""
        _, truth, predicted = self.predict(model, rows, device, world_size)
        truth, predicted = _gather(truth, world_size), _gather(predicted, world_size)
        return metrics.classification_metrics(truth, predicted, self.labels.names) if truth else None

    def _chunks(self, rows: list[dict]) -> list[list[dict]]:
        """The evaluation batches of ``rows``: those with a label for the target, in order."""
        size, target = self.cfg.train.eval_batch_size, self.cfg.data.target
        chunks = [[r for r in rows[i : i + size] if r[target] is not None] for i in range(0, len(rows), size)]
        return [chunk for chunk in chunks if chunk]

    @torch.no_grad()
    def predict(
        self, model, rows: list[dict], device, world_size: int = 1
    ) -> tuple[list[str], list[int], list[int]]:
        chunks = self._chunks(rows)
        forwards = len(chunks)
        if world_size > 1:
            count = torch.tensor([forwards], dtype=torch.long, device=device)
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
            forwards = int(count)
        clip_ids, truth, predicted = [], [], []
        for i in range(forwards):
            if i < len(chunks):
                batch, scores = self._scores(model, chunks[i], device)
                predicted += metrics.closed_set_predict(scores).tolist()
                truth += batch.class_index.tolist()
                clip_ids += batch.clip_ids
            else:  # a filler forward: the same modules as the other workers' batch, output unused
                self._scores(model, chunks[0] if chunks else [self._filler()], device)
        return clip_ids, truth, predicted

    def _filler(self) -> dict:
        if self.filler is None:
            raise RuntimeError("this worker has no evaluation rows and no filler row for its forward passes")
        return self.filler

    def _scores(self, model, chunk: list[dict], device):
        data = self.cfg.data
        convs = [
            main_conversation(
                r,
                data.target,
                self.labels,
                self.verbalizers,
                data.language,
                with_answer=False,
                audio_in_video=data.audio_in_video,
            )
            for r in chunk
        ]
        batch = collate(
            self.processor,
            convs,
            {r["clip_id"]: r for r in chunk},
            frame_size=self.frame_size,
            audio_in_video=data.audio_in_video,
            with_labels=False,
        )
        out = model(**_to_device(batch.inputs, device), use_cache=False)
        scores = metrics.verbalizer_scores(
            out.logits, batch.inputs["attention_mask"].to(device), self.first_ids
        )
        return batch, scores


def _to_device(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _gather(values: list, world_size: int) -> list:
    if world_size == 1:
        return values
    gathered: list = [None] * world_size
    torch.distributed.all_gather_object(gathered, values)
    return [v for part in gathered for v in part]


def _load_rows(rank: int, world_size: int) -> dict[str, list[dict]]:
    """This worker's rows of each split, in a deterministic order (sorted by clip_id, then strided).

    Every worker receives the whole (unsplit) dataset and takes ``rows[rank::world_size]``, so a
    rerun or a restarted worker group sees exactly the same rows in the same order. The split of a
    row is the folder of its shard file (one Ray Data execution for all splits: each execution costs
    seconds of start-up).
    """
    import ray.train

    shard = ray.train.get_dataset_shard(DATASET)
    rows: dict[str, list[dict]] = {s: [] for s in ("train", "valid", "test")}
    for batch in shard.iter_batches(batch_size=64, batch_format="numpy"):
        splits = [Path(str(p)).parent.name for p in batch.pop("path")]
        for split, row in zip(splits, rows_from_numpy(batch), strict=True):
            rows[split].append(row)
    for split, split_rows in rows.items():
        split_rows.sort(key=lambda r: str(r["clip_id"]))
        rows[split] = split_rows[rank::world_size]
    return rows


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What every training step of a run needs besides the model, the config and the step's rows."""

    processor: Any
    labels: LabelSet
    verbalizers: tuple[str, ...]
    first_ids: list[int]
    rebalancing: Any
    frame_size: int
    device: Any


def step_losses(
    engine, rows: list[dict], cfg: TrainConfig, ctx: StepContext
) -> tuple[torch.Tensor, dict, int]:
    """The loss of one training step on ``rows``; returns the combined loss, its parts, and tokens.

    ``parts`` (detached, for logging) holds ``main``, ``total`` and each enabled aux task's loss, but
    not a task that none of ``rows`` has a target for: it adds nothing to ``total`` and measures
    nothing.

    The conversations of the main task and of every aux task with λ > 0
    (:func:`omnimer.tasks.build_task_batches`) are collated; the main task's batch is forwarded, then
    the aux tasks' (packed into as few forwards as :func:`omnimer.collate.pack_batches` allows).
    ``ctx.first_ids`` (the label verbalizers' first tokens) is needed by the logit_adjust scheme only.
    """
    processor, device, frame_size, rebalancing = ctx.processor, ctx.device, ctx.frame_size, ctx.rebalancing
    weights = losses.aux_weights(cfg.loss)
    batches = build_task_batches(
        rows,
        cfg.data.target,
        ctx.labels,
        ctx.verbalizers,
        cfg.data.language,
        weights,
        cfg.data.audio_in_video,
    )
    media = {r["clip_id"]: r for r in rows}
    collated = {
        task: collate(processor, convs, media, frame_size=frame_size, audio_in_video=cfg.data.audio_in_video)
        for task, convs in batches.items()
    }
    tokens = sum(batch.num_tokens for batch in collated.values())
    batch = collated.pop(MAIN)
    out = engine(**_to_device(batch.inputs, device), use_cache=False)
    labels = batch.labels.to(device)
    class_scores = None
    if rebalancing.scheme == "logit_adjust":
        class_scores = metrics.score_label_tokens(
            metrics.first_answer_logits(out.logits, labels), ctx.first_ids
        )
    main = losses.main_loss(
        rebalancing, batch.class_index, logits=out.logits, labels=labels, class_scores=class_scores
    )
    shapes = _agreed_shapes(collated, device)
    # An enabled task that none of this step's rows has a target for (partial annotations) adds no
    # loss. If another worker's rows have one, this worker runs a filler batch of it all the same:
    # under ZeRO-3 every worker must run the same forwards and backwards.
    aux_losses: dict[str, torch.Tensor] = {}
    fillers, untargeted = set(), set()
    for task in AUX_COLUMNS:
        if weights.get(task, 0.0) > 0 and task not in collated:
            aux_losses[task] = torch.zeros((), device=device)
            untargeted.add(task)
            if shapes is not None and shapes[task][0] > 0:
                collated[task] = _filler_batch(task, processor, media, cfg, frame_size)
                fillers.add(task)
    # The auxiliary tasks are short next to the main one; those of similar length share a forward.
    for group in pack_batches(list(collated.values()), shapes=shapes):
        batch, spans = merge_batches(group, processor.tokenizer.pad_token_id)
        out = engine(**_to_device(batch.inputs, device), use_cache=False)
        labels = batch.labels.to(device)
        for task, span in spans.items():
            if task in fillers:  # zero, but through the filler's forward, so its backward runs too
                aux_losses[task] = out.logits[span].float().sum() * 0.0
            else:
                aux_losses[task] = losses.token_loss(out.logits[span], labels[span])
    total, parts = losses.combine(main, aux_losses, weights)
    for task in untargeted:
        del parts[task]
    return total, parts, tokens


def _filler_batch(task: str, processor, media: dict, cfg: TrainConfig, frame_size: int) -> Batch:
    """A one-row batch of ``task`` on a clip of this step, with a placeholder answer and every label
    ignored: the forward another worker runs for the task, which this worker has no target for."""
    row = next(iter(media.values()))
    conv = aux_conversation(task, {**row, AUX_COLUMNS[task]: "-"}, cfg.data.language)
    batch = collate(processor, [conv], media, frame_size=frame_size, audio_in_video=cfg.data.audio_in_video)
    batch.labels = torch.full_like(batch.labels, IGNORE_INDEX)
    return batch


def _agreed_shapes(collated: dict, device) -> dict[str, tuple[int, int]] | None:
    """The largest (rows, width) of each aux task's batch over all workers (None with one worker).

    ZeRO-3 gathers each layer's weights with a collective when a forward reaches it, so every worker
    must run the same forwards: packing is decided on shapes all workers share, not on each one's own.
    """
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return None
    tasks = list(AUX_COLUMNS)
    local = [list(collated[t].inputs["input_ids"].shape) if t in collated else [0, 0] for t in tasks]
    shared = torch.tensor(local, dtype=torch.long, device=device)
    torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
    return {t: (int(r), int(w)) for t, (r, w) in zip(tasks, shared.tolist(), strict=True)}


def _epoch_order(
    rows: list[dict], cfg: TrainConfig, epoch: int, labels: LabelSet, counts: list[int]
) -> list[int]:
    """Row indices of one epoch: a seeded permutation, or class-balanced draws for ``resample``."""
    rng = np.random.default_rng([cfg.train.seed, epoch])
    if cfg.loss.scheme == "resample":
        index = [labels.index(r[cfg.data.target]) for r in rows]
        weights = losses.sampling_weights(torch.tensor(index), counts).numpy()
        return rng.choice(len(rows), size=len(rows), replace=True, p=weights / weights.sum()).tolist()
    return rng.permutation(len(rows)).tolist()


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker function (also used inside Tune trials by sweeps/aux_ablation.py)."""
    import deepspeed
    import ray.train

    from omnimer.data.shards import read_dataset_info
    from omnimer.model.load import apply_lora, load_processor, load_thinker

    entered = time.time()
    cfg = TrainConfig.from_dict(config)
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
    rebalancing = losses.build_rebalancing(cfg.loss, counts)

    processor = load_processor(cfg.model.name_or_path)
    feature_cache = AudioFeatureCache.install(processor, cfg.data.audio_feature_cache_mb * 2**20)
    verbalizers, first_ids = choose_verbalizers(processor.tokenizer, labels)
    model = apply_lora(load_thinker(cfg.model), cfg.model.lora)
    model.train()

    loaded_model = time.time()
    split_rows = _load_rows(rank, world_size)
    train_rows = split_rows["train"]
    eval_rows = {s: split_rows[s] for s in ("valid", "test")}
    loaded_data = time.time()
    steps_per_epoch = math.ceil(len(train_rows) / cfg.train.batch_size)
    if cfg.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps_per_epoch)
    # Every rank must take the same number of steps (collectives); the shortest slice decides.
    if world_size > 1:
        steps = torch.tensor([steps_per_epoch])
        torch.distributed.all_reduce(steps, op=torch.distributed.ReduceOp.MIN)
        steps_per_epoch = int(steps)
    optimizer_steps = max(1, cfg.train.epochs * steps_per_epoch // cfg.train.grad_accum)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optimizer_steps, cfg.train.warmup_ratio)
    )
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world_size),
        dist_init_required=False,
    )

    if rank == 0:
        log.info(
            "worker ready: model %.1f s, data %.1f s, DeepSpeed %.1f s",
            loaded_model - entered,
            loaded_data - loaded_model,
            time.time() - loaded_data,
        )
    state = {"epoch": 0, "history": [], "device_seconds": 0.0, "best_epoch": None}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt:
            engine.load_checkpoint(ckpt, tag=DS_TAG)
            state = json.loads((Path(ckpt) / STATE_FILE).read_text())
        log.info("rank %d resumed after epoch %d", rank, state["epoch"])

    run_dir = storage.join(cfg.run.output_dir, cfg.run.name)
    # TensorBoard and peft write local files only: for an object store, rank 0 writes them into a
    # staging dir of its own and uploads it after every epoch.
    remote = storage.is_remote(run_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"omnimer-{cfg.run.name}-")) if remote and rank == 0 else None
    local_run_dir = staging if staging is not None else Path(run_dir)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(local_run_dir / "tensorboard"))
    filler = train_rows[0] if train_rows else None
    evaluator = Evaluator(processor, cfg, labels, verbalizers, first_ids, frame_size, filler)
    step_context = StepContext(processor, labels, verbalizers, first_ids, rebalancing, frame_size, device)

    for epoch in range(state["epoch"], cfg.train.epochs):
        started = time.time()
        engine.train()
        order = _epoch_order(train_rows, cfg, epoch, labels, counts)
        # Per part: its sum and the steps that had it (a task without targets in a step has no part).
        sums: dict[str, float] = {}
        steps: dict[str, int] = {}
        for step in range(steps_per_epoch):
            rows = [
                train_rows[i] for i in order[step * cfg.train.batch_size : (step + 1) * cfg.train.batch_size]
            ]
            total, parts, _ = step_losses(engine, rows, cfg, step_context)
            engine.backward(total)
            engine.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value)
                steps[key] = steps.get(key, 0) + 1
            if writer is not None:
                global_step = epoch * steps_per_epoch + step
                for key, value in parts.items():
                    writer.add_scalar(f"loss/{key}", float(value), global_step)
                writer.add_scalar("lr", scheduler.get_last_lr()[0], global_step)

        engine.eval()
        elapsed = time.time() - started
        entry = {
            "epoch": epoch + 1,
            "train_loss": {k: v / steps[k] for k, v in sums.items()},
            "valid": evaluator.evaluate(engine, eval_rows["valid"], device, world_size),
            "test": None,
            "seconds": elapsed,
        }
        valid_history = [h for h in [*state["history"], entry] if h["valid"]]
        best = valid_history[metrics.best_epoch(valid_history)]["epoch"] if valid_history else None
        # Test is scored only for the epoch that model selection (valid macro-F1) picks, which is all
        # the record reports; a split without valid rows selects the last epoch.
        if best in (None, epoch + 1):
            entry["test"] = evaluator.evaluate(engine, eval_rows["test"], device, world_size)
        entry["seconds"] = time.time() - started
        state["history"].append(entry)
        state["device_seconds"] += entry["seconds"] * world_size  # one GPU, or one CPU-share, per worker
        state["epoch"] = epoch + 1
        state["best_epoch"] = best
        report = report_metrics(entry, state)
        if rank == 0:
            log.info(
                "epoch %d/%d: %.1f s, valid macro-F1 %s%s",
                epoch + 1,
                cfg.train.epochs,
                entry["seconds"],
                f"{entry['valid']['macro_f1']:.3f}" if entry["valid"] else "n/a",
                f"; audio features cached for {len(feature_cache.entries)} clips "
                f"({feature_cache.bytes / 2**20:.0f} MiB, {feature_cache.hits} reuses)"
                if feature_cache is not None
                else "",
            )
        if writer is not None:
            _write_epoch_tensorboard(writer, entry, labels, epoch + 1)
            if staging is not None:
                storage.upload_dir(staging / "tensorboard", storage.join(run_dir, "tensorboard"))
        with tempfile.TemporaryDirectory() as tmp:
            engine.save_checkpoint(tmp, tag=DS_TAG)
            # ZeRO-3 partitions the adapter too: every rank joins the gather, then rank 0 saves the
            # full weights (a plain save_pretrained writes empty tensors).
            with _gathered_adapter(engine):
                if rank == 0:
                    if state["best_epoch"] == epoch + 1:
                        _save_adapter_atomic(engine.module, local_run_dir / "best_adapter")
                        if staging is not None:
                            storage.upload_dir(
                                staging / "best_adapter", storage.join(run_dir, "best_adapter")
                            )
                    engine.module.save_pretrained(str(Path(tmp) / "adapter"))
                    storage.write_json(Path(tmp) / STATE_FILE, state)
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        if cfg.train.fail_at_epoch == epoch + 1:
            _resilience_drill(run_dir, rank, world_size, epoch + 1)
    if writer is not None:
        final = report_metrics(state["history"][-1], state)
        writer.add_hparams(
            _hparams(cfg), {f"hparam/{k}": v for k, v in final.items() if k.startswith("best_")}
        )
        writer.close()
        if staging is not None:
            storage.upload_dir(staging / "tensorboard", storage.join(run_dir, "tensorboard"))
            shutil.rmtree(staging, ignore_errors=True)


def _gathered_adapter(engine):
    """Context in which the trainable (LoRA) weights are whole on every rank, whatever the ZeRO stage."""
    if engine.zero_optimization_stage() != 3:
        return contextlib.nullcontext()
    import deepspeed

    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    return deepspeed.zero.GatheredParameters(trainable, modifier_rank=None)


def _resilience_drill(run_dir: str, rank: int, world_size: int, epoch: int) -> None:
    """Kill the last rank's process once, after every rank has reported ``epoch``'s checkpoint.

    The barrier makes the kill land between epochs (as a lost node would), and the marker file makes
    the drill happen once per run, so the restarted worker group runs to the end.
    """
    if world_size > 1:
        torch.distributed.barrier()
    marker = storage.join(run_dir, ".resilience-drill-done")
    if rank == world_size - 1 and not storage.exists(marker):
        storage.write_text(marker, "")
        log.warning("resilience drill: rank %d exits after epoch %d", rank, epoch)
        os._exit(1)


def report_metrics(entry: dict, state: dict) -> dict:
    """Flat metrics for Ray (and Tune): this epoch's, and the best epoch's valid/test numbers."""
    out = {"epoch": entry["epoch"], "device_seconds": state["device_seconds"]}
    for key, value in entry["train_loss"].items():
        out[f"train_loss_{key}"] = value
    for split in ("valid", "test"):
        if entry[split]:
            for key in ("macro_f1", "weighted_f1", "accuracy"):
                out[f"{split}_{key}"] = entry[split][key]
    if state["best_epoch"] is not None:
        best = state["history"][state["best_epoch"] - 1]
        for split in ("valid", "test"):
            if best[split]:
                out[f"best_{split}_macro_f1"] = best[split]["macro_f1"]
        out["best_epoch"] = state["best_epoch"]
    return out


def _hparams(cfg: TrainConfig) -> dict:
    return {
        "lora_rank": cfg.model.lora.rank,
        "lora_alpha": cfg.model.lora.alpha,
        "lr": cfg.train.lr,
        "scheme": cfg.loss.scheme,
        "aux_weight_text": cfg.loss.aux_weight_text,
        "aux_weight_face": cfg.loss.aux_weight_face,
        "aux_weight_prosody": cfg.loss.aux_weight_prosody,
        "seed": cfg.train.seed,
        "target": cfg.data.target,
    }


def _write_epoch_tensorboard(writer, entry: dict, labels: LabelSet, epoch: int) -> None:
    for split in ("valid", "test"):
        result = entry[split]
        if not result:
            continue
        for key in ("macro_f1", "weighted_f1", "accuracy"):
            writer.add_scalar(f"{split}/{key}", result[key], epoch)
        if split == "valid":
            for name, value in result["per_class_f1"].items():
                writer.add_scalar(f"valid_per_class_f1/{labels.display_name(name)}", value, epoch)
            writer.add_figure(
                "valid/confusion_matrix", confusion_figure(result["confusion_matrix"], labels), epoch
            )
    writer.flush()


def confusion_figure(matrix: list[list[int]], labels: LabelSet):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    ax.imshow(array, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels.display, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels.display)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(array):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def _save_adapter_atomic(model, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------ driver


def validate_run(cfg: TrainConfig) -> dict:
    """Checks that need files (dataset, model, DeepSpeed config), done before any worker starts."""
    from omnimer.data.shards import read_dataset_info
    from omnimer.model.load import resolve_checkpoint

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


def build_trainer(cfg: TrainConfig, *, callbacks: list | None = None, dataset=None):
    """The ``TorchTrainer`` of one run: every worker gets the whole (unsplit) dataset.

    ``dataset`` is the shards as a Ray Dataset, read here from ``cfg.data.path`` if not given (a sweep
    passes one materialized dataset to all its trials, so no trial re-reads the files).
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from omnimer.data.shards import load_dataset

    if dataset is None:
        dataset = load_dataset(Path(cfg.data.path), columns=TRAIN_COLUMNS)
    # Every worker reads the whole dataset in a few seconds. Ray Data's progress bars for that, which
    # every worker of every trial forwards to the driver, made up 98% of a run's log (4234 lines for
    # a 2-step run, and most of a sweep's or a Ray job's log).
    dataset.context.enable_progress_bars = False
    output_dir = cfg.run.output_dir
    storage_path, storage_filesystem = storage.ray_storage(
        output_dir if storage.is_remote(output_dir) else str(Path(output_dir).resolve())
    )
    datasets = {DATASET: dataset}
    resources = {"CPU": cfg.train.cpus_per_worker}
    if cfg.train.use_gpu:
        resources["GPU"] = 1
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.to_dict(),
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
    cfg: TrainConfig, *, callbacks: list | None = None, sweep: dict | None = None, dataset=None
) -> dict:
    """Driver of one run (``omnimer train``, or one Tune trial of ``sweeps/aux_ablation.py``):
    validate, fit, and write ``record.json``; returns the record. A failed fit raises; the record
    then says ``failed``, except in a sweep (``sweep`` given), whose trials' records Tune settles.

    ``callbacks`` and ``dataset`` go to :func:`build_trainer` (a Tune trial passes
    ``TuneReportCallback`` and the sweep's shared dataset); ``sweep`` (experiment, mode, trial id,
    seed, subset) is stored in the record for the analysis. A run that
    already finished with the same config is not run again: its record is returned as it is.
    """
    info = validate_run(cfg)
    cfg = with_absolute_paths(cfg)
    run_dir = run_location(cfg)
    previous = finished_record(cfg)
    if previous is not None:
        log.info("run %s already finished with this config; nothing to do", run_dir)
        return previous
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "kind": "train",
        "status": "running",
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "dataset": {
            "path": str(Path(cfg.data.path).resolve()),
            "label_set": info["label_sets"][cfg.data.target]["key"],
            "counts": info["counts"]["rows"],
        },
        **code_version(),
        "packages": package_versions(),
    }
    if sweep is not None:
        record["sweep"] = sweep
    storage.write_json(storage.join(run_dir, "record.json"), record)
    started = time.time()
    trainer = build_trainer(cfg, callbacks=callbacks, dataset=dataset)
    try:
        result = trainer.fit()
        error = result.error
    except Exception as err:  # the record must say the run failed, then the error propagates
        error, result = err, None
    record["wall_seconds"] = time.time() - started
    if error is not None or result is None:
        if sweep is None:
            record["status"] = "failed"
            record["error"] = f"{type(error).__name__}: {error}"
            storage.write_json(storage.join(run_dir, "record.json"), record)
        # A trial's record stays `running`: the sweep settles it once Tune has ended every trial
        # (sweeps/aux_ablation.py settle_records). ASHA stopping a trial kills its Train run, so
        # this driver sees a failure; and its thread can outlive tuner.fit(), so a record written
        # here could land after the sweep settled it as `stopped`.
        raise RuntimeError(f"training failed: {error}") from error
    with result.checkpoint.as_directory() as ckpt:
        state = json.loads((Path(ckpt) / STATE_FILE).read_text())
    record.update(record_from_state(state))
    record["status"] = "finished"
    storage.write_json(storage.join(run_dir, "record.json"), record)
    return record


def finished_record(cfg: TrainConfig) -> dict | None:
    """The record of this run if it already finished with this very config, else None.

    Raises if the run dir holds a run with another config: Ray Train resumes a run from the
    checkpoints under the same storage path and name, so a different config there would silently
    continue someone else's run. ``cfg`` must have absolute paths (:func:`with_absolute_paths`).
    """
    run_dir = run_location(cfg)
    path = storage.join(run_dir, "record.json")
    if not storage.is_file(path):
        return None
    previous = storage.read_json(path)
    changed = differences(comparable_config(previous["config"]), comparable_config(cfg.to_dict()))
    if changed:
        raise ValueError(
            f"{run_dir} already holds a run with a different config ({changed}); choose "
            "another run.name or remove that directory"
        )
    return previous if previous["status"] == "finished" else None


def comparable_config(values: dict) -> dict[str, Any]:
    """A run config as flat dotted keys (``train.lr``) with JSON values, its repository paths
    repo-relative: a config written from another copy of the code (an earlier Ray session's working
    dir) compares equal to the same config today."""
    flat: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(json.loads(json.dumps(values)), "")
    if isinstance(flat.get("train.deepspeed_config"), str):
        flat["train.deepspeed_config"] = repo_relative(flat["train.deepspeed_config"])
    return flat


def differences(previous: dict[str, Any], current: dict[str, Any], shown: int = 6) -> str:
    """``key: previous → current; ...`` (JSON values) for the keys whose values differ between two flat
    dicts, the first ``shown`` of them ("" if none differ)."""
    changed = [
        f"{key}: {json.dumps(previous.get(key))} → {json.dumps(current.get(key))}"
        for key in dict.fromkeys([*previous, *current])
        if previous.get(key) != current.get(key)
    ]
    more = f"; and {len(changed) - shown} more" if len(changed) > shown else ""
    return "; ".join(changed[:shown]) + more


def record_from_state(state: dict) -> dict:
    """The metrics part of a record: per-epoch history, the selected epoch and its test metrics."""
    best = state["best_epoch"]
    selected = state["history"][best - 1] if best else state["history"][-1]
    return {
        "epochs": state["history"],
        "best_epoch": best,
        "valid": selected["valid"],
        "test": selected["test"],
        "device_seconds": state["device_seconds"],
    }


def close_record(run_dir: Path | str, status: str, error: str | None = None) -> dict | None:
    """Settle the record of a run that Tune ended from outside (early-stopped by ASHA, or errored).

    Such a run's driver never got to write its result, so the record says ``running``: take the
    metrics from the run's newest checkpoint (the last epoch every worker finished) and set
    ``status``. Other records are left as they are. Returns the record (None if there is none).
    """
    path = storage.join(run_dir, "record.json")
    if not storage.is_file(path):
        return None
    record = storage.read_json(path)
    if record["status"] != "running":
        return record
    checkpoints = [
        storage.join(run_dir, name, STATE_FILE)
        for name in storage.list_dir(run_dir)
        if name.startswith("checkpoint_")
    ]
    checkpoints = [state for state in checkpoints if storage.is_file(state)]
    if checkpoints:
        record.update(record_from_state(storage.read_json(checkpoints[-1])))
    record["status"] = status
    record.pop("error", None)
    if error is not None:
        record["error"] = error
    storage.write_json(path, record)
    return record
