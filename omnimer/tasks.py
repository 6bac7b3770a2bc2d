"""The four conversations of OmniMER (DESIGN §4): one main task and three modality-specific aux tasks.

Every task is a chat for the Thinker whose assistant turn is the answer, trained with token
cross-entropy on that answer:

| task    | inputs                         | answer                                      |
|---------|--------------------------------|---------------------------------------------|
| main    | video frames + audio + text    | the label verbalizer (emotion or sentiment) |
| text    | transcript only                | the row's ``aux_keywords``                  |
| face    | video frames only              | the row's ``aux_face``                      |
| prosody | audio only                     | the row's ``aux_prosody``                   |

The aux tasks, their columns, media and questions are :mod:`omnimer.aux_tasks`' table. A task whose
λ is 0 is never built. A row whose aux target is null has no conversation for that task. Prompts are
Indonesian by default (``language="id"``); English prompts are available for MELD-style data.

Used by the training step (:mod:`omnimer.training.step`) and the evaluation
(:mod:`omnimer.training.evaluate`), which collate the conversations (:mod:`omnimer.collate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from omnimer.aux_tasks import AuxTask
from omnimer.labels import LabelSet

MAIN = "main"
MAIN_MEDIA = ("video", "audio", "text")

PROMPTS = {
    "id": {
        "system": "Anda adalah asisten yang mengenali emosi dari video, suara, dan teks.",
        "transcript": "Transkrip: {text}",
        "emotion": "Emosi apa yang diungkapkan pembicara? Jawab dengan satu kata: {choices}.",
        "sentiment": "Apa sentimen pembicara? Jawab dengan satu kata: {choices}.",
    },
    "en": {
        "system": "You are an assistant that recognizes emotions from video, voice and text.",
        "transcript": "Transcript: {text}",
        "emotion": "Which emotion does the speaker express? Answer with one word: {choices}.",
        "sentiment": "What is the speaker's sentiment? Answer with one word: {choices}.",
    },
}


@dataclass(frozen=True)
class Prompting:
    """How a run asks: its target (emotion or sentiment), that target's label set and the verbalizers
    the model answers with, the prompt language, and whether the audio rides in the video's tokens."""

    target: str
    labels: LabelSet
    verbalizers: tuple[str, ...]
    language: str = "id"
    audio_in_video: bool = False


@dataclass(frozen=True)
class Conversation:
    """One chat of one task for one clip; ``answer`` is None for an evaluation prompt."""

    task: str
    clip_id: str
    messages: list
    answer: str | None
    uses_video: bool
    uses_audio: bool
    class_index: int | None = None  # main task: the label's index in the label set


def _user_content(
    media: tuple[str, ...], row: dict, question: str, prompts: dict, audio_in_video: bool
) -> list[dict]:
    content: list[dict] = []
    if "video" in media:
        content.append({"type": "video"})
    if "audio" in media and not ("video" in media and audio_in_video):
        # With audio_in_video the audio is interleaved into the video item's tokens instead.
        content.append({"type": "audio"})
    text = question
    if "text" in media:
        text = prompts["transcript"].format(text=row["text"]) + "\n" + question
    content.append({"type": "text", "text": text})
    return content


def _messages(
    media: tuple[str, ...],
    row: dict,
    question: str,
    prompts: dict,
    answer: str | None,
    audio_in_video: bool = False,
) -> list[dict]:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": prompts["system"]}]},
        {"role": "user", "content": _user_content(media, row, question, prompts, audio_in_video)},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def main_conversation(row: dict, prompting: Prompting, *, with_answer: bool) -> Conversation:
    """The main recognition chat; the answer is the verbalizer of the row's target label."""
    prompts = PROMPTS[prompting.language]
    name = row[prompting.target]
    if name is None:
        raise ValueError(f"clip {row['clip_id']!r} has no {prompting.target} label")
    index = prompting.labels.index(name)
    question = prompts[prompting.target].format(choices=", ".join(prompting.verbalizers))
    answer = prompting.verbalizers[index] if with_answer else None
    messages = _messages(MAIN_MEDIA, row, question, prompts, answer, prompting.audio_in_video)
    return Conversation(MAIN, row["clip_id"], messages, answer, True, True, index)


def aux_conversation(task: AuxTask, row: dict, language: str) -> Conversation | None:
    """An auxiliary chat, or None when the row has no target for it."""
    answer = row[task.column]
    if answer is None:
        return None
    prompts = PROMPTS[language]
    messages = _messages(task.media, row, task.prompts[language], prompts, answer)
    return Conversation(
        task.name, row["clip_id"], messages, answer, "video" in task.media, "audio" in task.media
    )


def build_task_batches(
    rows: list[dict], prompting: Prompting, aux_tasks: tuple[AuxTask, ...]
) -> dict[str, list[Conversation]]:
    """Training conversations per task for a batch of rows: the main task's and those of ``aux_tasks``
    (the enabled ones, :func:`omnimer.aux_tasks.enabled_tasks`) that some row has a target for."""
    batches = {MAIN: [main_conversation(r, prompting, with_answer=True) for r in rows]}
    for task in aux_tasks:
        conversations = [
            c for c in (aux_conversation(task, r, prompting.language) for r in rows) if c is not None
        ]
        if conversations:
            batches[task.name] = conversations
    return batches
