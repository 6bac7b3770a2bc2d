"""Conversations + decoded media → one padded Qwen2.5-Omni batch with answer-only labels.

The processor is always called with the frames' real size and sampling fps (DESIGN §8): without an
explicit ``size`` its class default turns a 56x56 clip into 288 video tokens instead of 8, and the
fps sets the temporal positions of the video tokens. The processor takes one fps per call, so
``video_second_per_grid`` is set per clip afterwards; with audio interleaved into the video (whose
token layout depends on the fps) clips are processed in groups of equal fps and merged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from omnimer.tasks import Conversation

IGNORE_INDEX = -100
ASSISTANT_HEADER = "<|im_start|>assistant\n"


@dataclass
class Batch:
    """Model inputs for one task, plus what the loss and metrics need."""

    task: str
    inputs: dict  # passed to the Thinker as **inputs
    labels: torch.Tensor | None  # [B, L], IGNORE_INDEX outside the answer
    clip_ids: list[str]
    class_index: torch.Tensor | None  # main task: [B]

    @property
    def num_tokens(self) -> int:
        return int(self.inputs["attention_mask"].sum())


def rows_from_numpy(batch: dict[str, np.ndarray]) -> list[dict]:
    """Rows of a Ray Data numpy batch (``frames`` already [B, T, H, W, 3]) as dicts."""
    keys = list(batch)
    return [{k: batch[k][i] for k in keys} for i in range(len(batch[keys[0]]))]


def rows_from_table(table) -> list[dict]:
    """Rows of a shard table read with pyarrow, frames as [T, H, W, 3] arrays."""
    frames = table.column("frames").combine_chunks().to_numpy_ndarray()
    rows = table.drop_columns(["frames"]).to_pylist()
    for row, clip_frames in zip(rows, frames, strict=True):
        row["frames"] = clip_frames
    return rows


def frames_array(value) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(value, dtype=np.uint8))


def audio_array(value) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(value, dtype=np.float32))


def _videos_kwargs(size: int, fps: float) -> dict:
    return {
        "size": {"shortest_edge": size * size, "longest_edge": size * size},
        "fps": fps,
        "cap_pixels_per_frame": True,
    }


def _answer_labels(input_ids: torch.Tensor, header: list[int], pad_id: int | None) -> torch.Tensor:
    """Labels that keep only what follows the last assistant header (the answer, <|im_end|>, newline)."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    width = len(header)
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        start = next((i for i in range(len(ids) - width, -1, -1) if ids[i : i + width] == header), None)
        if start is None:
            raise ValueError("no assistant turn in a training conversation (the chat template changed?)")
        labels[row, start + width :] = input_ids[row, start + width :]
    if pad_id is not None:
        labels[input_ids == pad_id] = IGNORE_INDEX
    return labels


def _left_pad(tensors: list[torch.Tensor], value: int) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value) for t in tensors])


def _merge(parts: list[dict], pad_id: int) -> dict:
    """Concatenate processor outputs of several calls (sequences left-padded to one width)."""
    merged: dict = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key == "input_ids":
            merged[key] = _left_pad(values, pad_id)
        elif key == "attention_mask":
            merged[key] = _left_pad(values, 0)
        elif isinstance(values[0], torch.Tensor):
            merged[key] = torch.cat(values)
        else:
            merged[key] = [v for part in values for v in part]
    return merged


def collate(
    processor,
    conversations: list[Conversation],
    media: dict[str, dict],
    *,
    frame_size: int,
    audio_in_video: bool = False,
    with_labels: bool = True,
) -> Batch:
    """Build the batch of one task.

    ``media`` maps clip_id to ``{"frames": [T,H,W,3] uint8, "audio": float32, "frame_fps": float}``.
    With ``audio_in_video`` the main task's audio is interleaved with its video tokens in time
    (Qwen2.5-Omni's audio-in-video layout) instead of following it as a separate segment.
    """
    if not conversations:
        raise ValueError("empty task batch")
    task = conversations[0].task
    interleave = audio_in_video and conversations[0].uses_video and conversations[0].uses_audio
    # Interleaving lays tokens out by time, which depends on the fps the processor is given.
    groups: dict[float, list[Conversation]] = defaultdict(list)
    for conv in conversations:
        fps = round(float(media[conv.clip_id]["frame_fps"]), 3) if interleave else 0.0
        groups[fps].append(conv)
    ordered: list[Conversation] = []
    parts = []
    for _, group in sorted(groups.items()):
        ordered.extend(group)
        parts.append(_process(processor, group, media, frame_size, interleave))
    tokenizer = processor.tokenizer
    inputs = _merge(parts, tokenizer.pad_token_id) if len(parts) > 1 else parts[0]
    if "video_grid_thw" in inputs and not interleave:
        # One fps per processor call: give each clip its own seconds per temporal patch.
        temporal = processor.video_processor.temporal_patch_size
        inputs["video_second_per_grid"] = torch.tensor(
            [temporal / float(media[c.clip_id]["frame_fps"]) for c in ordered if c.uses_video],
            dtype=torch.float32,
        )
    labels = None
    if with_labels:
        header = tokenizer(ASSISTANT_HEADER, add_special_tokens=False).input_ids
        labels = _answer_labels(inputs["input_ids"], header, tokenizer.pad_token_id)
    class_index = None
    if ordered[0].class_index is not None:
        class_index = torch.tensor([c.class_index for c in ordered], dtype=torch.long)
    if interleave:
        inputs["use_audio_in_video"] = True
    return Batch(task, inputs, labels, [c.clip_id for c in ordered], class_index)


def _process(
    processor, conversations: list[Conversation], media: dict, frame_size: int, interleave: bool
) -> dict:
    texts = [
        processor.apply_chat_template(c.messages, tokenize=False, add_generation_prompt=c.answer is None)
        for c in conversations
    ]
    videos = [frames_array(media[c.clip_id]["frames"]) for c in conversations if c.uses_video]
    audios = [audio_array(media[c.clip_id]["audio"]) for c in conversations if c.uses_audio]
    kwargs: dict = {"return_tensors": "pt", "padding": True}
    if videos:
        fps = float(media[next(c for c in conversations if c.uses_video).clip_id]["frame_fps"])
        kwargs["videos"] = videos
        kwargs["videos_kwargs"] = _videos_kwargs(frame_size, fps)
    if audios:
        kwargs["audio"] = audios
    if interleave:
        # The conversation holds only the video item; its audio is the clip's own track, given decoded.
        kwargs["load_audio_from_video"] = True
        kwargs["audio_from_video_indices"] = list(range(len(videos)))
    return dict(processor(text=texts, **kwargs))
