"""PNG figures of an experiment: Shapley bars, per-class F1, confusion matrices, learning curves,
and for a search the Optuna parallel coordinates and parameter importances.

    python -m analysis plots runs/sweeps/demo-ablation --out runs/sweeps/demo-ablation/plots

Matplotlib runs on the Agg backend (no display). Every figure is written to a temporary file and
renamed, so a reader never sees half a PNG; each function returns the path it wrote, or None when
its input is missing (logged), so a report can link exactly what exists.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis.attribution import Attribution
from analysis.tables import ablation_rows
from omnimer.subsets import LATTICE, TASKS, Subset, subset_name
from omnimer.training.record import Status

# pyplot picks its backend at the first figure, so switching here is early enough: a headless machine
# (a cluster node, CI) has no display.
plt.switch_backend("Agg")

log = logging.getLogger(__name__)

DPI = 120
# One colour per subset of the lattice, the same in every figure: grey for the no-aux baseline,
# tab10's other colours (its grey skipped) for the rest.
_PALETTE = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
SUBSET_COLOURS = {subset_name(s): ("tab:gray" if i == 0 else _PALETTE[i - 1]) for i, s in enumerate(LATTICE)}


def save_figure(figure, path: Path) -> Path:
    """Write ``figure`` as a PNG atomically (temp file in the same dir, then rename) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        figure.savefig(tmp, dpi=DPI, bbox_inches="tight")
        tmp.replace(path)
    finally:
        plt.close(figure)
        tmp.unlink(missing_ok=True)
    log.info("wrote %s", path)
    return path


def plot_shapley(attribution: Attribution, path: Path) -> Path | None:
    """Shapley value and main effect of each task, with their bootstrap intervals."""
    if not attribution.available:
        log.info("no Shapley plot: attribution %s", attribution.note)
        return None
    figure, axes = plt.subplots(figsize=(6, 3.6))
    positions = np.arange(len(TASKS))
    width = 0.38
    for offset, effects, label, hatch in (
        (-width / 2, attribution.shapley, "Shapley value", None),
        (width / 2, attribution.main_effects, "main effect", "//"),
    ):
        estimates = np.array([e.estimate for e in effects])
        low = np.array([e.ci_low for e in effects])
        high = np.array([e.ci_high for e in effects])
        errors = None
        if np.isfinite(low).all() and np.isfinite(high).all():
            # Percentile intervals need not be symmetric; clip guards the (rare) estimate outside them.
            errors = np.clip(np.vstack([estimates - low, high - estimates]), 0, None)
        axes.bar(
            positions + offset,
            estimates,
            width,
            yerr=errors,
            capsize=4,
            label=label,
            hatch=hatch,
            color="tab:blue" if hatch is None else "tab:gray",
            alpha=0.85,
        )
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(positions, [f"aux_{t}" for t in TASKS])
    axes.set_ylabel(f"Δ {attribution.split} {attribution.metric}")
    axes.set_title(
        f"Contribution per aux task (Σ Shapley = v(all) − v(none) = {attribution.total:+.3f})", fontsize=10
    )
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def plot_per_class(per_class: pd.DataFrame, path: Path, split: str = "test") -> Path | None:
    """Grouped bars: per-class F1 (mean ± std over seeds) for each chosen subset."""
    names = [c.removesuffix("_mean") for c in per_class.columns if c.endswith("_mean")]
    if per_class.empty or not names:
        log.warning("no per-class F1 plot: no finished trial")
        return None
    labels = list(per_class["label"])
    positions = np.arange(len(labels))
    width = 0.8 / len(names)
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 3.8))
    for i, name in enumerate(names):
        std = per_class[f"{name}_std"].to_numpy(dtype=float)
        # One seed has no spread: draw no error bar rather than a zero-length one.
        errors = np.where(np.isfinite(std), std, 0) if np.isfinite(std).any() else None
        axes.bar(
            positions + (i - (len(names) - 1) / 2) * width,
            per_class[f"{name}_mean"].to_numpy(dtype=float),
            width,
            yerr=errors,
            capsize=2,
            label=name,
            color=SUBSET_COLOURS.get(name),
        )
    support = [f"{label}\n(n={_count(s)})" for label, s in zip(labels, per_class["support"], strict=True)]
    axes.set_xticks(positions, support, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel(f"{split} F1")
    axes.set_title("Per-class F1 by aux-task subset (error bars: std over seeds)", fontsize=10)
    axes.legend(fontsize=8, title="aux tasks", title_fontsize=8)
    return save_figure(figure, path)


def _count(value) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "?"


def plot_confusion(
    frame: pd.DataFrame, subsets: Sequence[Subset], path: Path, split: str = "test"
) -> Path | None:
    """Row-normalised confusion matrices summed over seeds, one panel per subset (counts annotated)."""
    rows = ablation_rows(frame, split)
    rows = rows[rows["status"] == Status.FINISHED] if not rows.empty else rows
    panels = []
    for subset in subsets:
        cell = rows[rows["subset"] == subset_name(subset)]
        matrices = [np.asarray(m) for m in cell["confusion_matrix"] if m is not None]
        if matrices:
            panels.append(
                (subset_name(subset), np.sum(matrices, axis=0), len(matrices), list(cell.iloc[0]["labels"]))
            )
    if not panels:
        log.warning("no confusion matrices: no finished trial among the chosen subsets")
        return None
    size = len(panels[0][3])
    figure, axes = plt.subplots(
        1, len(panels), figsize=(0.55 * size * len(panels) + 2, 0.55 * size + 1.6), squeeze=False
    )
    for axis, (name, counts, n_trials, labels) in zip(axes[0], panels, strict=True):
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalised = np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)
        axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                colour = "white" if normalised[i, j] > 0.6 else "black"
                axis.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(f"{name} ({n_trials} trials)", fontsize=9)
    figure.suptitle(f"Confusion matrices on {split}, summed over seeds (colour: row share)", fontsize=10)
    return save_figure(figure, path)


