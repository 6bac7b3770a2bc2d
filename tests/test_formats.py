"""Manifest readers: good layouts of every format, and each bad input with the message users see."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from mediafiles import indomer_rows, write_indomer, write_mp4

from omnimer.config import IngestConfig
from omnimer.data.formats import (
    ManifestError,
    assert_video_disjoint,
    carve_split,
    read_indomer_annotations,
    read_manifest,
    resolve_media,
)


def cfg(**kw) -> IngestConfig:
    return IngestConfig(**kw)


def messages(manifest) -> list[str]:
    return [str(p) for p in manifest.problems]


@pytest.fixture
def indomer(tmp_path):
    return write_indomer(tmp_path / "indomer", indomer_rows())


def test_indomer_published_splits_and_carved_valid(indomer):
    m = read_manifest(indomer, cfg())
    assert not m.problems
    splits = {s: [r for r in m.rows if r["split"] == s] for s in ("train", "valid", "test")}
    assert len(m.rows) == 24
    # published val -> test (videos 5, 6); one whole video of train carved into valid
    assert {r["video_id"] for r in splits["test"]} == {"5", "6"}
    assert len({r["video_id"] for r in splits["valid"]}) == 1 and len(splits["valid"]) == 4
    assert_video_disjoint(m.rows)
    row = next(r for r in m.rows if r["clip_id"] == "clip_1_Sharing_1")
    assert row["video_id"] == "1" and row["speaker_id"] == "1"
    assert row["text_sentiment"] == row["sentiment"]
    assert row["source_video"].endswith("videos/clip_1_Sharing_1.mp4")
    assert row["source_audio"].endswith("audios/clip_1_Sharing_1.wav")


def test_valid_carving_is_seeded(indomer):
    a = {r["clip_id"] for r in read_manifest(indomer, cfg(seed=1)).rows if r["split"] == "valid"}
    b = {r["clip_id"] for r in read_manifest(indomer, cfg(seed=1)).rows if r["split"] == "valid"}
    assert a == b
    seeds = [
        frozenset(r["video_id"] for r in read_manifest(indomer, cfg(seed=s)).rows if r["split"] == "valid")
        for s in range(6)
    ]
    assert len(set(seeds)) > 1


def test_carve_split_keeps_rare_classes_and_videos_whole():
    rows = []
    for v in range(40):
        label = "rare" if v in (3, 17) else "common"
        for i in range(5):
            rows.append({"clip_id": f"{v}_{i}", "video_id": str(v), "split": "train", "emotion": label})
    moved = carve_split(rows, 0.1, 0, source="train", target="valid", stratify="emotion")
    valid = [r for r in rows if r["split"] == "valid"]
    assert len(valid) == 20 and len(moved) == 4
    assert {r["emotion"] for r in valid} == {"rare", "common"}
    assert_video_disjoint(rows)


def test_indomer_csv_only_carves_test_too(tmp_path):
    root = write_indomer(tmp_path / "d", indomer_rows(n_videos=10), csv_only=True)
    m = read_manifest(root, cfg())
    assert {r["split"] for r in m.rows} == {"train", "valid", "test"}
    assert any("no published test split" in n for n in m.notes)
    assert_video_disjoint(m.rows)


def test_missing_wav_falls_back_to_mp4_audio(tmp_path):
    root = write_indomer(tmp_path / "d", indomer_rows(), wav=False)
    m = read_manifest(root, cfg())
    assert not m.problems and all(r["source_audio"] is None for r in m.rows)


# ----------------------------------------------------------------------------------------- bad input


def test_missing_media_file(indomer):
    os.remove(indomer / "videos" / "clip_2_Sharing_3.mp4")
    m = read_manifest(indomer, cfg())
    (msg,) = messages(m)
    assert "3_class_train.json:7:video: missing media file" in msg and "clip_2_Sharing_3.mp4" in msg
    assert "clip_2_Sharing_3" not in {r["clip_id"] for r in m.rows}


def test_unknown_label(indomer):
    path = indomer / "7_Class" / "7_class_train.json"
    data = json.loads(path.read_text())
    data[2]["label"] = "bahagia"
    path.write_text(json.dumps(data))
    msgs = messages(read_manifest(indomer, cfg()))
    assert any(
        m.endswith(
            ":3:label: unknown label 'bahagia'; expected one of netral, kebahagiaan, kesedihan, "
            "kemarahan, jijik, ketakutan, surprise (clip clip_1_Sharing_3)"
        )
        for m in msgs
    ), msgs


def test_missing_required_column(tmp_path):
    root = write_indomer(tmp_path / "d", indomer_rows(), csv_only=True, media=False)
    text = (root / "Annotations.csv").read_text().replace("emotion,", "emotio,", 1)
    (root / "Annotations.csv").write_text(text)
    with pytest.raises(ManifestError) as err:
        read_manifest(root, cfg())
    assert (
        "Annotations.csv:1:emotion: missing required column 'emotion' "
        "(columns present: video_name, audio_name, emotio" in str(err.value)
    )


def test_duplicate_clip_id(tmp_path):
    rows = indomer_rows()
    root = write_indomer(tmp_path / "d", rows + [dict(rows[0])], csv_only=True)
    msgs = messages(read_manifest(root, cfg()))
    assert any(
        "Annotations.csv:26:video_name: duplicate clip id 'clip_1_Sharing_1' (first at" in m
        and "Annotations.csv:2)" in m
        for m in msgs
    ), msgs


def test_non_utf8_text(tmp_path):
    root = write_indomer(tmp_path / "d", indomer_rows(), csv_only=True)
    raw = (root / "Annotations.csv").read_bytes().replace(b"aku senang", b"aku \xe9senang", 1)
    (root / "Annotations.csv").write_bytes(raw)
    msgs = messages(read_manifest(root, cfg()))
    assert len(msgs) == 1
    assert (
        ":text: text is not valid UTF-8 (byte 0xe9 at character" in msgs[0]
        and "re-save the file as UTF-8" in msgs[0]
    )


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("../../etc/passwd", "media path '../../etc/passwd' resolves to"),
        ("/etc/passwd", "media path '/etc/passwd' is absolute"),
        ("link.mp4", "outside the media root"),
    ],
)
def test_media_path_outside_root(tmp_path, name, expect):
    rows = indomer_rows(n_videos=4, clips_per_video=2, val_videos=1)
    root = write_indomer(tmp_path / "d", rows)
    outside = write_mp4(tmp_path / "elsewhere" / "x.mp4")
    (root / "videos" / "link.mp4").symlink_to(outside)
    for path in (root / "7_Class" / "7_class_train.json", root / "3_Class" / "3_class_train.json"):
        data = json.loads(path.read_text())
        data[0]["video"] = name
        path.write_text(json.dumps(data))
    msgs = messages(read_manifest(root, cfg()))
    assert len(msgs) == 1 and "_class_train.json:1:video: media path" in msgs[0] and expect in msgs[0], msgs


def test_resolve_media_accepts_inside_symlink(tmp_path):
    write_mp4(tmp_path / "videos" / "a.mp4")
    (tmp_path / "videos" / "b.mp4").symlink_to(tmp_path / "videos" / "a.mp4")
    path, reason = resolve_media(tmp_path / "videos", "b.mp4")
    assert reason is None and path.name == "a.mp4"


def test_source_video_in_two_published_splits(indomer):
    path = indomer / "7_Class" / "7_class_val.json"
    data = json.loads(path.read_text())
    data[0]["sample_id"] = "clip_1_Sharing_9"  # video 1 is in published train
    path.write_text(json.dumps(data))
    path3 = indomer / "3_Class" / "3_class_val.json"
    data3 = json.loads(path3.read_text())
    data3[0]["sample_id"] = "clip_1_Sharing_9"
    path3.write_text(json.dumps(data3))
    m = read_manifest(indomer, cfg())
    msgs = messages(m)
    assert any(
        "source video '1' appears in several published splits: test (1 clips), train (4 clips)" in x
        for x in msgs
    ), msgs
    assert "clip_1_Sharing_9" not in {r["clip_id"] for r in m.rows}
    assert_video_disjoint(m.rows)


def test_label_disagreement_between_files(indomer):
    path = indomer / "3_Class" / "3_class_train.json"
    data = json.loads(path.read_text())
    data[0]["label"] = "positif" if data[0]["label"] != "positif" else "negatif"
    path.write_text(json.dumps(data))
    msgs = messages(read_manifest(indomer, cfg()))
    assert any(":sentiment: sentiment" in m and "disagrees with" in m for m in msgs), msgs


def test_bad_clip_name(tmp_path):
    rows = indomer_rows(n_videos=3, clips_per_video=2, val_videos=1)
    rows[0]["clip"] = "video_one"
    root = write_indomer(tmp_path / "d", rows)
    msgs = messages(read_manifest(root, cfg()))
    assert any("does not follow clip_<video>_<topic>_<index>" in m for m in msgs), msgs


def test_indomer_annotations_report_their_files_and_provenance(indomer):
    a = read_indomer_annotations(indomer)
    assert a.csv_path == indomer / "Annotations.csv"
    assert sorted(a.split_files) == [("3", "train"), ("3", "val"), ("7", "train"), ("7", "val")]
    assert a.published_split_files("7") == {
        "train": indomer / "7_Class" / "7_class_train.json",
        "val": indomer / "7_Class" / "7_class_val.json",
    }
    assert not a.all_problems() and not a.rejected and len(a.fields) == 24
    fields = a.fields["clip_5_Sharing_1"]  # video 5 is published val: the manifest's test
    assert fields["split"].value == "test"
    # The 3-class files are read first, so they give the text; the emotion is in the 7-class files only.
    assert (Path(fields["text"].file).name, fields["text"].row) == ("3_class_val.json", 1)
    assert (Path(fields["emotion"].file).name, fields["emotion"].row) == ("7_class_val.json", 1)
    assert a.clip_names["clip_5_Sharing_1"]["video"] == "5"


def test_no_annotations(tmp_path):
    with pytest.raises(ManifestError, match="no IndoMER annotations"):
        read_manifest(tmp_path, cfg())


def test_missing_input_dir(tmp_path):
    with pytest.raises(ManifestError, match="input dir does not exist"):
        read_manifest(tmp_path / "nope", cfg())


# ----------------------------------------------------------------------------------------- other formats


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def test_chsims(tmp_path):
    header = ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]
    rows = []
    for v, mode in (("v1", "train"), ("v2", "train"), ("v3", "valid"), ("v4", "test")):
        for c, score in (("0001", -0.8), ("0002", 0.0), ("0003", 0.6)):
            write_mp4(tmp_path / "Raw" / v / f"{c}.mp4", n_frames=4)
            rows.append([v, c, "我很好", score, score, -score, 0.1, "x", mode])
    _write_csv(tmp_path / "label.csv", header, rows)
    m = read_manifest(tmp_path, cfg(format="chsims"))
    assert not m.problems and len(m.rows) == 12
    r = next(r for r in m.rows if r["clip_id"] == "v1_0001")
    assert (r["sentiment"], r["audio_sentiment"], r["video_sentiment"]) == (
        "negative",
        "positive",
        "positive",
    )
    assert r["emotion"] is None and r["source_audio"] is None
    assert {r["split"] for r in m.rows} == {"train", "valid", "test"}  # published valid kept
    assert m.emotion_labels is None and m.sentiment_labels.key == "chsims-sentiment"


def test_chsims_bad_score_and_mode(tmp_path):
    header = ["video_id", "clip_id", "text", "label", "mode"]
    write_mp4(tmp_path / "Raw" / "v1" / "0001.mp4", n_frames=4)
    write_mp4(tmp_path / "Raw" / "v1" / "0002.mp4", n_frames=4)
    _write_csv(
        tmp_path / "label.csv", header, [["v1", "0001", "t", 1.7, "train"], ["v1", "0002", "t", 0.2, "dev"]]
    )
    msgs = messages(read_manifest(tmp_path, cfg(format="chsims")))
    assert any(
        m.endswith(
            "label.csv:2:label: unknown label '1.7'; expected a sentiment score in [-1, 1] (clip v1_0001)"
        )
        for m in msgs
    ), msgs
    assert any(
        m.endswith("label.csv:3:mode: unknown split 'dev'; expected train, valid or test (clip v1_0002)")
        for m in msgs
    ), msgs


def test_meld(tmp_path):
    header = [
        "Sr No.",
        "Utterance",
        "Speaker",
        "Emotion",
        "Sentiment",
        "Dialogue_ID",
        "Utterance_ID",
        "Season",
    ]
    for split, fname, media in (
        ("train", "train_sent_emo.csv", "train_splits"),
        ("dev", "dev_sent_emo.csv", "dev_splits_complete"),
        ("test", "test_sent_emo.csv", "output_repeated_splits_test"),
    ):
        rows = []
        for d in range(2):
            for u in range(2):
                write_mp4(tmp_path / media / f"dia{d}_utt{u}.mp4", n_frames=4)
                rows.append(
                    [
                        1,
                        f"Hello {split} {d} {u}",
                        "Ross",
                        "joy" if u else "neutral",
                        "positive" if u else "neutral",
                        d,
                        u,
                        1,
                    ]
                )
        _write_csv(tmp_path / fname, header, rows)
    m = read_manifest(tmp_path, cfg(format="meld"))
    assert not m.problems and len(m.rows) == 12
    assert {r["video_id"] for r in m.rows if r["split"] == "valid"} == {"valid_dia0", "valid_dia1"}
    assert_video_disjoint(m.rows)


def test_meld_unknown_emotion(tmp_path):
    header = ["Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]
    write_mp4(tmp_path / "train_splits" / "dia0_utt0.mp4", n_frames=4)
    _write_csv(tmp_path / "train_sent_emo.csv", header, [["Hi", "Joey", "happy", "positive", 0, 0]])
    (msg,) = messages(read_manifest(tmp_path, cfg(format="meld")))
    assert msg.endswith(
        "train_sent_emo.csv:2:Emotion: unknown label 'happy'; expected one of neutral, joy, sadness, "
        "anger, disgust, fear, surprise (clip train_dia0_utt0)"
    )


def test_jsonl(tmp_path):
    lines = []
    for v in range(6):
        for c in range(3):
            write_mp4(tmp_path / "media" / f"{v}_{c}.mp4", n_frames=4)
            lines.append(
                {
                    "clip_id": f"{v}_{c}",
                    "video_id": f"v{v}",
                    "speaker_id": f"s{v % 2}",
                    "split": "test" if v == 5 else "train",
                    "text": "halo",
                    "emotion": "netral",
                    "sentiment": "netral",
                    "video": f"media/{v}_{c}.mp4",
                    "aux_face": "wajah datar",
                }
            )
    lines.append(
        {
            "clip_id": "bad",
            "video_id": "v9",
            "split": "train",
            "text": "x",
            "emotion": "netral",
            "video": "media/none.mp4",
        }
    )
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    m = read_manifest(tmp_path, cfg(format="jsonl"))
    assert messages(m) == [
        f"{tmp_path}/manifest.jsonl:19:video: missing media file {tmp_path}/media/none.mp4 (clip bad)"
    ]
    assert {r["split"] for r in m.rows} == {"train", "valid", "test"}
    assert m.rows[0]["aux_face"] == "wajah datar"


def test_jsonl_missing_key(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"clip_id": "a", "split": "train", "text": "x", "video": "a.mp4"}) + "\n"
    )
    with pytest.raises(ManifestError, match=r"manifest.jsonl:1:video_id: missing required key 'video_id'"):
        read_manifest(tmp_path, cfg(format="jsonl"))
