"""Rendering clips: each planned clip's wav and mp4, in a pool of worker processes (:func:`render_clips`),
and the mp4 writer (:func:`write_mp4`: H.264 + AAC muxed with PyAV).

PyAV is imported inside :func:`write_mp4` only, so that planning a corpus (and importing the package)
does not need it.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from omnimer.data.synthetic.config import SAMPLE_RATE, STREAM_RENDER, SynthConfig, seeded_rng
from omnimer.data.synthetic.expressions import FaceExpression, Prosody
from omnimer.data.synthetic.face import render_frames
from omnimer.data.synthetic.planning import ClipPlan
from omnimer.data.synthetic.speakers import SpeakerStyle, speaker_style, video_background
from omnimer.data.synthetic.voice import render_audio, write_wav


def write_mp4(path: Path, frames: np.ndarray, fps: int, samples: np.ndarray) -> None:
    """H.264 (yuv420p) video + AAC audio of the same int16 samples as the wav, both muxed with PyAV."""
    import av  # here only: planning a corpus or importing this package must not need PyAV

    if "libx264" not in av.codecs_available:
        raise RuntimeError("this PyAV build has no libx264 encoder; install the av wheel from PyPI")
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        # Reproducible bytes need one x264 thread (the "threads" option reaches x264;
        # codec_context.thread_count does not) and no macroblock-tree rate control, whose SIMD path
        # gave run-to-run differences on these small frames (measured: 2-3 variants in 25 encodes of
        # the same frames; with mbtree=0, one). Clips already render in parallel processes.
        video.options = {"preset": "veryfast", "crf": "18", "threads": "1", "x264-params": "mbtree=0"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        audio.bit_rate = 48_000
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        pcm = (samples.astype(np.float32) / 32768.0)[None, :]
        audio_frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
        audio_frame.sample_rate = SAMPLE_RATE
        audio_frame.pts = 0
        container.mux(audio.encode(audio_frame))
        container.mux(audio.encode(None))


@dataclass(frozen=True)
class _RenderJob:
    """What a worker process needs to render one clip (picklable)."""

    directory: str
    name: str
    index: int
    seed: int
    face: FaceExpression
    voice: Prosody
    style: SpeakerStyle
    background: tuple[float, float, float]
    seconds: float
    fps: int
    size: int


def _render_job(job: _RenderJob) -> str:
    """Render one clip's wav and mp4 (runs in a worker process)."""
    try:
        rng = seeded_rng(job.seed, STREAM_RENDER, job.index)
        audio = render_audio(job.voice, job.style, job.seconds, rng)
        frames = render_frames(
            job.face, job.style, job.background, audio.envelope, job.seconds, job.fps, job.size, rng
        )
        directory = Path(job.directory)
        samples = write_wav(directory / "audios" / f"{job.name}.wav", audio.signal)
        write_mp4(directory / "videos" / f"{job.name}.mp4", frames, job.fps, samples)
    except Exception as err:
        raise RuntimeError(f"rendering {job.name} failed: {err}") from err
    return job.name


def _start_method() -> str:
    """fork where it is safe (a single-threaded caller), else spawn.

    fork starts workers instantly and does not re-run an unguarded ``__main__`` script; a process
    that already runs threads (Ray, a tqdm monitor, a data loader) may hold locks a forked child
    would inherit locked, so there the workers are spawned instead.
    """
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def render_clips(
    directory: Path,
    plans: Sequence[ClipPlan],
    config: SynthConfig,
    *,
    workers: int = 2,
    progress: bool = True,
) -> None:
    """Render every planned clip into ``directory``/videos and /audios, ``workers`` processes at a time."""
    (directory / "videos").mkdir(parents=True, exist_ok=True)
    (directory / "audios").mkdir(parents=True, exist_ok=True)
    styles: dict[int, SpeakerStyle] = {}
    jobs = []
    for plan in plans:
        if plan.speaker_key not in styles:
            styles[plan.speaker_key] = speaker_style(config.seed, plan.speaker_key)
        jobs.append(
            _RenderJob(
                directory=str(directory),
                name=plan.name,
                index=plan.index,
                seed=config.seed,
                face=plan.face,
                voice=plan.voice,
                style=styles[plan.speaker_key],
                background=video_background(config.seed, plan.video),
                seconds=float(config.seconds),
                fps=config.fps,
                size=config.size,
            )
        )
    if workers <= 1:
        with _progress_bar(len(jobs), progress) as bar:
            for job in jobs:
                _render_job(job)
                bar.update()
        return
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # Submitting first starts the workers before tqdm starts its monitor thread.
        results = pool.map(_render_job, jobs, chunksize=8)
        with _progress_bar(len(jobs), progress) as bar:
            for _ in results:
                bar.update()


def _progress_bar(total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, desc="render", unit="clip", file=sys.stderr, disable=not enabled)
