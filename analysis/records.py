"""Trial records (``record.json``) → one tidy pandas table: one row per trial × split.

    python -m analysis tables runs/sweeps/demo-ablation        # the tables built on this module
    python -m analysis tables s3://bucket/experiments/demo-ablation   # records in an object store

A record is what :func:`omnimer.training.driver.run_training` (or a sweep trial) writes; its schema
(version, statuses) is :mod:`omnimer.training.record`, a module without training code. This module
only reads records: it never imports training code (STYLE: data flows one way); an experiment dir
given as a URI (``s3://...``) is listed and read through :mod:`omnimer.storage`. Every record found is
kept, whatever its status: failed, running and early-stopped trials are rows of the table with their
status, so the tables can count them apart instead of silently dropping them.

Columns of the tidy table (:func:`tidy_table`):

- identity: ``experiment`` (experiment dir name), ``exp_dir``, ``record_path``, ``run_name``,
  ``trial_id``, ``mode`` (``ablation`` | ``search`` | ``single`` for a record outside a sweep),
  ``status``, ``seed``, ``error``;
- the aux-task subset: ``text``, ``face``, ``prosody`` (bool: λ > 0) and ``subset`` (its name, e.g.
  ``none``, ``face``, ``text+prosody``, ``text+face+prosody``);
- ``target``, ``label_set``, ``split`` (``valid`` | ``test``) and that split's metrics of the selected
  epoch: ``n``, ``accuracy``, ``macro_f1``, ``weighted_f1``, ``macro_precision``, ``macro_recall``
  (NaN where the trial has none, e.g. failed), ``labels``, ``per_class_f1``, ``per_class_support``
  (dicts keyed by label) and ``confusion_matrix`` (object columns);
- ``best_epoch``, ``epochs_run``, ``valid_curve`` (valid macro-F1 per epoch, a list),
  ``wall_seconds``, ``device_seconds``, ``git_sha``, ``git_dirty``;
- the config as a dict (``config``) and flattened to dotted columns: ``model.lora.rank``, ``train.lr``,
  ``loss.aux_weight_face``…
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from omnimer import storage, subsets
from omnimer.aux_tasks import AUX_TASKS, enabled_tasks
from omnimer.subsets import TASKS, Subset, subset_name
from omnimer.training.record import RECORD_FILE, SCHEMA_VERSION, WITH_METRICS, Status

log = logging.getLogger(__name__)

SPLITS = ("valid", "test")
STATUSES = tuple(Status)
MODES = ("ablation", "search", "single")
METRICS = ("macro_f1", "weighted_f1", "accuracy", "macro_precision", "macro_recall")


class AnalysisError(Exception):
    """A problem with the user's input. The message says what is wrong, where, and what to do."""


# An experiment dir or a record: a local path, or a URI (str) of an object store.
Location = Path | str


def as_location(text: str | Path) -> Location:
    """A local path as a :class:`~pathlib.Path`, an object store URI as the string it is."""
    try:
        storage.check_location(text)
    except storage.StorageError as error:
        raise AnalysisError(str(error)) from None
    return str(text).rstrip("/") if storage.is_remote(text) else Path(text)


def parse_subset(name: str) -> Subset:
    """:func:`omnimer.subsets.parse_subset`, refusing a bad name with an :class:`AnalysisError`."""
    try:
        return subsets.parse_subset(name)
    except subsets.SubsetError as err:
        raise AnalysisError(str(err)) from None


# ------------------------------------------------------------------------------------ finding records


def find_record_files(exp_dir: Location) -> list[Location]:
    """Every ``record.json`` under ``exp_dir``, sorted; Ray's ``checkpoint_*`` copies are skipped."""
    if storage.is_remote(exp_dir):
        try:
            # Checkpoint dirs and hidden dirs hold copies or temporaries, never a trial's own record.
            return storage.find_files(exp_dir, RECORD_FILE, skip_prefixes=("checkpoint_", "."))
        except storage.StorageError as error:
            raise AnalysisError(str(error)) from None
    found = []
    for root, dirs, files in os.walk(exp_dir):
        # Checkpoint dirs and hidden dirs hold copies or temporaries, never a trial's own record.
        dirs[:] = sorted(d for d in dirs if not d.startswith(("checkpoint_", ".")))
        if RECORD_FILE in files:
            found.append(Path(root) / RECORD_FILE)
    return sorted(found)


