"""What the steps of ``python -m tests.bench.gpu_check`` left behind, read into each step's line, and
the check's one summary (``DIR/summary.md``): the environment, the GPU tests' counts, the DeepSpeed
runs' rates and checks, the sweep's runs (each one's wall split into set-up, epochs and the rest) and
Ray Train's timing of each trial's worker-group start.

Used by :mod:`tests.bench.gpu_check`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .sweep_bench import epoch_seconds, first_setup

EXPERIMENT = "gpu-check"
# The sweep step's ablation: these subsets × these seeds, each seed's runs in one trial.
SWEEP_SEEDS, SWEEP_SUBSETS = ("0", "1"), ("none", "all")
SWEEP_RUNS = len(SWEEP_SEEDS) * len(SWEEP_SUBSETS)
ERROR_LOG_BYTES = 200_000


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


def _train_lines(results: list[dict]) -> list[str]:
    """The DeepSpeed runs' table."""
    lines = [
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
    return lines


def _sweep_lines(sweep: Step) -> list[str]:
    """The sweep's runs, each one's wall split, and Ray Train's start of each trial."""
    records, invocations = sweep.extra["records"], sweep.extra.get("invocations") or [{}]
    wall, slots = invocations[-1].get("wall_seconds"), invocations[-1].get("slots")
    lines = [
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
    startup = sweep.extra.get("startup") or {}
    if startup:
        lines += ["", "Ray Train's start of each trial's worker group (its controller's log):", ""]
        for run, phases in sorted(startup.items()):
            lines.append(f"- {run}: " + ", ".join(f"{p} {v:.1f} s" for p, v in phases.items()))
    return lines


def summary(steps: list[Step], env_info: dict, out: Path, started: float) -> str:
    """The check's summary: the environment, one line per step, the runs' tables, failed steps' logs."""
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
    if "train" in by_name and by_name["train"].extra.get("results"):
        lines += _train_lines(by_name["train"].extra["results"])
    if "sweep" in by_name and by_name["sweep"].extra.get("records") is not None:
        lines += _sweep_lines(by_name["sweep"])
    for s in steps:
        if s.status in ("failed", "timeout", "interrupted"):
            lines += ["", f"Last lines of logs/{s.log.name} ({s.name}, {s.status}):", "", "```"]
            lines += [log_tail(s.log), "```"]
    return "\n".join(lines) + "\n"


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
