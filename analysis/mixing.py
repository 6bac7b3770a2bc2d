"""Whether the records of several experiment dirs may share one table: only the aux-task subset and
the seed may differ between their trials. Any other config value, the dataset (its fingerprint: the
shards' hashes) or the model makes them different experiments, and averaging them into one lattice
would mix effects silently.

    python -m analysis summary EXP_A EXP_B                 # refused if they differ, naming the keys
    python -m analysis summary EXP_A EXP_B --allow-mixed   # averaged anyway; the table says so

Called by :func:`analysis.report.analyse`.
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis.records import AnalysisError, Trial
from omnimer.aux_tasks import AUX_TASKS
from omnimer.training.record import comparable_config, differences

# What an ablation's trials differ in by design: the subset (its λ), the seed, and where a run lives.
BY_DESIGN = {"train.seed", *(f"loss.{task.weight_key}" for task in AUX_TASKS)}
BY_DESIGN_PREFIXES = ("run.",)


def experiment_view(trial: Trial) -> dict:
    """What must be equal across the experiments of one table, as flat keys."""
    view = {
        key: value
        for key, value in comparable_config(trial.record.get("config") or {}).items()
        if key not in BY_DESIGN and not key.startswith(BY_DESIGN_PREFIXES)
    }
    dataset = trial.record.get("dataset") or {}
    if dataset.get("fingerprint"):
        # The same shards under another path (another machine) are the same dataset.
        view.pop("data.path", None)
        view["dataset.fingerprint"] = dataset["fingerprint"]
    else:  # a record from before fingerprints: what it has
        view["dataset.counts"] = dataset.get("counts")
    return view


def check_mixable(trials: Sequence[Trial], allow_mixed: bool = False) -> str | None:
    """None if the experiment dirs of ``trials`` ran the same experiment; else raise naming the keys
    that differ, or with ``allow_mixed`` return the mark the table carries."""
    first_of: dict = {}
    for trial in trials:
        if trial.mode != "search":
            first_of.setdefault(str(trial.exp_dir), trial)
    if len(first_of) < 2:
        return None
    (reference_dir, reference), *others = first_of.items()
    found = []
    for exp_dir, trial in others:
        changed = differences(experiment_view(reference), experiment_view(trial))
        if changed:
            found.append(f"{exp_dir} vs {reference_dir}: {changed}")
    if not found:
        return None
    if not allow_mixed:
        raise AnalysisError(
            "the experiment dirs ran different experiments, so their trials cannot be averaged into one "
            f"lattice ({'; '.join(found)}); analyse them apart, or pass --allow-mixed to average them "
            "anyway (the table is then marked)"
        )
    return "MIXED experiments (averaged with --allow-mixed): " + "; ".join(found)
