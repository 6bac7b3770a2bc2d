"""Planning: the labels, transcript and expressions of every clip, drawn without rendering anything.

:func:`plan_corpus` draws a fresh corpus (speakers, videos, topics, splits, then each clip's labels,
modality labels, transcript, face and voice); :func:`plan_from_annotations` keeps an existing IndoMER
annotation set (read by :func:`omnimer.data.formats.indomer.read_indomer_annotations`, the reader of
``omnimer ingest``) and draws only what the media need. Both are fast: tests use them directly.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimer.data.formats.indomer import (
    INDOMER_PUBLISHED,
    INDOMER_SPLIT_FILES,
    IndomerAnnotations,
    read_indomer_annotations,
)
from omnimer.data.formats.manifest import ManifestError, Problem
from omnimer.data.lexicon import NO_KEYWORDS
from omnimer.data.synthetic.config import (
    EMOTIONS,
    MODALITIES,
    SENTIMENTS,
    STREAM_LABELS,
    STREAM_LAYOUT,
    SynthConfig,
    seeded_rng,
)
from omnimer.data.synthetic.expressions import (
    FaceExpression,
    Prosody,
    describe_face,
    describe_prosody,
    face_expression,
    prosody,
)
from omnimer.data.synthetic.transcripts import compose_transcript
from omnimer.labels import INDOMER_EMOTION_SENTIMENT

log = logging.getLogger(__name__)

# IndoMER's published split names, as the corpus writes them (ingest reads val as its test split).
PUBLISHED_SPLITS: tuple[str, ...] = tuple(INDOMER_PUBLISHED)
# Clip counts of the published Annotations.csv (1,944 clips): the long tail the corpus reproduces.
INDOMER_EMOTION_COUNTS: dict[str, int] = {
    "netral": 1316, "kebahagiaan": 317, "kesedihan": 174, "kemarahan": 82,
    "jijik": 38, "ketakutan": 9, "surprise": 8,
}  # fmt: skip
# Clip counts per topic in the published annotations ("Opinions", a 15-clip spelling variant, left out).
INDOMER_TOPIC_COUNTS: dict[str, int] = {
    "Sharing": 774, "Family": 272, "Tutorials": 215, "Health": 153, "Opinion": 123, "Blogger": 112,
    "Cooking": 55, "Makeup": 54, "Celebrity": 53, "Society": 35, "Product": 34, "Book": 34, "Politics": 15,
}  # fmt: skip
TOPICS: tuple[str, ...] = tuple(INDOMER_TOPIC_COUNTS)


@dataclass(frozen=True)
class ClipPlan:
    """Everything about one clip except its pixels and samples."""

    index: int  # position in the corpus; seeds the clip's generators
    name: str  # clip_<video>_<topic>_<n>
    video: int
    topic: str
    speaker_id: str
    speaker_key: int  # seeds the speaker's face and voice
    split: str  # "train" or "val" (IndoMER's published names)
    emotion: str
    sentiment: str
    text_sentiment: str
    audio_sentiment: str
    video_sentiment: str
    text_emotion: str  # the emotion each modality expresses
    audio_emotion: str
    video_emotion: str
    text: str
    aux_keywords: str  # inserted keywords joined by ", ", NO_KEYWORDS, or "" for real transcripts
    face: FaceExpression
    voice: Prosody

    @property
    def aux_face(self) -> str:
        return describe_face(self.face)

    @property
    def aux_prosody(self) -> str:
        return describe_prosody(self.voice)


_POSITIVE_EMOTIONS = tuple(e for e in EMOTIONS if INDOMER_EMOTION_SENTIMENT[e] == "positif")
_NEGATIVE_EMOTIONS = tuple(e for e in EMOTIONS if INDOMER_EMOTION_SENTIMENT[e] == "negatif")


def _expressed_emotion(emotion: str, modality_sentiment: str, rng: np.random.Generator) -> str:
    """The emotion a modality shows: the clip's own where its sentiment is the emotion's, else one of its own
    sentiment's (netral -> netral, positif -> kebahagiaan/surprise, negatif -> a negative emotion)."""
    if modality_sentiment == INDOMER_EMOTION_SENTIMENT[emotion]:
        return emotion
    if modality_sentiment == "netral":
        return "netral"
    pool = _POSITIVE_EMOTIONS if modality_sentiment == "positif" else _NEGATIVE_EMOTIONS
    # Softened IndoMER frequencies: mostly the common emotions, but every one appears.
    weights = np.sqrt([INDOMER_EMOTION_COUNTS[e] for e in pool])
    return pool[rng.choice(len(pool), p=weights / weights.sum())]


