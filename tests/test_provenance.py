"""omnimer.provenance: repository paths that hold wherever the code is unpacked, and the code's version
without a checkout (a Ray job's working dir has no .git)."""

from __future__ import annotations

import shutil
from pathlib import Path

from omnimer.provenance import (
    REPO,
    SOURCE_DIRS,
    in_repo,
    inside_ray_package,
    repo_relative,
    short_version,
    source_sha256,
)

UNPACKED = "/tmp/ray/session_2026-11-29_18-26-52_805568_18464/runtime_resources/working_dir_files"


def test_repository_paths_are_stored_repo_relative_and_others_as_given():
    assert repo_relative("cluster/deepspeed/zero2.json") == "cluster/deepspeed/zero2.json"
    assert repo_relative(str(REPO / "cluster" / "deepspeed" / "zero3.json")) == "cluster/deepspeed/zero3.json"
    # A path an earlier Ray session resolved in its unpacked copy of the repository.
    earlier = f"{UNPACKED}/_ray_pkg_8129c3bea9bac654/sweeps/configs/smoke.yaml"
    assert repo_relative(earlier) == "sweeps/configs/smoke.yaml"
    for given in ("/mnt/shared/deepspeed/zero2.json", "s3://bucket/zero2.json", "Qwen/Qwen2.5-Omni-7B"):
        assert repo_relative(given) == given
    assert in_repo("cluster/deepspeed/zero2.json") == REPO / "cluster" / "deepspeed" / "zero2.json"
    assert in_repo("/mnt/shared/zero2.json") == Path("/mnt/shared/zero2.json")
    assert inside_ray_package(f"{UNPACKED}/_ray_pkg_8129c3bea9bac654/runs/sweeps")
    assert not inside_ray_package("/mnt/shared/experiments")


def copy_sources(target: Path) -> Path:
    for directory in SOURCE_DIRS:
        shutil.copytree(REPO / directory, target / directory, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_the_source_hash_is_the_code_not_where_it_lies(tmp_path):
    here = source_sha256(REPO)
    shipped_again = copy_sources(tmp_path / "_ray_pkg_aaaa")
    assert source_sha256(shipped_again) == here
    (shipped_again / "omnimer" / "__pycache__").mkdir(exist_ok=True)
    (shipped_again / "omnimer" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    (shipped_again / "README.md").write_text("docs are not code")
    assert source_sha256.__wrapped__(shipped_again) == here
    changed = copy_sources(tmp_path / "_ray_pkg_bbbb")
    module = changed / "omnimer" / "losses.py"
    module.write_text(module.read_text() + "\n# one more line\n")
    assert source_sha256(changed) != here


def test_the_short_version_prefers_the_git_sha():
    sha = "0123456789abcdef" * 2
    checkout = {"git": {"sha": sha, "dirty": False}, "source_sha256": "f" * 64}
    assert short_version(checkout) == "git 0123456789ab"
    assert short_version({"git": {"sha": sha, "dirty": True}}) == "git 0123456789ab+dirty"
    ray_job = {"git": {"sha": None, "dirty": None}, "source_sha256": "9e" * 32}
    assert short_version(ray_job) == "source 9e9e9e9e9e9e"
    assert short_version({}) == "unknown code"
