"""The ablation's clip-level inference: the runs' per-clip predictions, aligned into a lattice (cells ×
seeds × clips), and the family of contrasts the table reports, Holm-adjusted together: the seven
subsets vs no-aux and the three Shapley values, plus the majority-class baseline.

    python -m analysis summary runs/demo/sweeps/demo     # the table's interval, Holm p, resolved, MDE

Called by :func:`analysis.report.analyse`; the statistics are :mod:`analysis.clustered`. Needs every
cell's finished trials to have written ``predictions/<split>.parquet`` (runs of this version do): with
any missing, the table keeps its seed-level numbers and says why the rest is absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from analysis import clustered, records, tables
from analysis.attribution import shapley_weights
from analysis.records import AnalysisError, Trial
from omnimer import storage
from omnimer.subsets import LATTICE, NO_AUX, TASKS, subset_name
from omnimer.training.record import Status

DEFAULT_TARGET_MDE = 0.02  # aux-task effects are expected around 0.01-0.03 macro-F1


@dataclasses.dataclass(frozen=True)
class ClipInference:
    """The family's contrasts (Holm-adjusted), what they were computed on, and the baseline."""

    split: str
    contrasts: tuple[clustered.Contrast, ...]
    seeds: tuple[int, ...]
    clips: int
    videos: int
    majority_label: str
    majority_macro_f1: float
    target_mde: float

    def vs_none(self, subset) -> clustered.Contrast | None:
        name = f"{subset_name(subset)} vs none"
        return next((c for c in self.contrasts if c.name == name), None)

    def shapley(self, task: str) -> clustered.Contrast:
        return next(c for c in self.contrasts if c.name == f"{task} Shapley")

    @property
    def mde(self) -> float:
        """The median MDE of the seven subset contrasts (those that are not degenerate): the
        table's "not resolvable below"."""
        values = [c.mde for c in self.contrasts if c.name.endswith("vs none") and not c.degenerate]
        return float(np.median(values)) if values else math.nan

    def resolution_lines(self) -> list[str]:
        """What the table can resolve, in words: the MDE, and the seeds a target MDE would need."""
        subsets = [c for c in self.contrasts if c.name.endswith("vs none")]
        varied = [c for c in subsets if not c.degenerate]
        if not varied:
            return [
                "Every subset predicted exactly as no-aux did, on every clip and in every seed: there is "
                "no variation to bound a difference with."
            ]
        typical = min(varied, key=lambda c: abs(c.mde - self.mde))
        lines = [
            f"Differences below {self.mde:.3f} macro-F1 are not resolvable here: the median minimum "
            "detectable effect (80% power, α = 0.05, two-sided) of the subsets vs no-aux, on this "
            f"{self.split} set ({self.clips} clips from {self.videos} source videos) with "
            f"{len(self.seeds)} seed(s)."
            + (
                f" ({len(subsets) - len(varied)} subset(s) predicted exactly as no-aux did on every clip "
                "in every seed: their zero-width intervals are left out of this.)"
                if len(varied) < len(subsets)
                else ""
            )
        ]
        needed = typical.seeds_for(self.target_mde)
        if len(self.seeds) < 2:
            lines.append("With one seed the seeds' variation is not estimable; run at least 2 (better 5).")
        elif needed is None:
            floor = typical.mde_with(200)
            lines.append(
                f"Reaching {self.target_mde:.3f} would take more than 200 seeds: this {self.split} set alone "
                f"keeps it near {floor:.3f}; only a larger test set would."
            )
        else:
            lines.append(f"Reaching {self.target_mde:.3f} would take about {needed} seeds on this test set.")
        return lines


def infer(
    trials: Sequence[Trial],
    split: str,
    n_boot: int = clustered.DEFAULT_BOOTSTRAP,
    seed: int = 0,
    target_mde: float = DEFAULT_TARGET_MDE,
) -> ClipInference | str:
    """The family of the ablation's ``split``; a reason (str) where the predictions do not allow it."""
    cells = _finished_cells(trials)
    missing = [subset_name(s) for s in LATTICE if not cells.get(s)]
    if missing:
        return f"no finished trial for {', '.join(missing)}"
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in cells.values())))
    if not seeds:
        return "no seed has a finished trial in every subset (cells are compared paired by seed)"
    tables = {}
    for subset, by_seed in cells.items():
        for s in seeds:
            table = _read_predictions(by_seed[s], split)
            if isinstance(table, str):
                return table
            tables[subset, s] = table
    lattice, labels, clip_count, video_count = _lattice(tables, seeds)
    rng = np.random.default_rng(seed)
    resamples = clustered.resample_videos(lattice, n_boot, rng)
    found = []
    for index, subset in enumerate(LATTICE[1:], start=1):
        weights = np.zeros(len(LATTICE))
        weights[index], weights[0] = 1.0, -1.0
        found.append(clustered.contrast(f"{subset_name(subset)} vs none", weights, resamples))
    for task, weights in zip(TASKS, shapley_weights(), strict=True):
        found.append(clustered.contrast(f"{task} Shapley", weights, resamples))
    majority = int(np.bincount(lattice.gold, minlength=len(labels)).argmax())
    baseline = clustered.macro_f1(
        np.bincount(lattice.gold * len(labels) + majority, minlength=len(labels) ** 2).astype(float),
        len(labels),
    )
    return ClipInference(
        split=split,
        contrasts=tuple(clustered.holm(found)),
        seeds=tuple(seeds),
        clips=clip_count,
        videos=video_count,
        majority_label=labels[majority],
        majority_macro_f1=float(baseline),
        target_mde=target_mde,
    )


