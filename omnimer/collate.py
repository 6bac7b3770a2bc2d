"""Conversations + decoded media → one padded Qwen2.5-Omni batch with answer-only labels.

The processor is always called with the frames' real size and sampling fps (DESIGN §8): without an
explicit ``size`` its class default turns a 56x56 clip into 288 video tokens instead of 8, and the
fps sets the temporal positions of the video tokens. The processor takes one fps per call, so
``video_second_per_grid`` is set per clip afterwards; with audio interleaved into the video (whose
token layout depends on the fps) clips are processed in groups of equal fps and merged.

Used by the training step (:mod:`omnimer.training.step`), the evaluation
(:mod:`omnimer.training.evaluate`) and the benches.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from transformers.feature_extraction_utils import BatchFeature

from omnimer.losses import IGNORE_INDEX
from omnimer.tasks import Conversation

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


def to_device(inputs: dict, device) -> dict:
    """A batch's model inputs with every tensor on ``device``."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def rows_from_numpy(batch: dict[str, np.ndarray]) -> list[dict]:
    """Rows of a Ray Data numpy batch (``frames`` already [B, T, H, W, 3]) as dicts."""
    keys = list(batch)
    return [{k: batch[k][i] for k in keys} for i in range(len(batch[keys[0]]))]


def audio_arrays(column) -> list[np.ndarray | None]:
    """A shard's ``audio`` list column (a table's ChunkedArray or a record batch's Array) as one float32
    array per clip: views of one buffer, None where the cell is null."""
    audio = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = audio.values.to_numpy(zero_copy_only=False)
    offsets = audio.offsets.to_numpy()
    valid = audio.is_valid().to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(audio))]


def rows_from_table(table) -> list[dict]:
    """Rows of a shard table read with pyarrow, as a Ray Train worker gets them (:func:`rows_from_numpy`):
    frames as [T, H, W, 3] uint8 arrays, audio as float32 arrays (not Python lists of floats)."""
    arrays = {"frames": list(table.column("frames").combine_chunks().to_numpy_ndarray())}
    if "audio" in table.column_names:
        arrays["audio"] = audio_arrays(table.column("audio"))
    rows = table.drop_columns(list(arrays)).to_pylist()
    for i, row in enumerate(rows):
        for name, column in arrays.items():
            row[name] = column[i]
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


def _right_pad(tensors: list[torch.Tensor], value: float) -> torch.Tensor:
    width = max(t.shape[-1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value) for t in tensors])


def _merge(parts: list[dict], pad_id: int) -> dict:
    """Concatenate processor outputs of several calls (sequences left-padded to one width).

    A key missing from some parts (e.g. ``pixel_values_videos`` of a text-only task) holds only the
    other parts' items; media items stay in row order because the parts' rows are stacked in order.
    Audio features are right-padded to the widest part (the Thinker reads them through
    ``feature_attention_mask``).
    """
    merged: dict = {}
    for key in dict.fromkeys(k for p in parts for k in p):
        values = [p[key] for p in parts if key in p]
        if key == "input_ids":
            merged[key] = _left_pad(values, pad_id)
        elif key == "attention_mask":
            merged[key] = _left_pad(values, 0)
        elif key in ("input_features", "feature_attention_mask"):
            merged[key] = _right_pad(values, 0)
        elif isinstance(values[0], torch.Tensor):
            merged[key] = torch.cat(values)
        else:
            merged[key] = [v for part in values for v in part]
    return merged


# A packed forward may pad at most this much more than the separate forwards it replaces.
PACKING_SLACK = 0.25


def pack_batches(
    batches: list[Batch], slack: float = PACKING_SLACK, shapes: dict[str, tuple[int, int]] | None = None
) -> list[list[Batch]]:
    """Group task batches into forwards: sorted by width, neighbours share a forward while padding
    to the group's widest stays within ``(1 + slack)`` × the tokens of running them apart.

    Each forward has a fixed cost (on CPU most of a tiny model's step; on GPU the kernel launches and
    the towers' small batches), so the short auxiliary tasks run together; a long one (e.g. many
    video tokens next to a short transcript task) keeps its own forward instead of padding the rest.
    ``shapes`` (task → (rows, width)) replaces the batches' own shapes in that decision: under ZeRO-3
    every rank must run the same forwards, so the workers decide on shapes they agreed on.
    """
    if not batches:
        return []

    def shape(batch: Batch) -> tuple[int, int]:
        return shapes[batch.task] if shapes is not None else tuple(batch.inputs["input_ids"].shape)

    ordered = sorted(batches, key=lambda b: (shape(b)[1], b.task))
    groups = [[ordered[0]]]
    for batch in ordered[1:]:
        group = [*groups[-1], batch]
        rows = sum(shape(b)[0] for b in group)
        apart = sum(shape(b)[0] * shape(b)[1] for b in group)
        if rows * shape(batch)[1] <= (1 + slack) * apart:
            groups[-1].append(batch)
        else:
            groups.append([batch])
    return groups


