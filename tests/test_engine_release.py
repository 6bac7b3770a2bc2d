"""A finished run's DeepSpeed engine is freed, its model, ZeRO state and optimizer with it, so that the
next run of a trial of several runs (``--runs-per-trial``) does not set up beside it: on CPU (fp32,
gloo), after an epoch of training, as the worker releases it
(:func:`omnimer.training.engine.release_engine`).

The engines live in a process of their own: DeepSpeed keeps the process group it first saw in
module-level state, so a second group in pytest's process (another test's) would find it stale.

    python tests/test_engine_release.py MODEL_DIR   # the checks, printed as JSON
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from functools import partial
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def trained_engine(model_dir: str, zero: int):
    """The tiny Thinker's LoRA model in a ZeRO-``zero`` engine, set up and trained for an epoch (3 steps
    and an evaluation) by the GPU bench's in-process loop, which builds it as a worker does: every
    forward, backward and step hook has run."""
    from tinyrows import bench_data

    from tests.bench.gpu_train import _epoch, _set_up, make_config

    cfg = make_config(model_dir, "unused", zero=zero, batch_size=4, epochs=1, use_gpu=False)
    run = _set_up(cfg, bench_data())
    _epoch(run, 0, [], log_every=0)
    return run.engine


def survives(end, make) -> bool:
    """Whether the engine ``make()`` returns is still alive after ``end(engine)`` and a full collection."""
    kept = ended(end, make)
    gc.collect()
    return kept() is not None


def ended(end, make) -> weakref.ref:
    """``end`` the engine ``make()`` returns; a weak reference to it (the frame's is gone on return)."""
    engine = make()
    end(engine)
    return weakref.ref(engine)


def checks(model_dir: str) -> dict:
    import torch

    from omnimer.training.engine import release_engine
    from tests.bench.gpu_train import init_single_process_group

    init_single_process_group(use_gpu=False)
    out = {}
    for zero in (2, 3):
        make = partial(trained_engine, model_dir, zero)
        out[f"released zero{zero}"] = survives(release_engine, make)
    destroyed = ended(lambda engine: engine.destroy(), make)  # ZeRO-3
    gc.collect()
    out["destroyed zero3"] = destroyed() is not None
    if out["destroyed zero3"]:  # released now
        out["destroyed, then released zero3"] = survives(release_engine, destroyed)
    torch.distributed.destroy_process_group()
    return out


@pytest.fixture(scope="module")
def alive(tmp_path_factory) -> dict:
    from omnimer.model.tiny import build_tiny_model
    from tests.bench.gpu_train import PROCESS_GROUP_ENV

    model_dir = build_tiny_model(tmp_path_factory.mktemp("tiny") / "m", seed=0)
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_GROUP_ENV} | {"HF_HUB_OFFLINE": "1"}
    command = [sys.executable, __file__, str(model_dir)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("zero", [2, 3])
def test_a_released_engine_is_freed(alive, zero):
    assert alive[f"released zero{zero}"] is False


def test_deepspeed_alone_keeps_a_zero3_engine_after_destroy(alive):
    """Why release_engine does more than ``destroy()``. When this fails, the pinned DeepSpeed frees a
    ZeRO-3 engine by itself, and release_engine's ZeRO-3 part can go."""
    assert alive["destroyed zero3"] is True
    assert alive["destroyed, then released zero3"] is False


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    print(json.dumps(checks(sys.argv[1])))
