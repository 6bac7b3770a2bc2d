"""Synthetic IndoMER-format corpus: the embedded default dataset of tests and the demo (DESIGN §6).

Writes exactly IndoMER's published layout (DESIGN §3) plus rendered media::

    Annotations.csv                      IndoMER's 8 columns + speaker_id, aux_keywords, aux_face, aux_prosody
    7_Class/7_class_{train,val}.json     sample_id, text, sentiment_label, label, video, audio
    3_Class/3_class_{train,val}.json     sample_id, text, audio_label, text_label, video_label, label, ...
    videos/clip_<video>_<topic>_<n>.mp4  H.264 video of a drawn face + AAC audio
    audios/clip_<video>_<topic>_<n>.wav  16 kHz mono int16, the same signal as the mp4's audio

Every modality carries its own label: the face's action units follow the video modality's emotion,
the voice's pitch, energy and tempo follow the audio modality's emotion, and the transcript holds
emotion keywords from the built-in lexicon when (and only when) the text modality is emotional. Each
modality agrees with the overall label only part of the time, at IndoMER's measured rates.

Run::

    omnimer synth --out DIR [--clips N] [--speakers N] [--seed S]     # a fresh synthetic corpus
    omnimer synth --out DIR --from-annotations ../shared/datasets/indomer  # media for real labels

or from Python: ``synthesize(Path("data/synth"), SynthConfig(clips=200))``. ``plan_corpus(config)``
draws the labels and transcripts without rendering anything (fast; used by tests).

Determinism: the corpus layout is drawn from ``seed``; each clip's labels, transcript and media from
its own generator seeded with ``(seed, stream, clip index)``, so clips render in any order or in
parallel and the same seed gives byte-identical annotation files and identical decoded media.

One module per concept, in pipeline order:

- :mod:`~omnimer.data.synthetic.config`: :class:`SynthConfig`, the agreement rates' consensus
  probability, the shared constants and seeded random streams;
- :mod:`~omnimer.data.synthetic.expressions`: face action units and prosody per emotion, and their
  descriptions (the aux_face / aux_prosody targets);
- :mod:`~omnimer.data.synthetic.speakers`: each speaker's face and voice, each video's background;
- :mod:`~omnimer.data.synthetic.transcripts`: Indonesian transcripts with or without emotion keywords;
- :mod:`~omnimer.data.synthetic.planning`: :class:`ClipPlan`, :func:`plan_corpus` and
  :func:`plan_from_annotations` (real annotations, read by ``omnimer.data.formats.indomer``);
- :mod:`~omnimer.data.synthetic.voice`: the audio signal and the wav;
- :mod:`~omnimer.data.synthetic.face`: the drawn face and a clip's frames;
- :mod:`~omnimer.data.synthetic.render`: every clip's wav + mp4 in worker processes (PyAV is imported
  only there, when an mp4 is written);
- :mod:`~omnimer.data.synthetic.annotations`: ``Annotations.csv`` and the split JSONs;
- this package: :func:`synthesize` (plan, write annotations, render, atomically) and :func:`summarize`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from omnimer.data.synthetic.annotations import (
    ANNOTATION_COLUMNS,
    EXTRA_COLUMNS,
    SEVEN_CLASS_KEYS,
    THREE_CLASS_KEYS,
    write_annotations,
)
from omnimer.data.synthetic.config import (
    EMOTIONS,
    MODALITIES,
    SAMPLE_RATE,
    SENTIMENTS,
    SynthConfig,
    consensus_probability,
)
from omnimer.data.synthetic.expressions import (
    FaceExpression,
    Prosody,
    describe_face,
    describe_prosody,
    face_expression,
    prosody,
)
from omnimer.data.synthetic.face import Pose, draw_face, render_frames
from omnimer.data.synthetic.planning import (
    PUBLISHED_SPLITS,
    TOPICS,
    ClipPlan,
    plan_corpus,
    plan_from_annotations,
)
from omnimer.data.synthetic.render import render_clips, write_mp4
from omnimer.data.synthetic.speakers import SpeakerStyle, speaker_style, video_background
from omnimer.data.synthetic.transcripts import compose_transcript
from omnimer.data.synthetic.voice import RenderedAudio, render_audio, write_wav

log = logging.getLogger(__name__)


def realized_agreement(plans: Sequence[ClipPlan]) -> dict[str, float]:
    """Measured P(modality sentiment == sentiment) per modality and P(all three modalities equal)."""
    n = max(1, len(plans))
    rates = {m: sum(getattr(p, f"{m}_sentiment") == p.sentiment for p in plans) / n for m in MODALITIES}
    rates["all_modalities"] = (
        sum(p.text_sentiment == p.audio_sentiment == p.video_sentiment for p in plans) / n
    )
    return rates


def summarize(plans: Sequence[ClipPlan]) -> dict:
    """Counts per split × emotion / sentiment, videos and speakers (no paths, no timings)."""
    splits = {}
    for split in PUBLISHED_SPLITS:
        members = [p for p in plans if p.split == split]
        emotions = Counter(p.emotion for p in members)
        sentiments = Counter(p.sentiment for p in members)
        splits[split] = {
            "clips": len(members),
            "videos": len({p.video for p in members}),
            "emotion": {e: emotions.get(e, 0) for e in EMOTIONS},
            "sentiment": {s: sentiments.get(s, 0) for s in SENTIMENTS},
        }
    return {
        "clips": len(plans),
        "videos": len({p.video for p in plans}),
        "speakers": len({p.speaker_id for p in plans}),
        "splits": splits,
        "agreement": {k: round(v, 4) for k, v in realized_agreement(plans).items()},
    }


def check_request(out: Path, config: SynthConfig, from_annotations: Path | None) -> None:
    """Refuse an output dir that holds something, and ``label_in`` with an annotation set."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"output directory {out} exists and is not empty; choose a new --out or remove it"
        )
    if from_annotations is not None and config.label_in != "all":
        raise ValueError(
            f"label_in={config.label_in!r} draws the modality labels, but an annotation set "
            f"({from_annotations}) keeps its own: use --label-in or --from-annotations, not both"
        )


