"""Clustered, paired inference on an ablation's per-clip predictions: intervals that cover both the
training seeds and the finite test set, p-values with Holm's adjustment, and the smallest
effect this test set and these seeds can resolve.

    python -m analysis summary runs/demo/sweeps/demo     # the ablation table shows them

Why: the test set is small where macro-F1 is sensitive (IndoMER's has 1 surprise, 4 ketakutan and 5
jijik clips), and clips of one source video are not independent. So a contrast's variance has two
sources, estimated apart and added:

- the test set: within each seed, the test set's source videos are resampled with replacement (a
  video's clips move together) and the contrast recomputed from the clips' predictions; the variance
  of its seed mean, less the clip × seed part that the seeds' spread already holds, is the part that
  more seeds would not shrink;
- the seeds: the variance of the contrast across seeds (cells paired by seed) over the number of seeds.

Resampling videos and seeds together (a two-level bootstrap) counts the clip × seed variation twice
in this crossed design: on simulated ablations its 95% intervals covered 99% of the time. The sum
above, with a t quantile at Satterthwaite's degrees of freedom, covered 94.8% (3 seeds), 95.8% (5
and 10 seeds) and 95.3% (no effect), 1,200 simulated ablations each (600 with 10 seeds);
tests/test_clustered.py keeps that checked. The p-value uses the same
variance with t at the seeds' own S − 1 degrees of freedom: seed differences of macro-F1 are
heavy-tailed (a rare class's few clips flip), and with the intervals' degrees of freedom a family of
ten Holm-adjusted tests with no effect anywhere rejected in 7.5% of the simulations; with S − 1, in
none. (A permutation test that swaps two cells' predictions per seed and source video rejected far
more often still, 12.5%: swapping videos mixes the cells' training noise instead of reproducing it;
swapping whole seeds has 2^S outcomes, never below p = 0.25 with 3 seeds.) The minimum detectable
effect is the |difference| this test finds with 80% power at α = 0.05 (two-sided): with 3 seeds,
(t₂(0.975) + t₂(0.8)) × its standard error, about 5.4 standard errors; more seeds shrink both the
seeds' variance part and the t quantiles.

Called by :mod:`analysis.report` (the ablation table and the report) with the predictions the runs
wrote (:mod:`omnimer.training.predictions`); the simulation test (tests/test_clustered.py) checks the
coverage and the false-positive rate on data with a known effect.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

DEFAULT_BOOTSTRAP = 2000
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Lattice:
    """The predictions of a lattice's cells on one test set: ``predicted[cell, seed, clip]`` are class
    indices, ``gold[clip]`` the truth, ``video[clip]`` the clip's source video (0..V-1)."""

    gold: np.ndarray
    video: np.ndarray
    predicted: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        cells, seeds, clips = self.predicted.shape
        if self.gold.shape != (clips,) or self.video.shape != (clips,):
            raise ValueError(f"gold {self.gold.shape} and video {self.video.shape} must have {clips} clips")
        if clips == 0 or seeds == 0:
            raise ValueError("no clips or no seeds to infer from")

    @property
    def videos(self) -> int:
        return int(self.video.max()) + 1

    def video_confusions(self) -> np.ndarray:
        """Per cell, seed and video, the counts of (gold, predicted) pairs: ``[cells, seeds, V, C²]``."""
        cells, seeds, _ = self.predicted.shape
        c = self.num_classes
        pair = self.gold[None, None, :] * c + self.predicted  # [cells, seeds, clips]
        out = np.zeros((cells, seeds, self.videos, c * c))
        for cell in range(cells):
            for seed in range(seeds):
                np.add.at(out[cell, seed], (self.video, pair[cell, seed]), 1.0)
        return out


