"""Label sets of the supported datasets and their verbalizers.

A :class:`LabelSet` holds the canonical label names exactly as they appear in a dataset's manifests
(IndoMER uses Indonesian words), the English display names used in tables, and the verbalizer the
model answers with. Label sets are addressed by a short name (``"indomer-emotion"``) so that
``dataset.json`` and training configs can refer to them.

Used by the format readers (:mod:`omnimer.data.formats`), ingest, the training run (the label set
of a run's ``dataset.json``: :func:`label_set_of`) and the synthetic corpus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LabelSet:
    """An ordered, closed set of class labels.

    ``names`` are canonical (as stored in shards), ``display`` their English names for tables, and
    ``verbalizers`` the answer words the model is trained to produce (default: the canonical names).
    """

    key: str
    task: str  # "emotion" or "sentiment"
    names: tuple[str, ...]
    display: tuple[str, ...]
    verbalizers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"label set {self.key!r} has duplicate names: {self.names}")
        if len(self.display) != len(self.names):
            raise ValueError(
                f"label set {self.key!r}: {len(self.display)} display names for {len(self.names)} labels"
            )
        if not self.verbalizers:
            object.__setattr__(self, "verbalizers", self.names)
        if len(self.verbalizers) != len(self.names):
            raise ValueError(
                f"label set {self.key!r}: {len(self.verbalizers)} verbalizers for {len(self.names)} labels"
            )

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        """Class index of a canonical name; raises ``KeyError`` naming the allowed values."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"{name!r} is not a label of {self.key} (expected one of {', '.join(self.names)})"
            ) from None

    def display_name(self, name: str) -> str:
        return self.display[self.index(name)]

    def to_json(self) -> dict:
        return {"key": self.key, "task": self.task, "names": list(self.names), "display": list(self.display)}


INDOMER_EMOTION = LabelSet(
    key="indomer-emotion",
    task="emotion",
    names=("netral", "kebahagiaan", "kesedihan", "kemarahan", "jijik", "ketakutan", "surprise"),
    display=("neutral", "happiness", "sadness", "anger", "disgust", "fear", "surprise"),
)
INDOMER_SENTIMENT = LabelSet(
    key="indomer-sentiment",
    task="sentiment",
    names=("negatif", "netral", "positif"),
    display=("negative", "neutral", "positive"),
)
CHSIMS_SENTIMENT = LabelSet(
    key="chsims-sentiment",
    task="sentiment",
    names=("negative", "neutral", "positive"),
    display=("negative", "neutral", "positive"),
)
MELD_EMOTION = LabelSet(
    key="meld-emotion",
    task="emotion",
    names=("neutral", "joy", "sadness", "anger", "disgust", "fear", "surprise"),
    display=("neutral", "joy", "sadness", "anger", "disgust", "fear", "surprise"),
)
MELD_SENTIMENT = LabelSet(
    key="meld-sentiment",
    task="sentiment",
    names=("negative", "neutral", "positive"),
    display=("negative", "neutral", "positive"),
)

LABEL_SETS: dict[str, LabelSet] = {
    s.key: s for s in (INDOMER_EMOTION, INDOMER_SENTIMENT, CHSIMS_SENTIMENT, MELD_EMOTION, MELD_SENTIMENT)
}

# Label sets per dataset format: (emotion, sentiment); None where the dataset has no such label.
FORMAT_LABEL_SETS: dict[str, tuple[LabelSet | None, LabelSet]] = {
    "indomer": (INDOMER_EMOTION, INDOMER_SENTIMENT),
    "chsims": (None, CHSIMS_SENTIMENT),
    "meld": (MELD_EMOTION, MELD_SENTIMENT),
}

# IndoMER's annotations tie each emotion to one overall sentiment (measured on the published
# Annotations.csv: every clip follows this map). The synthetic corpus uses it to derive sentiments.
INDOMER_EMOTION_SENTIMENT: dict[str, str] = {
    "netral": "netral",
    "kebahagiaan": "positif",
    "surprise": "positif",
    "kesedihan": "negatif",
    "kemarahan": "negatif",
    "jijik": "negatif",
    "ketakutan": "negatif",
}

# CH-SIMS regression scores lie in [-1, 1]; DESIGN §3 fixes the 3-class cut points.
CHSIMS_NEGATIVE_MAX = -0.1
CHSIMS_POSITIVE_MIN = 0.1


def get_label_set(key: str) -> LabelSet:
    """Look a label set up by key, with the known keys in the error message."""
    try:
        return LABEL_SETS[key]
    except KeyError:
        raise KeyError(f"unknown label set {key!r}; known: {', '.join(sorted(LABEL_SETS))}") from None


def chsims_sentiment(score: float) -> str:
    """Map a CH-SIMS regression score in [-1, 1] to its 3-class sentiment name."""
    if not math.isfinite(score) or score < -1.0 or score > 1.0:
        raise ValueError(f"CH-SIMS score {score!r} is outside [-1, 1]")
    if score <= CHSIMS_NEGATIVE_MAX:
        return "negative"
    if score >= CHSIMS_POSITIVE_MIN:
        return "positive"
    return "neutral"


def label_set_of(info: dict, target: str) -> LabelSet:
    """The label set of ``target`` (emotion or sentiment) recorded in a dataset's ``dataset.json``."""
    entry = info["label_sets"][target]
    if entry is None:
        raise ValueError(
            f"the dataset has no {target} labels (format {info['format']}); use data.target=sentiment"
        )
    return LabelSet(entry["key"], entry["task"], tuple(entry["names"]), tuple(entry["display"]))


def class_counts(info: dict, target: str, labels: LabelSet) -> list[int]:
    """Train rows per class of ``labels``, in label order, from a dataset's ``dataset.json``."""
    counts = info["counts"][target]["train"]
    return [int(counts.get(name, 0)) for name in labels.names]
