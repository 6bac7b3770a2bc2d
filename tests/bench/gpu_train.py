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

import torch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / "runs" / "demo" / "shards"
DEFAULT_MODEL = REPO / "runs" / "demo" / "tiny-model"


# ------------------------------------------------------------------------------------ set-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _gathered(module: torch.nn.Module, stage: int, trainable_only: bool = False):
    """A context in which the parameters of ``module`` hold their full values (ZeRO-3 partitions them).

    Collective: every rank must enter it.
    """
    if stage == 3:
        import deepspeed

        params = [p for p in module.parameters() if p.requires_grad or not trainable_only]
        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def check_saved_adapter(module, trained: dict[str, torch.Tensor], trainable: set[str], context) -> dict:
    """``module.save_pretrained`` inside ``context``: does the file hold the trained LoRA weights?"""
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as tmp:
        with context:
            module.save_pretrained(tmp)
        saved = load_file(str(Path(tmp) / "adapter_model.safetensors"))
    # peft saves ``...lora_A.weight`` for the parameter ``...lora_A.default.weight``.
    expected = {n.replace(".default.", "."): t for n, t in trained.items() if n in trainable}
    empty = sorted(k for k, t in saved.items() if t.numel() == 0)
    return {
        "checked": True,
        "tensors": len(saved),
        "expected": len(expected),
        "empty": len(empty),
        "equal": saved.keys() == expected.keys() and all(torch.equal(saved[k], expected[k]) for k in saved),
    }


def _snapshot(module: torch.nn.Module, stage: int) -> dict[str, torch.Tensor]:
    with _gathered(module, stage):
        return {n: p.detach().to("cpu", copy=True) for n, p in module.named_parameters()}


# ------------------------------------------------------------------------------------ one run


