"""The synthetic IndoMER-format corpus (DESIGN §6): layout, media, determinism, label statistics, signal.

Run: .venv/bin/python -m pytest tests/test_synthetic.py -q
"""

from __future__ import annotations

import itertools
import json
import re
import string
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from corpusfiles import JSON_FILES, annotation_bytes, decode, read_csv

from omnimer.data.lexicon import NO_KEYWORDS, find_keywords, keyword_emotions, keywords_answer
from omnimer.data.synthetic import (
    ANNOTATION_COLUMNS,
    EXTRA_COLUMNS,
    MODALITIES,
    SAMPLE_RATE,
    SEVEN_CLASS_KEYS,
    THREE_CLASS_KEYS,
    TOPICS,
    ClipPlan,
    SynthConfig,
    describe_face,
    describe_prosody,
    draw_face,
    face_expression,
    plan_corpus,
    prosody,
    realized_agreement,
    render_audio,
    speaker_style,
    synthesize,
)
from omnimer.data.synthetic import render as synthetic_render
from omnimer.data.synthetic.annotations import split_json_bytes
from omnimer.data.synthetic.face import ZOOM
from omnimer.data.synthetic.transcripts import (
    FILLERS,
    KEYWORD_FRAMES_ONE,
    KEYWORD_FRAMES_TWO,
    TOPIC_SENTENCES,
)
from omnimer.labels import INDOMER_EMOTION, INDOMER_EMOTION_SENTIMENT

SHARED_INDOMER = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "indomer"
SMALL = SynthConfig(clips=24, speakers=4, seed=3, seconds=1.0, size=64)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, synthesize(out, SMALL, workers=2, progress=False)


# --------------------------------------------------------------------------------------------------
# Layout and formats


def test_writes_exactly_the_indomer_layout(corpus: tuple[Path, dict]) -> None:
    out, summary = corpus
    rows = read_csv(out / "Annotations.csv")
    names = [Path(r["video_name"]).stem for r in rows]
    expected = {"Annotations.csv", *JSON_FILES}
    expected |= {f"videos/{n}.mp4" for n in names} | {f"audios/{n}.wav" for n in names}
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == expected
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no staging directory left behind
    assert summary["clips"] == len(rows) == SMALL.clips
    assert summary["speakers"] == SMALL.speakers
    assert sum(s["clips"] for s in summary["splits"].values()) == SMALL.clips
    assert sum(summary["splits"]["train"]["emotion"].values()) == summary["splits"]["train"]["clips"]


