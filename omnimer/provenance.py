"""Which code ran, and paths into the code that hold wherever the code is unpacked.

Used by the training driver (``record.json``), by ``sweeps/aux_ablation.py`` (``sweep.json`` and
``invocations.json``) and by the run config's repository files (``train.deepspeed_config``).

A Ray job runs the repository from a copy that each Ray session unpacks somewhere else
(``<temp>/session_<time>/runtime_resources/working_dir_files/_ray_pkg_<hash>/``), without ``.git``.
So what a sweep or a record stores about the code is location-free:

- a file of the repository (a DeepSpeed config, a sweep config) is stored repo-relative and resolved
  against the repository of the process that reads it (:func:`repo_relative`, :func:`in_repo`);
- the code's version is the git SHA where there is a checkout, and always :func:`source_sha256`, a hash
  of the source files that is the same for the same code shipped again.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
# Ray unpacks a job's working dir into a folder of this prefix (the rest is the package's hash).
RAY_PACKAGE_PREFIX = "_ray_pkg_"
# What source_sha256 covers: the code and the configs a run reads; not tests, docs or outputs.
SOURCE_DIRS = ("omnimer", "sweeps", "analysis", "cluster")
SOURCE_SUFFIXES = frozenset({".py", ".yaml", ".yml", ".json", ".tsv"})
PACKAGES = ("torch", "transformers", "peft", "ray", "deepspeed", "optuna", "pyarrow", "decord", "numpy")


def repo_relative(path: str) -> str:
    """``path`` as configs and records store it: repo-relative when it names something in the repository.

    A relative path is already repo-relative. An absolute one inside this repository, or inside a Ray
    job's unpacked copy of a repository (a path an earlier Ray session resolved), loses the part up to
    the repository root. Any other path (shared storage, a URI) is returned as given.
    """
    candidate = PurePosixPath(path)
    if not candidate.is_absolute():
        return path
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        pass
    parts = candidate.parts
    for index, part in enumerate(parts[:-1]):
        if part.startswith(RAY_PACKAGE_PREFIX):
            return str(PurePosixPath(*parts[index + 1 :]))
    return path


def in_repo(path: str) -> Path:
    """A repository file's path for this process: a relative ``path`` is taken from the repository root."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else REPO / candidate


def inside_ray_package(path: str | Path) -> bool:
    """True if ``path`` lies in a Ray job's unpacked working dir, which the next Ray session will not have."""
    return any(part.startswith(RAY_PACKAGE_PREFIX) for part in PurePosixPath(str(path)).parts)


def git_state() -> dict:
    """The code's git SHA and whether the work tree had uncommitted changes (None outside a checkout,
    e.g. in a Ray job's working dir, which is shipped without ``.git``)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "dirty": None}


@functools.cache
def source_sha256(root: Path = REPO) -> str:
    """SHA-256 over the repository's source files (paths and contents, in path order).

    The same for the same code wherever it is unpacked, with or without ``.git``; a changed line in
    any module or config changes it. Cached: the code a process imported does not change under it.
    """
    digest = hashlib.sha256()
    files = sorted(
        path
        for directory in SOURCE_DIRS
        for path in (root / directory).rglob("*")
        if path.suffix in SOURCE_SUFFIXES and path.is_file() and "__pycache__" not in path.parts
    )
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def code_version() -> dict:
    """What a record or an invocation stores about its code: git state and the source hash."""
    return {"git": git_state(), "source_sha256": source_sha256()}


def short_version(code: dict) -> str:
    """``git 1a2b3c4d5e6f`` (``+dirty``) where there was a checkout, else ``source 9f8e7d6c5b4a``."""
    git = code.get("git") or {}
    if git.get("sha"):
        return f"git {git['sha'][:12]}" + ("+dirty" if git.get("dirty") else "")
    source = code.get("source_sha256")
    return f"source {source[:12]}" if source else "unknown code"


def package_versions() -> dict:
    return {name: metadata.version(name) for name in PACKAGES}
