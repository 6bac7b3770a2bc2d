"""omnimer/storage.py: local paths as before, and an S3 bucket on a real S3 API (moto's server on
loopback) through pyarrow.fs.

    .venv/bin/python -m pytest tests/test_storage.py -q
"""

from __future__ import annotations

import json
import pickle
import socket
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from omnimer import storage


def test_local_json_is_written_whole_in_the_records_format(tmp_path):
    path = tmp_path / "a" / "b" / "record.json"
    storage.write_json(path, {"macro_f1": 0.5, "name": "kebahagiaan é"})
    assert path.read_text(encoding="utf-8") == '{\n  "macro_f1": 0.5,\n  "name": "kebahagiaan é"\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temp file left behind
    assert storage.read_json(path) == {"macro_f1": 0.5, "name": "kebahagiaan é"}
    assert storage.is_file(path) and storage.is_dir(path.parent) and not storage.exists(path.parent / "x")
    assert storage.list_dir(tmp_path / "a") == ["b"] and storage.list_dir(tmp_path / "none") == []


def test_local_and_uri_locations_join_and_split():
    assert storage.join("/x/exp", "runs", "r0") == "/x/exp/runs/r0"
    assert storage.join("s3://bkt/exp/", "runs", "r0") == "s3://bkt/exp/runs/r0"
    assert storage.join("s3://bkt", "exp") == "s3://bkt/exp"
    # pyarrow's options in the query string stay at the end
    uri = "s3://bkt/exp?endpoint_override=minio:9000&scheme=http"
    assert storage.join(uri, "runs") == "s3://bkt/exp/runs?endpoint_override=minio:9000&scheme=http"
    assert storage.basename("s3://bkt/exp/abl") == "abl" and storage.basename("/x/abl") == "abl"
    assert storage.parent("s3://bkt/exp/abl/record.json") == "s3://bkt/exp/abl"
    assert (
        storage.is_remote("s3://bkt/x") and not storage.is_remote("/x") and not storage.is_remote("file:///x")
    )
    assert storage.join("file:///x/exp", "runs") == "/x/exp/runs"
    assert storage.local_mirror("s3://bkt/exp/optuna.db", Path("/c")) == Path("/c/s3/bkt/exp/optuna.db")
    assert storage.ray_storage("/x/exp") == ("/x/exp", None)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("ftp://host/exp", r"unknown storage scheme 'ftp://'; use a local or shared \(NFS\) directory or"),
        ("s4://bkt/exp", r"unknown storage scheme 's4://'"),
        ("s3:///exp", r"the URI names no bucket; use s3://BUCKET/PREFIX"),
    ],
)
def test_an_unusable_uri_is_refused_with_what_to_use(location, message):
    with pytest.raises(storage.StorageError, match=message):
        storage.check_location(location)
    with pytest.raises(storage.StorageError, match=message):
        storage.write_json(storage.join(location, "x.json"), {})


def test_s3_round_trip(s3_bucket, tmp_path):
    exp = f"s3://{s3_bucket}/experiments/abl"
    assert not storage.exists(exp)
    storage.check_writable(exp)  # leaves at most an empty "directory" behind
    assert storage.list_dir(exp) == []
    storage.write_json(storage.join(exp, "sweep.json"), {"mode": "ablation", "seeds": [0, 1]})
    assert storage.read_json(storage.join(exp, "sweep.json")) == {"mode": "ablation", "seeds": [0, 1]}
    assert storage.exists(exp) and storage.is_dir(exp) and not storage.is_file(exp)
    assert storage.is_file(storage.join(exp, "sweep.json"))
    assert not storage.exists(storage.join(exp, "timings.json"))
    with pytest.raises(FileNotFoundError, match="timings.json: no such object"):
        storage.read_json(storage.join(exp, "timings.json"))
    # the bytes are those of a local record
    storage.write_json(tmp_path / "local.json", {"mode": "ablation", "seeds": [0, 1]})
    assert storage.read_text(storage.join(exp, "sweep.json")) == (tmp_path / "local.json").read_text()

    for run in ("none-seed0", "face-seed0"):
        storage.write_json(storage.join(exp, "runs", run, "record.json"), {"status": "finished"})
        storage.write_json(storage.join(exp, "runs", run, "checkpoint_000001", "record.json"), {"copy": 1})
    storage.write_json(storage.join(exp, "runs", ".tmp", "record.json"), {})
    storage.write_json(storage.join(exp, "runs", "deep", "er", "record.json"), {})
    assert storage.list_dir(storage.join(exp, "runs")) == [".tmp", "deep", "face-seed0", "none-seed0"]
    assert storage.find_files(exp, "record.json") == [
        f"{exp}/runs/deep/er/record.json",
        f"{exp}/runs/face-seed0/record.json",
        f"{exp}/runs/none-seed0/record.json",
    ]
    assert storage.find_files(storage.join(exp, "runs"), "record.json", max_depth=1) == [
        f"{exp}/runs/face-seed0/record.json",
        f"{exp}/runs/none-seed0/record.json",
    ]
    assert storage.find_files(storage.join(exp, "absent"), "record.json") == []
    storage.delete_file(storage.join(exp, "sweep.json"))
    assert not storage.exists(storage.join(exp, "sweep.json"))
    storage.delete_dir(storage.join(exp, "runs", "deep"))
    assert not storage.exists(storage.join(exp, "runs", "deep", "er", "record.json"))
    assert storage.list_dir(storage.join(exp, "runs")) == [".tmp", "face-seed0", "none-seed0"]
    storage.delete_dir(storage.join(exp, "absent"))  # nothing to delete: no error


