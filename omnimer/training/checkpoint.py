"""A run's checkpoints: each epoch every worker saves its DeepSpeed state, rank 0 adds the adapter
and the run's :class:`~omnimer.training.record.RunState`, and the checkpoint goes to Ray with the
epoch's metrics (``ray.train.report``). Ray keeps the last two under the run dir
(``checkpoint_*``); a restarted worker group, or a resumed sweep trial, continues from the newest.

Used by the Ray Train worker (:mod:`omnimer.training.worker`) and the driver, which reads the final
state from the last checkpoint (:func:`final_state`).
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


def restore(engine, rank: int) -> RunState:
    """Load the newest checkpoint into ``engine`` and return its state (a fresh state without one)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return RunState()
    with checkpoint.as_directory() as ckpt:
        engine.load_checkpoint(ckpt, tag=DS_TAG)
        state = RunState.from_json(json.loads((Path(ckpt) / STATE_FILE).read_text()))
    log.info("rank %d resumed after epoch %d", rank, state.epoch)
    return state


def save_and_report(engine, state: RunState, rank: int, outputs=None) -> None:
    """Checkpoint this epoch and report its metrics to Ray (every rank takes part).

    ZeRO-3 partitions the adapter too: every rank joins the gather, then rank 0 saves the full
    weights (a plain ``save_pretrained`` would write empty tensors): into the checkpoint, and as the
    run's best adapter (``outputs``, rank 0's) when this epoch is the best so far.
    """
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        engine.save_checkpoint(tmp, tag=DS_TAG)
        with gathered_adapter(engine):
            if rank == 0:
                if outputs is not None and state.best_epoch == state.epoch:
                    outputs.best_adapter(engine.module)
                engine.module.save_pretrained(str(Path(tmp) / "adapter"))
                storage.write_json(Path(tmp) / STATE_FILE, state.to_json())
        ray.train.report(state.report(), checkpoint=ray.train.Checkpoint.from_directory(tmp))


def final_state(result) -> RunState:
    """The state in the last checkpoint of a finished ``TorchTrainer.fit()`` result."""
    with result.checkpoint.as_directory() as ckpt:
        return RunState.from_json(json.loads((Path(ckpt) / STATE_FILE).read_text()))
