"""End to end through the real ``omnimer`` CLI in subprocesses (each starts its own local Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mediafiles import indomer_rows, write_indomer

pytestmark = pytest.mark.e2e
OMNIMER = [sys.executable, "-m", "omnimer.cli"]


def run(args, env, **kw):
    return subprocess.run(OMNIMER + args, env=env, capture_output=True, text=True, timeout=600, **kw)


def test_ingest_then_inspect(tmp_path, cli_env):
    corpus = write_indomer(tmp_path / "indomer", indomer_rows())
    out = tmp_path / "ds"
    result = run(
        [
            "ingest",
            "--format",
            "indomer",
            "--input",
            str(corpus),
            "--out",
            str(out),
            "--frames",
            "4",
            "--size",
            "56",
            "--num-cpus",
            "2",
        ],
        cli_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ingested 24 clips" in result.stdout and "train 12, valid 4, test 8" in result.stdout
    shown = run(["inspect", str(out)], cli_env)
    assert shown.returncode == 0
    assert (
        "rows: train 12, valid 4, test 8" in shown.stdout and "frames: uint8 [4, 56, 56, 3]" in shown.stdout
    )
    again = run(
        ["ingest", "--format", "indomer", "--input", str(corpus), "--out", str(out), "--num-cpus", "2"],
        cli_env,
    )
    assert again.returncode == 2 and "already holds a dataset" in again.stderr


def test_refusal_exit_code_and_messages(tmp_path, cli_env):
    corpus = write_indomer(tmp_path / "indomer", indomer_rows())
    os.remove(corpus / "videos" / "clip_3_Sharing_2.mp4")
    result = run(
        [
            "ingest",
            "--format",
            "indomer",
            "--input",
            str(corpus),
            "--out",
            str(tmp_path / "ds"),
            "--num-cpus",
            "2",
        ],
        cli_env,
    )
    assert result.returncode == 2
    assert "ingest refused: 1 problem(s); nothing was written" in result.stderr
    assert "_class_train.json:10:video: missing media file" in result.stderr
    assert not (tmp_path / "ds").exists()


def test_bad_flag_value(tmp_path, cli_env):
    result = run(
        [
            "ingest",
            "--format",
            "indomer",
            "--input",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--frames",
            "0",
        ],
        cli_env,
    )
    assert result.returncode == 2 and "frames must be in [1, 256], got 0" in result.stderr


def test_synth_refuses_label_in_with_annotations_and_unknown_modalities(tmp_path, cli_env):
    out = str(tmp_path / "corpus")
    both = run(["synth", "--out", out, "--label-in", "video", "--from-annotations", str(tmp_path)], cli_env)
    assert both.returncode == 2 and "use --label-in or --from-annotations, not both" in both.stderr
    unknown = run(["synth", "--out", out, "--label-in", "face"], cli_env)
    assert unknown.returncode == 2
    assert "label_in must be one of all, text, audio, video, got 'face'" in unknown.stderr
    assert not (tmp_path / "corpus").exists()  # nothing written


def test_inspect_unfinished_dataset(tmp_path, cli_env):
    (tmp_path / "half" / "train").mkdir(parents=True)
    result = run(["inspect", str(tmp_path / "half")], cli_env)
    assert result.returncode == 2 and "dataset.json is missing" in result.stderr


def test_crash_mid_ingest_leaves_nothing(tmp_path, cli_env):
    """SIGKILL the ingest (and its local Ray) once it starts writing: <out> must not appear."""
    corpus = write_indomer(tmp_path / "indomer", indomer_rows())
    out = tmp_path / "ds"
    args = [
        "ingest",
        "--format",
        "indomer",
        "--input",
        str(corpus),
        "--out",
        str(out),
        "--num-cpus",
        "2",
        "--frames",
        "4",
        "--size",
        "56",
    ]
    proc = subprocess.Popen(
        OMNIMER + args,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if any(p.name.startswith(".ds.ingest-") for p in tmp_path.iterdir()):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "ingest finished before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    assert any(p.name.startswith(".ds.ingest-") for p in tmp_path.iterdir())  # the crashed run's temp dir
    result = run(args, cli_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "dataset.json").is_file()
    assert not any(p.name.startswith(".ds.") for p in tmp_path.iterdir())  # stale temp dir cleaned up
