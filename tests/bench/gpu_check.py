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
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .sweep_bench import epoch_seconds, first_setup

REPO = Path(__file__).resolve().parents[2]
STEPS = ("env", "pytest", "train", "sweep")
EXPERIMENT = "gpu-check"
# The sweep step's ablation: these subsets × these seeds, each seed's runs in one trial.
SWEEP_SEEDS, SWEEP_SUBSETS = ("0", "1"), ("none", "all")
SWEEP_RUNS = len(SWEEP_SEEDS) * len(SWEEP_SUBSETS)
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
ERROR_LOG_BYTES = 200_000

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


@dataclass
class Step:
    name: str
    command: list[str]
    log: Path
    timeout: float
    shown: str = ""  # the command as logged (default: the command itself)
    status: str = "not run"  # passed, failed, timeout, interrupted, skipped, not run
    returncode: int | None = None
    seconds: float = 0.0
    detail: str = ""
    extra: dict = field(default_factory=dict)


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


# ------------------------------------------------------------------------------------ reading results


def parse_env(step: Step, out: Path) -> dict:
    text = step.log.read_text(encoding="utf-8", errors="replace") if step.log.is_file() else ""
    for line in text.splitlines():
        if line.startswith("ENV_JSON "):
            info = json.loads(line.removeprefix("ENV_JSON "))
            (out / "env.json").write_text(json.dumps(info, indent=2) + "\n")
            return info
    return {}


def parse_pytest(step: Step) -> None:
    """``N passed, M failed, ...`` from pytest's closing line."""
    text = step.log.read_text(encoding="utf-8", errors="replace") if step.log.is_file() else ""
    counts: dict[str, int] = {}
    for line in reversed(text.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)", line)
        if found:
            counts = {kind: int(n) for n, kind in found}
            break
    step.extra["counts"] = counts
    step.detail = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no pytest summary line"
    if step.status == "passed" and not counts.get("passed"):
        step.status, step.detail = "failed", step.detail + " (no test passed)"


def parse_train(step: Step, json_path: Path) -> None:
    results = json.loads(json_path.read_text()) if json_path.is_file() else []
    step.extra["results"] = results
    step.detail = f"{len(results)} run(s) measured"


def _checks_ok(r: dict) -> bool:
    gathered = r.get("gathered_adapter") or {}
    return bool(
        r.get("all_losses_finite")
        and r.get("only_lora_changed")
        and (not gathered.get("checked") or gathered.get("equal"))
    )


