"""The four conversations of OmniMER (DESIGN §4): one main task and three modality-specific aux tasks.

Every task is a chat for the Thinker whose assistant turn is the answer, trained with token
cross-entropy on that answer:

| task        | inputs                         | answer                                      |
|-------------|--------------------------------|---------------------------------------------|
| main        | video frames + audio + text    | the label verbalizer (emotion or sentiment) |
| aux_text    | transcript only                | the row's ``aux_keywords``                  |
| aux_face    | video frames only              | the row's ``aux_face``                      |
| aux_prosody | audio only                     | the row's ``aux_prosody``                   |

A task whose weight λ is 0 is never built. A row whose aux target is null has no conversation for
that task. Prompts are Indonesian by default (``language="id"``); English prompts are available for
MELD-style data.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnimer.labels import LabelSet

MAIN = "main"
AUX_COLUMNS = {"aux_text": "aux_keywords", "aux_face": "aux_face", "aux_prosody": "aux_prosody"}
TASKS = (MAIN, *AUX_COLUMNS)
# Which media each task sees: the aux tasks are modality-specific by design.
TASK_MEDIA = {
    MAIN: ("video", "audio", "text"),
    "aux_text": ("text",),
    "aux_face": ("video",),
    "aux_prosody": ("audio",),
}

PROMPTS = {
    "id": {
        "system": "Anda adalah asisten yang mengenali emosi dari video, suara, dan teks.",
        "transcript": "Transkrip: {text}",
        "emotion": "Emosi apa yang diungkapkan pembicara? Jawab dengan satu kata: {choices}.",
        "sentiment": "Apa sentimen pembicara? Jawab dengan satu kata: {choices}.",
        "aux_text": "Sebutkan kata-kata dalam transkrip yang mengungkapkan emosi, dan sentimen teksnya.",
        "aux_face": "Deskripsikan ekspresi wajah pembicara dalam video ini.",
        "aux_prosody": "Deskripsikan prosodi suara pembicara: tinggi nada, variasi, energi, dan tempo.",
    },
    "en": {
        "system": "You are an assistant that recognizes emotions from video, voice and text.",
        "transcript": "Transcript: {text}",
        "emotion": "Which emotion does the speaker express? Answer with one word: {choices}.",
        "sentiment": "What is the speaker's sentiment? Answer with one word: {choices}.",
        "aux_text": "List the words of the transcript that express emotion, and the text's sentiment.",
        "aux_face": "Describe the speaker's facial expression in this video.",
        "aux_prosody": "Describe the speaker's voice prosody: pitch level, variability, energy and tempo.",
    },
}


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


def _user_content(task: str, row: dict, question: str, prompts: dict, audio_in_video: bool) -> list[dict]:
    media = TASK_MEDIA[task]
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
    task: str, row: dict, question: str, prompts: dict, answer: str | None, audio_in_video: bool = False
) -> list[dict]:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": prompts["system"]}]},
        {"role": "user", "content": _user_content(task, row, question, prompts, audio_in_video)},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def main_conversation(
    row: dict,
    target: str,
    labels: LabelSet,
    verbalizers: tuple[str, ...],
    language: str,
    *,
    with_answer: bool,
    audio_in_video: bool = False,
) -> Conversation:
    """The main recognition chat; the answer is the verbalizer of the row's ``target`` label."""
    prompts = PROMPTS[language]
    name = row[target]
    if name is None:
        raise ValueError(f"clip {row['clip_id']!r} has no {target} label")
    index = labels.index(name)
    question = prompts[target].format(choices=", ".join(verbalizers))
    answer = verbalizers[index] if with_answer else None
    messages = _messages(MAIN, row, question, prompts, answer, audio_in_video)
    return Conversation(MAIN, row["clip_id"], messages, answer, True, True, index)


def aux_conversation(task: str, row: dict, language: str) -> Conversation | None:
    """An auxiliary chat, or None when the row has no target for it."""
    answer = row[AUX_COLUMNS[task]]
    if answer is None:
        return None
    prompts = PROMPTS[language]
    media = TASK_MEDIA[task]
    return Conversation(
        task,
        row["clip_id"],
        _messages(task, row, prompts[task], prompts, answer),
        answer,
        "video" in media,
        "audio" in media,
    )


def build_task_batches(
    rows: list[dict],
    target: str,
    labels: LabelSet,
    verbalizers: tuple[str, ...],
    language: str,
    aux_weights: dict[str, float],
    audio_in_video: bool = False,
) -> dict[str, list[Conversation]]:
    """Training conversations per task for a batch of rows; tasks with λ = 0 are not built at all."""
    batches = {
        MAIN: [
            main_conversation(
                r, target, labels, verbalizers, language, with_answer=True, audio_in_video=audio_in_video
            )
            for r in rows
        ]
    }
    for task in AUX_COLUMNS:
        if aux_weights.get(task, 0.0) <= 0.0:
            continue
        conversations = [c for c in (aux_conversation(task, r, language) for r in rows) if c is not None]
        if conversations:
            batches[task] = conversations
    return batches
