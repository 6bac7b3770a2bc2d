"""What a sweep says on the terminal while it runs: one line per trial that ends (its cell, seed,
valid and test macro-F1, time) with the count done, instead of Tune's status table.

Passed to the ``Tuner`` by :func:`omnimer.sweep.tuner.build_tuner` (and again on a resume); the full
logs go to files (``<experiment>/logs/``, each run's ``train.log``).
"""

from __future__ import annotations

import logging
import time

from ray import tune

from omnimer.subsets import subset_name

log = logging.getLogger("omnimer.sweeps")


class TrialLines(tune.Callback):
    """Logs ``[done/total] <run name> finished|stopped|failed: valid … test … (… s)`` per trial, and
    for a trial of several runs (``--runs-per-trial``) ``  <run name> finished: valid … test … (… s)``
    as each of its runs ends."""

    def __init__(self, total: int) -> None:
        self.total = total  # Tune creates a grid's trials as it goes: its list is not yet all of them
        self.started: dict[str, float] = {}
        self.last: dict[str, dict] = {}
        self.run_ended: dict[str, float] = {}  # a group trial's: when its last run ended

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[trial.trial_id] = result
        if trial.config.get("runs") and result.get("epoch") == _epochs(trial):
            # A run of the trial's group ended (the next one starts from epoch 1 again).
            now = time.time()
            began = self.run_ended.get(trial.trial_id, self.started.get(trial.trial_id, now))
            self.run_ended[trial.trial_id] = now
            log.info("  %s finished: %s (%.0f s)", result.get("run"), _scores(result), now - began)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        stopped = trial.config.get("mode") == "search" and self._stopped_early(trial)
        self._line(trials, trial, "stopped" if stopped else "finished")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, "failed")

    def _stopped_early(self, trial) -> bool:
        result = self.last.get(trial.trial_id) or {}
        epochs = _epochs(trial)
        return epochs is not None and result.get("epoch", epochs) < epochs

    def _line(self, trials, trial, status: str) -> None:
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
        result = self.last.get(trial.trial_id) or {}
        scores = "" if trial.config.get("runs") else _scores(result)  # a group's: on its runs' lines
        seconds = time.time() - self.started.get(trial.trial_id, time.time())
        log.info(
            "[%d/%d] %s %s%s (%.0f s)",
            done,
            max(self.total, len(trials)),
            _trial_name(trial.config, trial.trial_id),
            status,
            f": {scores}" if scores else "",
            seconds,
        )


def _epochs(trial) -> int | None:
    return (trial.config.get("base") or {}).get("train", {}).get("epochs")


def _scores(result: dict) -> str:
    return ", ".join(
        f"{split} macro-F1 {result[f'best_{split}_macro_f1']:.3f}"
        for split in ("valid", "test")
        if f"best_{split}_macro_f1" in result
    )


def _trial_name(config: dict, trial_id: str) -> str:
    if config.get("mode") == "ablation" and config.get("runs"):
        first, last = config["runs"][0], config["runs"][-1]
        return (
            f"{len(config['runs'])} runs ({subset_name(tuple(first[0]))} seed {first[1]} … "
            f"{subset_name(tuple(last[0]))} seed {last[1]})"
        )
    if config.get("mode") == "ablation" and config.get("subset") is not None:
        return f"{subset_name(tuple(config['subset']))} seed {config.get('seed')}"
    return f"trial-{trial_id}"
