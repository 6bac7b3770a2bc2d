"""A worker's DeepSpeed engine: the ZeRO config completed from the run config, AdamW with a
warmup-cosine schedule, the adapter gathered whole under ZeRO-3, and the engine freed at a run's end.

Used by the Ray Train worker (:mod:`omnimer.training.worker`) and the GPU bench
(``python -m tests.bench.gpu_train``); ``tests/test_configs.py`` checks every shipped ZeRO config
through :func:`deepspeed_config`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import sys

import numpy as np
import torch

from omnimer.config import TrainConfig
from omnimer.provenance import in_repo


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(total_steps: int, warmup_ratio: float):
    """Linear warmup over ``warmup_ratio`` of the steps, then cosine decay to 0."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def deepspeed_config(cfg: TrainConfig, world_size: int) -> dict:
    """The ZeRO config from ``cluster/deepspeed``, completed with this run's batch sizes and precision."""
    ds = json.loads(in_repo(cfg.train.deepspeed_config).read_text())
    ds["train_micro_batch_size_per_gpu"] = cfg.train.batch_size
    ds["gradient_accumulation_steps"] = cfg.train.grad_accum
    ds["train_batch_size"] = cfg.train.batch_size * cfg.train.grad_accum * world_size
    ds["gradient_clipping"] = cfg.train.max_grad_norm
    # bf16 on GPU; fp32 on CPU, where DeepSpeed picks its CPU accelerator and gloo by itself.
    ds["bf16"] = {"enabled": bool(cfg.train.use_gpu)}
    ds.pop("fp16", None)
    # Our optimizer is torch's AdamW; with optimizer offload DeepSpeed would otherwise insist on its own.
    ds["zero_force_ds_cpu_optimizer"] = False
    return ds


EXTENSIONS_DIR_ENV = "TORCH_EXTENSIONS_DIR"


def use_environment_op_builds() -> None:
    """Build and keep the ops DeepSpeed JIT-builds (on CPU: its shared-memory collective) with this
    virtual environment's own tools, in the environment. Outside a virtual environment torch's
    defaults stay.

    - The builds go to ``<venv>/torch_extensions``, unless ``TORCH_EXTENSIONS_DIR`` is set (the
      cluster's runtime env sets it). torch's default, ``~/.cache/torch_extensions``, is shared by every
      environment of the user, and a build there is keyed by its source paths: two checkouts (or a CI
      clone beside one's own) rebuild the op for each other in turn, about 50 s of a C++ compiler at
      the start of every trial, with the trials of a sweep waiting on one lock.
    - The build runs the environment's ninja (the ``ninja`` package DeepSpeed requires), whatever
      PATH this process was started with: torch runs the first ``ninja`` on PATH, and two ninja
      versions do not take each other's build log (1.11 and 1.13 record a command differently), so
      processes that find the system's ninja and processes that find the venv's (a Ray job whose PATH
      starts with the venv's bin, beside ``make test``'s own processes) rebuilt the op for each other,
      25 s on 2 cores each time."""
    if sys.prefix == sys.base_prefix:
        return
    os.environ.setdefault(EXTENSIONS_DIR_ENV, os.path.join(sys.prefix, "torch_extensions"))
    bin_dir = os.path.join(sys.prefix, "bin")
    ninja = os.path.join(bin_dir, "ninja")
    found = shutil.which("ninja")
    if os.access(ninja, os.X_OK) and not (found and os.path.samefile(found, ninja)):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])


def build_ops() -> None:
    """Build DeepSpeed's JIT op for CPU collectives where the workers will look for it (a no-op where
    the accelerator has no such op). ``make venv`` runs it, so that the first trials of a sweep do not
    wait for a compiler:

        python -c "from omnimer.training.engine import build_ops; build_ops()"
    """
    use_environment_op_builds()
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()


def build_engine(model, cfg: TrainConfig, world_size: int, optimizer_steps: int):
    """``deepspeed.initialize`` of ``model``'s trainable (LoRA) weights; returns the engine and the
    learning-rate scheduler."""
    use_environment_op_builds()
    import deepspeed

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optimizer_steps, cfg.train.warmup_ratio)
    )
    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world_size),
        dist_init_required=False,
    )
    return engine, scheduler


def release_engine(engine) -> None:
    """End a run's engine so that the garbage collector can free it: its model, its ZeRO partitions
    and its optimizer state. A trial of several runs (``--runs-per-trial``) sets the next run up in the
    same process, and must not do so beside the previous run's model.

    ``engine.destroy()`` removes DeepSpeed's hooks, but under ZeRO-3 DeepSpeed (0.19.8) still holds
    the engine from two module-level places: its model stays on ``parameter_offload``'s
    ``FWD_MODULE_STACK`` (pushed at set-up, never popped), and ``PartitionedParameterCoordinator``'s
    ``__params_to_release`` is a method under a class-wide ``functools.lru_cache`` whose keys hold the
    coordinator and every submodule it released. Both are let go here; the cache is only a cache
    (another engine of this process recomputes its entries). ``tests/test_engine_release.py`` shows
    the engine outliving ``destroy()`` alone, and freed after this.
    """
    module = engine.module
    zero3 = engine.zero_optimization_stage() == 3
    engine.destroy()
    if zero3:
        from deepspeed.runtime.zero import parameter_offload
        from deepspeed.runtime.zero.partitioned_param_coordinator import PartitionedParameterCoordinator

        stack = parameter_offload.FWD_MODULE_STACK
        stack[:] = [m for m in stack if m is not module]
        # The lru_cache sits under DeepSpeed's NVTX wrapper, in its closure.
        for attribute in vars(PartitionedParameterCoordinator).values():
            for cell in getattr(attribute, "__closure__", None) or ():
                if hasattr(cell.cell_contents, "cache_clear"):
                    cell.cell_contents.cache_clear()


def gathered_adapter(engine):
    """Context in which the trainable (LoRA) weights are whole on every rank, whatever the ZeRO stage."""
    if engine.zero_optimization_stage() != 3:
        return contextlib.nullcontext()
    import deepspeed

    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    return deepspeed.zero.GatheredParameters(trainable, modifier_rank=None)