def train_run(
    cfg, data: Data, *, log_every: int = 0, check_adapter: bool = True, cudnn_sdpa: bool = True
) -> dict:
    """Train ``cfg`` on ``data`` in this process, the way ``train_loop_per_worker`` does; measured.

    The process group must exist (:func:`init_single_process_group`). ``cudnn_sdpa=False`` turns off
    PyTorch's cuDNN attention backend for the run: on an H100 (torch 2.11, cu130) its backward returns
    NaN on some left-padded bf16 batches, and DeepSpeed then skips those optimizer steps.
    """
    import deepspeed

    from omnimer import losses, metrics
    from omnimer.aux_tasks import enabled_tasks
    from omnimer.collate import collate
    from omnimer.model.load import apply_lora, load_processor, load_thinker
    from omnimer.tasks import Prompting, build_task_batches
    from omnimer.training.engine import deepspeed_config, gathered_adapter, lr_lambda, seed_everything
    from omnimer.training.evaluate import Evaluator, choose_verbalizers
    from omnimer.training.step import StepContext, epoch_order, step_losses

    use_gpu = cfg.train.use_gpu
    world_size = torch.distributed.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if use_gpu else torch.device("cpu")
    ds_config = deepspeed_config(cfg, world_size)
    stage = int(ds_config["zero_optimization"]["stage"])
    if use_gpu:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cudnn_before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(cudnn_sdpa)
    seed_everything(cfg.train.seed)
    rebalancing = losses.build_rebalancing(cfg.loss, data.counts)
    processor = load_processor(cfg.model.name_or_path)
    verbalizers, first_ids = choose_verbalizers(processor.tokenizer, data.labels)
    model = apply_lora(load_thinker(cfg.model), cfg.model.lora)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    rows_all = data.train
    steps_per_epoch = math.ceil(len(rows_all) / cfg.train.batch_size)
    optimizer_steps = max(1, cfg.train.epochs * steps_per_epoch // cfg.train.grad_accum)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(optimizer_steps, cfg.train.warmup_ratio)
    )
    started = time.perf_counter()
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, dist_init_required=False
    )
    init_seconds = time.perf_counter() - started
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in engine.module.parameters()})
    devices = sorted({p.device.type for p in engine.module.parameters()})

    prompting = Prompting(cfg.data.target, data.labels, verbalizers, cfg.data.language)
    evaluator = Evaluator(processor, prompting, first_ids, data.frame_size, cfg.train.eval_batch_size)
    step_context = StepContext(processor, prompting, first_ids, rebalancing, data.frame_size, device)
    epochs = []
    losses_seen: list[float] = []
    for epoch in range(cfg.train.epochs):
        engine.train()
        order = epoch_order(rows_all, cfg, epoch, data.labels, data.counts)
        sync(use_gpu)
        epoch_started = time.perf_counter()
        sums: dict[str, float] = {}
        clips = tokens = 0
        for step in range(steps_per_epoch):
            rows = [
                rows_all[i] for i in order[step * cfg.train.batch_size : (step + 1) * cfg.train.batch_size]
            ]
            total, parts, step_tokens = step_losses(engine, rows, cfg, step_context)
            engine.backward(total)
            engine.step()
            loss = float(total.detach())  # synchronises with the device
            losses_seen.append(loss)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            clips += len(rows)
            tokens += step_tokens
            if log_every and (step % log_every == 0):
                print(f"  epoch {epoch + 1} step {step}: loss {loss:.4f} lr {scheduler.get_last_lr()[0]:.2e}")
        sync(use_gpu)
        train_seconds = time.perf_counter() - epoch_started

        engine.eval()
        eval_started = time.perf_counter()
        evaluation = {}
        for split, rows in data.evaluation.items():
            _, truth, predicted = evaluator.predict(engine, rows, device)
            evaluation[split] = metrics.classification_metrics(truth, predicted, data.labels.names)
        sync(use_gpu)
        eval_seconds = time.perf_counter() - eval_started
        epochs.append(
            {
                "epoch": epoch + 1,
                "train_loss": {k: v / steps_per_epoch for k, v in sums.items()},
                "steps": steps_per_epoch,
                "clips": clips,
                "tokens": tokens,
                "train_seconds": train_seconds,
                "eval_seconds": eval_seconds,
                "eval_clips": sum(len(r) for r in data.evaluation.values()),
                "macro_f1": {s: e["macro_f1"] for s, e in evaluation.items()},
                "accuracy": {s: e["accuracy"] for s, e in evaluation.items()},
            }
        )

    # Data preparation alone (the processor on the CPU), for one epoch: how much of a step is not the GPU.
    order = epoch_order(rows_all, cfg, 0, data.labels, data.counts)
    collate_started = time.perf_counter()
    for step in range(steps_per_epoch):
        rows = [rows_all[i] for i in order[step * cfg.train.batch_size : (step + 1) * cfg.train.batch_size]]
        media = {r["clip_id"]: r for r in rows}
        batches = build_task_batches(rows, prompting, enabled_tasks(cfg.loss))
        for convs in batches.values():
            collate(processor, convs, media, frame_size=data.frame_size)
    collate_seconds = (time.perf_counter() - collate_started) / steps_per_epoch

    after = _snapshot(engine.module, stage)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    frozen_changed = sorted(changed - trainable)
    lora_b = {n for n in trainable if "lora_B" in n}
    adapter = whole_adapter = {"checked": False}
    if check_adapter:
        # A plain save_pretrained, and the one the training checkpoint does (inside gathered_adapter,
        # which gathers the LoRA weights that ZeRO-3 partitions).
        adapter = check_saved_adapter(engine.module, after, trainable, contextlib.nullcontext())
        whole_adapter = check_saved_adapter(engine.module, after, trainable, gathered_adapter(engine))

    later = [e for e in epochs[1:]] or epochs
    steady_seconds = sum(e["train_seconds"] for e in later)
    result = {
        "device": torch.cuda.get_device_name(0) if use_gpu else "cpu",
        "zero": stage,
        "batch_size": cfg.train.batch_size,
        "epochs": cfg.train.epochs,
        "train_clips": len(rows_all),
        "dtypes": dtypes,
        "param_devices": devices,
        "deepspeed_init_seconds": init_seconds,
        "steps_per_s": sum(e["steps"] for e in later) / steady_seconds,
        "clips_per_s": sum(e["clips"] for e in later) / steady_seconds,
        "tokens_per_s": sum(e["tokens"] for e in later) / steady_seconds,
        "first_epoch_steps_per_s": epochs[0]["steps"] / epochs[0]["train_seconds"],
        "collate_seconds_per_step": collate_seconds,
        "cudnn_sdpa": cudnn_sdpa,
        "optimizer_steps": len(losses_seen),
        # DeepSpeed skips a step whose gradients are not finite ("OVERFLOW! Skipping step").
        "skipped_steps": int(engine.skipped_steps),
        "step_seconds": steady_seconds / sum(e["steps"] for e in later),
        "eval_clips_per_s": sum(e["eval_clips"] for e in later) / sum(e["eval_seconds"] for e in later),
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if use_gpu else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if use_gpu else None,
        "loss_first_epoch": epochs[0]["train_loss"]["total"],
        "loss_last_epoch": epochs[-1]["train_loss"]["total"],
        "loss_first_step": losses_seen[0],
        "loss_last_step": losses_seen[-1],
        "all_losses_finite": all(math.isfinite(v) for v in losses_seen),
        "trainable_tensors": len(trainable),
        "changed_tensors": len(changed),
        "frozen_changed": frozen_changed[:10],
        "lora_b_unchanged": sorted(lora_b - changed)[:10],
        "only_lora_changed": not frozen_changed and all("lora_" in n for n in trainable) and bool(changed),
        "adapter": adapter,
        "gathered_adapter": whole_adapter,
        "history": epochs,
    }
    engine.destroy()
    torch.backends.cuda.enable_cudnn_sdp(cudnn_before)
    del engine, optimizer, scheduler, model
    gc.collect()
    if use_gpu:
        torch.cuda.empty_cache()
    return result