def macro_f1(counts: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 over all classes from (weighted) confusion counts ``[..., C²]`` (as
    :func:`omnimer.metrics.classification_metrics`: a class never true nor predicted counts as 0)."""
    confusion = counts.reshape(*counts.shape[:-1], num_classes, num_classes)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp, dtype=float), where=denominator > 0)
    return f1.mean(axis=-1)


def cell_scores(lattice: Lattice) -> np.ndarray:
    """Macro-F1 of every cell and seed on the whole test set: ``[cells, seeds]``."""
    return macro_f1(lattice.video_confusions().sum(axis=2), lattice.num_classes)


@dataclasses.dataclass(frozen=True)
class Resamples:
    """Every cell and seed's macro-F1 on the whole test set (``whole[cells, seeds]``) and on
    ``B`` resamples of its source videos, the same resamples for every cell and seed
    (``resampled[B, cells, seeds]``)."""

    whole: np.ndarray
    resampled: np.ndarray
    videos: int


def resample_videos(lattice: Lattice, n_boot: int, rng: np.random.Generator) -> Resamples:
    """Macro-F1 of every cell and seed on ``n_boot`` resamples (with replacement) of the source videos."""
    confusions = lattice.video_confusions()  # [cells, seeds, V, C²]
    videos = confusions.shape[2]
    weights = rng.multinomial(videos, np.full(videos, 1 / videos), size=n_boot).astype(float)
    resampled = macro_f1(np.einsum("bv,ksvj->bksj", weights, confusions), lattice.num_classes)
    return Resamples(macro_f1(confusions.sum(axis=2), lattice.num_classes), resampled, videos)


@dataclasses.dataclass(frozen=True)
class Contrast:
    """A contrast of the cells' seed-mean macro-F1 (weights over the cells): its estimate, interval and
    p-value, and its variance split into the test set's part and the seeds' part."""

    name: str
    estimate: float
    low: float
    high: float
    p_value: float
    var_test_set: float  # what more seeds would not shrink
    var_per_seed: float  # the across-seed variance of the contrast (NaN with one seed)
    seeds: int
    df: float  # of the interval's t (Satterthwaite)
    tail_df: float  # of the p-value's t: the seeds' own (S - 1)
    holm_p: float = math.nan

    @property
    def se(self) -> float:
        seeds_part = self.var_per_seed / self.seeds if self.seeds > 1 else 0.0
        return math.sqrt(self.var_test_set + seeds_part)

    @property
    def degenerate(self) -> bool:
        """No variation at all: the two sides predicted every clip alike in every seed (e.g. two
        cells that both collapsed to the majority class), so there is nothing to scale an MDE by."""
        return self.se == 0.0

    @property
    def mde(self) -> float:
        """The smallest |effect| the test finds with 80% power at α = 0.05 (two-sided), these seeds;
        NaN for a :attr:`degenerate` contrast (its zero-width interval is no evidence of precision)."""
        return math.nan if self.degenerate else detectable(self.se, self.tail_df)

    def mde_with(self, seeds: int) -> float:
        """The minimum detectable effect with ``seeds`` seeds on this test set."""
        if seeds < 2 or not math.isfinite(self.var_per_seed):
            return math.nan
        return detectable(math.sqrt(self.var_test_set + self.var_per_seed / seeds), seeds - 1)

    def seeds_for(self, target: float, most: int = 200) -> int | None:
        """The fewest seeds (up to ``most``) whose MDE is at most ``target``; None if none is."""
        for seeds in range(2, most + 1):
            if self.mde_with(seeds) <= target:
                return seeds
        return None

    @property
    def resolved(self) -> bool:
        """Resolved: its Holm-adjusted p-value is below 0.05 (and its interval excludes 0)."""
        return self.holm_p < 0.05 and (self.low > 0 or self.high < 0)


def contrast(name: str, weights: np.ndarray, resamples: Resamples, level: float = LEVEL) -> Contrast:
    """The contrast ``weights @ v`` of the cells' seed-mean macro-F1 ``v``: estimate, interval and
    two-sided p-value, both from t at Satterthwaite's degrees of freedom on the summed variance."""
    per_seed = weights @ resamples.whole  # [seeds]: the contrast in each seed, whole test set
    replicates = np.einsum("k,bks->bs", weights, resamples.resampled)  # [B, seeds]
    seeds = per_seed.size
    var_mean = float(replicates.mean(axis=1).var(ddof=1))
    if seeds > 1:
        var_within = float(replicates.var(axis=0, ddof=1).mean())
        clip_by_seed = (var_within - var_mean) / (seeds - 1)
        var_test_set = max(var_mean - clip_by_seed, 0.0)
        # Across S seeds the spread has S - 1 degrees of freedom: with 3 seeds it is sometimes tiny by
        # chance. The clips' own seed-to-seed variation (clip_by_seed × S, from the video resamples,
        # many degrees of freedom) is a floor under it.
        spread, floor = float(per_seed.var(ddof=1)), clip_by_seed * seeds
        var_per_seed = max(spread, floor)
        seeds_df = seeds - 1 if spread >= floor else (resamples.videos - 1) * (seeds - 1)
        seeds_part = var_per_seed / seeds
        total = var_test_set + seeds_part
        denominator = var_test_set**2 / (resamples.videos - 1) + seeds_part**2 / seeds_df
        df = total**2 / denominator if denominator > 0 else math.inf
    else:  # one seed: the seeds' spread cannot be estimated; the test set's is all there is
        var_test_set, var_per_seed, total, df = var_mean, math.nan, var_mean, resamples.videos - 1.0
    estimate = float(per_seed.mean())
    half = float(stats.t.ppf((1 + level) / 2, df)) * math.sqrt(total)
    # The p-value takes t at the seeds' own degrees of freedom (S - 1; the videos' with one seed): the
    # seed differences of macro-F1 are heavy-tailed (a rare class's few clips flip), and a family's
    # Holm adjustment leans on the far tail.
    tail_df = seeds - 1 if seeds > 1 else df
    p_value = 2 * float(stats.t.sf(abs(estimate) / math.sqrt(total), tail_df)) if total > 0 else 1.0
    return Contrast(
        name=name,
        estimate=estimate,
        low=estimate - half,
        high=estimate + half,
        p_value=p_value,
        var_test_set=var_test_set,
        var_per_seed=var_per_seed,
        seeds=seeds,
        df=df,
        tail_df=tail_df,
    )


def detectable(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The |effect| a two-sided t-test at ``alpha`` with ``df`` degrees of freedom finds with ``power``."""
    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se


def holm(contrasts: list[Contrast]) -> list[Contrast]:
    """The contrasts with Holm's step-down adjusted p-values (the family is the list)."""
    order = sorted(range(len(contrasts)), key=lambda i: contrasts[i].p_value)
    adjusted = [0.0] * len(contrasts)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(contrasts) - rank) * contrasts[index].p_value))
        adjusted[index] = running
    return [dataclasses.replace(c, holm_p=p) for c, p in zip(contrasts, adjusted, strict=True)]
