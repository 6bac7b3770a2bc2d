"""The search summary and the best configuration of a search, from the tidy records table (and the
Optuna study, where the records lack a trial).

    python -m analysis tables runs/sweeps/smoke-search --table search_summary
    python -m analysis report runs/sweeps/smoke-search --out report/   # also writes best_config.yaml

Called by :mod:`analysis.report`; ``sweeps/aux_ablation.py --best-of`` reuses the best configuration.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.records import trial_rows
from analysis.tables import Cells, best_mask, check_format, render, to_csv
from omnimer.training.record import Status

log = logging.getLogger(__name__)

# The conditional parameter of each rebalancing scheme (DESIGN §4): meaningless under other schemes.
SCHEME_PARAMS = {"effective_number": "loss.beta", "focal": "loss.gamma", "logit_adjust": "loss.tau"}
# Config keys that differ between trials without being hyperparameters (names, paths, the seed).
NOT_HYPERPARAMETERS = {"train.seed", "data.path", "model.name_or_path", "train.deepspeed_config"}
NOT_HYPERPARAMETER_PREFIXES = ("run.",)
CONFIG_SECTIONS = ("data", "model", "loss", "train", "eval", "run")


def _is_hyperparameter(key: str) -> bool:
    return (
        key.split(".")[0] in CONFIG_SECTIONS
        and key not in NOT_HYPERPARAMETERS
        and not key.startswith(NOT_HYPERPARAMETER_PREFIXES)
    )


def config_key_for_param(name: str, config_keys: Sequence[str]) -> str | None:
    """The dotted config key an Optuna parameter name stands for, or None.

    Tried in order: the name itself (``model.lora.rank``); the unique key ending in it
    (``rank`` → ``model.lora.rank``, ``lr`` → ``train.lr``); the unique key whose dots read as
    underscores ends in it (``lora_rank`` → ``model.lora.rank``).
    """
    keys = [k for k in config_keys if _is_hyperparameter(k)]
    if name in keys:
        return name
    for matches in (
        [k for k in keys if k.split(".")[-1] == name],
        [k for k in keys if k.replace(".", "_").endswith(f"_{name}") or k.replace(".", "_") == name],
    ):
        if len(matches) == 1:
            return matches[0]
    return None


def _config_keys(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if "." in c and c.split(".")[0] in CONFIG_SECTIONS]


def searched_keys(search: pd.DataFrame, study=None) -> list[str]:
    """Config keys the search explored: Optuna's parameters (mapped to config keys) and the keys
    whose values differ between the search's trials (names, paths and the seed excepted)."""
    keys: set[str] = set()
    config_keys = _config_keys(search)
    for key in config_keys:
        if _is_hyperparameter(key) and search[key].astype(str).nunique() > 1:
            keys.add(key)
    if study is not None:
        for name in _study_param_names(study):
            mapped = config_key_for_param(name, config_keys)
            if mapped is not None:
                keys.add(mapped)
    return sorted(keys, key=lambda k: (CONFIG_SECTIONS.index(k.split(".")[0]), k))


def _study_param_names(study) -> list[str]:
    return sorted({name for trial in study.trials for name in trial.params})


def _inactive(key: str, scheme: Any) -> bool:
    return key in SCHEME_PARAMS.values() and SCHEME_PARAMS.get(str(scheme)) != key


def search_frame(frame: pd.DataFrame, study=None, top_k: int = 10) -> pd.DataFrame:
    """The top-k search trials by valid macro-F1, with their test macro-F1 and hyperparameters.

    Columns: ``rank``, ``run_name``, ``trial_id``, ``status`` (finished or stopped by ASHA: both
    ranked, a stopped trial on its best epoch so far), ``epochs_run``, ``valid_macro_f1``,
    ``test_macro_f1``, then one column per searched config key (NaN where a conditional parameter
    does not apply, e.g. ``loss.gamma`` unless the scheme is focal). Without search records but with
    a study, the study's completed trials are ranked instead (``optuna_trial``, ``value``, params).
    """
    search = frame[frame["mode"] == "search"] if not frame.empty else frame
    if search.empty:
        return _study_frame(study, top_k) if study is not None else pd.DataFrame()
    valid = search[(search["split"] == "valid") & search["status"].isin([Status.FINISHED, Status.STOPPED])]
    # A trial stopped before its first checkpoint has no metrics to rank it by.
    valid = valid[np.isfinite(valid["macro_f1"].to_numpy(dtype=float))]
    test = search[search["split"] == "test"].set_index("record_path")["macro_f1"]
    ranked = valid.assign(test_macro_f1=valid["record_path"].map(test)).sort_values(
        "macro_f1", ascending=False, kind="stable"
    )
    keys = searched_keys(search, study)
    rows = []
    for rank, (_, row) in enumerate(ranked.head(top_k).iterrows(), start=1):
        entry = {
            "rank": rank,
            "run_name": row["run_name"],
            "trial_id": row["trial_id"],
            "status": row["status"],
            "epochs_run": int(row["epochs_run"]),
            "valid_macro_f1": float(row["macro_f1"]),
            "test_macro_f1": float(row["test_macro_f1"]),
        }
        scheme = row.get("loss.scheme")
        for key in keys:
            entry[key] = math.nan if _inactive(key, scheme) else _native(row[key])
        rows.append(entry)
    return pd.DataFrame(rows)