def synthesize(
    out: Path,
    config: SynthConfig,
    from_annotations: Path | None = None,
    *,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Render an IndoMER-format corpus into ``out`` and return its summary.

    Without ``from_annotations`` the clips, labels and transcripts are drawn from ``config``; with it,
    the annotation set in that directory is kept (names, texts, labels, splits) and only media are
    synthesised. ``out`` must not exist or be empty: everything is written into a temporary sibling
    directory that is renamed to ``out`` at the end, so ``out`` is either complete or absent.

    ``workers`` processes render clips (1: in this process); they are forked when the caller runs a
    single thread, else spawned, and spawning needs the usual ``if __name__ == "__main__":`` guard
    in a calling script. ``progress`` shows a tqdm bar on stderr.

    Summary keys: clips, videos, speakers, splits (per split: clips, videos, emotion and sentiment
    counts), agreement (realised per-modality and all-modality rates), out, annotations, split_files,
    videos_dir, audios_dir, from_annotations, seed, seconds, fps, size, label_in, elapsed_s.
    """
    out = Path(out)
    check_request(out, config, from_annotations)
    started = time.perf_counter()
    source = None
    if from_annotations is None:
        plans = plan_corpus(config)
    else:
        plans, source = plan_from_annotations(Path(from_annotations), config)
    log.info(
        "synthesizing %d clips (%d videos) into %s with %d worker(s)",
        len(plans),
        len({p.video for p in plans}),
        out,
        workers,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        write_annotations(staging, plans, source)
        render_clips(staging, plans, config, workers=workers, progress=progress)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = summarize(plans)
    summary.update(
        out=str(out),
        annotations=str(out / "Annotations.csv"),
        split_files={
            f"{stem}_{split}": str(out / folder / f"{stem}_{split}.json")
            for folder, stem in (("7_Class", "7_class"), ("3_Class", "3_class"))
            for split in PUBLISHED_SPLITS
        },
        videos_dir=str(out / "videos"),
        audios_dir=str(out / "audios"),
        from_annotations=None if from_annotations is None else str(from_annotations),
        seed=config.seed,
        seconds=config.seconds,
        fps=config.fps,
        size=config.size,
        label_in=config.label_in,
        elapsed_s=round(time.perf_counter() - started, 2),
    )
    log.info(
        "wrote %s: %d clips (train %d, val %d) in %.1f s",
        out,
        summary["clips"],
        summary["splits"]["train"]["clips"],
        summary["splits"]["val"]["clips"],
        summary["elapsed_s"],
    )
    return summary


__all__ = [
    "ANNOTATION_COLUMNS",
    "EXTRA_COLUMNS",
    "PUBLISHED_SPLITS",
    "SAMPLE_RATE",
    "SEVEN_CLASS_KEYS",
    "THREE_CLASS_KEYS",
    "TOPICS",
    "ClipPlan",
    "FaceExpression",
    "Pose",
    "Prosody",
    "RenderedAudio",
    "SpeakerStyle",
    "SynthConfig",
    "compose_transcript",
    "consensus_probability",
    "describe_face",
    "describe_prosody",
    "draw_face",
    "face_expression",
    "plan_corpus",
    "plan_from_annotations",
    "prosody",
    "realized_agreement",
    "render_audio",
    "render_clips",
    "render_frames",
    "speaker_style",
    "summarize",
    "synthesize",
    "video_background",
    "write_annotations",
    "write_mp4",
    "write_wav",
]
