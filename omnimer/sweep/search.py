"""The search mode of a sweep: the Optuna (TPE) space over LoRA, learning rate, the three λ and the
rebalancing scheme, ASHA early stopping, and the Optuna study the search keeps in ``optuna.db``.

Used by :func:`omnimer.sweep.tuner.build_tuner` for ``sweeps/aux_ablation.py --mode search``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from omnimer import storage
from omnimer.aux_tasks import AUX_TASKS
from omnimer.config import LOSS_SCHEMES

log = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
# What the search optimises: the valid macro-F1 of the trial's best epoch so far, the measure its
# record reports and the analysis ranks trials by (each epoch's report carries it).
METRIC = "best_valid_macro_f1"


def search_space(trial, base_lr: float) -> None:
    """Define-by-run Optuna space (parameter names are the config keys they set).

    The rebalancing scheme's own parameter is suggested only for that scheme (focal γ, effective-number
    β, logit-adjustment τ). The learning rate spans a decade either side of the config's.
    """
    trial.suggest_categorical("model.lora.rank", [4, 8, 16, 32, 64])
    trial.suggest_categorical("lora_alpha_over_rank", [1, 2, 4])
    trial.suggest_float("train.lr", base_lr / 10, min(base_lr * 10, 0.5), log=True)
    for task in AUX_TASKS:
        trial.suggest_float(f"loss.{task.weight_key}", 0.0, 1.0)
    scheme = trial.suggest_categorical("loss.scheme", list(LOSS_SCHEMES))
    if scheme == "effective_number":
        trial.suggest_float("loss.beta", 0.9, 0.9999, log=True)
    elif scheme == "focal":
        trial.suggest_float("loss.gamma", 0.5, 5.0)
    elif scheme == "logit_adjust":
        trial.suggest_float("loss.tau", 0.25, 2.0)


def define_space(trial, base_lr: float, constants: dict) -> dict:
    """The define-by-run function OptunaSearch calls: the space, plus the trial's constant params."""
    search_space(trial, base_lr)
    return constants


def build_search(name: str, experiment_dir: str, base_lr: float, epochs: int, seed: int, constants: dict):
    """The Optuna searcher (its study in :func:`study_file`) and the ASHA scheduler of a search."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    study = optuna.storages.RDBStorage(f"sqlite:///{study_file(experiment_dir)}")
    searcher = OptunaSearch(
        # A partial of a module-level function: Tune pickles the searcher into the experiment state.
        space=functools.partial(define_space, base_lr=base_lr, constants={**constants, "seed": seed}),
        metric=METRIC,
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=seed),
        study_name=name,
        storage=study,
    )
    # ASHA compares trials at the same epoch (one Tune iteration per epoch). It also stops every trial
    # that reaches max_t, which would cut a trial off at its last report before its driver writes the
    # record: so max_t lies one epoch beyond the end.
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=epochs + 1,
        grace_period=max(1, epochs // 4),
        reduction_factor=2,
    )
    return searcher, scheduler


def study_file(experiment_dir: str) -> Path:
    """The local SQLite file of a search's Optuna study: ``<experiment>/optuna.db`` for a local
    experiment dir; for an object store, a stable local copy under :func:`omnimer.storage.cache_dir`
    (uploaded to ``<experiment>/optuna.db`` after the sweep). Stable, because Tune pickles the
    searcher, and with it this path, into the experiment state that a resumed sweep restores."""
    if storage.is_remote(experiment_dir):
        return storage.local_mirror(storage.join(experiment_dir, STUDY_FILE), storage.cache_dir() / "studies")
    return Path(experiment_dir) / STUDY_FILE


def fetch_study(experiment_dir: str, resuming: bool) -> None:
    """Before a search on an object store: the local copy of its Optuna study, as the sweep needs it.

    A new sweep starts from no study (a stale local copy is removed). A resumed one keeps a local copy
    this machine already has (it is at least as new as the uploaded one, which is written after the
    sweep), else downloads ``<experiment>/optuna.db``.
    """
    local = study_file(experiment_dir)
    remote_copy = storage.join(experiment_dir, STUDY_FILE)
    if not resuming:
        local.unlink(missing_ok=True)
    elif not local.is_file() and storage.is_file(remote_copy):
        log.info("fetching the Optuna study %s to %s", remote_copy, local)
        storage.download_file(remote_copy, local)
    local.parent.mkdir(parents=True, exist_ok=True)


def upload_study(experiment_dir: str) -> None:
    """After a search on an object store (also an interrupted one): its study to ``<experiment>/optuna.db``,
    where a resume on another machine starts from."""
    if study_file(experiment_dir).is_file():
        storage.upload_file(study_file(experiment_dir), storage.join(experiment_dir, STUDY_FILE))