def _finished_cells(trials: Sequence[Trial]) -> dict:
    cells: dict = {}
    for trial in trials:
        if trial.mode != "search" and trial.status == Status.FINISHED and trial.seed is not None:
            cells.setdefault(trial.subset, {}).setdefault(trial.seed, trial)
    return cells


def _read_predictions(trial: Trial, split: str):
    """A trial's predictions of ``split``, checked against the hash its record holds (or why not)."""
    entry = (trial.record.get("predictions") or {}).get(split)
    if not entry:
        return (
            f"{trial.path} names no {split} predictions (a run of an earlier version, or one whose "
            f"{split} split is empty): re-run the trial to compare cells clip by clip"
        )
    path = storage.join(storage.parent(trial.path), entry["path"])
    try:
        data = storage.read_bytes(path)
    except (OSError, storage.StorageError) as err:
        raise AnalysisError(f"{path}: cannot be read ({err}); the record {trial.path} names it") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise AnalysisError(
            f"{path}: its sha256 is not the one {trial.path} records; the file was changed or replaced "
            "after the run: re-run the trial"
        )
    return pq.read_table(io.BytesIO(data))


def _lattice(tables: dict, seeds: list[int]) -> tuple[clustered.Lattice, list[str], int, int]:
    """Align the cells' tables on their common clips; refuse test sets that disagree."""
    first = tables[NO_AUX, seeds[0]]
    labels = [name.removeprefix("score_") for name in first.column_names if name.startswith("score_")]
    clip_ids = sorted(first.column("clip_id").to_pylist())
    reference = dict(zip(first.column("clip_id").to_pylist(), first.column("gold").to_pylist(), strict=True))
    predicted = np.zeros((len(LATTICE), len(seeds), len(clip_ids)), dtype=np.int64)
    for (subset, s), table in tables.items():
        rows = dict(zip(table.column("clip_id").to_pylist(), table.to_pylist(), strict=True))
        if sorted(rows) != clip_ids or any(rows[c]["gold"] != reference[c] for c in clip_ids):
            raise AnalysisError(
                f"the {subset_name(subset)} trial of seed {s} was scored on other clips or labels than the "
                "none trial of the same sweep: the runs did not use the same test set"
            )
        predicted[LATTICE.index(subset), seeds.index(s)] = [
            labels.index(rows[c]["predicted"]) for c in clip_ids
        ]
    videos = {v: i for i, v in enumerate(sorted(set(first.column("video_id").to_pylist())))}
    by_clip = dict(
        zip(first.column("clip_id").to_pylist(), first.column("video_id").to_pylist(), strict=True)
    )
    lattice = clustered.Lattice(
        gold=np.array([labels.index(reference[c]) for c in clip_ids]),
        video=np.array([videos[by_clip[c]] for c in clip_ids]),
        predicted=predicted,
        num_classes=len(labels),
    )
    return lattice, labels, len(clip_ids), len(videos)


def with_clip_inference(ablation: pd.DataFrame, clips) -> pd.DataFrame:
    """The ablation frame with the clip-level columns, and the majority-class baseline in ``attrs``."""
    result = ablation.copy()
    for column in tables.CLIP_COLUMNS:
        result[column] = math.nan if column != "resolved" else None
    for index, row in result.iterrows():
        found = clips.vs_none(records.parse_subset(str(row["subset"])))
        if found is not None:
            result.loc[index, ["vs_none_low", "vs_none_high", "holm_p", "mde"]] = [
                found.low,
                found.high,
                found.holm_p,
                found.mde,
            ]
            result.loc[index, "resolved"] = found.resolved
    result.attrs["majority"] = (clips.majority_label, clips.majority_macro_f1)
    result.attrs["clips"] = f"{clips.clips} clips from {clips.videos} source videos, {len(clips.seeds)} seeds"
    return result


def clustered_shapley_lines(clips) -> str:
    """The Shapley values with their clip-level intervals, Holm p and MDE (analysis.clip_inference)."""
    lines = [
        f"Shapley values at the clip level (95% intervals over the {clips.split} set's source videos and "
        f"the seeds; {clips.clips} clips, {clips.videos} videos, {len(clips.seeds)} seeds):"
    ]
    for task in TASKS:
        c = clips.shapley(task)
        p = "<0.001" if c.holm_p < 0.001 else f"{c.holm_p:.3f}"
        digits = tables.DIGITS
        lines.append(
            f"  {task:<8} Shapley {c.estimate:+.{digits}f} [{c.low:+.{digits}f}, {c.high:+.{digits}f}]   "
            f"Holm p = {p}   {'resolved' if c.resolved else 'not resolved'}   "
            + (f"MDE {c.mde:.{digits}f}" if not c.degenerate else "MDE n/a (no variation)")
        )
    return "\n".join(lines)
