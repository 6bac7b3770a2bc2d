"""Shared fixtures: one local Ray for the in-process tests (its temp dir under pytest's tmp dir), and an
S3-compatible server (moto) on loopback with a fresh bucket per test."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def short_tmp() -> Path:
    """A short temp dir for Ray: its AF_UNIX socket paths must stay under 107 bytes, which pytest's
    own tmp_path names exceed."""
    return Path(tempfile.mkdtemp(prefix="omr-", dir="/tmp"))


@pytest.fixture(scope="session")
def ray_local():
    """A 2-CPU local Ray bound to 127.0.0.1, shut down at the end of the session."""
    import ray

    temp = short_tmp()
    os.environ["RAY_TMPDIR"] = str(temp)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(temp),
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cli_env():
    """Environment for CLI subprocesses: Ray's temp files in a short dir removed afterwards."""
    temp = short_tmp()
    env = dict(os.environ)
    env["RAY_TMPDIR"] = str(temp)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONUNBUFFERED"] = "1"
    yield env
    shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------ an S3-compatible server (moto)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API on loopback (moto's server, in a thread of this session), stopped at the end."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # No instance-metadata lookups for credentials or region: nothing here runs on EC2.
    "AWS_EC2_METADATA_DISABLED": "true",
}


def make_bucket(endpoint: str) -> str:
    """A fresh, empty bucket on the server at ``endpoint``; returns its name."""
    import uuid

    import pyarrow.fs as pafs

    bucket = f"omnimer-{uuid.uuid4().hex[:12]}"
    admin = pafs.S3FileSystem(
        endpoint_override=endpoint,
        access_key=S3_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region=S3_ENV["AWS_DEFAULT_REGION"],
        allow_bucket_creation=True,
    )
    admin.create_dir(bucket)
    return bucket


@pytest.fixture
def s3_bucket(moto_endpoint, monkeypatch, tmp_path) -> str:
    """A fresh bucket on the moto server, with this process's AWS_* variables pointing at it (endpoint,
    dummy credentials) and OMNIMER_CACHE_DIR under tmp_path. Returns the bucket's name."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMNIMER_CACHE_DIR", str(tmp_path / "omnimer-cache"))
    return make_bucket(moto_endpoint)
