"""Shared fixtures: one local Ray for the in-process tests, its temp dir under pytest's tmp dir."""

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