def test_a_local_dir_is_deleted_with_everything_under_it(tmp_path):
    storage.write_json(tmp_path / "plan" / "probe" / "checkpoint_000000" / "probe.json", {})
    storage.delete_dir(tmp_path / "plan" / "probe")
    assert not (tmp_path / "plan" / "probe").exists() and (tmp_path / "plan").is_dir()
    storage.delete_dir(tmp_path / "plan" / "probe")  # nothing to delete: no error


def test_local_find_files_matches_the_s3_listing(tmp_path):
    exp = tmp_path / "abl"
    for rel in (
        "runs/a/record.json",
        "runs/a/checkpoint_1/record.json",
        "runs/.t/record.json",
        "runs/d/e/record.json",
    ):
        storage.write_json(exp / rel, {})
    assert storage.find_files(exp, "record.json") == [
        str(exp / "runs/a/record.json"),
        str(exp / "runs/d/e/record.json"),
    ]
    assert storage.find_files(exp / "runs", "record.json", max_depth=1) == [str(exp / "runs/a/record.json")]


def test_upload_dir_upload_file_and_download(s3_bucket, tmp_path):
    adapter = tmp_path / "best_adapter"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00\x01weights")
    (adapter / "sub" / "events.out.tfevents.1").write_bytes(b"tb")
    target = f"s3://{s3_bucket}/exp/runs/r0/best_adapter"
    storage.upload_dir(adapter, target)
    assert storage.list_dir(target) == ["adapter_config.json", "adapter_model.safetensors", "sub"]
    # a second upload replaces the files of the same name
    (adapter / "adapter_config.json").write_text('{"r": 16}')
    storage.upload_dir(adapter, target)
    assert storage.read_json(storage.join(target, "adapter_config.json")) == {"r": 16}

    study = tmp_path / "optuna.db"
    study.write_bytes(b"SQLite format 3\x00" + bytes(range(256)))
    storage.upload_file(study, f"s3://{s3_bucket}/exp/optuna.db")
    storage.download_file(f"s3://{s3_bucket}/exp/optuna.db", tmp_path / "copy" / "optuna.db")
    assert (tmp_path / "copy" / "optuna.db").read_bytes() == study.read_bytes()
    with pytest.raises(FileNotFoundError):
        storage.download_file(f"s3://{s3_bucket}/exp/absent.db", tmp_path / "absent.db")


def test_ray_gets_the_filesystem_and_the_bucket_path(s3_bucket, moto_endpoint, monkeypatch):
    path, filesystem = storage.ray_storage(f"s3://{s3_bucket}/experiments")
    assert path == f"{s3_bucket}/experiments" and isinstance(filesystem, pafs.S3FileSystem)
    # An endpoint given in the URI (no AWS_ENDPOINT_URL) travels with the pickled filesystem, as
    # Ray sends it to its workers.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    host = moto_endpoint.removeprefix("http://")
    uri = f"s3://{s3_bucket}/experiments?endpoint_override={host}&scheme=http"
    storage.write_json(storage.join(uri, "sweep.json"), {"ok": True})
    path, filesystem = storage.ray_storage(uri)
    clone = pickle.loads(pickle.dumps(filesystem))
    with clone.open_input_stream(f"{path}/sweep.json") as stream:
        assert json.loads(stream.read()) == {"ok": True}


def test_a_missing_bucket_is_named_with_what_to_check(s3_bucket):
    with pytest.raises(storage.StorageError) as raised:
        storage.check_writable("s3://no-such-bucket-here/exp")
    message = str(raised.value)
    assert message.startswith("s3://no-such-bucket-here/exp/.write-probe-") and "cannot be written" in message
    assert "AWS_ENDPOINT_URL" in message and "that the bucket exists" in message


def test_an_unreachable_endpoint_is_named_with_what_to_check(s3_bucket, monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    started = time.time()
    with pytest.raises(storage.StorageError) as raised:
        storage.read_json(f"s3://{s3_bucket}/exp/sweep.json")
    message = str(raised.value)
    assert message.startswith(f"s3://{s3_bucket}/exp/sweep.json: cannot be")
    assert "AWS_ENDPOINT_URL" in message and "AWS_ACCESS_KEY_ID" in message
    assert time.time() - started < 60