def _carried_emotion(emotion: str, carries_label: bool, rng: np.random.Generator) -> str:
    """``label_in`` corpora: the clip's emotion in the modality that carries the label; elsewhere an
    emotion drawn from IndoMER's class proportions, independently of the clip's label."""
    if carries_label:
        return emotion
    weights = np.array([INDOMER_EMOTION_COUNTS[e] for e in EMOTIONS], float)
    return EMOTIONS[rng.choice(len(EMOTIONS), p=weights / weights.sum())]


def _draw_modality_sentiments(
    sentiment: str, rates: Sequence[float], consensus: float, rng: np.random.Generator
) -> list[str]:
    if rng.random() < consensus:
        return [sentiment] * len(rates)
    others = [s for s in SENTIMENTS if s != sentiment]
    drawn = []
    for rate in rates:
        agree = (rate - consensus) / (1.0 - consensus)
        drawn.append(sentiment if rng.random() < agree else others[rng.integers(len(others))])
    return drawn


def _intensity(emotion: str, rng: np.random.Generator) -> float:
    # Strong enough to be visible at 56x56 pixels and audible in pitch statistics.
    return 0.0 if emotion == "netral" else float(rng.uniform(0.65, 1.0))


def _plan_clip(
    *,
    seed: int,
    index: int,
    name: str,
    video: int,
    topic: str,
    speaker_id: str,
    speaker_key: int,
    split: str,
    emotion: str,
    sentiment: str,
    modality_sentiments: Sequence[str] | None,
    text: str | None,
    config: SynthConfig,
) -> ClipPlan:
    rng = seeded_rng(seed, STREAM_LABELS, index)
    if modality_sentiments is None and config.label_in != "all":
        expressed = [_carried_emotion(emotion, m == config.label_in, rng) for m in MODALITIES]
        modality_sentiments = [INDOMER_EMOTION_SENTIMENT[e] for e in expressed]
    else:
        if modality_sentiments is None:
            rates = (config.text_agreement, config.audio_agreement, config.video_agreement)
            modality_sentiments = _draw_modality_sentiments(sentiment, rates, config.consensus(), rng)
        expressed = [_expressed_emotion(emotion, s, rng) for s in modality_sentiments]
    text_sentiment, audio_sentiment, video_sentiment = modality_sentiments
    text_emotion, audio_emotion, video_emotion = expressed
    if text is None:
        text, keywords = compose_transcript(topic, text_emotion, rng)
        aux_keywords = ", ".join(keywords) or NO_KEYWORDS
    else:
        aux_keywords = ""  # a real transcript: its keywords are not known ground truth
    return ClipPlan(
        index=index,
        name=name,
        video=video,
        topic=topic,
        speaker_id=speaker_id,
        speaker_key=speaker_key,
        split=split,
        emotion=emotion,
        sentiment=sentiment,
        text_sentiment=text_sentiment,
        audio_sentiment=audio_sentiment,
        video_sentiment=video_sentiment,
        text_emotion=text_emotion,
        audio_emotion=audio_emotion,
        video_emotion=video_emotion,
        text=text,
        aux_keywords=aux_keywords,
        face=face_expression(video_emotion, _intensity(video_emotion, rng)),
        voice=prosody(audio_emotion, _intensity(audio_emotion, rng)),
    )


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    weights_arr = np.asarray(weights, float)
    exact = total * weights_arr / weights_arr.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def _split_videos(sizes: dict[int, int], test_fraction: float, rng: np.random.Generator) -> dict[int, str]:
    """Whole videos to val until about ``test_fraction`` of the clips are there; both splits non-empty."""
    videos = sorted(sizes)
    order = [videos[i] for i in rng.permutation(len(videos))]
    total = sum(sizes.values())
    target = test_fraction * total
    val: list[int] = []
    val_clips = 0
    for video in order:
        if len(val) == len(videos) - 1:
            break
        if val_clips + sizes[video] <= target * 1.15 + 1:
            val.append(video)
            val_clips += sizes[video]
        if val_clips >= target:
            break
    if not val:
        val.append(min(videos, key=lambda v: (sizes[v], v)))
    return {v: ("val" if v in val else "train") for v in videos}


