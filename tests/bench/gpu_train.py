"""One DeepSpeed training run of the tiny Thinker in a single process (world size 1, no Ray), measured.

    PYTHONUNBUFFERED=1 python -m tests.bench.gpu_train                 # ZeRO-2 and ZeRO-3, batch 4 and 8
    python -m tests.bench.gpu_train --zero 2 --batch-size 4 --epochs 3 # one run, in process
    python -m tests.bench.gpu_train --zero 2 --batch-size 4 --no-cudnn-sdpa  # cuDNN attention off
    python -m tests.bench.gpu_train --cpu --zero 2 --epochs 1          # shake-out on CPU (fp32 + gloo)

On a GPU it is the path a ``train.use_gpu=true`` worker takes: bf16 weights (``model.dtype=bfloat16``),
NCCL, the ZeRO config built by :func:`omnimer.training.engine.deepspeed_config`, and per step the real
:func:`omnimer.training.step.step_losses` (main task + the three auxiliary tasks) followed by
``engine.backward`` / ``engine.step``; each epoch the real :class:`omnimer.training.evaluate.Evaluator` scores
valid and test. Only Ray (which hands a worker its rows and its process group) is replaced: the rows
are read with pyarrow from ``runs/demo/shards`` (``omnimer ingest``) and the process group is a local
one of size 1.

Printed per run: steps/s and clips/s after the first epoch (its first steps pay one-off costs), the
share of a step spent building the processor batches on the CPU, peak GPU memory
(``torch.cuda.max_memory_allocated``), the mean train loss of the first and last epoch, valid/test
macro-F1 of the last epoch, the optimizer steps DeepSpeed skipped for non-finite gradients (cuDNN's
bf16 attention backward gives NaN on some left-padded batches: ``--no-cudnn-sdpa``), and the checks:
every loss finite, every weight bf16, only the LoRA
weights changed, and the adapter written by ``save_pretrained`` equal to the trained LoRA weights.
With several runs each one runs in its own subprocess, so that peak memory and the process group
start clean.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tests.bench.adapter_checks import check_saved_adapter, snapshot
from tests.bench.gpu_results import describe_result, results_table

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / "runs" / "demo" / "shards"
DEFAULT_MODEL = REPO / "runs" / "demo" / "tiny-model"


# ------------------------------------------------------------------------------------ set-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The environment of a torch process group (what init_single_process_group sets and a test clears).
PROCESS_GROUP_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")


def init_single_process_group(use_gpu: bool) -> None:
    """A process group of one rank (what Ray Train's TorchConfig sets up on a worker)."""
    if torch.distributed.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
        os.environ[key] = value
    if use_gpu:
        torch.cuda.set_device(0)
    torch.distributed.init_process_group(backend="nccl" if use_gpu else "gloo", rank=0, world_size=1)


def make_config(
    model_dir: str,
    data_dir: str,
    *,
    zero: int,
    batch_size: int,
    epochs: int,
    use_gpu: bool,
    lr: float = 3e-3,
    seed: int = 0,
):
    """The run's TrainConfig, as ``omnimer train`` would build it with sweeps/configs/smoke.yaml and
    ``train.use_gpu=true model.dtype=bfloat16 train.num_workers=1`` (float32 on CPU)."""
    from omnimer.config import TrainConfig

    return TrainConfig.from_dict(
        {
            "data": {"path": data_dir, "target": "emotion", "language": "id"},
            "model": {
                "name_or_path": model_dir,
                "dtype": "bfloat16" if use_gpu else "float32",
                "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
            },
            "loss": {"scheme": "none"},
            "train": {
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "warmup_ratio": 0.1,
                "num_workers": 1,
                "use_gpu": use_gpu,
                "seed": seed,
                "deepspeed_config": str(REPO / "cluster" / "deepspeed" / f"zero{zero}.json"),
            },
        }
    )


def read_rows(data_dir: Path, split: str) -> list[dict]:
    """A split's rows in the order a worker of world size 1 sees them (sorted by clip_id)."""
    from omnimer.collate import rows_from_table
    from omnimer.data.shards import open_split
    from omnimer.training.dataset import TRAIN_COLUMNS

    table = open_split(data_dir, split).to_table(columns=TRAIN_COLUMNS)
    return sorted(rows_from_table(table), key=lambda r: str(r["clip_id"]))


@dataclasses.dataclass
class Data:
    """What a worker derives from ``dataset.json`` and its rows."""

    train: list[dict]
    evaluation: dict[str, list[dict]]
    labels: object  # omnimer.labels.LabelSet
    counts: list[int]
    frame_size: int


def load_data(data_dir: Path) -> Data:
    from omnimer.data.shards import read_dataset_info
    from omnimer.labels import class_counts, label_set_of

    info = read_dataset_info(data_dir)
    labels = label_set_of(info, "emotion")
    return Data(
        train=read_rows(data_dir, "train"),
        evaluation={s: read_rows(data_dir, s) for s in ("valid", "test") if info["counts"]["rows"].get(s)},
        labels=labels,
        counts=class_counts(info, "emotion", labels),
        frame_size=int(info["frames"]["height"]),
    )


# ------------------------------------------------------------------------------------ one run


@dataclasses.dataclass
class Run:
    """One measured run's pieces: the engine and what a step and an evaluation need."""

    cfg: Any
    data: Data
    device: Any
    engine: Any
    scheduler: Any
    processor: Any
    prompting: Any
    evaluator: Any
    step_context: Any
    before: dict
    trainable: set
    init_seconds: float
    steps_per_epoch: int


def train_run(
    cfg, data: Data, *, log_every: int = 0, check_adapter: bool = True, cudnn_sdpa: bool = True
) -> dict:
    """Train ``cfg`` on ``data`` in this process, the way ``train_loop_per_worker`` does; measured.

    The process group must exist (:func:`init_single_process_group`). ``cudnn_sdpa=False`` turns off
    PyTorch's cuDNN attention backend for the run: on an H100 (torch 2.11, cu130) its backward returns
    NaN on some left-padded bf16 batches, and DeepSpeed then skips those optimizer steps.
    """
    from omnimer.training.engine import release_engine

    use_gpu = cfg.train.use_gpu
    if use_gpu:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cudnn_before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(cudnn_sdpa)
    run = _set_up(cfg, data)
    losses_seen: list[float] = []
    epochs = [_epoch(run, epoch, losses_seen, log_every) for epoch in range(cfg.train.epochs)]
    result = _result(run, epochs, losses_seen, _collate_seconds(run), check_adapter)
    result["cudnn_sdpa"] = cudnn_sdpa
    release_engine(run.engine)
    torch.backends.cuda.enable_cudnn_sdp(cudnn_before)
    del run
    gc.collect()
    if use_gpu:
        torch.cuda.empty_cache()
    return result


def _set_up(cfg, data: Data) -> Run:
    """The model with its adapter in a DeepSpeed engine (the worker's own builder), and the step's and
    the evaluation's context."""
    from omnimer import losses
    from omnimer.model.load import apply_lora, load_processor, load_thinker
    from omnimer.tasks import Prompting
    from omnimer.training.engine import build_engine, seed_everything
    from omnimer.training.evaluate import Evaluator, resolve_scoring
    from omnimer.training.step import StepContext

    world_size = torch.distributed.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if cfg.train.use_gpu else torch.device("cpu")
    seed_everything(cfg.train.seed)
    rebalancing = losses.build_rebalancing(cfg.loss, data.counts)
    processor = load_processor(cfg.model.name_or_path)
    scoring = resolve_scoring(processor.tokenizer, data.labels, cfg.eval.scoring)
    model = apply_lora(load_thinker(cfg.model), cfg.model.lora)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    steps_per_epoch = math.ceil(len(data.train) / cfg.train.batch_size)
    optimizer_steps = max(1, cfg.train.epochs * steps_per_epoch // cfg.train.grad_accum)
    started = time.perf_counter()
    engine, scheduler = build_engine(model, cfg, world_size, optimizer_steps)
    init_seconds = time.perf_counter() - started
    prompting = Prompting(cfg.data.target, data.labels, scoring.verbalizers, cfg.data.language)
    return Run(
        cfg=cfg,
        data=data,
        device=device,
        engine=engine,
        scheduler=scheduler,
        processor=processor,
        prompting=prompting,
        evaluator=Evaluator(processor, prompting, scoring, data.frame_size, cfg.train.eval_batch_size),
        step_context=StepContext(
            processor, prompting, scoring.first_ids, rebalancing, data.frame_size, device
        ),
        before=before,
        trainable=trainable,
        init_seconds=init_seconds,
        steps_per_epoch=steps_per_epoch,
    )


def _epoch(run: Run, epoch: int, losses_seen: list[float], log_every: int) -> dict:
    """One epoch of the real step (timed), then the closed-set evaluation of every split (timed)."""
    from omnimer.training.step import epoch_order, step_losses

    cfg, data, engine, use_gpu = run.cfg, run.data, run.engine, run.cfg.train.use_gpu
    engine.train()
    order = epoch_order(data.train, cfg, epoch, data.labels, data.counts)
    sync(use_gpu)
    epoch_started = time.perf_counter()
    sums: dict[str, float] = {}
    clips = tokens = 0
    size = cfg.train.batch_size
    for step in range(run.steps_per_epoch):
        rows = [data.train[i] for i in order[step * size : (step + 1) * size]]
        total, parts, step_tokens = step_losses(engine, rows, cfg, run.step_context)
        engine.backward(total)
        engine.step()
        loss = float(total.detach())  # synchronises with the device
        losses_seen.append(loss)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        clips += len(rows)
        tokens += step_tokens
        if log_every and (step % log_every == 0):
            print(f"  epoch {epoch + 1} step {step}: loss {loss:.4f} lr {run.scheduler.get_last_lr()[0]:.2e}")
    sync(use_gpu)
    train_seconds = time.perf_counter() - epoch_started

    engine.eval()
    eval_started = time.perf_counter()
    evaluation = {}
    for split, rows in data.evaluation.items():
        evaluation[split] = run.evaluator.predict(engine, rows, run.device).metrics(data.labels)
    sync(use_gpu)
    return {
        "epoch": epoch + 1,
        "train_loss": {k: v / run.steps_per_epoch for k, v in sums.items()},
        "steps": run.steps_per_epoch,
        "clips": clips,
        "tokens": tokens,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - eval_started,
        "eval_clips": sum(len(r) for r in data.evaluation.values()),
        "macro_f1": {s: e["macro_f1"] for s, e in evaluation.items()},
        "accuracy": {s: e["accuracy"] for s, e in evaluation.items()},
    }


def _collate_seconds(run: Run) -> float:
    """Data preparation alone (the processor on the CPU) per step, over one epoch: how much of a step
    is not the GPU."""
    from omnimer.aux_tasks import enabled_tasks
    from omnimer.collate import collate
    from omnimer.tasks import build_task_batches
    from omnimer.training.step import epoch_order

    cfg, data = run.cfg, run.data
    order = epoch_order(data.train, cfg, 0, data.labels, data.counts)
    started = time.perf_counter()
    size = cfg.train.batch_size
    for step in range(run.steps_per_epoch):
        rows = [data.train[i] for i in order[step * size : (step + 1) * size]]
        media = {r["clip_id"]: r for r in rows}
        for convs in build_task_batches(rows, run.prompting, enabled_tasks(cfg.loss)).values():
            collate(run.processor, convs, media, frame_size=data.frame_size)
    return (time.perf_counter() - started) / run.steps_per_epoch


def _result(
    run: Run, epochs: list[dict], losses_seen: list[float], collate_seconds: float, check_adapter: bool
):
    """The run's measurements and checks (only the adapter's weights changed; the saved adapter is
    the trained one, whole under ZeRO-3)."""
    from omnimer.training.engine import gathered_adapter

    engine, use_gpu = run.engine, run.cfg.train.use_gpu
    stage = engine.zero_optimization_stage()
    after = snapshot(engine.module, stage)
    changed = {n for n in run.before if not torch.equal(run.before[n], after[n])}
    frozen_changed = sorted(changed - run.trainable)
    lora_b = {n for n in run.trainable if "lora_B" in n}
    adapter = whole_adapter = {"checked": False}
    if check_adapter:
        # A plain save_pretrained, and the one the training checkpoint does (inside gathered_adapter,
        # which gathers the LoRA weights that ZeRO-3 partitions).
        adapter = check_saved_adapter(engine.module, after, run.trainable, contextlib.nullcontext())
        whole_adapter = check_saved_adapter(engine.module, after, run.trainable, gathered_adapter(engine))
    later = [e for e in epochs[1:]] or epochs
    steady_seconds = sum(e["train_seconds"] for e in later)
    steady_steps = sum(e["steps"] for e in later)
    return {
        "device": torch.cuda.get_device_name(0) if use_gpu else "cpu",
        "zero": stage,
        "batch_size": run.cfg.train.batch_size,
        "epochs": run.cfg.train.epochs,
        "train_clips": len(run.data.train),
        "dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in engine.module.parameters()}),
        "param_devices": sorted({p.device.type for p in engine.module.parameters()}),
        "deepspeed_init_seconds": run.init_seconds,
        "steps_per_s": steady_steps / steady_seconds,
        "clips_per_s": sum(e["clips"] for e in later) / steady_seconds,
        "tokens_per_s": sum(e["tokens"] for e in later) / steady_seconds,
        "first_epoch_steps_per_s": epochs[0]["steps"] / epochs[0]["train_seconds"],
        "collate_seconds_per_step": collate_seconds,
        "optimizer_steps": len(losses_seen),
        # DeepSpeed skips a step whose gradients are not finite ("OVERFLOW! Skipping step").
        "skipped_steps": int(engine.skipped_steps),
        "step_seconds": steady_seconds / steady_steps,
        "eval_clips_per_s": sum(e["eval_clips"] for e in later) / sum(e["eval_seconds"] for e in later),
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if use_gpu else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if use_gpu else None,
        "loss_first_epoch": epochs[0]["train_loss"]["total"],
        "loss_last_epoch": epochs[-1]["train_loss"]["total"],
        "loss_first_step": losses_seen[0],
        "loss_last_step": losses_seen[-1],
        "all_losses_finite": all(math.isfinite(v) for v in losses_seen),
        "trainable_tensors": len(run.trainable),
        "changed_tensors": len(changed),
        "frozen_changed": frozen_changed[:10],
        "lora_b_unchanged": sorted(lora_b - changed)[:10],
        "only_lora_changed": not frozen_changed
        and all("lora_" in n for n in run.trainable)
        and bool(changed),
        "adapter": adapter,
        "gathered_adapter": whole_adapter,
        "history": epochs,
    }


def sync(use_gpu: bool) -> None:
    if use_gpu:
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.gpu_train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--zero", type=int, nargs="+", choices=(2, 3), default=[2, 3])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="shards of `omnimer ingest`")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="tiny Thinker (built if absent)")
    parser.add_argument("--cpu", action="store_true", help="fp32 + gloo on the CPU (a shake-out)")
    parser.add_argument("--max-train-rows", type=int, default=0, help="use only the first N train rows")
    parser.add_argument("--log-every", type=int, default=0)
    parser.add_argument(
        "--no-cudnn-sdpa",
        action="store_true",
        help="turn off PyTorch's cuDNN attention (its bf16 backward gives NaN on padded batches)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    use_gpu = not args.cpu
    if use_gpu and not torch.cuda.is_available():
        parser.error("no CUDA device: pass --cpu for the CPU shake-out")
    data_dir = Path(args.data)
    if not (data_dir / "dataset.json").is_file():
        parser.error(f"{data_dir} is not a dataset of `omnimer ingest` (run `make demo` or pass --data)")
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        from omnimer.model.tiny import build_tiny_model

        model_dir = build_tiny_model(Path(tempfile.mkdtemp(prefix="omnimer-tiny-")) / "thinker", seed=0)

    runs = [(z, b) for z in args.zero for b in args.batch_size]
    results: list[dict] = []
    failed = 0
    if len(runs) == 1:
        init_single_process_group(use_gpu)
        data = load_data(data_dir)
        if args.max_train_rows:
            data.train = data.train[: args.max_train_rows]
        zero, batch = runs[0]
        cfg = make_config(
            str(model_dir),
            str(data_dir),
            zero=zero,
            batch_size=batch,
            epochs=args.epochs,
            use_gpu=use_gpu,
            lr=args.lr,
        )
        results.append(train_run(cfg, data, log_every=args.log_every, cudnn_sdpa=not args.no_cudnn_sdpa))
        torch.distributed.destroy_process_group()
    else:
        for zero, batch in runs:
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                command = [
                    sys.executable, "-m", "tests.bench.gpu_train", "--zero", str(zero), "--batch-size",
                    str(batch), "--epochs", str(args.epochs), "--lr", str(args.lr), "--data", str(data_dir),
                    "--model", str(model_dir), "--max-train-rows", str(args.max_train_rows),
                    "--log-every", str(args.log_every), "--json", out.name,
                ] + (["--cpu"] if args.cpu else [])  # fmt: skip
                if args.no_cudnn_sdpa:
                    command.append("--no-cudnn-sdpa")
                print(f"--- ZeRO-{zero}, batch {batch}", flush=True)
                done = subprocess.run(command, cwd=REPO)
                if done.returncode != 0:
                    print(f"--- ZeRO-{zero}, batch {batch} FAILED (exit {done.returncode})", flush=True)
                    failed += 1
                    continue
                results += json.loads(Path(out.name).read_text())
    for r in results:
        print(describe_result(r))
    print(results_table(results), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    ok = all(r["all_losses_finite"] and r["only_lora_changed"] for r in results)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
