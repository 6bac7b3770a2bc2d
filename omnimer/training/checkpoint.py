"""A run's checkpoints: each epoch every worker saves its DeepSpeed state, rank 0 adds the adapter
and the run's :class:`~omnimer.training.record.RunState`, and the checkpoint goes to Ray with the
epoch's metrics (``ray.train.report``). The DeepSpeed state holds the trainable (LoRA) weights and
their optimizer state only: the frozen weights are the model's own, loaded again from
``model.name_or_path`` by a restarted worker (for the 7B Thinker they would be ~18 GB written, then
copied into the run's storage, at every epoch of every trial). Ray keeps the last two under the Train
run's dir (the run dir, or a sweep trial's ``group-*`` dir when the trial trains several runs); a
restarted worker group, or a resumed sweep trial, continues from the newest. Each checkpoint names its
run (``run.json``), so the worker of several runs knows which one to continue (:func:`resume_index`).

Used by the Ray Train worker (:mod:`omnimer.training.worker`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from omnimer import storage
from omnimer.training.engine import gathered_adapter
from omnimer.training.record import STATE_FILE, RunState

log = logging.getLogger(__name__)

DS_TAG = "deepspeed"  # DeepSpeed's tag (sub-folder) of its state inside a checkpoint
RUN_FILE = "run.json"  # {"name": <run name>}: whose checkpoint it is


def resume_index(names: list[str]) -> tuple[int, bool]:
    """Where a worker group that trains the runs ``names`` in order starts: the index of the run the
    newest checkpoint belongs to and True (continue it from there), or ``(0, False)`` without a
    checkpoint of one of them (the driver leaves out runs already finished).

    A checkpoint without ``run.json`` (written when every Train run trained one run) is the first's.
    """
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, False
    with checkpoint.as_directory() as ckpt:
        path = Path(ckpt) / RUN_FILE
        name = json.loads(path.read_text())["name"] if path.is_file() else names[0]
    return (names.index(name), True) if name in names else (0, False)


def restore(engine, rank: int) -> RunState:
    """Load the newest checkpoint into ``engine`` and return its state."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() as ckpt:
        engine.load_checkpoint(ckpt, tag=DS_TAG, custom_load_fn=load_trainable)
        state = RunState.from_json(json.loads((Path(ckpt) / STATE_FILE).read_text()))
    log.info("rank %d resumed after epoch %d", rank, state.epoch)
    return state


def load_trainable(src: dict, dst) -> None:
    """DeepSpeed's module load for a checkpoint without the frozen weights: every trainable weight
    must be in it (as strict as a whole-model load for what the checkpoint is for); the frozen ones
    keep the values the worker loaded from the model."""
    missing = sorted(name for name, p in dst.named_parameters() if p.requires_grad and name not in src)
    if missing:
        raise RuntimeError(
            f"the checkpoint lacks {len(missing)} trainable weight(s) of this model ({missing[0]}, ...): "
            "it was written for another model or LoRA config; remove the run's checkpoints to start again"
        )
    dst.load_state_dict(src, strict=False)


def save_and_report(engine, state: RunState, rank: int, run_name: str, outputs=None) -> None:
    """Checkpoint this epoch and report its metrics to Ray (every rank takes part).

    ZeRO-3 partitions the adapter too: every rank joins the gather, then rank 0 saves the full
    weights (a plain ``save_pretrained`` would write empty tensors): into the checkpoint, and as the
    run's best adapter (``outputs``, rank 0's) when this epoch is the best so far.
    """
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag=DS_TAG, exclude_frozen_parameters=True)
        with gathered_adapter(engine):
            if rank == 0:
                if outputs is not None and state.best_epoch == state.epoch:
                    outputs.best_adapter(engine.module)
                engine.module.save_pretrained(str(Path(tmp) / "adapter"))
                storage.write_json(Path(tmp) / STATE_FILE, state.to_json())
                storage.write_json(Path(tmp) / RUN_FILE, {"name": run_name})
        metrics = {**state.report(), "run": run_name}
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
