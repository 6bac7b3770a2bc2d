"""The Qwen2.5-Omni Thinker: a tiny random-init build for tests and demos, the loader, and LoRA.

- :mod:`omnimer.model.tiny` writes a tiny Thinker (or full Omni) checkpoint + processor in the Hugging
  Face format: ``omnimer tiny-model --out DIR [--full] [--seed S]``.
- :mod:`omnimer.model.load` loads a processor and a Thinker from such a directory or from
  ``Qwen/Qwen2.5-Omni-7B`` alike, and wraps the Thinker with a peft LoRA adapter.
"""

from omnimer.model.load import (
    ParameterCount,
    apply_lora,
    load_processor,
    load_thinker,
    lora_target_regex,
    resolve_dtype,
    trainable_parameters,
)
from omnimer.model.tiny import build_tiny_model

__all__ = [
    "ParameterCount",
    "apply_lora",
    "build_tiny_model",
    "load_processor",
    "load_thinker",
    "lora_target_regex",
    "resolve_dtype",
    "trainable_parameters",
]
