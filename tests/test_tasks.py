"""Conversations per task (DESIGN §4)."""

from __future__ import annotations

import pytest

from omnimer.labels import INDOMER_EMOTION, INDOMER_SENTIMENT
from omnimer.tasks import aux_conversation, build_task_batches, main_conversation

ROW = {
    "clip_id": "clip_1_Sharing_1",
    "text": "Aku sedih sekali hari ini.",
    "emotion": "kesedihan",
    "sentiment": "negatif",
    "aux_keywords": "kata emosi: sedih; sentimen teks: negatif",
    "aux_face": None,
    "aux_prosody": "prosodi: nada rendah dan datar, energi lemah, tempo lambat; sentimen suara: negatif",
}
WEIGHTS = {"aux_text": 0.3, "aux_face": 0.3, "aux_prosody": 0.3}


def kinds(conv) -> list[str]:
    return [item["type"] for item in conv.messages[1]["content"]]


def test_main_conversation_has_every_modality_and_the_label_word():
    conv = main_conversation(
        ROW, "emotion", INDOMER_EMOTION, INDOMER_EMOTION.verbalizers, "id", with_answer=True
    )
    assert kinds(conv) == ["video", "audio", "text"]
    assert conv.answer == "kesedihan" and conv.class_index == 2
    assert "Transkrip: Aku sedih sekali hari ini." in conv.messages[1]["content"][-1]["text"]
    assert "netral, kebahagiaan, kesedihan" in conv.messages[1]["content"][-1]["text"]
    assert conv.messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": "kesedihan"}]}
    prompt = main_conversation(
        ROW, "sentiment", INDOMER_SENTIMENT, INDOMER_SENTIMENT.verbalizers, "en", with_answer=False
    )
    assert prompt.answer is None and prompt.messages[-1]["role"] == "user" and prompt.class_index == 0
    assert "What is the speaker's sentiment?" in prompt.messages[1]["content"][-1]["text"]


def test_audio_in_video_drops_the_separate_audio_item():
    conv = main_conversation(
        ROW,
        "emotion",
        INDOMER_EMOTION,
        INDOMER_EMOTION.verbalizers,
        "id",
        with_answer=True,
        audio_in_video=True,
    )
    assert kinds(conv) == ["video", "text"] and conv.uses_audio


def test_aux_tasks_are_modality_specific():
    text = aux_conversation("aux_text", ROW, "id")
    prosody = aux_conversation("aux_prosody", ROW, "id")
    assert kinds(text) == ["text"] and not text.uses_video and not text.uses_audio
    assert (
        kinds(prosody) == ["audio", "text"] and "Transkrip" not in prosody.messages[1]["content"][-1]["text"]
    )
    assert aux_conversation("aux_face", ROW, "id") is None  # no target for this row


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (WEIGHTS, {"main", "aux_text", "aux_prosody"}),
        ({"aux_text": 0.0, "aux_face": 0.5, "aux_prosody": 0.0}, {"main"}),
        ({"aux_text": 0.0, "aux_face": 0.0, "aux_prosody": 0.0}, {"main"}),
    ],
)
def test_disabled_or_empty_tasks_are_not_built(weights, expected):
    batches = build_task_batches(
        [ROW, dict(ROW, clip_id="b")], "emotion", INDOMER_EMOTION, INDOMER_EMOTION.verbalizers, "id", weights
    )
    assert set(batches) == expected
    assert all(len(v) == 2 for v in batches.values())


def test_missing_label_is_an_error():
    with pytest.raises(ValueError, match="has no emotion label"):
        main_conversation(
            dict(ROW, emotion=None),
            "emotion",
            INDOMER_EMOTION,
            INDOMER_EMOTION.verbalizers,
            "id",
            with_answer=True,
        )
