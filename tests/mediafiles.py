"""Small media and manifest writers for tests: real mp4/wav files made with PyAV and the stdlib."""

from __future__ import annotations

import csv
import json
import struct
import wave
from pathlib import Path

import numpy as np

SR = 16000


def tone(seconds: float, f0: float = 180.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * f0 * t
    signal = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (amp * signal / 2).astype(np.float32)


def write_mp4(
    path: Path, n_frames: int = 16, fps: int = 8, size: int = 64, audio: bool = True, seed: int = 0
) -> Path:
    """H.264 video (+ AAC audio of the same duration) with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("h264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        stream = None
        if audio:
            stream = container.add_stream("aac", rate=SR)
            stream.layout = "mono"
        base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if stream is not None:
            samples = tone(n_frames / fps)
            frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
            frame.sample_rate = SR
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def write_wav(path: Path, samples: np.ndarray, float32: bool = False) -> Path:
    """16 kHz mono wav: int16 PCM, or IEEE float32 (which can carry NaN/inf)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if float32:
        data = samples.astype("<f4").tobytes()
        header = (
            b"RIFF"
            + struct.pack("<I", 36 + len(data))
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 3, 1, SR, SR * 4, 4, 32)
            + b"data"
            + struct.pack("<I", len(data))
        )
        path.write_bytes(header + data)
        return path
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SR)
        fh.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


EMOTION_SENTIMENT = {
    "netral": "netral",
    "kebahagiaan": "positif",
    "kesedihan": "negatif",
    "kemarahan": "negatif",
}


def indomer_rows(n_videos: int = 6, clips_per_video: int = 4, val_videos: int = 2) -> list[dict]:
    """Annotation rows of a small IndoMER-format set; the last ``val_videos`` videos are published val."""
    emotions = list(EMOTION_SENTIMENT)
    rows = []
    for v in range(1, n_videos + 1):
        for i in range(1, clips_per_video + 1):
            emotion = emotions[(v + i) % len(emotions)]
            rows.append(
                {
                    "clip": f"clip_{v}_Sharing_{i}",
                    "split": "val" if v > n_videos - val_videos else "train",
                    "emotion": emotion,
                    "sentiment": EMOTION_SENTIMENT[emotion],
                    "text": f"Hari ini aku cerita nomor {i} dari video {v}, aku senang sekali."
                    if emotion == "kebahagiaan"
                    else f"Ini kalimat nomor {i} dari video {v}.",
                }
            )
    return rows


def write_indomer(
    root: Path, rows: list[dict], *, media: bool = True, wav: bool = True, csv_only: bool = False
) -> Path:
    """Write Annotations.csv + split JSONs (+ media) in IndoMER's published layout."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "Annotations.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "video_name",
                "audio_name",
                "emotion",
                "sentiment",
                "text_sentiment",
                "audio_sentiment",
                "video_sentiment",
                "text",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    f"{r['clip']}.mp4",
                    f"{r['clip']}.wav",
                    r["emotion"],
                    r["sentiment"],
                    r["sentiment"],
                    r["sentiment"],
                    r["sentiment"],
                    r["text"],
                ]
            )
    if not csv_only:
        for published in ("train", "val"):
            part = [r for r in rows if r["split"] == published]
            seven = [
                {
                    "sample_id": r["clip"],
                    "text": r["text"],
                    "sentiment_label": r["sentiment"],
                    "label": r["emotion"],
                    "video": f"{r['clip']}.mp4",
                    "audio": f"{r['clip']}.wav",
                }
                for r in part
            ]
            three = [
                {
                    "sample_id": r["clip"],
                    "text": r["text"],
                    "text_label": r["sentiment"],
                    "audio_label": r["sentiment"],
                    "video_label": r["sentiment"],
                    "label": r["sentiment"],
                    "video": f"{r['clip']}.mp4",
                    "audio": f"{r['clip']}.wav",
                }
                for r in part
            ]
            (root / "7_Class").mkdir(exist_ok=True)
            (root / "3_Class").mkdir(exist_ok=True)
            (root / "7_Class" / f"7_class_{published}.json").write_text(
                json.dumps(seven, ensure_ascii=False), encoding="utf-8"
            )
            (root / "3_Class" / f"3_class_{published}.json").write_text(
                json.dumps(three, ensure_ascii=False), encoding="utf-8"
            )
    if media:
        for k, r in enumerate(rows):
            write_mp4(root / "videos" / f"{r['clip']}.mp4", seed=k)
            if wav:
                write_wav(root / "audios" / f"{r['clip']}.wav", tone(2.0, f0=120 + 10 * (k % 8)))
    return root
