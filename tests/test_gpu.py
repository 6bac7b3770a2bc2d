"""The GPU training path: bf16 DeepSpeed ZeRO-2 and ZeRO-3 steps of the tiny Thinker + LoRA on CUDA.

    python -m pytest tests/test_gpu.py -m gpu -q        # skipped where torch sees no CUDA device

In process, one rank (an NCCL process group of size 1, as a ``train.use_gpu=true`` Ray Train worker
has), through the repo's own pieces: the config of :func:`omnimer.training.engine.deepspeed_config`, the step
loss of :func:`omnimer.training.step.step_losses` (main task and the three auxiliary tasks), DeepSpeed's
backward/step and the closed-set :class:`omnimer.training.evaluate.Evaluator` — driven by the loop of
``tests/bench/gpu_train.py``, which also measures the same path on the demo shards.
"""

from __future__ import annotations

import os
from unittest import mock

import numpy as np
import pytest
import torch
from tinyrows import bench_data

from omnimer.model.tiny import build_tiny_model
from tests.bench.gpu_train import init_single_process_group, make_config, train_run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def process_group():
    # The group's variables (RANK, MASTER_PORT, ...) leave with it: the environment is restored whole.
    with mock.patch.dict(os.environ):
        init_single_process_group(use_gpu=True)
        yield
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "thinker", seed=0)


@pytest.fixture(scope="module")
def data():
    return bench_data()


def test_without_cudnn_attention_no_bf16_step_is_skipped(process_group, tiny_dir, data):
    """On an H100 (torch 2.11 + cu130) the cuDNN SDPA backward returns NaN for some left-padded bf16
    batches (the padding queries attend to nothing), and DeepSpeed skips those optimizer steps
    ("OVERFLOW! Skipping step"): 11 of 108 steps over the demo shards. With that backend off, none is."""
    cfg = make_config(str(tiny_dir), "unused", zero=2, batch_size=4, epochs=4, use_gpu=True)
    result = train_run(cfg, data, check_adapter=False, cudnn_sdpa=False)
    assert result["skipped_steps"] == 0, result["skipped_steps"]
    assert result["all_losses_finite"]


@pytest.mark.parametrize("zero", [2, 3])
def test_bf16_zero_training_changes_only_lora_and_lowers_the_loss(process_group, tiny_dir, data, zero):
    cfg = make_config(str(tiny_dir), "unused", zero=zero, batch_size=4, epochs=4, use_gpu=True)
    result = train_run(cfg, data)

    assert result["zero"] == zero
    assert result["dtypes"] == ["bfloat16"] and result["param_devices"] == ["cuda"]
    assert result["all_losses_finite"]
    history = [e["train_loss"]["total"] for e in result["history"]]
    assert history[-1] < history[0] - 1.0, history
    # Every LoRA tensor moved (lora_B leaves zero at the first step, then lora_A gets gradients); no
    # frozen weight did, bit for bit.
    assert result["only_lora_changed"], result["frozen_changed"]
    assert result["changed_tensors"] == result["trainable_tensors"] == 2 * 2 * 7
    assert 0.0 <= result["history"][-1]["macro_f1"]["valid"] <= 1.0
    assert 0 < result["peak_memory_mib"] < 2048

    # With the LoRA weights gathered, save_pretrained writes exactly the trained adapter.
    assert result["gathered_adapter"]["equal"], result["gathered_adapter"]
    if zero == 2:
        assert result["adapter"]["equal"], result["adapter"]
    else:
        # Why: ZeRO-3 partitions even the small LoRA tensors (world size 1 included), and a plain
        # save_pretrained then writes zero-sized tensors; the LoRA weights must be gathered first.
        assert result["adapter"]["empty"] == result["adapter"]["tensors"] == 2 * 2 * 7, result["adapter"]


def test_zero2_and_zero3_follow_the_same_losses(process_group, tiny_dir, data):
    """ZeRO-3 only partitions what ZeRO-2 keeps whole: on one rank the runs agree up to bf16 rounding."""
    losses = {}
    for zero in (2, 3):
        cfg = make_config(str(tiny_dir), "unused", zero=zero, batch_size=4, epochs=2, use_gpu=True)
        result = train_run(cfg, data, check_adapter=False, cudnn_sdpa=False)
        assert result["skipped_steps"] == 0
        losses[zero] = [e["train_loss"]["total"] for e in result["history"]]
    assert np.allclose(losses[2], losses[3], rtol=0.05), losses
