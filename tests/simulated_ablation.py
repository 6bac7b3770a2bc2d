"""Simulated per-clip predictions of ablation cells with a known effect, for the tests of the analysis's
clustered inference (tests/test_clustered.py).

A test set is drawn from a population like IndoMER's: ``videos`` source videos of about ``clips / videos``
clips each, every clip's gold class drawn from IndoMER's test distribution (262 netral, 39
kebahagiaan, 32 kesedihan, 13 kemarahan, 5 jijik, 4 ketakutan, 1 surprise in 356), so that a small
class is sometimes absent. Each clip has a difficulty shared by every cell (its own plus its video's),
and each (cell, seed) a training-noise term partly shared by every cell of that seed. A clip is
predicted right with probability sigmoid(skill + cell effect − difficulty + noise); a wrong prediction
is ``netral`` half of the time, else a uniformly drawn other class.
"""

from __future__ import annotations

import dataclasses

import numpy as np

INDOMER_TEST = np.array([262, 39, 32, 13, 5, 4, 1], dtype=float)


@dataclasses.dataclass(frozen=True)
class Population:
    """How experiments are drawn: test-set shape, difficulty spreads, seed noise, cell effects."""

    videos: int = 40
    clips: int = 356
    video_sd: float = 0.8
    clip_sd: float = 1.0
    seed_shared_sd: float = 0.25
    seed_cell_sd: float = 0.15
    skill: float = 0.6
    effects: tuple[float, ...] = (0.0, 0.0)  # one per cell, on the logit scale
    seeds: int = 3


def draw(population: Population, rng: np.random.Generator):
    """One experiment: ``(gold[clips], video[clips], predicted[cells, seeds, clips])``."""
    classes = len(INDOMER_TEST)
    sizes = rng.multinomial(
        population.clips - population.videos, np.full(population.videos, 1 / population.videos)
    )
    video = np.repeat(np.arange(population.videos), sizes + 1)  # every video has a clip
    gold = rng.choice(classes, size=video.size, p=INDOMER_TEST / INDOMER_TEST.sum())
    difficulty = rng.normal(0, population.video_sd, population.videos)[video] + rng.normal(
        0, population.clip_sd, video.size
    )
    cells = len(population.effects)
    shared = rng.normal(0, population.seed_shared_sd, population.seeds)
    noise = shared[None, :] + rng.normal(0, population.seed_cell_sd, (cells, population.seeds))
    logit = (
        population.skill
        + np.asarray(population.effects)[:, None, None]
        + noise[:, :, None]
        - difficulty[None, None, :]
        + rng.normal(0, 0.5, (cells, population.seeds, video.size))
    )
    right = rng.random(logit.shape) < 1 / (1 + np.exp(-logit))
    other = rng.integers(1, classes, size=logit.shape)  # a class other than gold: gold + k mod C
    wrong = np.where(rng.random(logit.shape) < 0.5, 0, (gold[None, None, :] + other) % classes)
    wrong = np.where(wrong == gold[None, None, :], (gold[None, None, :] + 1) % classes, wrong)
    predicted = np.where(right, gold[None, None, :], wrong)
    return gold, video, predicted
