"""Where runs and experiments are stored: a local (or NFS-mounted) directory, or an object store URI.

    python sweeps/aux_ablation.py --mode ablation --smoke-test --name smoke --storage-path s3://bucket/exp

A location is a plain path (``runs/sweeps``, ``/mnt/shared/experiments``) or a URI (``s3://bucket/exp``;
``gs://``, ``abfs://`` and ``hdfs://`` go through the same code, only ``s3://`` is tested). Plain paths
behave as they always have: JSON is written to a temp file beside the target and renamed over it
(``os.replace``), so a reader never sees half a file. URIs go through ``pyarrow.fs``
(``FileSystem.from_uri``), where an object is atomic by itself: it appears whole when its upload
completes, or not at all.

pyarrow finds the endpoint and credentials the usual way: ``AWS_ENDPOINT_URL`` (an S3-compatible
server such as MinIO), ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` or the node's
instance role, ``AWS_DEFAULT_REGION``. A URI may also carry pyarrow's options as a query string,
``s3://bucket/exp?endpoint_override=minio:9000&scheme=http``; :func:`join` keeps the query at the end.

Files that a library writes with local paths (TensorBoard events, the LoRA adapter, the Optuna SQLite
study, the smoke test's embedded data) are written locally first and uploaded with :func:`upload_dir`
/ :func:`upload_file`; :func:`cache_dir` is the local root for them (``$OMNIMER_CACHE_DIR``, default
``~/.cache/omnimer``).
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow
import pyarrow.fs as pafs

# Schemes of a shared store that pyarrow.fs opens and that Ray Tune/Train accept as a storage path.
REMOTE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs")
CACHE_ENV = "OMNIMER_CACHE_DIR"

Location = str | os.PathLike


class StorageError(OSError):
    """A storage location that cannot be used; the message names the location and what to check."""


# ------------------------------------------------------------------------------------ locations


def scheme_of(location: Location) -> str:
    """``s3`` for ``s3://bucket/x``; ``""`` for a plain path."""
    text = os.fspath(location)
    return urlsplit(text).scheme.lower() if "://" in text else ""


def is_remote(location: Location) -> bool:
    """True for an object store URI, False for a plain path or a ``file://`` URI."""
    return scheme_of(location) not in ("", "file")


def check_location(location: Location) -> None:
    """Refuse a URI whose scheme no storage backend here understands (``ftp://``, ``s4://``)."""
    scheme = scheme_of(location)
    if scheme not in ("", "file", *REMOTE_SCHEMES):
        raise StorageError(
            f"{os.fspath(location)!r}: unknown storage scheme {scheme + '://'!r}; use a local or shared "
            f"(NFS) directory or a URI of {', '.join(s + '://' for s in REMOTE_SCHEMES)} "
            "(e.g. s3://bucket/experiments)"
        )
    if scheme and scheme != "file" and not urlsplit(os.fspath(location)).netloc:
        raise StorageError(f"{os.fspath(location)!r}: the URI names no bucket; use {scheme}://BUCKET/PREFIX")


def local_path(location: Location) -> Path:
    """The plain path of a local location (``file:///x`` → ``/x``)."""
    text = os.fspath(location)
    return Path(urlsplit(text).path) if scheme_of(text) == "file" else Path(text)


def join(location: Location, *parts: str) -> str:
    """``location/part/...``; a URI keeps its scheme, bucket and query string."""
    if not is_remote(location):
        return str(local_path(location).joinpath(*parts))
    split = urlsplit(os.fspath(location))
    return _unsplit(split, posixpath.join(split.path.rstrip("/") or "/", *parts))


def _unsplit(split, path: str) -> str:
    # Not urlunsplit: it drops the "//" of a URI without a bucket, which would then read as a local path.
    query = f"?{split.query}" if split.query else ""
    return f"{split.scheme}://{split.netloc}{path}{query}"


def basename(location: Location) -> str:
    """The last path component: ``abl`` for ``s3://bucket/exp/abl`` and for ``runs/sweeps/abl``."""
    if not is_remote(location):
        return local_path(location).name
    return posixpath.basename(urlsplit(os.fspath(location)).path.rstrip("/"))


