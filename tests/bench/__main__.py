"""Benchmarks, printed as ratios measured side by side in one run.

    make bench          # = .venv/bin/python -m tests.bench

- ingest: clips/s of ``omnimer ingest`` (decode + prosody + shard write on a local Ray);
- batch preparation: reading a split's batches (frames + audio as numpy) from the shards, with plain
  pyarrow and through Ray Data, vs decoding the same clips from mp4/wav with decord on every step;
- training: step time with all aux tasks vs main-only, closed-set scoring vs ``generate``;
- sweeps: the demo sweep's useful share of the machine, calibrated by one of its trials run alone
  here, its slot occupancy, and where a trial's start-up goes (``make bench`` runs the demo sweep
  first if it has not run; tests/bench/sweep_bench.py).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .sweep_bench import main as bench_sweep


def _batches_from_pyarrow(path: Path, split: str, batch_size: int) -> int:
    from omnimer.collate import audio_arrays
    from omnimer.data.shards import open_split

    n = 0
    for batch in open_split(path, split).to_batches(columns=["frames", "audio"], batch_size=batch_size):
        frames = batch.column("frames").to_numpy_ndarray()
        clips = audio_arrays(batch.column("audio"))
        n += len(frames) + 0 * len(clips)
    return n


def _batches_from_ray(path: Path, split: str, batch_size: int) -> int:
    from omnimer.data.shards import load_split

    n = 0
    for batch in load_split(path, split, columns=["frames", "audio"]).iter_batches(
        batch_size=batch_size, batch_format="numpy"
    ):
        n += len(batch["frames"])
    return n


def _batches_from_mp4(rows: list[dict], frames: int, size: int, max_seconds: float, batch_size: int) -> int:
    from omnimer.data.media import decode_audio, decode_frames

    n = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        pixels = np.stack([decode_frames(r["source_video"], frames, size).pixels for r in chunk])
        audio = [decode_audio(r["source_audio"] or r["source_video"], 16000, max_seconds) for r in chunk]
        n += len(pixels) + 0 * len(audio)
    return n


@dataclass(frozen=True)
class SourceMedia:
    """The mp4s decoded per step: closer to real clips (IndoMER's are HD, several seconds at 25-30 fps)
    than the demo's tiny ones, while still rendering in about a minute."""

    size: int = 256
    fps: int = 25
    seconds: float = 4.0


def _best_of(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def bench_data(
    workdir: Path, ray_temp: Path, clips: int, frames: int, size: int, repeats: int, source: SourceMedia
) -> Path:
    import ray

    from omnimer.config import IngestConfig
    from omnimer.data.ingest import ingest
    from omnimer.data.shards import open_split
    from omnimer.data.synthetic import SynthConfig, synthesize

    corpus = workdir / "corpus"
    synth = SynthConfig(
        clips=clips,
        speakers=max(2, clips // 10),
        seed=0,
        seconds=source.seconds,
        fps=source.fps,
        size=source.size,
    )
    synthesize(corpus, synth, progress=False)
    print(
        f"source clips: {clips} synthetic mp4 (H.264 + AAC) of {source.size}x{source.size} "
        f"at {source.fps} fps, {source.seconds:g} s, + 16 kHz wav"
    )
    cfg = IngestConfig(frames=frames, size=size, max_audio_seconds=4.0)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(ray_temp),
    )
    # A warm-up ingest pays Ray's worker start-up, which a real run pays once per cluster.
    ingest(corpus, workdir / "warm", cfg)
    start = time.perf_counter()
    info = ingest(corpus, workdir / "shards", cfg)
    ingest_s = time.perf_counter() - start
    total = sum(info["counts"]["rows"].values())
    print(
        f"ingest: {total} clips ({frames} frames of {size}x{size}, audio <= 4 s) in {ingest_s:.2f} s "
        f"= {total / ingest_s:.1f} clips/s on 2 CPUs"
    )

    shards = workdir / "shards"
    rows = open_split(shards, "train").to_table(columns=["source_video", "source_audio"]).to_pylist()
    batch_size = 8
    t_mp4 = _best_of(repeats, _batches_from_mp4, rows, frames, size, 4.0, batch_size)
    t_pa = _best_of(repeats, _batches_from_pyarrow, shards, "train", batch_size)
    t_ray = _best_of(repeats, _batches_from_ray, shards, "train", batch_size)
    n = len(rows)
    print(f"batch preparation, {n} train clips in batches of {batch_size} (best of {repeats}):")
    print(f"  decode mp4+wav with decord per step : {t_mp4 * 1e3 / n:8.3f} ms/clip")
    print(
        f"  shards via pyarrow.dataset          : {t_pa * 1e3 / n:8.3f} ms/clip   ratio {t_mp4 / t_pa:7.1f}x"
    )
    print(
        f"  shards via Ray Data iter_batches    : {t_ray * 1e3 / n:8.3f} ms/clip   "
        f"ratio {t_mp4 / t_ray:7.1f}x"
        "  (includes the streaming executor's start-up per epoch)"
    )
    ray.shutdown()
    return shards


def bench_model(workdir: Path, shards: Path) -> None:
    from omnimer.collate import rows_from_table
    from omnimer.data.shards import open_split, read_dataset_info
    from omnimer.labels import label_set_of
    from omnimer.model.tiny import build_tiny_model

    from .train_bench import bench_train

    info = read_dataset_info(shards)
    model_path = build_tiny_model(workdir / "tiny-model", seed=0)
    rows = sorted(rows_from_table(open_split(shards, "train").to_table()), key=lambda r: r["clip_id"])
    bench_train(str(model_path), rows, label_set_of(info, "emotion"), int(info["frames"]["height"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sweep", type=Path, default=Path("runs/demo/sweeps/demo"), help="finished sweep to measure"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="omnimer-bench-"))
    # Ray's sockets need a short path: its temp dir sits in /tmp, not in the (long) workdir.
    ray_temp = Path(tempfile.mkdtemp(prefix="omr-bench-", dir="/tmp"))
    try:
        shards = bench_data(
            workdir, ray_temp, args.clips, args.frames, args.size, args.repeats, SourceMedia()
        )
        bench_model(workdir, shards)
        bench_sweep(args.sweep)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(ray_temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