def read_sweep(step: Step, out: Path) -> None:
    """The trials' records and the sweep's ``invocations.json`` into ``step.extra`` and
    ``DIR/records.json``; the sweep's wall time into the step's line."""
    experiment = out / "exp" / EXPERIMENT
    records = []
    for path in sorted((experiment / "runs").glob("*/record.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            records.append({"config": {"run": {"name": path.parent.name}}, "status": f"unreadable: {err}"})
    path = experiment / "invocations.json"
    try:
        invocations = json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        invocations = []
    (out / "records.json").write_text(
        json.dumps({"records": records, "invocations": invocations}, indent=2, default=str) + "\n"
    )
    step.extra["records"], step.extra["invocations"] = records, invocations
    finished = sum(r.get("status") == "finished" for r in records)
    step.detail = f"{finished}/{len(records)} run(s) finished"
    wall = invocations[-1].get("wall_seconds") if invocations else None
    if wall is not None:
        step.detail += f"; sweep wall {wall:.1f} s"
    if step.status == "passed" and (len(records) != SWEEP_RUNS or finished != SWEEP_RUNS):
        step.status = "failed"
        step.detail += f" (expected {SWEEP_RUNS} finished)"


WORKER_GROUP_INIT = "[Worker Group Initialization] "
PHASE = re.compile(r"^(?P<phase>.+?) (?:completed )?in (?P<seconds>[0-9.]+) ?s")


def worker_group_startup(ray_tmp: str) -> dict[str, dict[str, float]]:
    """Ray Train's own breakdown of each Train run's worker-group start, by run name: the
    ``[Worker Group Initialization]`` lines of its controller's log (placement group, worker actors
    created, train context initialized, train function launched, total)."""
    phases: dict[str, dict[str, float]] = {}
    pattern = "session_*/logs/train/ray-train-sys-controller-*.log"
    for log in sorted(Path(ray_tmp).glob(f"ray/{pattern}")) + sorted(Path(ray_tmp).glob(pattern)):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = str(entry.get("message", ""))
            if not message.startswith(WORKER_GROUP_INIT):
                continue
            found = PHASE.match(message[len(WORKER_GROUP_INIT) :].split("\n")[0])
            if found:
                run = phases.setdefault(str(entry.get("run_name", "?")), {})
                run[found["phase"]] = float(found["seconds"])
    return phases


def collect_sweep_errors(out: Path, ray_tmp: str, path: Path) -> None:
    """Tune's error.txt files and the tails of the Ray logs that hold a traceback, in one file."""
    parts = []
    for error in sorted((out / "exp").rglob("error.txt")):
        parts.append(f"===== {error}\n{error.read_text(encoding='utf-8', errors='replace')[-20_000:]}")
    logs = sorted(Path(ray_tmp).glob("ray/session_*/logs/*")) + sorted(Path(ray_tmp).glob("session_*/logs/*"))
    for log in logs:
        if not log.is_file() or log.suffix not in (".err", ".out", ".log"):
            continue
        text = log.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in text or "ERROR" in text:
            parts.append(f"===== {log}\n{text[-8_000:]}")
    if parts:
        path.write_text("\n".join(parts)[-ERROR_LOG_BYTES:] + "\n")


def log_tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


# ------------------------------------------------------------------------------------ summary


def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def summary(steps: list[Step], env_info: dict, out: Path, started: float) -> str:
    pkgs = env_info.get("packages") or {}
    lines = ["# GPU check", ""]
    if env_info:
        lines += [
            f"- GPU: {env_info.get('gpu', '-')} (compute {env_info.get('capability', '-')}, "
            f"{env_info.get('memory_gib', '-')} GiB), {env_info.get('devices', 0)} device(s)",
            f"- driver {env_info.get('driver') or '-'}; torch {env_info.get('torch')} "
            f"(CUDA {env_info.get('torch_cuda')}); NCCL {env_info.get('nccl', '-')}; "
            f"cuDNN {env_info.get('cudnn', '-')}; Python {env_info.get('python')}",
            "- " + ", ".join(f"{name} {version or 'MISSING'}" for name, version in pkgs.items()),
        ]
    else:
        lines.append("- environment probe gave nothing (see logs/env.log)")
    lines += [f"- output: {out}; total {time.monotonic() - started:.0f} s", ""]
    lines += ["| step | status | seconds | result |", "|---|---|---|---|"]
    for s in steps:
        detail = s.detail.replace("|", "/")
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.1f} | {detail} |")

    by_name = {s.name: s for s in steps}
    results = by_name["train"].extra.get("results") if "train" in by_name else None
    if results:
        lines += [
            "",
            "DeepSpeed bf16, one process (tests/bench/gpu_train.py; rates after the first epoch):",
            "",
            "| ZeRO | batch | steps/s | clips/s | tokens/s | ms/step | peak alloc MiB | loss ep1 -> last "
            "| valid F1 | test F1 | skipped | checks |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            last = (r.get("history") or [{}])[-1].get("macro_f1", {})
            lines.append(
                f"| {r.get('zero')} | {r.get('batch_size')} | {_fmt(r.get('steps_per_s'), '.2f')} "
                f"| {_fmt(r.get('clips_per_s'), '.1f')} | {_fmt(r.get('tokens_per_s'), '.0f')} "
                f"| {_fmt(1e3 * r['step_seconds'] if r.get('step_seconds') else None, '.1f')} "
                f"| {_fmt(r.get('peak_memory_mib'), '.0f')} "
                f"| {_fmt(r.get('loss_first_epoch'))} -> {_fmt(r.get('loss_last_epoch'))} "
                f"| {_fmt(last.get('valid'))} | {_fmt(last.get('test'))} "
                f"| {r.get('skipped_steps')}/{r.get('optimizer_steps')} "
                f"| {'ok' if _checks_ok(r) else 'FAIL'} |"
            )
    records = by_name["sweep"].extra.get("records") if "sweep" in by_name else None
    if records is not None:
        invocations = by_name["sweep"].extra.get("invocations") or [{}]
        wall, slots = invocations[-1].get("wall_seconds"), invocations[-1].get("slots")
        lines += [
            "",
            f"Ray Tune ablation on the GPU: sweep wall {_fmt(wall, '.1f')} s, {slots or '-'} slot(s). "
            "A run's wall = set-up (the worker's: model, data, DeepSpeed) + epochs (training and "
            "evaluation) + other: checkpoints, reports and the run's close, and in a trial's first run, "
            "whose wall counts from the fit's start, the trial's start-up (Ray Train's controller and "
            "worker processes, their imports, the process group).",
            "",
            "| run | status | epochs | wall s | set-up s | epochs s | other s | device s "
            "| valid macro-F1 | test macro-F1 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in records:
            name = ((r.get("config") or {}).get("run") or {}).get("name", "?")
            setup = sum(first_setup(r).values()) if r.get("setup_seconds") else None
            epochs = epoch_seconds(r) if r.get("epochs") else None
            wall = r.get("wall_seconds")
            other = wall - setup - epochs if None not in (wall, setup, epochs) else None
            lines.append(
                f"| {name} | {r.get('status')} | {len(r.get('epochs') or [])} | {_fmt(wall, '.1f')} "
                f"| {_fmt(setup, '.1f')} | {_fmt(epochs, '.1f')} | {_fmt(other, '.1f')} "
                f"| {_fmt(r.get('device_seconds'), '.1f')} | {_fmt((r.get('valid') or {}).get('macro_f1'))} "
                f"| {_fmt((r.get('test') or {}).get('macro_f1'))} |"
            )
            if r.get("error"):
                lines.append(f"|  | error: {str(r['error'])[:300].replace('|', '/')} | | | | | | | | |")
        startup = by_name["sweep"].extra.get("startup") or {}
        if startup:
            lines += ["", "Ray Train's start of each trial's worker group (its controller's log):", ""]
            for run, phases in sorted(startup.items()):
                lines.append(f"- {run}: " + ", ".join(f"{p} {v:.1f} s" for p, v in phases.items()))
    for s in steps:
        if s.status in ("failed", "timeout", "interrupted"):
            lines += ["", f"Last lines of logs/{s.log.name} ({s.name}, {s.status}):", "", "```"]
            lines += [log_tail(s.log), "```"]
    return "\n".join(lines) + "\n"


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


def read_results(step: Step, out: Path, env: dict[str, str]) -> dict:
    """Parse what ``step`` left behind into ``step.detail`` / ``step.extra``; the env step's info."""
    if step.name == "env":
        info = parse_env(step, out)
        step.detail = info.get("gpu", "no GPU seen") if info else "no probe output"
        return info
    if step.name == "pytest":
        parse_pytest(step)
    elif step.name == "train":
        parse_train(step, out / "logs" / "gpu_train.json")
    elif step.name == "sweep":
        read_sweep(step, out)
        step.extra["startup"] = worker_group_startup(env["RAY_TMPDIR"])
        if step.status != "passed":
            collect_sweep_errors(out, env["RAY_TMPDIR"], out / "logs" / "sweep_errors.log")
    return {}


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
