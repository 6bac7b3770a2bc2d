"""Speakers and recording settings: a speaker's face and voice, and each source video's background.

A speaker's :class:`SpeakerStyle` stays the same across all of their clips; it and
:func:`video_background` are drawn from their own seeded streams.

Used by the planning and the renderers of ``omnimer synth``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from omnimer.data.synthetic.config import STREAM_BACKGROUND, STREAM_SPEAKER, seeded_rng


@dataclass(frozen=True)
class SpeakerStyle:
    """A speaker's face and voice: what stays the same across all of their clips."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    face_width: float  # half-axes of the face ellipse, in frame units (frame = [-1, 1]²)
    face_height: float
    eye_spacing: float  # horizontal offset of each eye from the face centre
    eye_size: float
    brow_thickness: float
    mouth_width: float  # half-width of the relaxed mouth
    base_f0: float  # Hz
    formant_scale: float  # vocal-tract length: higher voices get higher formants
    speech_rate: float  # multiplies the emotion's syllable rate
    head_motion: float  # amplitude of the idle head sway


_SKIN_TONES = (
    (255, 224, 196),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (161, 102, 54),
    (112, 72, 45),
)
_HAIR_COLOURS = ((25, 18, 14), (45, 30, 20), (15, 15, 18), (70, 45, 28), (95, 70, 50))
_IRIS_COLOURS = ((60, 35, 20), (45, 30, 25), (30, 25, 20), (80, 60, 40))


def speaker_style(seed: int, speaker_key: int) -> SpeakerStyle:
    """The face and voice of speaker ``speaker_key`` (any non-negative int) under ``seed``."""
    rng = seeded_rng(seed, STREAM_SPEAKER, speaker_key)
    skin = np.asarray(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], float) + rng.normal(0, 6, 3)
    hair = np.asarray(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], float) + rng.normal(0, 4, 3)
    lips = skin * 0.72 + np.array([55.0, 5.0, 15.0])
    base_f0 = float(rng.uniform(110.0, 230.0))
    return SpeakerStyle(
        skin=_rgb(skin),
        hair=_rgb(hair),
        lips=_rgb(lips),
        iris=_rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]),
        face_width=float(rng.uniform(0.54, 0.66)),
        face_height=float(rng.uniform(0.74, 0.84)),
        eye_spacing=float(rng.uniform(0.22, 0.29)),
        eye_size=float(rng.uniform(0.9, 1.1)),
        brow_thickness=float(rng.uniform(0.03, 0.045)),
        mouth_width=float(rng.uniform(0.19, 0.24)),
        base_f0=base_f0,
        # Higher-pitched voices tend to come from shorter vocal tracts; a loose link is enough.
        formant_scale=float(
            np.clip(0.85 + (base_f0 - 110.0) / 120.0 * 0.25 + rng.normal(0, 0.03), 0.82, 1.15)
        ),
        speech_rate=float(rng.uniform(0.9, 1.1)),
        head_motion=float(rng.uniform(0.5, 1.0)),
    )


def video_background(seed: int, video: int) -> tuple[float, float, float]:
    """A muted background colour per source video (each video is its own recording setting)."""
    rng = seeded_rng(seed, STREAM_BACKGROUND, video)
    return _rgb(rng.uniform(70, 200, 3) * 0.6 + 128 * 0.4)


def _rgb(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(np.clip(v, 0, 255)) for v in values)
    return (round(r, 2), round(g, 2), round(b, 2))