def test_annotation_columns_and_keys(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    header = (out / "Annotations.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == [*ANNOTATION_COLUMNS, *EXTRA_COLUMNS]
    assert (out / "Annotations.csv").read_bytes().count(b"\r\n") == SMALL.clips + 1  # CRLF, as published
    for name in JSON_FILES:
        raw = (out / name).read_bytes()
        assert raw.startswith(b"[\r\n  {")
        items = json.loads(raw)
        keys = SEVEN_CLASS_KEYS if name.startswith("7") else THREE_CLASS_KEYS
        assert items and all(tuple(item) == keys for item in items)


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_INDOMER.is_dir(), reason="../shared/datasets/indomer is absent")
def test_formats_match_the_published_files() -> None:
    header = (SHARED_INDOMER / "Annotations.csv").read_text(encoding="utf-8").splitlines()[0]
    assert tuple(header.split(",")) == ANNOTATION_COLUMNS
    for name in JSON_FILES:
        items = json.loads((SHARED_INDOMER / name).read_bytes())
        keys = SEVEN_CLASS_KEYS if name.startswith("7") else THREE_CLASS_KEYS
        assert tuple(items[0]) == keys
        # Our writer reproduces the published bytes (indent, CRLF, raw UTF-8).
        assert split_json_bytes(items) == (SHARED_INDOMER / name).read_bytes()


def test_labels_names_and_splits_are_consistent(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    rows = {Path(r["video_name"]).stem: r for r in read_csv(out / "Annotations.csv")}
    videos_by_split: dict[str, set[int]] = {}
    for split in ("train", "val"):
        seven = json.loads((out / f"7_Class/7_class_{split}.json").read_bytes())
        three = json.loads((out / f"3_Class/3_class_{split}.json").read_bytes())
        assert [s["sample_id"] for s in seven] == [s["sample_id"] for s in three]
        for s7, s3 in zip(seven, three, strict=True):
            row = rows[s7["sample_id"]]
            assert (s7["label"], s7["sentiment_label"], s7["text"]) == (
                row["emotion"],
                row["sentiment"],
                row["text"],
            )
            assert (s3["text_label"], s3["audio_label"], s3["video_label"], s3["label"]) == (
                row["text_sentiment"],
                row["audio_sentiment"],
                row["video_sentiment"],
                row["sentiment"],
            )
            assert (s7["video"], s7["audio"]) == (row["video_name"], row["audio_name"])
        videos_by_split[split] = {int(s["sample_id"].split("_")[1]) for s in seven}
    assert videos_by_split["train"] and videos_by_split["val"]
    assert not videos_by_split["train"] & videos_by_split["val"]
    assert min(videos_by_split["train"] | videos_by_split["val"]) == 1
    for name, row in rows.items():
        match = re.fullmatch(r"clip_(\d+)_([A-Za-z]+)_(\d+)", name)
        assert match and match.group(2) in TOPICS
        assert row["sentiment"] == INDOMER_EMOTION_SENTIMENT[row["emotion"]]
        assert row["aux_keywords"] == keywords_answer(row["text"])
        assert row["aux_face"] and row["aux_prosody"].startswith("nada ")
        assert row["speaker_id"].startswith("speaker_")


def test_media_decode_with_decord(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    for mp4 in sorted((out / "videos").glob("*.mp4"))[:6]:
        frames, audio = decode(mp4)
        assert frames.shape == (SMALL.frames, SMALL.size, SMALL.size, 3)
        assert frames.std() > 5  # a drawn face, not a blank frame
        assert audio.shape[0] == 1
        # AAC pads the last frame (1024 samples) and may add one of priming.
        assert SMALL.samples <= audio.shape[1] <= SMALL.samples + 2048
        with wave.open(str(out / "audios" / f"{mp4.stem}.wav"), "rb") as handle:
            assert (handle.getnchannels(), handle.getframerate(), handle.getsampwidth()) == (
                1,
                SAMPLE_RATE,
                2,
            )
            assert handle.getnframes() == SMALL.samples
            wav = np.frombuffer(handle.readframes(handle.getnframes()), "<i2") / 32768.0
        # The mp4's audio track is the wav's signal (lossy AAC): strongly correlated once aligned.
        correlation = np.corrcoef(wav, audio[0, : len(wav)])[0, 1]
        assert correlation > 0.9


# --------------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_is_identical_and_other_seed_differs(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = corpus
    again = tmp_path / "again"
    synthesize(again, SMALL, workers=1, progress=False)  # other worker count, other order: same corpus
    assert annotation_bytes(again) == annotation_bytes(out)
    for mp4 in sorted((out / "videos").glob("*.mp4")):
        frames_a, audio_a = decode(mp4)
        frames_b, audio_b = decode(again / "videos" / mp4.name)
        assert np.array_equal(frames_a, frames_b) and np.array_equal(audio_a, audio_b)
        assert (out / "audios" / f"{mp4.stem}.wav").read_bytes() == (
            again / "audios" / f"{mp4.stem}.wav"
        ).read_bytes()

    other = tmp_path / "other"
    synthesize(
        other, SynthConfig(clips=24, speakers=4, seed=4, seconds=1.0, size=64), workers=1, progress=False
    )
    assert annotation_bytes(other)["Annotations.csv"] != annotation_bytes(out)["Annotations.csv"]
    first_a, first_b = sorted((out / "audios").glob("*.wav"))[0], sorted((other / "audios").glob("*.wav"))[0]
    assert first_a.read_bytes() != first_b.read_bytes()


def test_plans_are_deterministic() -> None:
    config = SynthConfig(clips=300, speakers=30, seed=11)
    assert plan_corpus(config) == plan_corpus(config)
    assert plan_corpus(config) != plan_corpus(SynthConfig(clips=300, speakers=30, seed=12))


# --------------------------------------------------------------------------------------------------
# Label statistics (planned only, no media)


@pytest.fixture(scope="module")
def large_plan() -> list[ClipPlan]:
    return plan_corpus(SynthConfig(clips=5000, speakers=100, seed=7))


def test_agreement_rates_match_the_config(large_plan: list[ClipPlan]) -> None:
    rates = realized_agreement(large_plan)
    config = SynthConfig()
    assert rates["text"] == pytest.approx(config.text_agreement, abs=0.03)
    assert rates["audio"] == pytest.approx(config.audio_agreement, abs=0.03)
    assert rates["video"] == pytest.approx(config.video_agreement, abs=0.03)
    assert rates["all_modalities"] == pytest.approx(config.all_modalities_agree, abs=0.03)


def test_other_agreement_rates_are_realized() -> None:
    config = SynthConfig(
        clips=5000,
        speakers=50,
        text_agreement=0.9,
        audio_agreement=0.7,
        video_agreement=0.8,
        all_modalities_agree=0.6,
    )
    rates = realized_agreement(plan_corpus(config))
    assert rates["text"] == pytest.approx(0.9, abs=0.03)
    assert rates["audio"] == pytest.approx(0.7, abs=0.03)
    assert rates["all_modalities"] == pytest.approx(0.6, abs=0.03)


def mutual_information(xs: list[str], ys: list[str]) -> float:
    """Plug-in mutual information (nats) of two label sequences."""
    n = len(xs)
    joint = Counter(zip(xs, ys, strict=True))
    px, py = Counter(xs), Counter(ys)
    return sum(c / n * np.log(c * n / (px[x] * py[y])) for (x, y), c in joint.items())


@pytest.mark.parametrize("carrier", ["text", "audio", "video"])
def test_label_in_one_modality_plants_the_label_there_only(carrier: str) -> None:
    """``--label-in video``: the face always shows the clip's emotion (and aux_face describes it); the
    transcript and the voice are drawn independently of the label, so they (and their aux targets)
    carry no information about it."""
    plans = plan_corpus(SynthConfig(clips=5000, speakers=100, seed=7, label_in=carrier))
    gold = [p.emotion for p in plans]
    assert [getattr(p, f"{carrier}_emotion") for p in plans] == gold
    for other in set(MODALITIES) - {carrier}:
        expressed = [getattr(p, f"{other}_emotion") for p in plans]
        # 7 x 7 cells from 5,000 clips: the plug-in estimate of an independent pair is ~0.004 nats
        assert mutual_information(expressed, gold) < 0.02, other
        assert Counter(expressed)["netral"] / len(plans) == pytest.approx(1316 / 1944, abs=0.03)
    faces = [p.aux_face for p in plans]
    informative = mutual_information(faces, gold) if carrier == "video" else None
    if informative is not None:
        assert informative > 0.5
    else:
        assert mutual_information(faces, gold) < 0.05
    default = plan_corpus(SynthConfig(clips=5000, speakers=100, seed=7))
    assert [p.emotion for p in default] == gold  # the layout and the labels do not move


def test_label_in_rejects_unknown_modalities() -> None:
    with pytest.raises(ValueError, match="label_in must be one of all, text, audio, video, got 'face'"):
        SynthConfig(label_in="face")


def test_long_tail_with_every_class_in_each_split(large_plan: list[ClipPlan]) -> None:
    counts = {e: sum(p.emotion == e for p in large_plan) for e in INDOMER_EMOTION.names}
    assert counts["netral"] / len(large_plan) == pytest.approx(1316 / 1944, abs=0.02)
    assert (
        counts["netral"] > counts["kebahagiaan"] > counts["kesedihan"] > counts["kemarahan"] > counts["jijik"]
    )
    small = plan_corpus(SynthConfig(clips=100, speakers=10, seed=5))
    for split in ("train", "val"):
        in_split = [p.emotion for p in small if p.split == split]
        assert all(in_split.count(e) >= 2 for e in INDOMER_EMOTION.names), (split, in_split)


def test_expressed_emotions_follow_modality_sentiments(large_plan: list[ClipPlan]) -> None:
    for plan in large_plan[:2000]:
        assert plan.sentiment == INDOMER_EMOTION_SENTIMENT[plan.emotion]
        for modality in ("text", "audio", "video"):
            shown = getattr(plan, f"{modality}_emotion")
            assert INDOMER_EMOTION_SENTIMENT[shown] == getattr(plan, f"{modality}_sentiment")
            if getattr(plan, f"{modality}_sentiment") == plan.sentiment:
                assert shown == plan.emotion
        assert plan.face.emotion == plan.video_emotion and plan.voice.emotion == plan.audio_emotion
        assert plan.aux_face == describe_face(plan.face)


def test_transcript_keywords_follow_the_text_modality(large_plan: list[ClipPlan]) -> None:
    for plan in large_plan:
        if plan.text_emotion == "netral":
            assert plan.aux_keywords == NO_KEYWORDS
            assert find_keywords(plan.text) == []
        else:
            keywords = plan.aux_keywords.split(", ")
            assert 1 <= len(keywords) <= 2
            assert find_keywords(plan.text) == keywords
            assert keyword_emotions(plan.text) == [plan.text_emotion]


def test_neutral_templates_contain_no_lexicon_word() -> None:
    for topic, sentences in TOPIC_SENTENCES.items():
        for template in sentences:
            slots = [name for _, name, _, _ in string.Formatter().parse(template) if name]
            for values in itertools.product(*(FILLERS[s] for s in slots)):
                text = template.format(**dict(zip(slots, values, strict=True)))
                assert find_keywords(text) == [], (topic, text)
    for frame in KEYWORD_FRAMES_ONE + KEYWORD_FRAMES_TWO:
        for person in FILLERS["orang"]:
            text = frame.format(kw="", Kw="", kw2="", orang=person)
            assert find_keywords(text) == [], frame


# --------------------------------------------------------------------------------------------------
# Config validation and atomic output


@pytest.mark.parametrize(
    ("overrides", "quoted"),
    [
        ({"clips": 0}, "clips must be >= 2.*got 0"),
        ({"speakers": 0}, "speakers must be in.*got 0"),
        ({"text_agreement": 1.5}, "text_agreement must be a probability.*got 1.5"),
        ({"size": 63}, "size must be an even.*got 63"),
        ({"seconds": 0.0}, r"seconds must be in.*got 0.0"),
        ({"test_fraction": 1.0}, "test_fraction must be in.*got 1.0"),
        ({"all_modalities_agree": 0.05}, r"all_modalities_agree=0.05 is infeasible.*must lie in \[0.27"),
        ({"clips": "many"}, "clips must be an integer, got 'many'"),
    ],
)
def test_bad_config_quotes_the_value(overrides: dict, quoted: str) -> None:
    with pytest.raises(ValueError, match=quoted):
        SynthConfig(**overrides)


def test_refuses_non_empty_output_and_leaves_nothing_on_failure(tmp_path: Path, monkeypatch) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        synthesize(taken, SMALL, workers=1, progress=False)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(synthetic_render, "write_mp4", broken)
    with pytest.raises(RuntimeError, match="rendering clip_.* failed: disk full"):
        synthesize(tmp_path / "new", SMALL, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# --------------------------------------------------------------------------------------------------
# The rendered signal carries the label


def median_f0(signal: np.ndarray) -> float:
    """Autocorrelation pitch of the loud frames (independent of the renderer's own f0 track)."""
    window, hop = 640, 320
    starts = range(0, len(signal) - window, hop)
    loudness = np.array([np.sqrt(np.mean(signal[i : i + window] ** 2)) for i in starts])
    estimates = []
    for i, level in zip(starts, loudness, strict=True):
        if level < 0.5 * loudness.max():
            continue
        frame = signal[i : i + window] - signal[i : i + window].mean()
        correlation = np.correlate(frame, frame, "full")[window - 1 :]
        lo, hi = SAMPLE_RATE // 500, SAMPLE_RATE // 60
        estimates.append(SAMPLE_RATE / (lo + int(np.argmax(correlation[lo:hi]))))
    return float(np.median(estimates))


def test_voice_pitch_and_energy_follow_the_emotion() -> None:
    for speaker in range(4):
        style = speaker_style(0, speaker)
        happy, sad = (
            render_audio(prosody(e, 0.7), style, 2.0, np.random.default_rng(speaker))
            for e in ("kebahagiaan", "kesedihan")
        )
        assert median_f0(happy.signal) > 1.15 * median_f0(sad.signal)
        assert np.sqrt(np.mean(happy.signal**2)) > 2 * np.sqrt(np.mean(sad.signal**2))
        assert 0.1 < np.mean(happy.envelope > 0) < 1.0  # syllables with pauses between them


def mouth_corner_lift(image: np.ndarray, skin: tuple[float, float, float]) -> float:
    """Rows by which the mouth's corners sit above its centre (> 0: smile, < 0: frown)."""
    size = image.shape[0]

    def pixel(u: float) -> int:  # frame coordinate [-1, 1] -> pixel index
        return int(round((u + 1) / 2 * size))

    zoom, centre_y = ZOOM, 0.1  # where draw_face puts the face for a still pose
    region = image[
        pixel(centre_y + 0.25 * zoom) : pixel(centre_y + 0.62 * zoom), pixel(-0.3 * zoom) : pixel(0.3 * zoom)
    ]
    mask = np.linalg.norm(region.astype(float) - np.asarray(skin), axis=2) > 20
    mean_row = (mask * np.arange(mask.shape[0])[:, None]).sum(axis=0) / np.maximum(mask.sum(axis=0), 1)
    columns = np.flatnonzero(mask.any(axis=0))
    left, right = columns[0], columns[-1]
    middle = (left + right) // 2
    corners = (mean_row[left : left + 2].mean() + mean_row[right - 1 : right + 1].mean()) / 2
    return float(mean_row[middle - 1 : middle + 2].mean() - corners)


def test_face_action_units_follow_the_emotion() -> None:
    for speaker in range(4):
        style = speaker_style(1, speaker)
        lift = {
            e: mouth_corner_lift(draw_face(style, face_expression(e, 0.65), 56), style.skin)
            for e in ("kebahagiaan", "netral", "kesedihan")
        }
        assert lift["kebahagiaan"] > lift["netral"] + 1 > lift["kesedihan"] + 2, lift
    style = speaker_style(1, 0)
    frames = {e: draw_face(style, face_expression(e, 1.0), 56).astype(float) for e in INDOMER_EMOTION.names}
    for a, b in itertools.combinations(INDOMER_EMOTION.names, 2):
        assert np.abs(frames[a] - frames[b]).mean() > 0.5, (a, b)  # every pair of expressions differs


def test_descriptions() -> None:
    assert describe_face(face_expression("kebahagiaan", 0.9)) == "tersenyum lebar, pipi terangkat"
    assert describe_face(face_expression("kebahagiaan", 0.7)) == "tersenyum tipis, pipi sedikit terangkat"
    assert (
        describe_prosody(prosody("kebahagiaan", 1.0))
        == "nada tinggi dan sangat bervariasi, energi kuat, tempo cepat"
    )
    assert describe_prosody(prosody("kesedihan", 1.0)) == "nada rendah dan datar, energi lemah, tempo lambat"
    assert (
        describe_prosody(prosody("netral", 0.0))
        == "nada sedang dan sedikit bervariasi, energi sedang, tempo sedang"
    )
    assert "naik di akhir" in describe_prosody(prosody("surprise", 0.8))
