"""One-command check of the GPU path on a CUDA machine: GPU tests, DeepSpeed bf16 runs, a Ray Tune sweep.

    python -m tests.bench.gpu_check --out DIR                          # from the repository root
    python -m tests.bench.gpu_check --out DIR --embedded .gpu/embedded  # prebuilt smoke data + tiny model
    python -m tests.bench.gpu_check --out DIR --only sweep             # one step (env, pytest, train, sweep)

It needs a CUDA GPU and refuses to start without one (exit 2). Each step runs as a subprocess with a
time limit (its own cap, and never past ``--deadline`` seconds after the start), its whole output in
``DIR/logs/<step>.log``:

1. ``env``: torch, CUDA, GPU name and memory, driver (``nvidia-smi``), NCCL and cuDNN versions, and the
   versions of the packages the training path uses (``DIR/env.json``);
2. ``pytest``: ``python -m pytest -q -m gpu tests/test_gpu.py tests/test_model.py`` (no cache dir);
3. ``train``: ``python -m tests.bench.gpu_train --epochs 3 --zero 2 3 --batch-size 4 --no-cudnn-sdpa``
   (bf16 DeepSpeed ZeRO-2 and ZeRO-3 of the tiny Thinker, one process, no Ray; its results in
   ``DIR/logs/gpu_train.json``), on ``--embedded DIR``'s shards and model when given;
4. ``sweep``: a 2-trial ablation (no aux task, all aux tasks; seeds 0 and 1) on Ray Tune, each trial a
   Ray Train run on the GPU that trains one seed's 2 runs in turn (``--runs-per-trial 2``: the second
   run sets up on a GPU the first one's engine has released)::

       python sweeps/aux_ablation.py --mode ablation --smoke-test --seeds 0,1 --subsets none,all \\
           --runs-per-trial 2 --name gpu-check --storage-path DIR/exp train.use_gpu=true \\
           model.dtype=bfloat16 train.num_workers=1

   With ``--embedded SRC``, ``SRC/shards`` and ``SRC/tiny-model`` are first copied to
   ``DIR/exp/_embedded/`` (where ``--smoke-test`` looks for them), so nothing is synthesized or
   ingested. The summary splits each run's wall time (set-up, epochs, the rest: a trial's start-up)
   and lists Ray Train's own timing of each trial's worker-group start (its controller's log).
   The trials' ``record.json`` and the sweep's ``invocations.json`` go to
   ``DIR/records.json``; when the sweep fails, Tune's ``error.txt`` files and the tails of the Ray
   worker logs that hold a traceback go to ``DIR/logs/sweep_errors.log``.

At the end it prints one summary (also written to ``DIR/summary.md``) and exits 0 if every step passed,
1 otherwise. On SIGTERM (e.g. ``timeout``) it stops the running step and still writes the summary.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .gpu_check_results import EXPERIMENT, SWEEP_SEEDS, SWEEP_SUBSETS, Step, read_results, summary

REPO = Path(__file__).resolve().parents[2]
STEPS = ("env", "pytest", "train", "sweep")
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "deepspeed",
    "ray",
    "optuna",
    "huggingface-hub",
    "numpy",
    "pyarrow",
    "pydantic",
    "decord",
)

# Run in a subprocess by the env step: prints one JSON object.
ENV_PROBE = r"""
import json, platform, subprocess
from importlib import metadata
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "devices": torch.cuda.device_count()}
if info["cuda_available"]:
    props = torch.cuda.get_device_properties(0)
    info["gpu"] = props.name
    info["capability"] = f"{props.major}.{props.minor}"
    info["memory_gib"] = round(props.total_memory / 2**30, 1)
    info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    info["cudnn"] = torch.backends.cudnn.version()
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    lines = smi.stdout.strip().splitlines() if smi.returncode == 0 else []
    info["driver"] = lines[0] if lines else None
except (OSError, subprocess.TimeoutExpired):
    info["driver"] = None