def _study_frame(study, top_k: int) -> pd.DataFrame:
    import optuna

    complete = [
        t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
    ]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete.sort(key=lambda t: t.value, reverse=reverse)
    names = _study_param_names(study)
    rows = []
    for rank, trial in enumerate(complete[:top_k], start=1):
        rows.append(
            {
                "rank": rank,
                "optuna_trial": trial.number,
                "value": float(trial.value),
                **{name: trial.params.get(name, math.nan) for name in names},
            }
        )
    return pd.DataFrame(rows)


def _native(value: Any) -> Any:
    """numpy scalars → Python scalars (YAML and JSON writers refuse numpy types)."""
    return value.item() if isinstance(value, np.generic) else value


def search_status_line(frame: pd.DataFrame) -> str:
    search = trial_rows(frame[frame["mode"] == "search"]) if not frame.empty else frame
    if search.empty:
        return ""
    counts = search["status"].value_counts()
    parts = [
        f"{int(counts.get(s, 0))} {s}"
        for s in (Status.FINISHED, Status.STOPPED, Status.FAILED, Status.RUNNING)
    ]
    return f"{len(search)} search trials: " + ", ".join(parts) + " (stopped = early-stopped by ASHA)."


SEARCH_HEADERS = {
    "rank": "#",
    "run_name": "trial",
    "epochs_run": "epochs",
    "valid_macro_f1": "valid macro-F1",
    "test_macro_f1": "test macro-F1",
    "optuna_trial": "Optuna trial",
    "value": "valid macro-F1",
}
# In the CSV only: the sweep's trial id repeats what the run name says.
SEARCH_HIDDEN = ("trial_id",)


def format_search(summary: pd.DataFrame, fmt: str, status_line: str = "") -> str:
    """The search summary table (best valid macro-F1 in bold)."""
    check_format(fmt)
    if fmt == "csv":
        return to_csv(summary)
    cells = Cells(fmt)
    if summary.empty:
        return cells.text("No search trial with metrics.") + "\n"
    best_column = "valid_macro_f1" if "valid_macro_f1" in summary.columns else "value"
    best = best_mask(summary[best_column])
    formatters: dict[str, Callable[[Any], str]] = {
        "valid_macro_f1": cells.number,
        "test_macro_f1": cells.number,
        "value": cells.number,
    }
    columns = [c for c in summary.columns if c not in SEARCH_HIDDEN]
    headers = [cells.text(SEARCH_HEADERS.get(c, c)) for c in columns]
    rows = []
    for i, (_, row) in enumerate(summary.iterrows()):
        line = []
        for column in columns:
            text = formatters.get(column, cells.general)(row[column])
            line.append(cells.bold(text) if column == best_column and best[i] else text)
        rows.append(line)
    align = "".join("r" if pd.api.types.is_numeric_dtype(summary[c]) else "l" for c in columns)
    caption = cells.text(f"Search: top {len(summary)} trials by valid macro-F1. {status_line}".strip())
    return render(headers, rows, align, fmt, caption=caption, label="tab:search")


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"model.lora.rank": 16}`` → ``{"model": {"lora": {"rank": 16}}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def best_config(frame: pd.DataFrame, study=None) -> dict[str, Any]:
    """The best search trial's searched hyperparameters as nested config sections (empty if none).

    Values come from the trial's own record (what trained the model); with only a study, from the
    best Optuna trial's parameters whose names map to config keys (see :func:`config_key_for_param`).
    """
    summary = search_frame(frame, study, top_k=1)
    if summary.empty:
        return {}
    top = summary.iloc[0]
    if "valid_macro_f1" in summary.columns:
        keys = [c for c in summary.columns if "." in c]
        return nest({k: _native(top[k]) for k in keys if not _is_missing(top[k])})
    config_keys = _config_keys(frame) if not frame.empty else []
    flat = {}
    for name in _study_param_names(study):
        if _is_missing(top.get(name)):
            continue
        key = name if "." in name and name.split(".")[0] in CONFIG_SECTIONS else None
        key = key or config_key_for_param(name, config_keys)
        if key is None:
            log.warning("Optuna parameter %r matches no config key; left out of the best config", name)
            continue
        flat[key] = _native(top[name])
    return nest(flat)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def best_config_yaml(frame: pd.DataFrame, study=None, experiment: str = "") -> str:
    """:func:`best_config` as YAML sections for ``sweeps/aux_ablation.py --best-of FILE``."""
    config = best_config(frame, study)
    if not config:
        return ""
    summary = search_frame(frame, study, top_k=1).iloc[0]
    if "valid_macro_f1" in summary:
        origin = (
            f"# Best trial of search {experiment or '(unnamed)'}: {summary['run_name']} "
            f"(valid macro-F1 {summary['valid_macro_f1']:.4f}, test {summary['test_macro_f1']:.4f})."
        )
    else:
        origin = f"# Best Optuna trial {summary['optuna_trial']} (value {summary['value']:.4f})."
    header = [
        origin,
        "# Use: python sweeps/aux_ablation.py --mode ablation --best-of best_config.yaml ...",
        "# (in ablation mode the grid decides which aux tasks are on; see merge_best in that script)",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=True, default_flow_style=False)
