"""How much each auxiliary task contributes: main effects, pairwise interactions, Shapley values.

    python -m analysis tables runs/sweeps/demo-ablation      # prints them under the ablation table

The ablation is a full 2³ factorial over {text, face, prosody} × seeds. Write v(S) for the mean
metric (default: test macro-F1) of the finished trials of subset S (seed-adjusted when some subset
lacks a seed: see :func:`analysis.stats.additive_fit`). Every quantity here is a linear
contrast of the eight cell means, so one weight matrix per quantity serves both the estimate and each
bootstrap replicate:

- main effect of task m: mean of v(S) over the 4 subsets with m − mean over the 4 without;
- interaction a×b: the difference of differences v(ab) − v(a) − v(b) + v(∅), averaged over the third
  task being off and on (a purely additive lattice gives 0);
- Shapley value of m: Σ_{S ∌ m} |S|!(3−|S|−1)!/3! · (v(S ∪ {m}) − v(S)); the three sum to
  v(all) − v(none) (efficiency), whatever the data.

Uncertainty: seed-paired percentile bootstrap intervals (by default residuals of the additive
subset + seed model are resampled; ``ci_method="seeds"`` resamples whole seeds; see
:mod:`analysis.stats` for why the default) and, per task, a sign-flip permutation test over the
seed-paired differences v_seed(S ∪ {m}) − v_seed(S).
All of it needs the whole lattice: with a subset missing the result says which, and holds no numbers.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import stats
from omnimer.subsets import LATTICE, TASKS, Subset, subset_name
from omnimer.training.record import Status

log = logging.getLogger(__name__)

PAIRS = tuple(itertools.combinations(range(len(TASKS)), 2))
DEFAULT_BOOTSTRAP = 2000
DEFAULT_PERMUTATIONS = 20000
CI_METHODS = ("residuals", "seeds")


def _index(subset: Subset) -> int:
    return LATTICE.index(subset)


def _with(subset: Subset, task: int, on: bool) -> Subset:
    flags = list(subset)
    flags[task] = on
    return tuple(flags)  # type: ignore[return-value]


def shapley_weights() -> np.ndarray:
    """(3, 8) matrix W with Shapley values = W @ v over :data:`LATTICE` order."""
    players = len(TASKS)
    weights = np.zeros((players, len(LATTICE)))
    for task in range(players):
        for subset in LATTICE:
            if subset[task]:
                continue
            size = sum(subset)
            weight = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
            weights[task, _index(_with(subset, task, True))] += weight
            weights[task, _index(subset)] -= weight
    return weights


def main_effect_weights() -> np.ndarray:
    """(3, 8) matrix: +1/4 on the subsets with the task, −1/4 on those without."""
    half = len(LATTICE) / 2
    return np.array([[1 / half if s[task] else -1 / half for s in LATTICE] for task in range(len(TASKS))])


def interaction_weights() -> np.ndarray:
    """(3, 8) matrix, one row per pair in :data:`PAIRS`: v(ab)−v(a)−v(b)+v(∅) averaged over the rest."""
    others = len(LATTICE) / 4  # the settings of the remaining task(s), averaged over
    rows = []
    for a, b in PAIRS:
        rows.append([(1.0 if s[a] == s[b] else -1.0) / others for s in LATTICE])
    return np.array(rows)


def pair_name(pair: tuple[int, int]) -> str:
    return f"{TASKS[pair[0]]}×{TASKS[pair[1]]}"


def shapley_values(cell_means: np.ndarray) -> np.ndarray:
    """Exact Shapley value of each task over the 2³ lattice (cell means in :data:`LATTICE` order)."""
    return shapley_weights() @ cell_means


# ------------------------------------------------------------------------------------ cells


def cell_matrix(frame: pd.DataFrame, metric: str, split: str) -> tuple[np.ndarray, list]:
    """(8, n_seeds) metric values of finished non-search trials, NaN where a (subset, seed) is missing.

    Trials repeated under one subset and seed (e.g. the same ablation in two experiment dirs) are
    averaged into one value, so a seed still counts once in the pairing.
    """
    rows = frame[
        (frame["split"] == split) & (frame["mode"] != "search") & (frame["status"] == Status.FINISHED)
    ]
    rows = rows[np.isfinite(rows[metric].astype(float))]
    seeds = sorted({-1 if pd.isna(s) else int(s) for s in rows["seed"]})
    cells = np.full((len(LATTICE), len(seeds)), np.nan)
    for (subset_key, seed), group in rows.groupby(["subset", "seed"], dropna=False):
        if len(group) > 1:
            log.info("subset %s seed %s has %d finished trials; averaging them", subset_key, seed, len(group))
        first = group.iloc[0]
        subset = tuple(bool(first[task]) for task in TASKS)
        column = seeds.index(-1 if pd.isna(seed) else int(seed))
        cells[_index(subset), column] = float(group[metric].mean())  # type: ignore[arg-type]
    return cells, seeds


# ------------------------------------------------------------------------------------ the result


@dataclass(frozen=True)
class Effect:
    """One attributed quantity with its bootstrap interval (NaN when fewer than 2 seeds)."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float = math.nan