versions = {}
for name in PACKAGES:
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
info["packages"] = versions
print("ENV_JSON " + json.dumps(info))
"""


class Interrupted(Exception):
    """SIGTERM or SIGINT while a step ran."""


# ------------------------------------------------------------------------------------ running steps


def step_env() -> dict[str, str]:
    """The environment of every step: offline, unbuffered, the repository importable, Ray's temp files in
    a fresh short dir (its AF_UNIX socket paths must stay under 107 bytes)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("RAY_ADDRESS", None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        paths.append(str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="gck-", dir="/tmp")
    return env


def run_step(step: Step, env: dict[str, str], deadline: float) -> None:
    """Run ``step.command`` in its own process group, output to ``step.log``, killed at its time limit."""
    limit = min(step.timeout, deadline - time.monotonic())
    if limit <= 5:
        step.status, step.detail = "skipped", "no time left before --deadline"
        return
    step.log.parent.mkdir(parents=True, exist_ok=True)
    shown = step.shown or " ".join(step.command)
    print(f"[gpu_check] {step.name}: {shown} (limit {limit:.0f} s)", flush=True)
    started = time.monotonic()
    with open(step.log, "w", encoding="utf-8") as log:
        log.write(f"$ {shown}\n# limit {limit:.0f} s\n")
        log.flush()
        proc = subprocess.Popen(
            step.command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            step.returncode = proc.wait(timeout=limit)
            step.status = "passed" if step.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            step.status = "timeout"
            _stop(proc)
        except Interrupted:
            step.status = "interrupted"
            _stop(proc)
        step.seconds = time.monotonic() - started
        log.write(f"\n# {step.status} (exit {step.returncode}) after {step.seconds:.1f} s\n")
    print(f"[gpu_check] {step.name}: {step.status} in {step.seconds:.1f} s", flush=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group, SIGKILL 15 s later if anything is left."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------------ main


def build_steps(args: argparse.Namespace, out: Path) -> list[Step]:
    py = sys.executable
    logs = out / "logs"
    train = [py, "-m", "tests.bench.gpu_train", "--epochs", "3", "--zero", "2", "3", "--batch-size", "4"]
    train += ["--no-cudnn-sdpa", "--json", str(logs / "gpu_train.json")]
    if args.embedded:
        embedded = Path(args.embedded).resolve()
        train += ["--data", str(embedded / "shards"), "--model", str(embedded / "tiny-model")]
    sweep = [
        py, "sweeps/aux_ablation.py", "--mode", "ablation", "--smoke-test",
        "--seeds", ",".join(SWEEP_SEEDS), "--subsets", ",".join(SWEEP_SUBSETS),
        "--runs-per-trial", str(len(SWEEP_SUBSETS)), "--name", EXPERIMENT, "--storage-path", str(out / "exp"),
        "train.use_gpu=true", "model.dtype=bfloat16", "train.num_workers=1",
    ]  # fmt: skip
    steps = [
        Step(
            "env",
            [py, "-c", f"PACKAGES = {PACKAGES!r}\n" + ENV_PROBE],
            logs / "env.log",
            60,
            shown=f"{py} -c <environment probe>",
        ),
        Step(
            "pytest",
            [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu"]
            + ["tests/test_gpu.py", "tests/test_model.py"],
            logs / "pytest.log",
            args.pytest_timeout,
        ),
        Step("train", train, logs / "gpu_train.log", args.train_timeout),
        Step("sweep", sweep, logs / "sweep.log", args.sweep_timeout),
    ]
    return [s for s in steps if s.name in args.only]


def _on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output dir: logs, env.json, records.json, summary.md")
    parser.add_argument("--embedded", help="dir with the smoke test's prebuilt shards/ and tiny-model/")
    parser.add_argument(
        "--only", default=",".join(STEPS), help=f"comma-separated steps to run (default: {','.join(STEPS)})"
    )
    parser.add_argument("--deadline", type=float, default=400, help="no step runs past this many seconds")
    parser.add_argument("--pytest-timeout", type=float, default=110)
    parser.add_argument("--train-timeout", type=float, default=140)
    parser.add_argument("--sweep-timeout", type=float, default=300)
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(STEPS))
    if unknown:
        parser.error(f"--only: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.embedded:
        embedded = Path(args.embedded)
        for part, marker in (("shards", "dataset.json"), ("tiny-model", "config.json")):
            if not (embedded / part / marker).is_file():
                parser.error(f"--embedded {embedded}: {part}/{marker} is missing")
    try:
        import torch
    except ImportError as err:
        parser.error(f"needs torch with CUDA ({err})")
    if not torch.cuda.is_available():
        sys.stderr.write(
            f"gpu_check: needs a CUDA GPU, and torch {torch.__version__} sees none "
            f"(CUDA build: {torch.version.cuda or 'none'}); nothing was run\n"
        )
        return 2

    started = time.monotonic()
    deadline = started + args.deadline
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = step_env()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    steps = build_steps(args, out)
    env_info: dict = {}
    interrupted = False
    for step in steps:
        if interrupted:
            step.status, step.detail = "skipped", "interrupted before this step"
            continue
        try:
            if step.name == "sweep" and args.embedded:
                target = out / "exp" / "_embedded"
                for part in ("shards", "tiny-model"):
                    if not (target / part).exists():
                        shutil.copytree(Path(args.embedded) / part, target / part)
            run_step(step, env, deadline)
            env_info = read_results(step, out, env) or env_info
        except Interrupted:
            step.status = "interrupted"
        interrupted = step.status == "interrupted"
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    text = summary(steps, env_info, out, started)
    (out / "summary.md").write_text(text)
    sys.stdout.write("\n" + text)
    sys.stdout.flush()
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    return 0 if all(s.status == "passed" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