def _read_json(path: Location) -> dict:
    try:
        data = json.loads(storage.read_text(path))
    except json.JSONDecodeError as error:
        raise AnalysisError(
            f"{path}: not valid JSON ({error}); a trial may have been killed while writing it "
            "(records are written atomically, so this suggests a copy went wrong): re-copy or delete it"
        ) from None
    except OSError as error:
        raise AnalysisError(f"{path}: cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"{path}: expected a JSON object (a trial record), got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------ one record


@dataclass(frozen=True)
class Trial:
    """One validated record and the fields the tables key on."""

    path: Location
    exp_dir: Location
    record: dict
    status: str
    mode: str
    trial_id: str
    seed: int | None
    subset: Subset
    target: str
    label_set: str

    @property
    def experiment(self) -> str:
        return storage.basename(self.exp_dir)

    @property
    def run_name(self) -> str:
        return storage.basename(storage.parent(self.path))


def _require(record: dict, path: Location, dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise AnalysisError(
                f"{path}: the record has no {dotted!r}; it is not a record written by omnimer "
                f"(schema version {SCHEMA_VERSION}): remove it from the experiment dir or re-run the trial"
            )
        node = node[part]
    return node


def _check_schema(record: dict, path: Location) -> None:
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise AnalysisError(
            f"{path}: unknown record schema_version {version!r}; this analysis reads version "
            f"{SCHEMA_VERSION}. Use the analysis code of the same git revision as the trainer that "
            "wrote it (see the record's git.sha), or re-run the trial with this revision"
        )


def _subset_from_config(config: dict, path: Location) -> Subset:
    for task in AUX_TASKS:
        weight = _require({"config": config}, path, f"config.loss.{task.weight_key}")
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise AnalysisError(f"{path}: config.loss.{task.weight_key} is {weight!r}, not a number")
    # A task is enabled iff its λ > 0 (omnimer.aux_tasks).
    enabled = enabled_tasks(config["loss"])
    return tuple(task in enabled for task in AUX_TASKS)  # type: ignore[return-value]


def _subset_from_sweep(sweep: dict, config_subset: Subset, path: Location) -> Subset:
    given = sweep.get("subset")
    if not isinstance(given, dict):
        return config_subset
    subset = tuple(bool(given.get(task, False)) for task in TASKS)
    if subset != config_subset:
        # The config's λ is what trained the model, so it wins over the sweep's label.
        log.warning(
            "%s: sweep.subset %s disagrees with the config's aux weights (%s); using the config",
            path,
            subset_name(subset),  # type: ignore[arg-type]
            subset_name(config_subset),
        )
    return config_subset


def parse_record(record: dict, path: Location, exp_dir: Location) -> Trial:
    """Validate one record (schema version, status, the keys the tables need) into a :class:`Trial`."""
    _check_schema(record, path)
    status = _require(record, path, "status")
    if status not in STATUSES:
        raise AnalysisError(f"{path}: status {status!r} is not one of {', '.join(STATUSES)}")
    config = _require(record, path, "config")
    target = _require(record, path, "config.data.target")
    if status in WITH_METRICS:
        for split in SPLITS:
            metrics = record.get(split)
            if metrics is not None:
                _require(record, path, f"{split}.macro_f1")
    config_subset = _subset_from_config(config, path)
    sweep = record.get("sweep")
    if isinstance(sweep, dict):
        mode = sweep.get("mode", "ablation")
        if mode not in MODES:
            raise AnalysisError(f"{path}: sweep.mode {mode!r} is not one of ablation, search")
        subset = _subset_from_sweep(sweep, config_subset, path)
        seed = sweep.get("seed", config.get("train", {}).get("seed"))
        trial_id = str(sweep.get("trial_id", storage.basename(storage.parent(path))))
    else:
        mode, subset = "single", config_subset
        seed = config.get("train", {}).get("seed")
        trial_id = storage.basename(storage.parent(path))
    label_set = (record.get("dataset") or {}).get("label_set") or config["data"].get("label_set") or ""
    return Trial(
        path=path,
        exp_dir=exp_dir,
        record=record,
        status=status,
        mode=mode,
        trial_id=trial_id,
        seed=None if seed is None else int(seed),
        subset=subset,
        target=str(target),
        label_set=str(label_set),
    )


def load_trials(exp_dirs: Iterable[str | Path]) -> list[Trial]:
    """Every record under the experiment dirs, validated; raises :class:`AnalysisError` on bad input."""
    trials: list[Trial] = []
    for exp in exp_dirs:
        exp_dir = as_location(exp)
        try:
            found = storage.is_dir(exp_dir)
        except storage.StorageError as error:
            raise AnalysisError(str(error)) from None
        if not found:
            raise AnalysisError(
                f"{exp_dir}: no such experiment dir; pass <storage-path>/<name> of a sweep "
                "(or a run.output_dir of `omnimer train`)"
            )
        files = find_record_files(exp_dir)
        if not files:
            raise AnalysisError(
                f"{exp_dir}: no {RECORD_FILE} under this dir (searched recursively, skipping "
                "checkpoint_* dirs). Pass the experiment dir <storage-path>/<name> of a sweep whose "
                "trials have started, or wait for the first trial to write its record"
            )
        for path in files:
            trials.append(parse_record(_read_json(path), path, exp_dir))
        log.info("%s: %d records", exp_dir, len(files))
    return trials


def status_counts(trials: Sequence[Trial]) -> dict[str, int]:
    """Number of trials per status, every status listed (zeros included)."""
    return {status: sum(t.status == status for t in trials) for status in STATUSES}


def select_target(trials: Sequence[Trial], target: str | None) -> tuple[list[Trial], str]:
    """The trials of one target (emotion | sentiment) and one label set; refuses to mix them.

    With ``target=None`` all trials must share one target; otherwise the others are left out (logged).
    """
    trials = list(trials)
    targets = sorted({t.target for t in trials})
    if target is None:
        if len(targets) > 1:
            examples = "; ".join(f"{tg}: {next(t.path for t in trials if t.target == tg)}" for tg in targets)
            raise AnalysisError(
                f"the records mix targets ({examples}); one table holds one target: pass "
                f"--target {' or --target '.join(targets)}"
            )
        target = targets[0]
    chosen = [t for t in trials if t.target == target]
    if not chosen:
        dirs = ", ".join(sorted({str(t.exp_dir) for t in trials}))
        raise AnalysisError(
            f"no record has target {target!r} in {dirs} (targets present: {', '.join(targets)}); "
            f"pass --target {targets[0]}"
        )
    if len(chosen) < len(trials):
        log.info("left out %d records of other targets than %s", len(trials) - len(chosen), target)
    label_sets = sorted({t.label_set for t in chosen})
    if len(label_sets) > 1:
        examples = "; ".join(
            f"{ls or '(none)'}: {next(t.path for t in chosen if t.label_set == ls)}" for ls in label_sets
        )
        raise AnalysisError(
            f"the {target} records mix label sets ({examples}): they come from different datasets and "
            "cannot share a table; analyse each dataset's experiment dirs separately"
        )
    return chosen, target


# ------------------------------------------------------------------------------------ the tidy table


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lora": {"rank": 8}}}`` → ``{"model.lora.rank": 8}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _per_class(metrics: dict, key: str, labels: list[str]) -> dict[str, float]:
    # Records hold dicts keyed by label (omnimer.metrics); a list aligned with `labels` is read too.
    values = metrics.get(key)
    if isinstance(values, dict):
        return {str(k): v for k, v in values.items()}
    if isinstance(values, list) and len(values) == len(labels):
        return dict(zip(labels, values, strict=True))
    return {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _valid_curve(record: dict) -> list[float]:
    curve = []
    for entry in record.get("epochs") or []:
        valid = entry.get("valid") if isinstance(entry, dict) else None
        curve.append(_number(valid.get("macro_f1")) if isinstance(valid, dict) else math.nan)
    return curve


def _split_row(trial: Trial, split: str) -> dict[str, Any]:
    record = trial.record
    metrics = record.get(split) if trial.status in WITH_METRICS else None
    metrics = metrics if isinstance(metrics, dict) else {}
    labels = [str(label) for label in metrics.get("labels") or []]
    git = record.get("git") or {}
    row: dict[str, Any] = {
        "experiment": trial.experiment,
        "exp_dir": str(trial.exp_dir),
        "record_path": str(trial.path),
        "run_name": trial.run_name,
        "trial_id": trial.trial_id,
        "mode": trial.mode,
        "status": trial.status,
        "seed": trial.seed,
        "error": record.get("error"),
        **dict(zip(TASKS, trial.subset, strict=True)),
        "subset": subset_name(trial.subset),
        "target": trial.target,
        "label_set": trial.label_set,
        "split": split,
        "n": _number(metrics.get("n")),
        **{name: _number(metrics.get(name)) for name in METRICS},
        "labels": labels,
        "per_class_f1": _per_class(metrics, "per_class_f1", labels),
        "per_class_support": _per_class(metrics, "per_class_support", labels),
        "confusion_matrix": metrics.get("confusion_matrix"),
        "best_epoch": record.get("best_epoch"),
        "epochs_run": len(record.get("epochs") or []),
        "valid_curve": _valid_curve(record),
        "wall_seconds": _number(record.get("wall_seconds")),
        "device_seconds": _number(record.get("device_seconds")),
        "git_sha": git.get("sha"),
        "git_dirty": git.get("dirty"),
        "config": record["config"],
    }
    row.update(flatten(record["config"]))
    return row


def tidy_table(trials: Sequence[Trial]) -> pd.DataFrame:
    """One row per trial × split (valid, test), whatever the status (see the module docstring)."""
    rows = [_split_row(trial, split) for trial in trials for split in SPLITS]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["seed"] = frame["seed"].astype("Int64")
    return frame


def load_table(exp_dirs: Iterable[str | Path], target: str | None = None) -> pd.DataFrame:
    """:func:`load_trials` + :func:`select_target` + :func:`tidy_table` in one call."""
    trials, _ = select_target(load_trials(exp_dirs), target)
    return tidy_table(trials)


def trial_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (the ``valid`` rows), for counts and per-trial fields."""
    return frame[frame["split"] == SPLITS[0]]


# ------------------------------------------------------------------------------------ the Optuna study

STUDY_FILE = "optuna.db"


def load_study(exp_dir: str | Path):
    """The search's Optuna study stored in ``<exp>/optuna.db`` (sqlite), or None without that file.

    The study is looked up by the experiment dir's name, else taken as the storage's only study. For
    an experiment dir in an object store the file is first downloaded to a local copy under
    ``$OMNIMER_CACHE_DIR/analysis`` (default ``~/.cache/omnimer/analysis``).
    """
    exp_dir = as_location(exp_dir)
    path = storage.join(exp_dir, STUDY_FILE)
    local = Path(path)
    try:
        if not storage.is_file(path):
            return None
        if storage.is_remote(path):
            local = storage.local_mirror(path, storage.cache_dir() / "analysis")
            storage.download_file(path, local)
    except storage.StorageError as error:
        raise AnalysisError(str(error)) from None
    import optuna  # only searches have a study; importing optuna costs a second

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{local.resolve()}"
    try:
        names = optuna.get_all_study_names(storage=url)
    except Exception as error:  # sqlalchemy/optuna raise many kinds; all mean "not a study storage"
        raise AnalysisError(f"{path}: cannot be opened as an Optuna RDB storage ({error})") from None
    exp_name = storage.basename(exp_dir)
    if exp_name in names:
        name = exp_name
    elif len(names) == 1:
        name = names[0]
    elif not names:
        raise AnalysisError(f"{path}: holds no Optuna study; delete the file or re-run the search")
    else:
        raise AnalysisError(
            f"{path}: holds studies {', '.join(map(repr, names))} and none is named {exp_name!r} "
            "(the experiment dir's name); keep one study per experiment dir"
        )
    return optuna.load_study(study_name=name, storage=url)


def load_first_study(exp_dirs: Iterable[str | Path]):
    """The study of the first experiment dir that has one (searches are analysed one at a time)."""
    for exp in exp_dirs:
        study = load_study(exp)
        if study is not None:
            return study
    return None
