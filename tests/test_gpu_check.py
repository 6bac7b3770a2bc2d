"""``make gpu-check`` (tests/bench/gpu_check.py) without a GPU: it refuses before running anything, and
the commands it would run are ones the sweep script and the bench accept."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sweeps import aux_ablation  # noqa: E402
from tests.bench import gpu_check  # noqa: E402


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
    train = steps["train"].command
    assert train[1:3] == ["-m", "tests.bench.gpu_train"] and "--no-cudnn-sdpa" in train
    assert steps["pytest"].command[-2:] == ["tests/test_gpu.py", "tests/test_model.py"]
