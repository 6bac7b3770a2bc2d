"""Media decoding with decord: T uniformly spaced frames (resized while decoding) and 16 kHz mono audio.

Every function raises :class:`MediaError` with a reason a user can act on; ingest turns it into a
``file:row:column: reason`` line.

Used by ingest (:mod:`omnimer.data.ingest`, ``omnimer ingest``) and the benches.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np


class MediaError(ValueError):
    """A media file that cannot be used (corrupt, too short, no audio, non-finite samples)."""


@dataclass(frozen=True)
class Frames:
    """Sampled frames ``[T, H, W, 3]`` uint8 and the rate they were sampled at."""

    pixels: np.ndarray
    sample_fps: float  # T / clip duration: the fps the Qwen video processor must be told
    duration: float  # seconds covered by the video stream
    source_frames: int


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """Indices of ``count`` frames spread uniformly over ``num_frames`` (centre of each equal segment).

    A clip shorter than ``count`` frames repeats frames rather than failing, so every row has the
    same tensor shape.
    """
    return np.minimum(((np.arange(count) + 0.5) * num_frames / count).astype(np.int64), num_frames - 1)


def decode_frames(path: str, count: int, size: int) -> Frames:
    """Decode ``count`` frames of ``path`` resized to ``size`` x ``size`` (decord resizes while decoding)."""
    import decord

    if os.path.getsize(path) == 0:
        raise MediaError("video file is empty (0 bytes)")
    try:
        reader = decord.VideoReader(path, width=size, height=size, num_threads=1)
    except Exception as err:  # decord raises DECORDError/RuntimeError with ffmpeg's text
        raise MediaError(f"cannot decode video (corrupt or not a video file): {_first_line(err)}") from None
    total = len(reader)
    if total == 0:
        raise MediaError("video has no frames (zero-length)")
    if total == 1:
        raise MediaError("video has a single frame; a clip needs at least 2 frames to sample motion")
    fps = float(reader.get_avg_fps()) or 25.0
    indices = sample_indices(total, count)
    try:
        pixels = reader.get_batch(indices.tolist()).asnumpy()
    except Exception as err:
        raise MediaError(
            f"video is truncated or corrupt: frames {indices.min()}..{indices.max()} of {total} "
            f"did not decode ({_first_line(err)})"
        ) from None
    if pixels.shape != (count, size, size, 3):
        raise MediaError(f"decoded frames have shape {pixels.shape}, expected {(count, size, size, 3)}")
    duration = total / fps
    return Frames(np.ascontiguousarray(pixels, dtype=np.uint8), count / duration, duration, total)


def decode_audio(path: str, sample_rate: int, max_seconds: float) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` from a wav or an mp4, clipped to ``max_seconds``."""
    import decord

    try:
        reader = decord.AudioReader(path, sample_rate=sample_rate, mono=True)
    except Exception as err:
        message = _first_line(err)
        if "audio" in message.lower() and "stream" in message.lower():
            raise MediaError(f"no audio track in {path} and no separate wav file") from None
        raise MediaError(f"cannot decode audio: {message}") from None
    samples = reader[:].asnumpy()
    audio = np.asarray(samples, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        raise MediaError("audio track is empty (zero samples)")
    bad = ~np.isfinite(audio)
    if bad.any():
        first = int(np.argmax(bad))
        raise MediaError(
            f"audio has {int(bad.sum())} non-finite samples (NaN/inf), first at {first / sample_rate:.3f} s; "
            "re-export the audio"
        )
    return audio[: int(round(max_seconds * sample_rate))]


def _first_line(err: Exception) -> str:
    """First line of a decord/ffmpeg error without its timestamp and C++ source location."""
    text = str(err).strip().splitlines()
    if not text:
        return type(err).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text[0])[:300]