@dataclass(frozen=True)
class Attribution:
    """Main effects, interactions and Shapley values of one metric, or why they are unavailable."""

    metric: str
    split: str
    cell_means: dict[str, float]
    seeds: list
    missing: list[str]
    n_boot: int
    level: float
    ci_method: str
    main_effects: list[Effect] = field(default_factory=list)
    interactions: list[Effect] = field(default_factory=list)
    shapley: list[Effect] = field(default_factory=list)
    note: str = ""

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def interval_text(self) -> str:
        """How the intervals were made, for captions: method, replicates, seeds (or why none)."""
        method = {
            "residuals": "seed-paired residual bootstrap",
            "seeds": "bootstrap over seeds",
        }[self.ci_method]
        if self.n_boot == 0:
            return f"no intervals: {self.note}" if self.note else "no intervals"
        return f"{self.level:.0%} {method}, {self.n_boot} replicates, {len(self.seeds)} seeds"

    @property
    def total(self) -> float:
        """v(all) − v(none): what the Shapley values share out."""
        names = [subset_name(s) for s in (LATTICE[-1], LATTICE[0])]
        return self.cell_means.get(names[0], math.nan) - self.cell_means.get(names[1], math.nan)


def _effects(names: list[str], estimates: np.ndarray, replicates: np.ndarray | None, level: float):
    if replicates is None or replicates.shape[-1] == 0:
        low = high = np.full(len(names), np.nan)
    else:
        low, high = stats.percentile_interval(replicates, level)
    return [
        Effect(name, float(e), float(lo), float(hi))
        for name, e, lo, hi in zip(names, estimates, low, high, strict=True)
    ]


def _paired_differences(cells: np.ndarray, task: int) -> np.ndarray:
    diffs = []
    for subset in LATTICE:
        if not subset[task]:
            diffs.append(cells[_index(_with(subset, task, True))] - cells[_index(subset)])
    flat = np.concatenate(diffs)
    return flat[np.isfinite(flat)]


def attribute(
    frame: pd.DataFrame,
    metric: str = "macro_f1",
    split: str = "test",
    n_boot: int = DEFAULT_BOOTSTRAP,
    n_perm: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    level: float = 0.95,
    ci_method: str = "residuals",
) -> Attribution:
    """Attribute ``metric`` on ``split`` to the aux tasks; ``frame`` is a tidy table of one target.

    ``seed`` seeds the bootstrap and the Monte Carlo permutations, so a report is reproducible.
    """
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method {ci_method!r} is not one of {', '.join(CI_METHODS)}")
    cells, seeds = cell_matrix(frame, metric, split)
    # Seed-adjusted cell means: a subset that lost a seed is not credited or blamed for that seed's
    # luck. With every seed in every subset they are the plain means of the ablation table.
    means = stats.additive_fit(cells)[0] if cells.size else np.full(len(LATTICE), np.nan)
    cell_means = {subset_name(s): float(m) for s, m in zip(LATTICE, means, strict=True) if np.isfinite(m)}
    missing = [subset_name(s) for s, m in zip(LATTICE, means, strict=True) if not np.isfinite(m)]
    base = {
        "metric": metric,
        "split": split,
        "cell_means": cell_means,
        "seeds": seeds,
        "level": level,
        "ci_method": ci_method,
    }
    if missing:
        note = (
            f"unavailable: no finished trial for subset(s) {', '.join(missing)}; main effects, "
            "interactions and Shapley values need all 8 subsets of the lattice"
        )
        log.info("attribution of %s %s %s", split, metric, note)
        return Attribution(**base, missing=missing, n_boot=0, note=note)

    rng = np.random.default_rng(seed)
    replicates = None
    note = ""
    if len(seeds) < 2:
        note = "intervals need at least 2 seeds"
    elif ci_method == "seeds":
        replicates = stats.bootstrap_seed_means(cells, n_boot, rng)
    else:
        replicates = stats.bootstrap_residual_means(cells, n_boot, rng)
    if replicates is not None and replicates.shape[1] == 0:
        note, replicates = "intervals need residual degrees of freedom (more seeds)", None
    weights = {"main": main_effect_weights(), "pair": interaction_weights(), "shapley": shapley_weights()}
    boot = {k: (w @ replicates if replicates is not None else None) for k, w in weights.items()}
    main = _effects(list(TASKS), weights["main"] @ means, boot["main"], level)
    main = [
        Effect(
            e.name,
            e.estimate,
            e.ci_low,
            e.ci_high,
            stats.sign_flip_test(_paired_differences(cells, i), n_perm, rng),
        )
        for i, e in enumerate(main)
    ]
    return Attribution(
        **base,
        missing=[],
        n_boot=0 if replicates is None else int(replicates.shape[1]),
        main_effects=main,
        interactions=_effects([pair_name(p) for p in PAIRS], weights["pair"] @ means, boot["pair"], level),
        shapley=_effects(list(TASKS), shapley_values(means), boot["shapley"], level),
        note=note,
    )