def sync(use_gpu: bool) -> None:
    if use_gpu:
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------ CLI


def _table(results: list[dict]) -> str:
    head = (
        f"{'ZeRO':>4} {'batch':>5} {'steps/s':>8} {'clips/s':>8} {'ms/step':>8} {'collate ms':>10} "
        f"{'peak MiB':>9} {'loss ep1 -> last':>17} {'valid F1':>8} {'test F1':>8} {'skipped':>7} "
        f"{'checks':>6}"
    )
    lines = [head]
    for r in results:
        last = r["history"][-1]["macro_f1"]
        ok = (
            r["all_losses_finite"]
            and r["only_lora_changed"]
            and (not r["gathered_adapter"]["checked"] or r["gathered_adapter"]["equal"])
        )
        peak = f"{r['peak_memory_mib']:.0f}" if r["peak_memory_mib"] is not None else "-"
        lines.append(
            f"{r['zero']:>4} {r['batch_size']:>5} {r['steps_per_s']:>8.2f} {r['clips_per_s']:>8.1f} "
            f"{1e3 * r['step_seconds']:>8.1f} {1e3 * r['collate_seconds_per_step']:>10.1f} {peak:>9} "
            f"{r['loss_first_epoch']:>7.3f} -> {r['loss_last_epoch']:<7.3f} "
            f"{last.get('valid', float('nan')):>8.3f} {last.get('test', float('nan')):>8.3f} "
            f"{str(r['skipped_steps']) + '/' + str(r['optimizer_steps']):>7} "
            f"{'ok' if ok else 'FAIL':>6}"
        )
    return "\n".join(lines)


def _adapter_text(a: dict) -> str:
    if not a["checked"]:
        return "not checked"
    verdict = "= trained weights" if a["equal"] else "DIFFERS from the trained weights"
    return f"{a['tensors']} tensors ({a['empty']} empty) {verdict}"


def _describe(r: dict) -> str:
    return (
        f"[{r['device']}] ZeRO-{r['zero']} batch {r['batch_size']} "
        f"(cuDNN SDPA {'on' if r['cudnn_sdpa'] else 'off'}): "
        f"weights {r['dtypes']} "
        f"on {r['param_devices']}, "
        f"deepspeed.initialize {r['deepspeed_init_seconds']:.1f} s, first epoch "
        f"{r['first_epoch_steps_per_s']:.2f} steps/s, eval {r['eval_clips_per_s']:.1f} clips/s, "
        f"{r['tokens_per_s']:.0f} tokens/s; loss step 1 {r['loss_first_step']:.3f} -> last step "
        f"{r['loss_last_step']:.3f}; {r['changed_tensors']} of {r['trainable_tensors']} LoRA tensors "
        "changed, "
        f"frozen changed: {r['frozen_changed'] or 'none'}; adapter saved plainly: "
        f"{_adapter_text(r['adapter'])}; as a training checkpoint saves it (gathered): "
        f"{_adapter_text(r['gathered_adapter'])}"
    )


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
        print(_describe(r))
    print(_table(results), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    ok = all(r["all_losses_finite"] and r["only_lora_changed"] for r in results)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
