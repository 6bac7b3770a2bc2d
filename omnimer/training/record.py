"""The run record: one immutable result per training run, stored as ``<run dir>/record.json``.

Written by the run's driver (:func:`omnimer.training.driver.run_trainings`) when the run starts, by
the Train worker group's rank 0 when the run finishes (:func:`finish_run_dir`), by the driver again
when the fit fails; the record of a sweep trial that Tune ended from outside is settled by the sweep
(:func:`omnimer.sweep.tuner.settle_records`). Read by ``analysis/records.py``, which imports this
module for the schema version and the statuses: it holds no training code and imports no torch.

A record goes ``running`` → ``finished`` | ``failed`` | ``stopped``; :func:`settle` is the one
function that gives a record its final status. A run's progress (:class:`RunState`, the history of
:class:`EpochResult`) travels in every checkpoint as ``omnimer_state.json``, so a record can be
settled from the newest checkpoint when its driver never got to write it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from pathlib import Path
from typing import Any

from omnimer import storage
from omnimer.provenance import repo_relative

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
STATE_FILE = "omnimer_state.json"


class Status(enum.StrEnum):
    """How a run ended, in the order tables list them; ``running`` until it has."""

    FINISHED = "finished"
    # Early-stopped by ASHA in a search: its metrics are those of its best epoch so far.
    STOPPED = "stopped"
    FAILED = "failed"
    RUNNING = "running"


# Statuses whose records carry metrics (a selected epoch).
WITH_METRICS = (Status.FINISHED, Status.STOPPED)


@dataclasses.dataclass(frozen=True)
class EpochResult:
    """One epoch of a run: mean train loss per part (``main``, ``total``, each aux task that had
    targets), valid metrics, test metrics (only for the epoch model selection picked), seconds, and
    the CPU-seconds rank 0's process spent in them (how much of the wall time it computed: beside
    other trials on a CPU box, it waits for a core; None in records from before)."""

    epoch: int
    train_loss: dict[str, float]
    valid: dict | None
    test: dict | None
    seconds: float
    cpu_seconds: float | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EpochResult:
        return cls(**{field.name: data.get(field.name) for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class RunState:
    """A run's progress after its last finished epoch: what every checkpoint carries."""

    epoch: int = 0
    history: tuple[EpochResult, ...] = ()
    device_seconds: float = 0.0
    best_epoch: int | None = None
    # The selected epoch's per-clip prediction files, by split: path in the run dir, sha256, epoch,
    # clips (omnimer.training.predictions).
    predictions: dict = dataclasses.field(default_factory=dict)
    # Rank 0's set-up of each start of the worker group (a restart adds one): seconds of model
    # staging, model load, data, DeepSpeed.
    setup: tuple[dict, ...] = ()

    def started(self, setup_seconds: dict[str, float]) -> RunState:
        """The state once the worker group (re)started, having spent ``setup_seconds`` on set-up."""
        return dataclasses.replace(
            self, setup=(*self.setup, {k: round(v, 3) for k, v in setup_seconds.items()})
        )

    def after(self, entry: EpochResult, best_epoch: int | None, world_size: int) -> RunState:
        """The state once ``entry`` is done; device time counts one GPU (or CPU share) per worker."""
        return dataclasses.replace(
            self,
            epoch=entry.epoch,
            history=(*self.history, entry),
            device_seconds=self.device_seconds + entry.seconds * world_size,
            best_epoch=best_epoch,
        )

    def with_predictions(self, files: dict) -> RunState:
        """The state with the selected epoch's prediction files (replacing an earlier epoch's)."""
        return dataclasses.replace(self, predictions={**self.predictions, **files})

    @property
    def selected(self) -> EpochResult:
        """The epoch the record reports: the best valid epoch, else the last one."""
        return self.history[self.best_epoch - 1] if self.best_epoch else self.history[-1]

    def report(self) -> dict[str, float]:
        """Flat metrics for Ray and Tune: the last epoch's, and the best epoch's valid/test macro-F1."""
        entry = self.history[-1]
        out: dict[str, float] = {"epoch": entry.epoch, "device_seconds": self.device_seconds}
        for key, value in entry.train_loss.items():
            out[f"train_loss_{key}"] = value
        for split in ("valid", "test"):
            result = getattr(entry, split)
            if result:
                for key in ("macro_f1", "weighted_f1", "accuracy"):
                    out[f"{split}_{key}"] = result[key]
        if self.best_epoch is not None:
            best = self.history[self.best_epoch - 1]
            for split in ("valid", "test"):
                result = getattr(best, split)
                if result:
                    out[f"best_{split}_macro_f1"] = result["macro_f1"]
            out["best_epoch"] = self.best_epoch
        return out

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch,
            "history": [entry.to_json() for entry in self.history],
            "device_seconds": self.device_seconds,
            "best_epoch": self.best_epoch,
            "predictions": self.predictions,
            "setup": list(self.setup),
        }

    @classmethod
    def from_json(cls, data: dict) -> RunState:
        history = tuple(EpochResult.from_json(entry) for entry in data["history"])
        return cls(
            data.get("epoch", len(history)),
            history,
            data["device_seconds"],
            data["best_epoch"],
            data.get("predictions") or {},
            tuple(data.get("setup") or ()),
        )


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """``record.json``: what ran (config, dataset, code, packages, sweep cell), how it ended, its
    metrics per epoch and the selected epoch's valid and test metrics (DESIGN §5)."""

    config: dict
    dataset: dict
    git: dict
    packages: dict
    source_sha256: str | None = None
    # How the run scores its labels: method, verbalizers, their token ids (omnimer.training.evaluate).
    scoring: dict | None = None
    sweep: dict | None = None
    status: Status = Status.RUNNING
    started: str = ""
    wall_seconds: float | None = None
    state: RunState | None = None
    error: str | None = None

    @classmethod
    def start(
        cls,
        config: dict,
        dataset: dict,
        code: dict,
        packages: dict,
        sweep: dict | None,
        scoring: dict | None = None,
    ) -> RunRecord:
        """A ``running`` record, stamped now."""
        return cls(
            config=config,
            dataset=dataset,
            git=code["git"],
            source_sha256=code.get("source_sha256"),
            packages=packages,
            scoring=scoring,
            sweep=sweep,
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": "train",
            "status": str(self.status),
            "started": self.started,
            "config": self.config,
            "dataset": self.dataset,
            "git": self.git,
        }
        if self.source_sha256 is not None:
            out["source_sha256"] = self.source_sha256
        out["packages"] = self.packages
        if self.scoring is not None:
            out["scoring"] = self.scoring
        if self.sweep is not None:
            out["sweep"] = self.sweep
        if self.wall_seconds is not None:
            out["wall_seconds"] = self.wall_seconds
        if self.state is not None and self.state.history:
            selected = self.state.selected
            out["epochs"] = [entry.to_json() for entry in self.state.history]
            out["best_epoch"] = self.state.best_epoch
            out["valid"] = selected.valid
            out["test"] = selected.test
            out["device_seconds"] = self.state.device_seconds
            if self.state.predictions:
                out["predictions"] = self.state.predictions
            if self.state.setup:
                out["setup_seconds"] = list(self.state.setup)
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        state = None
        if data.get("epochs"):
            history = tuple(EpochResult.from_json(entry) for entry in data["epochs"])
            state = RunState(
                len(history),
                history,
                data.get("device_seconds", 0.0),
                data.get("best_epoch"),
                data.get("predictions") or {},
                tuple(data.get("setup_seconds") or ()),
            )
        return cls(
            config=data.get("config", {}),
            dataset=data.get("dataset", {}),
            git=data.get("git", {}),
            packages=data.get("packages", {}),
            source_sha256=data.get("source_sha256"),
            scoring=data.get("scoring"),
            sweep=data.get("sweep"),
            status=Status(data["status"]),
            started=data.get("started", ""),
            wall_seconds=data.get("wall_seconds"),
            state=state,
            error=data.get("error"),
        )


