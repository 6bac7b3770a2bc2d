"""``make gpu-check`` (tests/bench/gpu_check.py) without a GPU: it refuses before running anything, the
commands it would run are ones the sweep script and the bench accept, it counts the sweep's runs as
its command asks for them, and the bench's training loop runs on the tiny rows (fp32 + gloo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from tinyrows import bench_data  # noqa: E402

from omnimer.config import TrainConfig  # noqa: E402
from omnimer.model.tiny import build_tiny_model  # noqa: E402
from omnimer.training.driver import build_trainer, fit_releasing_controller, with_absolute_paths  # noqa: E402
from sweeps import aux_ablation  # noqa: E402
from tests.bench import gpu_check, gpu_check_results  # noqa: E402
from tests.bench.gpu_train import PROCESS_GROUP_ENV, init_single_process_group, make_config, train_run  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_refuses_and_writes_nothing(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert "gpu_check: needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_its_steps_are_commands_the_programs_accept(tmp_path):
    args = argparse.Namespace(embedded=None, pytest_timeout=1, train_timeout=1, sweep_timeout=1)
    args.only = list(gpu_check.STEPS)
    steps = {s.name: s for s in gpu_check.build_steps(args, tmp_path)}
    assert list(steps) == ["env", "pytest", "train", "sweep"]
    sweep = steps["sweep"].command
    assert sweep[1] == "sweeps/aux_ablation.py"
    parsed = aux_ablation.build_parser().parse_args(sweep[2:])
    assert (parsed.mode, parsed.subsets, parsed.smoke_test) == ("ablation", "none,all", True)
    assert {"train.use_gpu=true", "model.dtype=bfloat16", "train.num_workers=1"} <= set(parsed.overrides)
    runs = len(parsed.seeds.split(",")) * len(parsed.subsets.split(","))
    assert runs == gpu_check_results.SWEEP_RUNS == 4 and parsed.runs_per_trial == 2
    train = steps["train"].command
    assert train[1:3] == ["-m", "tests.bench.gpu_train"] and "--no-cudnn-sdpa" in train
    assert steps["pytest"].command[-2:] == ["tests/test_gpu.py", "tests/test_model.py"]


def write_records(out: Path, statuses: list[str]) -> None:
    runs = out / "exp" / gpu_check_results.EXPERIMENT / "runs"
    for i, status in enumerate(statuses):
        (runs / f"run{i}").mkdir(parents=True)
        record = {"config": {"run": {"name": f"run{i}"}}, "status": status, "wall_seconds": 37.0}
        record["setup_seconds"] = [{"model staging": 0.0, "model": 0.5, "data": 0.5, "DeepSpeed": 4.0}]
        record["epochs"] = [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 0.5}]
        (runs / f"run{i}" / "record.json").write_text(json.dumps(record))


def test_the_sweep_step_passes_only_with_every_run_it_asked_for(tmp_path):
    """On an H200 the sweep exited 0 with its 4 runs finished and was called failed: the count it
    expected was still the 2 of a sweep without --runs-per-trial."""
    for statuses, status, detail in (
        (["finished"] * 4, "passed", "4/4 run(s) finished"),
        (["finished"] * 3 + ["failed"], "failed", "3/4 run(s) finished (expected 4 finished)"),
        (["finished"] * 2, "failed", "2/2 run(s) finished (expected 4 finished)"),
    ):
        out = tmp_path / status / str(len(statuses))
        write_records(out, statuses)
        step = gpu_check_results.Step("sweep", [], out / "sweep.log", 1, status="passed")
        gpu_check_results.read_sweep(step, out)
        assert (step.status, step.detail) == (status, detail)
        assert len(json.loads((out / "records.json").read_text())["records"]) == len(statuses)
    # A run's wall splits into the worker's set-up, its epochs and the rest (a trial's start-up).
    text = gpu_check_results.summary([step], {}, out, 0.0)
    assert "| run0 | finished | 2 | 37.0 | 5.0 | 2.5 | 29.5 | - | - | - |" in text


def test_it_reads_ray_trains_own_breakdown_of_a_trial_start(ray_local, tmp_path):
    """The GPU check's summary lists, per Train run, the phases Ray Train's controller logs while it
    starts the worker group; read here from a real fit's logs."""
    demo = yaml.safe_load((REPO / "sweeps" / "configs" / "demo.yaml").read_text())
    run = {"output_dir": str(tmp_path), "name": "gc"}
    cfg = with_absolute_paths(TrainConfig.from_dict(demo | {"run": run}))
    trainer = build_trainer(cfg, dataset=ray_local.data.from_items([{"x": 1}]), loop=lambda config: None)
    assert fit_releasing_controller(trainer).error is None
    phases = gpu_check_results.worker_group_startup(os.environ["RAY_TMPDIR"])["gc"]
    expected = {"1 worker actors created", "Train function launched on workers", "Worker group startup"}
    assert expected <= set(phases), phases
    assert 0 < phases["1 worker actors created"] < phases["Worker group startup"]


def test_the_bench_loop_trains_and_scores_the_tiny_rows_on_cpu(tmp_path):
    """The loop of tests/test_gpu.py's runs, in fp32 on gloo: the GPU tests' rows must carry every
    column a step and an evaluation read (they lacked the ids a prediction keeps, and only a GPU
    showed it)."""
    tiny = build_tiny_model(tmp_path / "thinker", seed=0)
    # The process group's variables (RANK, MASTER_PORT, ...) go with it: the environment is restored
    # whole, the keys it added removed.
    with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1"}):
        for key in PROCESS_GROUP_ENV:
            os.environ.pop(key, None)
        init_single_process_group(use_gpu=False)
        try:
            cfg = make_config(str(tiny), "unused", zero=2, batch_size=4, epochs=1, use_gpu=False)
            result = train_run(cfg, bench_data())
        finally:
            torch.distributed.destroy_process_group()
    assert result["dtypes"] == ["float32"] and result["param_devices"] == ["cpu"]
    assert result["all_losses_finite"] and result["skipped_steps"] == 0
    assert result["optimizer_steps"] == 3  # 12 clips, batch 4
    assert result["only_lora_changed"], result["frozen_changed"]
    assert result["changed_tensors"] == result["trainable_tensors"] == 2 * 2 * 7
    assert result["adapter"]["equal"] and result["gathered_adapter"]["equal"], result["adapter"]
    assert 0.0 <= result["history"][-1]["macro_f1"]["valid"] <= 1.0