def merge_batches(batches: list[Batch], pad_id: int) -> tuple[Batch, dict[str, slice]]:
    """One forward's batch from several tasks' batches, and the rows of each task in it."""
    main_like = [b for b in batches if b.class_index is not None or b.inputs.get("use_audio_in_video")]
    if len(batches) > 1 and main_like:
        raise ValueError("the main task keeps its own forward (class indices, interleaved audio)")
    if len(batches) == 1:
        return batches[0], {batches[0].task: slice(0, len(batches[0].clip_ids))}
    spans, start = {}, 0
    for batch in batches:
        if batch.task in spans:
            raise ValueError(f"task {batch.task!r} appears twice in one forward")
        spans[batch.task] = slice(start, start + len(batch.clip_ids))
        start += len(batch.clip_ids)
    labels = None
    if all(b.labels is not None for b in batches):
        labels = _left_pad([b.labels for b in batches], IGNORE_INDEX)
    merged = Batch(
        "+".join(b.task for b in batches),
        _merge([b.inputs for b in batches], pad_id),
        labels,
        [c for b in batches for c in b.clip_ids],
        None,
    )
    return merged, spans


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


class AudioFeatureCache:
    """Memoizes the Whisper log-mel features of each clip's audio, in place of the processor's extractor.

    The processor pads every clip to 30 s before its STFT, so a 4 s clip costs 7.5x its own length,
    and every epoch (and, within a step, both the main and the prosody conversation) extracts the same
    clip again: on CPU this was ~70% of a training step's batch building. Features depend only on the
    waveform and the extractor's settings, so they are computed once, kept cropped to the clip's own
    frames (LRU-bounded by ``max_bytes``), and a batch is padded to its longest clip, not to 30 s. The
    Thinker reads only the frames under ``feature_attention_mask``, so its outputs are unchanged (a
    test compares logits bit for bit)::

        processor = load_processor(path)
        AudioFeatureCache.install(processor, max_bytes=512 * 2**20)
    """

    def __init__(self, extractor, max_bytes: int):
        self.extractor = extractor
        self.max_bytes = int(max_bytes)
        self.entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @classmethod
    def install(cls, processor, max_bytes: int) -> AudioFeatureCache | None:
        """Put a cache in front of ``processor``'s feature extractor (none when ``max_bytes`` is 0)."""
        if max_bytes <= 0:
            return None
        cache = cls(processor.feature_extractor, max_bytes)
        cache.install_into(processor)
        return cache

    def install_into(self, processor) -> None:
        """Put this cache in front of another ``processor`` of the same checkpoint (whose extractor
        has the same settings as the one this cache calls)."""
        processor.feature_extractor = self

    def __getattr__(self, name: str):
        # hop_length, nb_max_frames, model_input_names, ...: the processor reads them from its extractor.
        return getattr(self.__dict__["extractor"], name)

    def _key(self, audio, kwargs: dict) -> tuple:
        wave = audio_array(audio)
        digest = hashlib.blake2b(wave.tobytes(), digest_size=16).digest()
        return digest, wave.shape[0], tuple(sorted((k, repr(v)) for k, v in kwargs.items()))

    def _store(self, key: tuple, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return
        self.entries[key] = features
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()

    def __call__(self, raw_speech, **kwargs) -> dict:
        audios = list(raw_speech) if isinstance(raw_speech, list | tuple) else [raw_speech]
        call = {k: v for k, v in kwargs.items() if k != "return_tensors"}
        keys = [self._key(a, call) for a in audios]
        found: dict[int, torch.Tensor] = {}
        for i, key in enumerate(keys):
            if key in self.entries:
                self.entries.move_to_end(key)
                found[i] = self.entries[key]
        missing = [i for i in range(len(audios)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            # Whisper normalizes each clip by its own maximum, so a clip's features do not depend on the
            # other clips of the call, and can be kept and reused one by one.
            out = self.extractor([audios[i] for i in missing], return_tensors="pt", **call)
            lengths = out["attention_mask"].sum(dim=1).tolist()
            for j, i in enumerate(missing):
                found[i] = out["input_features"][j, :, : int(lengths[j])].clone()
                self._store(keys[i], found[i])
        clips = [found[i] for i in range(len(audios))]
        width = max(c.shape[1] for c in clips)
        features = clips[0].new_zeros((len(clips), clips[0].shape[0], width))
        mask = torch.zeros((len(clips), width), dtype=torch.int32)
        for i, clip in enumerate(clips):
            features[i, :, : clip.shape[1]] = clip
            mask[i, : clip.shape[1]] = 1
        return BatchFeature({"input_features": features, "attention_mask": mask})
