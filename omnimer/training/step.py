"""One training step of a run: the conversations of every enabled task, collated, forwarded, and the
combined loss ``L = w_c·L_main + Σ λ·L_aux`` (DESIGN §4).

Used by the Ray Train worker (:mod:`omnimer.training.worker`), the train bench
(``python -m tests.bench``) and the GPU bench (``python -m tests.bench.gpu_train``), so all three
measure the same step. :func:`epoch_order` is the order a worker takes its rows in each epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from omnimer import losses, metrics
from omnimer.aux_tasks import TASK_NAMES, AuxTask, aux_weights, enabled_tasks
from omnimer.collate import IGNORE_INDEX, Batch, collate, merge_batches, pack_batches, to_device
from omnimer.config import TrainConfig
from omnimer.labels import LabelSet
from omnimer.tasks import MAIN, Prompting, aux_conversation, build_task_batches


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What every training step of a run needs besides the model, the config and the step's rows:
    the processor, how the run asks (:class:`~omnimer.tasks.Prompting`), the verbalizers' first
    tokens (None where two share one), the main task's rebalancing, the frame size of the shards and
    the device."""

    processor: Any
    prompting: Prompting
    first_ids: Sequence[int] | None
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

    The conversations of the main task and of every enabled aux task
    (:func:`omnimer.tasks.build_task_batches`) are collated; the main task's batch is forwarded, then
    the aux tasks' (packed into as few forwards as :func:`omnimer.collate.pack_batches` allows).
    ``ctx.first_ids`` (the label verbalizers' first tokens) is needed by the logit_adjust scheme only.
    """
    processor, device, frame_size, rebalancing = ctx.processor, ctx.device, ctx.frame_size, ctx.rebalancing
    audio_in_video = ctx.prompting.audio_in_video
    weights, enabled = aux_weights(cfg.loss), enabled_tasks(cfg.loss)
    batches = build_task_batches(rows, ctx.prompting, enabled)
    media = {r["clip_id"]: r for r in rows}
    collated = {
        task: collate(processor, convs, media, frame_size=frame_size, audio_in_video=audio_in_video)
        for task, convs in batches.items()
    }
    tokens = sum(batch.num_tokens for batch in collated.values())
    batch = collated.pop(MAIN)
    out = engine(**to_device(batch.inputs, device), use_cache=False)
    labels = batch.labels.to(device)
    class_scores = None
    if rebalancing.scheme == "logit_adjust":
        if ctx.first_ids is None:  # the driver refuses this combination before any worker starts
            raise ValueError("loss.scheme logit_adjust needs verbalizers with distinct first tokens")
        class_scores = metrics.score_label_tokens(
            metrics.first_answer_logits(out.logits, labels), ctx.first_ids
        )
    main = losses.main_loss(
        rebalancing, batch.class_index, logits=out.logits, labels=labels, class_scores=class_scores
    )
    shapes = agreed_shapes(collated, device)
    # An enabled task that none of this step's rows has a target for (partial annotations) adds no
    # loss. If another worker's rows have one, this worker runs a filler batch of it all the same:
    # under ZeRO-3 every worker must run the same forwards and backwards.
    aux_losses: dict[str, torch.Tensor] = {}
    fillers, untargeted = set(), set()
    for task in enabled:
        if task.name not in collated:
            aux_losses[task.name] = torch.zeros((), device=device)
            untargeted.add(task.name)
            if shapes is not None and shapes[task.name][0] > 0:
                collated[task.name] = filler_batch(task, processor, media, ctx.prompting, frame_size)
                fillers.add(task.name)
    # The auxiliary tasks are short next to the main one; those of similar length share a forward.
    for group in pack_batches(list(collated.values()), shapes=shapes):
        batch, spans = merge_batches(group, processor.tokenizer.pad_token_id)
        out = engine(**to_device(batch.inputs, device), use_cache=False)
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


def filler_batch(task: AuxTask, processor, media: dict, prompting: Prompting, frame_size: int) -> Batch:
    """A one-row batch of ``task`` on a clip of this step, with a placeholder answer and every label
    ignored: the forward another worker runs for the task, which this worker has no target for."""
    row = next(iter(media.values()))
    conv = aux_conversation(task, {**row, task.column: "-"}, prompting.language)
    batch = collate(processor, [conv], media, frame_size=frame_size, audio_in_video=prompting.audio_in_video)
    batch.labels = torch.full_like(batch.labels, IGNORE_INDEX)
    return batch


def agreed_shapes(collated: dict, device) -> dict[str, tuple[int, int]] | None:
    """The largest (rows, width) of each aux task's batch over all workers (None with one worker).

    ZeRO-3 gathers each layer's weights with a collective when a forward reaches it, so every worker
    must run the same forwards: packing is decided on shapes all workers share, not on each one's own.
    """
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return None
    tasks = list(TASK_NAMES)
    local = [list(collated[t].inputs["input_ids"].shape) if t in collated else [0, 0] for t in tasks]
    shared = torch.tensor(local, dtype=torch.long, device=device)
    torch.distributed.all_reduce(shared, op=torch.distributed.ReduceOp.MAX)
    return {t: (int(r), int(w)) for t, (r, w) in zip(tasks, shared.tolist(), strict=True)}


def epoch_order(
    rows: list[dict], cfg: TrainConfig, epoch: int, labels: LabelSet, counts: list[int]
) -> list[int]:
    """Row indices of one epoch: a seeded permutation, or class-balanced draws for ``resample``."""
    rng = np.random.default_rng([cfg.train.seed, epoch])
    if cfg.loss.scheme == "resample":
        index = [labels.index(r[cfg.data.target]) for r in rows]
        weights = losses.sampling_weights(torch.tensor(index), counts).numpy()
        return rng.choice(len(rows), size=len(rows), replace=True, p=weights / weights.sum()).tolist()
    return rng.permutation(len(rows)).tolist()