def _emotion_sequence(n: int, min_per_class: int, rng: np.random.Generator) -> list[str]:
    """``n`` emotions in IndoMER's long-tailed proportions, ``min_per_class`` of each guaranteed."""
    quota = min(min_per_class, n // len(EMOTIONS))
    counts = _largest_remainder(n - quota * len(EMOTIONS), [INDOMER_EMOTION_COUNTS[e] for e in EMOTIONS])
    emotions = [e for e, c in zip(EMOTIONS, counts, strict=True) for _ in range(c + quota)]
    return [emotions[i] for i in rng.permutation(len(emotions))]


def plan_corpus(config: SynthConfig) -> list[ClipPlan]:
    """Draw the layout (speakers, videos, topics, splits) and every clip's labels and transcript.

    Videos: about 8 clips each (IndoMER has 9.4), every speaker at least one. Splits are by whole
    video. Emotions follow IndoMER's proportions per split, with at least 2 clips of every class in
    each split when ``clips >= 100`` (1 in smaller corpora, where the split has room for 7).
    """
    rng = seeded_rng(config.seed, STREAM_LAYOUT)
    n_videos = min(config.clips, max(config.speakers, 2, round(config.clips / 8)))
    owners = list(rng.permutation(config.speakers)) + list(
        rng.integers(0, config.speakers, n_videos - config.speakers)
    )
    sizes_arr = 1 + rng.multinomial(config.clips - n_videos, rng.dirichlet(np.full(n_videos, 2.0)))
    topic_weights = np.array([INDOMER_TOPIC_COUNTS[t] for t in TOPICS], float)
    topics = [
        TOPICS[i] for i in rng.choice(len(TOPICS), size=n_videos, p=topic_weights / topic_weights.sum())
    ]
    sizes = {v + 1: int(sizes_arr[v]) for v in range(n_videos)}
    splits = _split_videos(sizes, config.test_fraction, rng)
    min_per_class = 2 if config.clips >= 100 else 1
    emotions_by_split = {
        split: _emotion_sequence(sum(n for v, n in sizes.items() if splits[v] == split), min_per_class, rng)
        for split in PUBLISHED_SPLITS
    }
    plans: list[ClipPlan] = []
    for video in range(1, n_videos + 1):
        speaker = int(owners[video - 1]) + 1
        split = splits[video]
        for clip in range(1, sizes[video] + 1):
            emotion = emotions_by_split[split].pop()
            plans.append(
                _plan_clip(
                    seed=config.seed,
                    index=len(plans),
                    name=f"clip_{video}_{topics[video - 1]}_{clip}",
                    video=video,
                    topic=topics[video - 1],
                    speaker_id=f"speaker_{speaker}",
                    speaker_key=speaker,
                    split=split,
                    emotion=emotion,
                    sentiment=INDOMER_EMOTION_SENTIMENT[emotion],
                    modality_sentiments=None,
                    text=None,
                    config=config,
                )
            )
    return plans


# What rendering a clip needs of its annotations: every label and the transcript.
REQUIRED_FOR_MEDIA: tuple[str, ...] = (
    "emotion", "sentiment", "text_sentiment", "audio_sentiment", "video_sentiment", "text",
)  # fmt: skip


def _read_source_annotations(directory: Path) -> IndomerAnnotations:
    """The annotation set to render media for, read as ``omnimer ingest`` reads it, plus synthesis' checks.

    Raises ``ValueError`` (:class:`ManifestError` names each file, row and column) for any problem the
    IndoMER reader finds, for a class folder with one split file but not the other (the corpus copies
    both), and for a clip that lacks a label or its text in every annotation file.
    """
    annotations = read_indomer_annotations(directory)
    for kind, (folder, pattern) in INDOMER_SPLIT_FILES.items():
        present = annotations.published_split_files(kind)
        if present and len(present) != len(PUBLISHED_SPLITS):
            missing = [
                str(directory / folder / pattern.format(s)) for s in PUBLISHED_SPLITS if s not in present
            ]
            raise ValueError(f"{directory}: {folder} has {sorted(present)} but lacks {', '.join(missing)}")
    if annotations.all_problems():
        raise ManifestError(annotations.all_problems())
    incomplete = []
    for clip, fields in annotations.fields.items():
        missing = [k for k in REQUIRED_FOR_MEDIA if k not in fields]
        if missing:
            file, row = annotations.first_seen[clip]
            reason = (
                f"clip has no {', '.join(missing)} in any annotation file; rendering its media needs "
                "the emotion, the sentiment, the three modality sentiments and the text"
            )
            incomplete.append(Problem(file, row, missing[0], reason, clip))
    if incomplete:
        raise ManifestError(incomplete)
    return annotations


def plan_from_annotations(directory: Path, config: SynthConfig) -> tuple[list[ClipPlan], IndomerAnnotations]:
    """Plans that keep the source's clip names, texts, labels and splits; only media are synthetic.

    The speaker is the source video (IndoMER does not identify speakers) unless the CSV has a
    ``speaker_id`` column. Without split JSONs, whole videos are split with ``config.test_fraction``.
    """
    directory = Path(directory)
    annotations = _read_source_annotations(directory)
    published = {split: name for name, split in INDOMER_PUBLISHED.items()}  # manifest split -> published
    records = {clip: {k: v.value for k, v in fields.items()} for clip, fields in annotations.fields.items()}

    def parse(name: str) -> tuple[int, str, int]:
        match = annotations.clip_names[name]
        return int(match["video"]), match["topic"], int(match["index"])

    names = sorted(records, key=lambda n: (*parse(n), n))
    splits: dict[int, str] = {}
    if not annotations.split_files:
        sizes = Counter(parse(n)[0] for n in names)
        splits = _split_videos(dict(sizes), config.test_fraction, seeded_rng(config.seed, STREAM_LAYOUT))
    else:
        by_video: dict[int, set[str]] = {}
        for name in names:
            by_video.setdefault(parse(name)[0], set()).add(records[name]["split"])
        shared = sorted(v for v, s in by_video.items() if len(s) > 1)
        if shared:
            log.warning(
                "%s: %d video(s) have clips in both splits (kept as published): %s",
                directory,
                len(shared),
                shared[:10],
            )
    plans = []
    for index, name in enumerate(names):
        record = records[name]
        video, topic, _ = parse(name)
        speaker_id = record.get("speaker_id", str(video))
        plans.append(
            _plan_clip(
                seed=config.seed,
                index=index,
                name=name,
                video=video,
                topic=topic,
                speaker_id=speaker_id,
                speaker_key=video if speaker_id == str(video) else zlib.crc32(speaker_id.encode()),
                split=published[record["split"]] if "split" in record else splits[video],
                emotion=record["emotion"],
                sentiment=record["sentiment"],
                modality_sentiments=[record[f"{m}_sentiment"] for m in MODALITIES],
                text=record["text"],
                config=config,
            )
        )
    return plans, annotations
