"""``<experiment>/invocations.json``: one entry per invocation of a sweep (the first, and every resume).

Written by :func:`omnimer.sweep.tuner.run_sweep` when an invocation starts and when it ends; read by
the analysis report (which invocation, with which code, ran which trials) and ``make bench``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path

from omnimer import provenance, storage

log = logging.getLogger(__name__)

INVOCATIONS_FILE = "invocations.json"


def start_invocation(experiment_dir: Path | str, slots: int, resumed: bool) -> dict:
    """Append this invocation of the sweep to ``invocations.json``, before any trial starts.

    One entry per invocation: its number (trials record it in their ``sweep`` block), when and where
    it ran (host and the driver's process id), which code (:func:`omnimer.provenance.code_version`;
    a resumed sweep may run newer code), its trial slots, and, once it ends, its wall time. An
    invocation whose driver died keeps ``wall_seconds: null``.
    """
    path = storage.join(experiment_dir, INVOCATIONS_FILE)
    invocations = storage.read_json(path) if storage.is_file(path) else []
    entry = {
        "invocation": len(invocations) + 1,
        "started": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        **provenance.code_version(),
        "slots": slots,
        "resumed": resumed,
        "wall_seconds": None,
    }
    storage.write_json(path, [*invocations, entry])
    log.info("invocation %d of %s (%s)", entry["invocation"], experiment_dir, provenance.short_version(entry))
    return entry


@contextlib.contextmanager
def invocation_log(experiment_dir: Path | str, invocation: int):
    """Everything this process logs at INFO and above, into ``<experiment>/logs/invocation-<n>.log``
    while the block runs (for an object store: a local copy, uploaded when the block ends)."""
    name = f"invocation-{invocation}.log"
    remote = storage.join(experiment_dir, "logs", name)
    local = (
        storage.local_mirror(remote, storage.cache_dir() / "logs")
        if storage.is_remote(experiment_dir)
        else Path(remote)
    )
    local.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(local, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Ray's and Tune's loggers do not propagate to the root logger: they get the handler too.
    loggers = [logging.getLogger(), logging.getLogger("ray")]
    for logger in loggers:
        logger.addHandler(handler)
    log.info("full log of this invocation: %s (each run's own: <experiment>/runs/<run>/train.log)", remote)
    try:
        yield remote
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
        if storage.is_remote(experiment_dir):
            storage.upload_file(local, remote)


def end_invocation(experiment_dir: Path | str, entry: dict) -> None:
    """Set this invocation's wall time in ``invocations.json``."""
    path = storage.join(experiment_dir, INVOCATIONS_FILE)
    invocations = storage.read_json(path)
    done = {**entry, "wall_seconds": time.time() - entry["started"]}
    storage.write_json(path, [done if i["invocation"] == entry["invocation"] else i for i in invocations])
