"""What rank 0 writes into a run's dir besides the record: TensorBoard events, the best adapter, the
selected epoch's per-clip predictions (``predictions/{valid,test}.parquet``), and the run's log
(``train.log``: the ``omnimer`` loggers of rank 0, e.g. each epoch's line).

Opened by rank 0 of the Ray Train worker group (:mod:`omnimer.training.worker`); the other ranks
write nothing. TensorBoard and peft write local files only, so for a run dir in an object store
(``s3://...``) rank 0 writes into a local staging dir and uploads it after every epoch.

TensorBoard: ``loss/<part>`` and ``lr`` per step; per epoch ``valid/*`` and ``test/*`` macro-F1,
weighted-F1 and accuracy, and valid per-class F1; at the run's end, the valid confusion matrix of the
epoch it selected (at that epoch's step) and the HParams table (``tensorboard --logdir <run.output_dir>``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from omnimer import storage
from omnimer.aux_tasks import AUX_TASKS
from omnimer.config import TrainConfig
from omnimer.labels import LabelSet
from omnimer.training.predictions import PREDICTIONS_DIR, parquet_bytes, sha256
from omnimer.training.record import EpochResult, RunState

LOG_FILE = "train.log"


class RankZeroOutputs:
    """TensorBoard events and the best adapter of one run, written by rank 0."""

    def __init__(self, cfg: TrainConfig, labels: LabelSet):
        from torch.utils.tensorboard import SummaryWriter

        self.cfg, self.labels = cfg, labels
        self.run_dir = storage.join(cfg.run.output_dir, cfg.run.name)
        remote = storage.is_remote(self.run_dir)
        self.staging = Path(tempfile.mkdtemp(prefix=f"omnimer-{cfg.run.name}-")) if remote else None
        self.local_dir = self.staging if self.staging is not None else Path(self.run_dir)
        self.writer = SummaryWriter(str(self.local_dir / "tensorboard"))
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = logging.FileHandler(self.local_dir / LOG_FILE, encoding="utf-8")
        self.log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("omnimer").addHandler(self.log_file)
        if logging.getLogger("omnimer").getEffectiveLevel() > logging.INFO:
            logging.getLogger("omnimer").setLevel(logging.INFO)

    def step(self, parts: dict, lr: float, global_step: int) -> None:
        for key, value in parts.items():
            self.writer.add_scalar(f"loss/{key}", float(value), global_step)
        self.writer.add_scalar("lr", lr, global_step)

    def epoch(self, entry: EpochResult) -> None:
        """An epoch's metrics, flushed (and uploaded for an object store)."""
        for split in ("valid", "test"):
            result = getattr(entry, split)
            if not result:
                continue
            for key in ("macro_f1", "weighted_f1", "accuracy"):
                self.writer.add_scalar(f"{split}/{key}", result[key], entry.epoch)
            if split == "valid":
                for name, value in result["per_class_f1"].items():
                    self.writer.add_scalar(
                        f"valid_per_class_f1/{self.labels.display_name(name)}", value, entry.epoch
                    )
        self.writer.flush()
        self._upload("tensorboard")
        self._upload(LOG_FILE)

    def predictions(self, by_split: dict, epoch: int) -> dict:
        """Write each split's predictions of ``epoch`` whole (a temporary file renamed; uploaded for an
        object store); returns the record's entries: path in the run dir, sha256, epoch, clips."""
        entries = {}
        for split, predictions in by_split.items():
            if not len(predictions):
                continue
            data = parquet_bytes(predictions.table(self.labels, epoch))
            relative = f"{PREDICTIONS_DIR}/{split}.parquet"
            target = self.local_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            self._upload(relative)
            entries[split] = {
                "path": relative,
                "sha256": sha256(data),
                "epoch": epoch,
                "clips": len(predictions),
            }
        return entries

    def best_adapter(self, model) -> None:
        """Save ``model``'s adapter as the run's ``best_adapter/`` (replacing the previous best whole)."""
        _save_adapter_atomic(model, self.local_dir / "best_adapter")
        self._upload("best_adapter")

    def close(self, state: RunState) -> None:
        """The selected epoch's valid confusion matrix and the HParams table with the best epoch's
        metrics; the staging dir is uploaded and removed.

        The matrix is drawn once, here: drawing it takes rank 0 about 0.14 CPU-s (matplotlib), which
        every rank waits for, and drawn at each epoch that was the best so far it cost the demo's runs
        1-2% of their time for figures of epochs the run does not select."""
        selected = state.selected
        if selected.valid:
            self.writer.add_figure(
                "valid/confusion_matrix",
                confusion_figure(selected.valid["confusion_matrix"], self.labels),
                selected.epoch,
            )
        final = state.report()
        self.writer.add_hparams(
            hparams(self.cfg), {f"hparam/{k}": v for k, v in final.items() if k.startswith("best_")}
        )
        self.writer.close()
        logging.getLogger("omnimer").removeHandler(self.log_file)
        self.log_file.close()
        self._upload("tensorboard")
        self._upload(LOG_FILE)
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _upload(self, name: str) -> None:
        if self.staging is None:
            return
        local, remote = self.staging / name, storage.join(self.run_dir, name)
        if local.is_dir():
            storage.upload_dir(local, remote)
        else:
            storage.upload_file(local, remote)


def hparams(cfg: TrainConfig) -> dict:
    """The run's hyperparameters in TensorBoard's HParams table."""
    return {
        "lora_rank": cfg.model.lora.rank,
        "lora_alpha": cfg.model.lora.alpha,
        "lr": cfg.train.lr,
        "scheme": cfg.loss.scheme,
        **{task.weight_key: getattr(cfg.loss, task.weight_key) for task in AUX_TASKS},
        "seed": cfg.train.seed,
        "target": cfg.data.target,
    }


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
