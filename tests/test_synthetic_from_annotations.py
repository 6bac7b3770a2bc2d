"""``omnimer synth --from-annotations``: synthetic media for an existing IndoMER annotation set,
read with the formats' IndoMER reader (its labels, texts and splits kept, its files copied).

    .venv/bin/python -m pytest tests/test_synthetic_from_annotations.py -q
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from corpusfiles import JSON_FILES, decode, read_csv

from omnimer.data.synthetic import (
    ANNOTATION_COLUMNS,
    EXTRA_COLUMNS,
    THREE_CLASS_KEYS,
    SynthConfig,
    plan_from_annotations,
    synthesize,
)

# --------------------------------------------------------------------------------------------------
# from_annotations

SOURCE_CLIPS = [  # name, text, emotion, sentiment, (text, audio, video) sentiments, split
    (
        "clip_3_Cooking_1",
        "Tentang ikan dan olahannya seperti apa.",
        "netral",
        "netral",
        ("netral", "positif", "netral"),
        "train",
    ),
    (
        "clip_3_Cooking_2",
        "Aku senang sekali hari ini.",
        "kebahagiaan",
        "positif",
        ("positif", "positif", "netral"),
        "train",
    ),
    ("clip_3_Cooking_3", "Sedih rasanya.", "kesedihan", "negatif", ("negatif", "netral", "negatif"), "train"),
    (
        "clip_12_Sharing_1",
        "Tapi it’s not good.",
        "kemarahan",
        "negatif",
        ("netral", "negatif", "positif"),
        "val",
    ),
    (
        "clip_12_Sharing_2",
        "Terus yang selanjutnya juga,",
        "netral",
        "netral",
        ("netral", "netral", "netral"),
        "val",
    ),
]


def write_source(directory: Path, *, with_csv: bool = True, with_json: bool = True) -> None:
    directory.mkdir(parents=True)
    if with_csv:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(ANNOTATION_COLUMNS)
        for name, text, emotion, sentiment, modalities, _ in SOURCE_CLIPS:
            text = text.replace("’", "¡¯")  # the published CSV's mojibake
            writer.writerow([f"{name}.mp4", f"{name}.wav", emotion, sentiment, *modalities, text])
        (directory / "Annotations.csv").write_bytes(buffer.getvalue().encode("utf-8"))
    if with_json:
        for split in ("train", "val"):
            seven, three = [], []
            for name, text, emotion, sentiment, (t, a, v), clip_split in SOURCE_CLIPS:
                if clip_split != split:
                    continue
                files = {"video": f"{name}.mp4", "audio": f"{name}.wav"}
                seven.append(
                    {"sample_id": name, "text": text, "sentiment_label": sentiment, "label": emotion} | files
                )
                three.append(
                    {
                        "sample_id": name,
                        "text": text,
                        "audio_label": a,
                        "text_label": t,
                        "video_label": v,
                        "label": sentiment,
                    }
                    | files
                )
            for folder, items in (("7_Class/7_class", seven), ("3_Class/3_class", three)):
                path = directory / f"{folder}_{split}.json"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(
                    json.dumps(items, indent=2, ensure_ascii=False).replace("\n", "\r\n").encode()
                )


FAST = SynthConfig(seconds=0.5, fps=4, size=32)


def test_from_annotations_keeps_labels_texts_and_splits(tmp_path: Path) -> None:
    source, out = tmp_path / "source", tmp_path / "out"
    write_source(source)
    summary = synthesize(out, FAST, from_annotations=source, workers=1, progress=False)
    assert summary["clips"] == len(SOURCE_CLIPS) and summary["videos"] == 2
    for name in JSON_FILES:
        assert (out / name).read_bytes() == (source / name).read_bytes()
    original = read_csv(source / "Annotations.csv")
    rewritten = read_csv(out / "Annotations.csv")
    assert len(rewritten) == len(original)
    for before, after in zip(original, rewritten, strict=True):
        assert {k: after[k] for k in ANNOTATION_COLUMNS} == before  # the mojibake text too: copied as-is
        assert list(after)[-4:] == list(EXTRA_COLUMNS)
        assert after["speaker_id"] == after["video_name"].split("_")[1]
        assert after["aux_keywords"] == ""
        assert after["aux_face"] and after["aux_prosody"]
        assert (out / "videos" / after["video_name"]).is_file() and (
            out / "audios" / after["audio_name"]
        ).is_file()
    plans = {p.name: p for p in plan_from_annotations(source, FAST)[0]}
    for name, text, emotion, sentiment, modalities, split in SOURCE_CLIPS:
        plan = plans[name]
        assert (plan.text, plan.emotion, plan.sentiment, plan.split) == (text, emotion, sentiment, split)
        assert (plan.text_sentiment, plan.audio_sentiment, plan.video_sentiment) == modalities
    frames, audio = decode(out / "videos" / "clip_3_Cooking_2.mp4")
    assert frames.shape == (2, 32, 32, 3) and audio.shape[1] >= 8000


def test_from_annotations_csv_only_splits_by_video(tmp_path: Path) -> None:
    source, out = tmp_path / "source", tmp_path / "out"
    write_source(source, with_json=False)
    synthesize(out, FAST, from_annotations=source, workers=1, progress=False)
    videos = {}
    for split in ("train", "val"):
        items = json.loads((out / f"3_Class/3_class_{split}.json").read_bytes())
        assert all(tuple(item) == THREE_CLASS_KEYS for item in items)
        videos[split] = {item["sample_id"].split("_")[1] for item in items}
    assert videos["train"] and videos["val"] and not videos["train"] & videos["val"]


def test_from_annotations_reports_conflicts(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_source(source)
    path = source / "3_Class" / "3_class_val.json"
    path.write_text(
        path.read_text(encoding="utf-8").replace('"label": "negatif"', '"label": "positif"'), "utf-8"
    )
    # The 3-class files are read first; the 7-class file's sentiment then disagrees with the edited one.
    with pytest.raises(
        ValueError,
        match=r"7_class_val.json:1:sentiment: sentiment 'negatif' disagrees with 'positif' at \S*"
        r"3_class_val.json:1 \(clip clip_12_Sharing_1\)",
    ):
        synthesize(tmp_path / "out", FAST, from_annotations=source, workers=1, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="no IndoMER annotations"):
        synthesize(tmp_path / "out", FAST, from_annotations=tmp_path / "nothing", workers=1, progress=False)


def test_from_annotations_needs_every_label_and_the_text(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_source(source, with_csv=False)
    for path in source.glob("3_Class/*.json"):
        path.unlink()  # the modality sentiments are in the 3-class files only
    with pytest.raises(
        ValueError,
        match=r"7_class_train.json:1:text_sentiment: clip has no text_sentiment, audio_sentiment, "
        r"video_sentiment in any annotation file.* \(clip clip_3_Cooking_1\)",
    ):
        plan_from_annotations(source, FAST)
    write_source(tmp_path / "half", with_csv=False)
    (tmp_path / "half" / "7_Class" / "7_class_val.json").unlink()
    with pytest.raises(ValueError, match=r"7_Class has \['train'\] but lacks \S*7_class_val.json"):
        plan_from_annotations(tmp_path / "half", FAST)


def test_from_annotations_refuses_bad_clip_names_and_labels(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_source(source, with_json=False)
    path = source / "Annotations.csv"
    text = path.read_text(encoding="utf-8")
    text = text.replace("clip_3_Cooking_2.mp4", "video_two.mp4").replace("kesedihan", "sedih")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        plan_from_annotations(source, FAST)
    message = str(refused.value)
    assert "Annotations.csv:4:emotion: unknown label 'sedih'" in message
    assert "Annotations.csv:3:sample_id: clip name 'video_two' does not follow clip_<video>" in message
