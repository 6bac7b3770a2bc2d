"""Small, dependency-free statistics for seed-replicated ablations (numpy only; no scipy).

    python -m analysis report runs/sweeps/demo-ablation --out runs/sweeps/demo-ablation/report

- :func:`mean_std`: the per-cell summary of a table (sample std, ddof = 1, as papers report it).
- :func:`bootstrap_residual_means` (the default for intervals): seeds are blocks of a randomised block
  design. Fit ``y[S, seed] = μ_S + b_seed + e`` (additive), keep the fitted cell and seed effects, and
  resample the pooled residuals: every replicate keeps each seed's shared luck (e.g. a lucky data
  order) in every cell, so it cancels in a difference between cells, as in a paired test.
- :func:`bootstrap_seed_means`: resample whole *seeds* with replacement, every cell from the same
  drawn seeds (paired too). Its replicates never leave the range of the per-seed contrasts, so with
  few seeds a "95%" interval is the range of 2 or 3 numbers: it covers a true effect about 50% of the
  time with 2 seeds and 75% with 3 (a simulation in tests/test_analysis.py checks both methods).
  Use it with many seeds (10 or more), when the additive model is in doubt.
- :func:`percentile_interval`: the percentile bootstrap interval of a set of replicates.
- :func:`sign_flip_test`: exact (or Monte Carlo, seeded) paired permutation test of a mean difference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

# Enumerate every sign pattern up to 2^16 = 65,536 (a 16 × 65,536 matrix); Monte Carlo beyond.
EXACT_SIGN_FLIP_LIMIT = 16


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof = 1, n) of the finite values; NaN where undefined (n = 0, n = 1)."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    n = int(array.size)
    mean = float(array.mean()) if n else math.nan
    std = float(array.std(ddof=1)) if n > 1 else math.nan
    return mean, std, n


def nanmean_last_axis(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where every entry is NaN (without a RuntimeWarning)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_seed_means(cells: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Cell means under ``n_boot`` seed resamples.

    ``cells`` is (n_cells, n_seeds), NaN where a cell lacks that seed. Each replicate draws n_seeds
    seed columns with replacement, shared by every cell (the pairing), and takes the seed-adjusted
    cell means of the drawn table (:func:`additive_fit`; the plain means when it has no holes).
    Returns (n_cells, kept replicates); a replicate that leaves a cell with no value is dropped.
    """
    n_seeds = cells.shape[1]
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    resampled = np.moveaxis(cells[:, draws], 1, 0)  # (n_boot, n_cells, n_seeds)
    means = additive_fit(resampled)[0].T  # (n_cells, n_boot)
    keep = np.isfinite(means).all(axis=0)
    return means[:, keep]


def additive_fit(cells: np.ndarray, iterations: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of ``cells[..., c, k] = μ_c + b_k`` (Σ_k b_k = 0) to the finite entries.

    Returns the cell effects μ (shape ``cells.shape[:-1]``: the seed-adjusted cell means, equal to the
    plain means when every cell has every seed) and the seed effects b (``cells.shape[:-2] + (K,)``).
    Leading axes are independent tables (bootstrap replicates). Alternating means (backfitting) is
    exact after one pass on complete tables and converges on tables with holes.
    """
    cell_effect = nanmean_last_axis(cells)
    seed_effect = np.zeros((*cells.shape[:-2], cells.shape[-1]))
    for _ in range(iterations):
        previous = seed_effect
        seed_effect = nanmean_last_axis(np.swapaxes(cells - cell_effect[..., None], -1, -2))
        seed_effect = np.where(np.isfinite(seed_effect), seed_effect, 0.0)
        seed_effect = seed_effect - seed_effect.mean(axis=-1, keepdims=True)
        cell_effect = nanmean_last_axis(cells - seed_effect[..., None, :])
        if np.allclose(seed_effect, previous, rtol=0, atol=1e-13):
            break
    return cell_effect, seed_effect


def residual_dof(cells: np.ndarray) -> int:
    """Residual degrees of freedom of :func:`additive_fit`: finite entries − cells − (seeds − 1)."""
    return int(np.isfinite(cells).sum()) - cells.shape[0] - (cells.shape[1] - 1)


def bootstrap_residual_means(cells: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Seed-adjusted cell means (:func:`additive_fit`) under ``n_boot`` residual resamples.

    ``cells`` is (n_cells, n_seeds), NaN where a cell lacks that seed. Residuals of the fit are pooled
    and inflated by sqrt(N / dof) (the fit used up N − dof of their spread), drawn with replacement onto
    the finite entries, added to the fit, and the model refitted. Returns (n_cells, n_boot); an empty
    (n_cells, 0) array without residual degrees of freedom (e.g. a single seed).
    """
    finite = np.isfinite(cells)
    dof = residual_dof(cells)
    if dof <= 0:
        return np.empty((cells.shape[0], 0))
    cell_effect, seed_effect = additive_fit(cells)
    fitted = cell_effect[:, None] + seed_effect[None, :]
    pool = (cells - fitted)[finite]
    pool = pool * math.sqrt(pool.size / dof)
    draws = rng.choice(pool, size=(n_boot, *cells.shape))
    replicates = np.where(finite[None], fitted[None] + draws, np.nan)  # (n_boot, n_cells, n_seeds)
    if finite.all():
        return nanmean_last_axis(replicates).T  # the fit of a complete table is its row means
    return additive_fit(replicates)[0].T


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile-bootstrap bounds along the last axis."""
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail], axis=-1)
    return low, high


def sign_flip_test(differences: Sequence[float], n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of H0 "the paired differences are symmetric around 0" (sign-flip test).

    The statistic is the mean difference. Under H0 every difference is as likely to have the other
    sign, so the null distribution flips each sign independently: enumerated exactly for up to
    ``EXACT_SIGN_FLIP_LIMIT`` differences, else ``n_perm`` random flips with the add-one correction
    (a Monte Carlo p-value is never 0). NaN for no differences.
    """
    diffs = np.asarray(differences, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return math.nan
    observed = abs(diffs.mean())
    # A tolerance keeps ties (e.g. the identity flip itself) from being lost to rounding.
    tolerance = 1e-12 * max(1.0, float(np.abs(diffs).max()))
    if diffs.size <= EXACT_SIGN_FLIP_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=diffs.size)))
        null = np.abs(signs @ diffs) / diffs.size
        return float((null >= observed - tolerance).mean())
    signs = rng.choice((1.0, -1.0), size=(n_perm, diffs.size))
    null = np.abs(signs @ diffs) / diffs.size
    return float((1 + (null >= observed - tolerance).sum()) / (1 + n_perm))
