"""Conversations per task (DESIGN §4)."""

from __future__ import annotations

import pytest

from omnimer.aux_tasks import AUX_TASKS, BY_NAME, enabled_tasks
from omnimer.config import LossConfig
from omnimer.labels import INDOMER_EMOTION, INDOMER_SENTIMENT
from omnimer.tasks import Prompting, aux_conversation, build_task_batches, main_conversation

ROW = {
    "clip_id": "clip_1_Sharing_1",
    "text": "Aku sedih sekali hari ini.",
    "emotion": "kesedihan",
    "sentiment": "negatif",
    "aux_keywords": "kata emosi: sedih; sentimen teks: negatif",
    "aux_face": None,
    "aux_prosody": "prosodi: nada rendah dan datar, energi lemah, tempo lambat; sentimen suara: negatif",
}
EMOTION = Prompting("emotion", INDOMER_EMOTION, INDOMER_EMOTION.verbalizers, "id")


def kinds(conv) -> list[str]:
    return [item["type"] for item in conv.messages[1]["content"]]


def test_main_conversation_has_every_modality_and_the_label_word():
    conv = main_conversation(ROW, EMOTION, with_answer=True)
    assert kinds(conv) == ["video", "audio", "text"]
    assert conv.answer == "kesedihan" and conv.class_index == 2
    assert "Transkrip: Aku sedih sekali hari ini." in conv.messages[1]["content"][-1]["text"]
    assert "netral, kebahagiaan, kesedihan" in conv.messages[1]["content"][-1]["text"]
    assert conv.messages[-1] == {"role": "assistant", "content": [{"type": "text", "text": "kesedihan"}]}
    sentiment = Prompting("sentiment", INDOMER_SENTIMENT, INDOMER_SENTIMENT.verbalizers, "en")
    prompt = main_conversation(ROW, sentiment, with_answer=False)
    assert prompt.answer is None and prompt.messages[-1]["role"] == "user" and prompt.class_index == 0
    assert "What is the speaker's sentiment?" in prompt.messages[1]["content"][-1]["text"]


def test_audio_in_video_drops_the_separate_audio_item():
    in_video = Prompting("emotion", INDOMER_EMOTION, INDOMER_EMOTION.verbalizers, "id", audio_in_video=True)
    conv = main_conversation(ROW, in_video, with_answer=True)
    assert kinds(conv) == ["video", "text"] and conv.uses_audio


def test_aux_tasks_are_modality_specific():
    text = aux_conversation(BY_NAME["text"], ROW, "id")
    prosody = aux_conversation(BY_NAME["prosody"], ROW, "id")
    assert kinds(text) == ["text"] and not text.uses_video and not text.uses_audio
    assert (
        kinds(prosody) == ["audio", "text"] and "Transkrip" not in prosody.messages[1]["content"][-1]["text"]
    )
    assert aux_conversation(BY_NAME["face"], ROW, "id") is None  # no target for this row
    assert (text.task, prosody.task) == ("text", "prosody")  # a task has one name everywhere


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((0.3, 0.3, 0.3), {"main", "text", "prosody"}),
        ((0.0, 0.5, 0.0), {"main"}),
        ((0.0, 0.0, 0.0), {"main"}),
    ],
)
def test_disabled_or_empty_tasks_are_not_built(weights, expected):
    loss = LossConfig(**{task.weight_key: w for task, w in zip(AUX_TASKS, weights, strict=True)})
    batches = build_task_batches([ROW, dict(ROW, clip_id="b")], EMOTION, enabled_tasks(loss))
    assert set(batches) == expected
    assert all(len(v) == 2 for v in batches.values())


def test_missing_label_is_an_error():
    with pytest.raises(ValueError, match="has no emotion label"):
        main_conversation(dict(ROW, emotion=None), EMOTION, with_answer=True)


def test_a_task_is_on_exactly_when_its_weight_is_positive():
    assert enabled_tasks(LossConfig()) == AUX_TASKS
    off_face = enabled_tasks(LossConfig(aux_weight_face=0.0))
    assert [t.name for t in off_face] == ["text", "prosody"]
    assert enabled_tasks({"aux_weight_text": 0, "aux_weight_face": 0.1, "aux_weight_prosody": 0}) == (
        BY_NAME["face"],
    )
    # The table is where the names, columns, media and config keys come from.
    assert [(t.name, t.column, t.media, t.weight_key) for t in AUX_TASKS] == [
        ("text", "aux_keywords", ("text",), "aux_weight_text"),
        ("face", "aux_face", ("video",), "aux_weight_face"),
        ("prosody", "aux_prosody", ("audio",), "aux_weight_prosody"),
    ]
    for task in AUX_TASKS:
        assert hasattr(LossConfig(), task.weight_key)
