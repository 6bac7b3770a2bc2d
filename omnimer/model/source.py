"""Where a model comes from: ``model.name_or_path`` is a local checkpoint directory or a Hugging Face
repo id. Checked here without importing transformers or peft, so that a process that only validates
a config (a sweep's Tune trial, which builds the Train run but never loads the model) does not pay
for them (about 3 CPU-s)::

    from omnimer.model.source import resolve_checkpoint

    resolve_checkpoint("runs/demo/tiny-model")      # the directory, or FileNotFoundError naming it
    resolve_checkpoint("Qwen/Qwen2.5-Omni-7B")      # the repo id, once its config.json is found

Used by the loader (:mod:`omnimer.model.load`), the staging (:mod:`omnimer.model.staging`) and the
run driver's checks (:func:`omnimer.training.driver.validate_run`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import huggingface_hub

# "org/name": a Hugging Face repo id. Anything else that is not an existing directory is an error.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return huggingface_hub.constants.HF_HUB_OFFLINE or flag.strip().lower() in {"1", "true", "yes", "on"}


def resolve_checkpoint(name_or_path: str) -> str:
    """Check ``name_or_path`` and return it: an existing checkpoint directory or a Hub repo id.

    A path that does not exist fails here, naming the path, before anything is fetched. An
    ``org/name`` that is not a directory is looked up on the Hub (only in the local cache when
    HF_HUB_OFFLINE is set); failing that, the error names both readings.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model directory {str(path)!r} has no config.json: not a checkpoint")
        return str(path)
    if path.exists():
        raise NotADirectoryError(f"model path {name_or_path!r} is a file, not a checkpoint directory")
    if not _REPO_ID.fullmatch(name_or_path) or ".." in name_or_path:
        raise FileNotFoundError(f"model directory {name_or_path!r} does not exist")
    # transformers' lookup (it turns every failure into an OSError), imported only for a repo id.
    from transformers.utils import cached_file

    try:
        cached_file(name_or_path, "config.json", local_files_only=hub_offline())
    except OSError as error:
        where = "in the local Hugging Face cache (HF_HUB_OFFLINE is set)" if hub_offline() else "on the Hub"
        raise FileNotFoundError(
            f"model {name_or_path!r} is neither an existing directory nor a repo found {where}: {error}"
        ) from None
    return name_or_path