def parent(location: Location) -> str:
    """The location one level up (for a URI, within the same bucket)."""
    if not is_remote(location):
        return str(local_path(location).parent)
    split = urlsplit(os.fspath(location))
    return _unsplit(split, posixpath.dirname(split.path.rstrip("/")))


def _hint(location: str) -> str:
    scheme = scheme_of(location)
    if scheme == "s3":
        return (
            "check the endpoint (AWS_ENDPOINT_URL, or ?endpoint_override=HOST:PORT&scheme=http in the URI), "
            "the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the node's role) and "
            "that the bucket exists"
        )
    return f"check that the {scheme} store is reachable from here, its credentials, and the bucket/container"


def _failed(location: Location, what: str, err: Exception) -> StorageError:
    """``<location>: cannot <what> (<pyarrow's reason>); <what to check>``."""
    text = os.fspath(location)
    return StorageError(f"{text}: cannot {what} ({err}); {_hint(text)}")


def resolve(location: Location) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, path on it)`` of a location; a plain path becomes an absolute local one."""
    if not is_remote(location):
        return pafs.LocalFileSystem(), str(local_path(location).resolve())
    check_location(location)
    text = os.fspath(location)
    try:
        filesystem, path = pafs.FileSystem.from_uri(text)
    except (OSError, pyarrow.ArrowException) as err:
        raise _failed(text, "open the storage", err) from None
    return filesystem, path.rstrip("/")


def ray_storage(location: Location) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for Ray's ``RunConfig`` / ``Tuner.restore``.

    A plain path goes to Ray as it is (no filesystem). A URI goes as its pyarrow filesystem and the
    path on it: Ray pickles the filesystem to every worker, so an endpoint given in the URI's query
    string reaches them too (credentials from the environment are not pickled: each node finds its own).
    """
    if not is_remote(location):
        return os.fspath(location), None
    filesystem, path = resolve(location)
    return path, filesystem


