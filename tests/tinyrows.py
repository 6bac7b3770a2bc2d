"""Rows and LoRA models of the tiny Thinker for the in-process tests of a training step, of the
closed-set scoring and of the GPU bench's loop (no Ray): a few clips with video frames at two sampling
rates, audio, every aux target and the ids a prediction keeps."""

from __future__ import annotations

import numpy as np
import torch
from mediafiles import tone

from omnimer.config import LoraSettings, ModelConfig
from omnimer.labels import INDOMER_EMOTION
from omnimer.model.load import apply_lora, load_thinker

FRAMES, SIZE = 4, 56


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` clips of three emotions with every column a training step and an evaluation read (as the
    shards hold them); another ``seed`` gives other clips (ids, frames)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        emotion = INDOMER_EMOTION.names[i % 3]
        rows.append(
            {
                "clip_id": f"clip_{seed}_{i}_Sharing_1",
                "video_id": f"clip_{seed}_{i}",
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


def bench_data():
    """12 training and 6 valid clips as ``tests/bench/gpu_train.py``'s ``Data``, which its
    ``train_run`` trains on."""
    from tests.bench.gpu_train import Data

    train = make_rows(12, seed=0)
    counts = [sum(r["emotion"] == name for r in train) for name in INDOMER_EMOTION.names]
    return Data(
        train=train,
        evaluation={"valid": make_rows(6, seed=1)},
        labels=INDOMER_EMOTION,
        counts=counts,
        frame_size=SIZE,
    )


def fresh_model(path, seed=0):
    torch.manual_seed(seed)
    model = apply_lora(
        load_thinker(ModelConfig(name_or_path=str(path), dtype="float32")),
        LoraSettings(rank=4, alpha=8, dropout=0.0),
    )
    model.train()
    return model
