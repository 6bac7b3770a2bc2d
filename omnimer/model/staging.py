"""Stage a model checkpoint on node-local disk once per node (``model.stage_dir``).

Every worker of every trial loads the Thinker. From a shared file system (NFS, EFS) or the Hub that
is one full read per worker; with ``model.stage_dir`` set to a node-local directory the first worker
on a node copies (or downloads) the checkpoint there, and every later worker and trial on that node
loads the local copy::

    staged = stage_checkpoint("/shared/models/Qwen2.5-Omni-7B", "/local_disk/omnimer-models")
    staged.path      # /local_disk/omnimer-models/Qwen2.5-Omni-7B-<hash of the source>
    staged.seconds   # time spent here (waiting for the lock + copying; ~0 when reused)

The copy happens under an exclusive ``flock`` on ``<stage_dir>/<name>.lock`` (node-local, so the
lock is per node), into a temporary sibling directory that is renamed into place once complete. Its
manifest (``.omnimer-staged.json``) lists each file's size and sha256 (hashed while copying) and the
source files' sizes and modification times. A copy is reused only when the staged files still have
the manifest's sizes and the source still has its recorded sizes and times; otherwise it is
replaced. A Hub id is downloaded straight into the staging directory (from the local Hugging Face
cache only, when HF_HUB_OFFLINE is set).

Used by the Ray Train worker's set-up (:func:`omnimer.training.worker.set_up`); its time goes to the
record's ``setup_seconds``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST = ".omnimer-staged.json"
_CHUNK = 16 * 2**20


@dataclasses.dataclass(frozen=True)
class Staged:
    """A staged checkpoint: its local path, the seconds staging took here, whether this call copied."""

    path: str
    seconds: float
    copied: bool


def _key(source: str) -> str:
    """The staged directory's name: the checkpoint's own name and a hash of where it came from."""
    name = re.sub(r"[^\w.-]", "_", Path(source.rstrip("/")).name) or "model"
    return f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _source_files(root: Path) -> dict[str, dict]:
    """Every file under ``root`` (relative path → size, mtime_ns), symlinks followed."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            stat = path.stat()
            files[path.relative_to(root).as_posix()] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return files


def _copy_file(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst``, returning the sha256 of the bytes written."""
    digest = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _reusable(target: Path, source_files: dict[str, dict] | None) -> bool:
    """Whether ``target`` is a complete copy of the source as it is now."""
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    for name, entry in manifest["files"].items():
        staged = target / name
        if not staged.is_file() or staged.stat().st_size != entry["size"]:
            log.warning("staged model %s: %s is missing or has another size; copying again", target, name)
            return False
    if source_files is not None and source_files != manifest["source"]:
        log.info("staged model %s: the source changed since it was copied; copying again", target)
        return False
    return True


def _download(repo_id: str, into: Path) -> Path:
    from huggingface_hub import snapshot_download

    from omnimer.model.source import hub_offline

    return Path(snapshot_download(repo_id, local_dir=str(into), local_files_only=hub_offline()))


def _copy_tree(source: Path, source_files: dict[str, dict], tmp: Path) -> dict[str, dict]:
    files = {}
    for name, entry in source_files.items():
        files[name] = {"size": entry["size"], "sha256": _copy_file(source / name, tmp / name)}
    return files


def stage_checkpoint(name_or_path: str, stage_dir: str | os.PathLike) -> Staged:
    """The node-local copy of checkpoint ``name_or_path`` (a directory or a Hub id) under
    ``stage_dir``, made by the first caller on the node and reused by the others (see the module)."""
    started = time.perf_counter()
    root = Path(stage_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    source_dir = Path(name_or_path).expanduser()
    is_dir = source_dir.is_dir()
    source = str(source_dir.resolve()) if is_dir else name_or_path
    target = root / _key(source)
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        source_files = _source_files(source_dir) if is_dir else None
        if _reusable(target, source_files):
            return Staged(str(target), time.perf_counter() - started, copied=False)
        tmp = root / f".{target.name}.tmp-{os.getpid()}"
        for stale in root.glob(f".{target.name}.tmp-*"):  # a copier that died under the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        try:
            if is_dir:
                files = _copy_tree(source_dir, source_files, tmp)
            else:
                _download(name_or_path, tmp)
                files = {
                    name: {"size": entry["size"], "sha256": None}
                    for name, entry in _source_files(tmp).items()
                }
            manifest = {"source": source_files, "from": source, "files": files}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    seconds = time.perf_counter() - started
    size = sum(entry["size"] for entry in files.values())
    log.info("staged %s (%.1f GB) at %s in %.1f s", name_or_path, size / 1e9, target, seconds)
    return Staged(str(target), seconds, copied=True)
