from __future__ import annotations

import pytest

from omnimer.labels import (
    FORMAT_LABEL_SETS,
    INDOMER_EMOTION,
    INDOMER_EMOTION_SENTIMENT,
    INDOMER_SENTIMENT,
    LabelSet,
    chsims_sentiment,
    get_label_set,
)


def test_indomer_label_sets():
    assert INDOMER_EMOTION.names == (
        "netral",
        "kebahagiaan",
        "kesedihan",
        "kemarahan",
        "jijik",
        "ketakutan",
        "surprise",
    )
    assert INDOMER_SENTIMENT.names == ("negatif", "netral", "positif")
    assert INDOMER_EMOTION.display_name("kebahagiaan") == "happiness"
    assert INDOMER_EMOTION.index("surprise") == 6
    assert set(INDOMER_EMOTION_SENTIMENT) == set(INDOMER_EMOTION.names)
    assert set(INDOMER_EMOTION_SENTIMENT.values()) == set(INDOMER_SENTIMENT.names)


def test_every_format_has_label_sets():
    for fmt, (emotion, sentiment) in FORMAT_LABEL_SETS.items():
        assert sentiment is not None and len(sentiment) == 3, fmt
        assert emotion is None or len(emotion) == 7


def test_unknown_label_message():
    with pytest.raises(
        KeyError, match=r"'happy' is not a label of meld-emotion \(expected one of neutral, joy"
    ):
        get_label_set("meld-emotion").index("happy")
    with pytest.raises(KeyError, match="unknown label set 'x'; known: chsims-sentiment"):
        get_label_set("x")


@pytest.mark.parametrize(
    ("score", "name"),
    [
        (-1.0, "negative"),
        (-0.1, "negative"),
        (-0.09, "neutral"),
        (0.0, "neutral"),
        (0.09, "neutral"),
        (0.1, "positive"),
        (1.0, "positive"),
    ],
)
def test_chsims_cut_points(score, name):
    assert chsims_sentiment(score) == name


@pytest.mark.parametrize("score", [1.5, -1.2, float("nan")])
def test_chsims_out_of_range(score):
    with pytest.raises(ValueError, match="outside"):
        chsims_sentiment(score)


def test_label_set_validation():
    with pytest.raises(ValueError, match="duplicate names"):
        LabelSet("k", "emotion", ("a", "a"), ("A", "A"))
    with pytest.raises(ValueError, match="1 display names for 2 labels"):
        LabelSet("k", "emotion", ("a", "b"), ("A",))
