"""Rows and LoRA models of the tiny Thinker for the in-process tests of a training step and of the
closed-set scoring (no Ray): a few clips with video frames at two sampling rates, audio and every
aux target."""

from __future__ import annotations

import numpy as np
import torch
from mediafiles import tone

from omnimer.config import LoraSettings, ModelConfig
from omnimer.labels import INDOMER_EMOTION
from omnimer.model.load import apply_lora, load_thinker

FRAMES, SIZE = 4, 56


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        emotion = INDOMER_EMOTION.names[i % 3]
        rows.append(
            {
                "clip_id": f"clip_{i}_Sharing_1",
                "video_id": f"clip_{i}",
                "speaker_id": f"speaker_{i % 2}",
                "text": f"Kalimat nomor {i}, aku {'senang' if i % 3 == 1 else 'biasa saja'}.",
                "emotion": emotion,
                "sentiment": "netral",
                "aux_keywords": "kata emosi: tidak ada; sentimen teks: netral",
                "aux_face": "ekspresi wajah: datar; sentimen wajah: netral",
                "aux_prosody": "prosodi: nada sedang dan datar, energi sedang, tempo sedang; "
                "sentimen suara: netral",
                "frames": rng.integers(0, 255, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8),
                "audio": tone(1.0 + 0.5 * (i % 2), f0=120 + 20 * i),
                "frame_fps": FRAMES / (1.0 + 0.5 * (i % 2)),  # two clip lengths: two sampling rates
            }
        )
    return rows


def fresh_model(path, seed=0):
    torch.manual_seed(seed)
    model = apply_lora(
        load_thinker(ModelConfig(name_or_path=str(path), dtype="float32")),
        LoraSettings(rank=4, alpha=8, dropout=0.0),
    )
    model.train()
    return model