def plot_learning_curves(frame: pd.DataFrame, path: Path) -> Path | None:
    """Valid macro-F1 per epoch of every trial with a history, coloured by aux subset."""
    trials = frame[(frame["split"] == "valid") & (frame["epochs_run"] > 0)] if not frame.empty else frame
    if trials.empty:
        log.warning("no learning curves: no trial has an epoch history")
        return None
    figure, axes = plt.subplots(figsize=(6.5, 4))
    seen: set[str] = set()
    for _, row in trials.iterrows():
        curve = np.asarray(row["valid_curve"], dtype=float)
        if not np.isfinite(curve).any():
            continue
        name = row["subset"]
        style = "--" if row["status"] != Status.FINISHED else "-"
        axes.plot(
            np.arange(1, len(curve) + 1),
            curve,
            style,
            marker="o",
            markersize=2.5,
            linewidth=1,
            alpha=0.75,
            color=SUBSET_COLOURS.get(name),
            label=None if name in seen else name,
        )
        seen.add(name)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("valid macro-F1")
    axes.set_title("Learning curves (one line per trial; dashed: not finished)", fontsize=10)
    axes.legend(fontsize=7, title="aux tasks", title_fontsize=7)
    return save_figure(figure, path)


def plot_parallel_coordinates(study, path: Path) -> Path | None:
    """Optuna's parallel-coordinate plot of the study (objective: valid macro-F1)."""
    import optuna

    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(completed) < 2:
        log.warning("no parallel-coordinate plot: the study has %d completed trials", len(completed))
        return None
    with warnings.catch_warnings():
        # optuna.visualization.matplotlib is marked experimental; the warning is noise in a report.
        warnings.simplefilter("ignore")
        axes = optuna.visualization.matplotlib.plot_parallel_coordinate(study, target_name="valid macro-F1")
    figure = axes.figure
    figure.set_size_inches(max(7, 1.6 * len(completed[0].params) + 3), 4.5)
    return save_figure(figure, path)


def parameter_importances(study) -> dict[str, float]:
    """Optuna's default importance evaluator (PED-ANOVA in optuna 5: numpy only) on the study."""
    import optuna

    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(completed) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError) as error:  # e.g. every trial used one value of each parameter
        log.warning("parameter importances unavailable: %s", error)
        return {}


def plot_importances(study, path: Path) -> Path | None:
    """Horizontal bars of :func:`parameter_importances`."""
    importances = parameter_importances(study)
    if not importances:
        log.warning("no parameter-importance plot: fewer than 2 completed trials or no varying parameter")
        return None
    names = list(importances)[::-1]  # largest on top
    values = [importances[n] for n in names]
    figure, axes = plt.subplots(figsize=(6, 0.45 * len(names) + 1.5))
    axes.barh(names, values, color="tab:blue")
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    axes.set_xlim(0, max(1.0, max(values) * 1.15) if not math.isnan(max(values)) else 1.0)
    axes.set_xlabel("importance for valid macro-F1 (PED-ANOVA)")
    completed = sum(t.state.name == "COMPLETE" for t in study.trials)
    axes.set_title(f"Hyperparameter importance ({completed} completed trials)", fontsize=10)
    return save_figure(figure, path)