def cache_dir() -> Path:
    """Local root for what is staged before an upload: ``$OMNIMER_CACHE_DIR`` or ``~/.cache/omnimer``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "omnimer"


def local_mirror(location: Location, root: Path | None = None) -> Path:
    """A stable local path standing for a remote location: ``<root>/<scheme>/<bucket>/<path>``."""
    split = urlsplit(os.fspath(location))
    parts = [p for p in split.path.split("/") if p and p not in (".", "..")]
    return (root or cache_dir()).joinpath(split.scheme, split.netloc, *parts)


# ------------------------------------------------------------------------------------ reading


def _info(location: Location) -> pafs.FileInfo:
    filesystem, path = resolve(location)
    try:
        return filesystem.get_file_info(path)
    except OSError as err:
        raise _failed(location, "be looked up", err) from None


def exists(location: Location) -> bool:
    """Whether a file or directory (a prefix holding objects, on an object store) is there."""
    if not is_remote(location):
        return local_path(location).exists()
    return _info(location).type != pafs.FileType.NotFound


def is_file(location: Location) -> bool:
    if not is_remote(location):
        return local_path(location).is_file()
    return _info(location).type == pafs.FileType.File


def is_dir(location: Location) -> bool:
    if not is_remote(location):
        return local_path(location).is_dir()
    return _info(location).type == pafs.FileType.Directory


def read_bytes(location: Location) -> bytes:
    if not is_remote(location):
        return local_path(location).read_bytes()
    filesystem, path = resolve(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(location)}: no such object") from None
    except OSError as err:
        raise _failed(location, "be read", err) from None


def read_text(location: Location) -> str:
    return read_bytes(location).decode("utf-8")


def read_json(location: Location) -> Any:
    return json.loads(read_text(location))


def list_dir(location: Location) -> list[str]:
    """Names of the entries directly under a directory, sorted ([] if it does not exist)."""
    if not is_remote(location):
        path = local_path(location)
        return sorted(os.listdir(path)) if path.is_dir() else []
    filesystem, path = resolve(location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as err:
        raise _failed(location, "be listed", err) from None
    return sorted(posixpath.basename(info.path) for info in infos)


def find_files(
    location: Location,
    name: str,
    *,
    max_depth: int | None = None,
    skip_prefixes: tuple[str, ...] = ("checkpoint_", "."),
) -> list[str]:
    """Every file called ``name`` under a directory, as locations, sorted.

    Directories whose name starts with one of ``skip_prefixes`` are not searched (Ray's checkpoint
    copies, temporaries). ``max_depth`` counts the directories between ``location`` and the file
    (``runs/<run>/record.json`` is at depth 1 under ``runs``).
    """
    found: list[str] = []
    if not is_remote(location):
        root = local_path(location)
        for current, dirs, files in os.walk(root):
            depth = len(Path(current).relative_to(root).parts)
            keep = max_depth is None or depth < max_depth
            dirs[:] = sorted(d for d in dirs if keep and not d.startswith(skip_prefixes))
            if name in files and (max_depth is None or depth <= max_depth):
                found.append(str(Path(current) / name))
        return sorted(found)
    filesystem, base = resolve(location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True))
    except OSError as err:
        raise _failed(location, "be listed", err) from None
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        parts = info.path[len(base) :].strip("/").split("/")
        dirs = parts[:-1]
        if parts[-1] != name or any(d.startswith(skip_prefixes) for d in dirs):
            continue
        if max_depth is None or len(dirs) <= max_depth:
            found.append(join(location, *parts))
    return sorted(found)


# ------------------------------------------------------------------------------------ writing


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=float) + "\n"


def write_text(location: Location, text: str) -> None:
    """Write a text file whole: a local file by temp file + rename, an object by one upload."""
    if not is_remote(location):
        path = local_path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return
    filesystem, path = resolve(location)
    try:
        with filesystem.open_output_stream(path) as stream:
            stream.write(text.encode("utf-8"))
    except OSError as err:
        raise _failed(location, "be written", err) from None


def write_json(location: Location, data: Any) -> None:
    """JSON (indented, UTF-8, numpy floats as floats) written whole; see :func:`write_text`."""
    write_text(location, _dumps(data))


def delete_file(location: Location) -> None:
    """A file; nothing if it does not exist."""
    _delete(location, Path.unlink, "delete_file")


def delete_dir(location: Location) -> None:
    """A directory and everything under it; nothing if it does not exist."""
    _delete(location, functools.partial(shutil.rmtree, ignore_errors=True), "delete_dir")


def _delete(location: Location, local, remote: str) -> None:
    """``local(path)`` on a local path, else the filesystem's ``remote`` method; an absent one is fine."""
    try:
        if not is_remote(location):
            local(local_path(location))
            return
        filesystem, path = resolve(location)
        getattr(filesystem, remote)(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        if not is_remote(location):
            raise
        raise _failed(location, "be deleted", err) from None


def check_writable(location: Location) -> None:
    """Write and delete a probe under a directory: fails early, naming the location, if it cannot."""
    check_location(location)
    if not is_remote(location):
        path = local_path(location)
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
        return
    probe = join(location, f".write-probe-{uuid.uuid4().hex}")
    write_text(probe, "ok")
    delete_file(probe)


# ------------------------------------------------------------------------------------ copying


def _upload(local: Location, location: Location) -> None:
    filesystem, path = resolve(location)
    if not is_remote(location):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(
            str(Path(local).resolve()),
            path,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=filesystem,
        )
    except OSError as err:
        raise _failed(location, f"upload {os.fspath(local)} there", err) from None


def upload_dir(local_dir: Location, location: Location) -> None:
    """Copy a local directory's files under a location (files already there with other names stay)."""
    _upload(local_dir, location)


def upload_file(local_file: Location, location: Location) -> None:
    """Copy one local file to a location (one object on an object store)."""
    _upload(local_file, location)


def download_file(location: Location, local_file: Location) -> None:
    """Copy one file from a location to a local path (its parent dirs are created)."""
    filesystem, path = resolve(location)
    target = Path(local_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(
            path,
            str(target.resolve()),
            source_filesystem=filesystem,
            destination_filesystem=pafs.LocalFileSystem(),
        )
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(location)}: no such object") from None
    except OSError as err:
        raise _failed(location, f"be downloaded to {target}", err) from None
