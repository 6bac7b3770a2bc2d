"""What to render (:class:`SynthConfig`) and the solved probability that all modalities agree.

Also the constants every part of the synthetic corpus shares (sample rate, label names) and its seeded
random streams: each clip draws from generators seeded with ``(seed, stream, key...)``, so a clip's
media never shift when another clip's labels change and clips render in any order.

Used by ``omnimer synth`` (its flags) and every module of the synthetic corpus.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from omnimer.labels import INDOMER_EMOTION, INDOMER_SENTIMENT

SAMPLE_RATE = 16_000
EMOTIONS: tuple[str, ...] = INDOMER_EMOTION.names
SENTIMENTS: tuple[str, ...] = INDOMER_SENTIMENT.names
MODALITIES: tuple[str, ...] = ("text", "audio", "video")
# ``label_in``: every modality expresses the clip's label at the agreement rates, or only one does.
LABEL_IN: tuple[str, ...] = ("all", *MODALITIES)


# Independent random streams of one seed: a clip's media never shifts when its labels change.
STREAM_LAYOUT, STREAM_LABELS, STREAM_RENDER, STREAM_SPEAKER, STREAM_BACKGROUND = range(5)


def seeded_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The generator of ``stream`` for ``keys`` (a clip index, a speaker, a video) under ``seed``."""
    return np.random.default_rng([seed, stream, *keys])


def _agreement_with_consensus(c: float, rates: Sequence[float]) -> float:
    """P(text == audio == video) when all three copy the label with probability ``c``.

    Otherwise modality m agrees independently with q_m = (p_m - c) / (1 - c) and, when it disagrees,
    picks one of the two other sentiments uniformly: all three are equal when all agree, or when all
    disagree and pick the same wrong sentiment (2 · (1/2)³ = 1/4 of those cases).
    """
    if c >= 1.0:
        return 1.0
    q = [(p - c) / (1.0 - c) for p in rates]
    return c + (1.0 - c) * (math.prod(q) + math.prod(1.0 - x for x in q) / 4.0)


@functools.lru_cache(maxsize=64)  # called once per planned clip; a pure function of four floats
def consensus_probability(text: float, audio: float, video: float, all_agree: float) -> float:
    """Solve (bisection) for the probability that all modalities copy the overall sentiment.

    Raises ``ValueError`` quoting the rates when ``all_agree`` is outside what the generative model
    can produce for these per-modality rates.
    """
    rates = (text, audio, video)
    lo, hi = 0.0, min(rates)
    f_lo, f_hi = _agreement_with_consensus(lo, rates), _agreement_with_consensus(hi, rates)
    if not f_lo - 1e-9 <= all_agree <= f_hi + 1e-9:
        raise ValueError(
            f"all_modalities_agree={all_agree!r} is infeasible with text_agreement={text!r}, "
            f"audio_agreement={audio!r}, video_agreement={video!r}: it must lie in [{f_lo:.4f}, {f_hi:.4f}]"
        )
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if _agreement_with_consensus(mid, rates) < all_agree:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class SynthConfig:
    """What to render. Validated on construction; errors quote the bad value."""

    clips: int = field(default=200, metadata={"help": "number of clips (ignored with from_annotations)"})
    speakers: int = field(default=20, metadata={"help": "number of speakers, each with one or more videos"})
    seed: int = field(default=0, metadata={"help": "seed of everything (layout, labels, media)"})
    seconds: float = field(default=2.0, metadata={"help": "clip duration in seconds (same for all clips)"})
    fps: int = field(default=8, metadata={"help": "video frame rate of the rendered mp4"})
    size: int = field(default=96, metadata={"help": "square video size in pixels (even, for yuv420p)"})
    text_agreement: float = field(default=0.68, metadata={"help": "P(text_sentiment == sentiment)"})
    audio_agreement: float = field(default=0.60, metadata={"help": "P(audio_sentiment == sentiment)"})
    video_agreement: float = field(default=0.64, metadata={"help": "P(video_sentiment == sentiment)"})
    all_modalities_agree: float = field(
        default=0.38, metadata={"help": "P(text == audio == video sentiment); IndoMER measures 0.379"}
    )
    test_fraction: float = field(
        default=0.18, metadata={"help": "share of clips (whole source videos) in the published val split"}
    )
    label_in: str = field(
        default="all",
        metadata={
            "help": "all: every modality expresses the clip's emotion at the agreement rates above; text, "
            "audio or video: only that one does (always), and the other two express an emotion drawn "
            "independently of the clip's label (a planted effect: only that modality and its aux "
            "target carry the label)"
        },
    )

    def __post_init__(self) -> None:
        for name in ("clips", "speakers", "seed", "fps", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.clips < 2:
            raise ValueError(f"clips must be >= 2 (one video per split at least), got {self.clips!r}")
        if not 1 <= self.speakers <= self.clips:
            raise ValueError(f"speakers must be in [1, clips={self.clips}], got {self.speakers!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if not isinstance(self.seconds, int | float) or not 0.25 <= self.seconds <= 30.0:
            raise ValueError(f"seconds must be in [0.25, 30], got {self.seconds!r}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be in [1, 60], got {self.fps!r}")
        if not 32 <= self.size <= 512 or self.size % 2:
            raise ValueError(f"size must be an even number of pixels in [32, 512], got {self.size!r}")
        for name in ("text_agreement", "audio_agreement", "video_agreement", "all_modalities_agree"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.test_fraction, int | float) or not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if self.label_in not in LABEL_IN:
            raise ValueError(f"label_in must be one of {', '.join(LABEL_IN)}, got {self.label_in!r}")
        self.consensus()  # raises when the agreement rates are jointly infeasible

    def consensus(self) -> float:
        """P(all three modalities copy the overall sentiment), solved from the agreement rates."""
        return consensus_probability(
            self.text_agreement, self.audio_agreement, self.video_agreement, self.all_modalities_agree
        )

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.fps))

    @property
    def samples(self) -> int:
        return round(self.seconds * SAMPLE_RATE)