def settle(
    record: RunRecord,
    status: Status,
    *,
    state: RunState | None = None,
    error: str | None = None,
    wall_seconds: float | None = None,
) -> RunRecord:
    """The record with its final ``status``: the run's last state (if known) and the error, if any.

    Only a ``running`` record is settled: one that already ended keeps its own ending.
    """
    if record.status != Status.RUNNING:
        return record
    return dataclasses.replace(
        record,
        status=status,
        state=state if state is not None else record.state,
        error=error,
        wall_seconds=wall_seconds if wall_seconds is not None else record.wall_seconds,
    )


def record_path(run_dir: Path | str) -> str:
    return storage.join(run_dir, RECORD_FILE)


def read_record(run_dir: Path | str) -> RunRecord | None:
    """The record in ``run_dir`` (a local dir or a URI), or None if there is none."""
    path = record_path(run_dir)
    return RunRecord.from_json(storage.read_json(path)) if storage.is_file(path) else None


def write_record(run_dir: Path | str, record: RunRecord) -> None:
    """Write ``record.json`` whole (a temporary file renamed, or a single object)."""
    storage.write_json(record_path(run_dir), record.to_json())


def finish_run_dir(run_dir: Path | str, state: RunState, wall_seconds: float) -> RunRecord:
    """Settle the run's ``running`` record as finished with its final ``state`` (rank 0, at the run's
    end, before the next run of the worker group starts)."""
    record = read_record(run_dir)
    if record is None:
        raise FileNotFoundError(f"{record_path(run_dir)}: the run's driver writes it before the run starts")
    finished = settle(record, Status.FINISHED, state=state, wall_seconds=wall_seconds)
    write_record(run_dir, finished)
    return finished


def newest_checkpoint_state(run_dir: Path | str) -> RunState | None:
    """The state in the run's newest checkpoint (the last epoch every worker finished), if any."""
    states = [
        storage.join(run_dir, name, STATE_FILE)
        for name in storage.list_dir(run_dir)
        if name.startswith("checkpoint_")
    ]
    states = [path for path in states if storage.is_file(path)]
    return RunState.from_json(storage.read_json(states[-1])) if states else None


def settle_run_dir(run_dir: Path | str, status: Status, error: str | None = None) -> RunRecord | None:
    """Settle the record of a run that Tune ended from outside (early-stopped by ASHA, or errored).

    Such a run's driver never got to write its result, so its record says ``running``: its metrics
    come from the run's newest checkpoint. Other records are left as they are. Returns the record
    (None if there is none).
    """
    record = read_record(run_dir)
    if record is None or record.status != Status.RUNNING:
        return record
    settled = settle(record, status, state=newest_checkpoint_state(run_dir), error=error)
    write_record(run_dir, settled)
    return settled


# ------------------------------------------------------------------------------------ comparing configs


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
