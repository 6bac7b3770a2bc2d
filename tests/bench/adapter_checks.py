"""The checks of a measured run (``python -m tests.bench.gpu_train``, tests/test_gpu.py) that only the
LoRA weights changed and that a saved adapter holds them whole, also under ZeRO-3."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import torch


def gathered(module: torch.nn.Module, stage: int, trainable_only: bool = False):
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


def snapshot(module: torch.nn.Module, stage: int) -> dict[str, torch.Tensor]:
    """Every parameter's full value, copied to the CPU."""
    with gathered(module, stage):
        return {n: p.detach().to("cpu", copy=True) for n, p in module.named_parameters()}
