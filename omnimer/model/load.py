"""Load the Qwen2.5-Omni processor and Thinker, and wrap the Thinker with a LoRA adapter (peft).

The same code path serves the tiny checkpoints of :mod:`omnimer.model.tiny` and the real
``Qwen/Qwen2.5-Omni-7B``::

    from omnimer.config import ModelConfig
    from omnimer.model.load import apply_lora, load_processor, load_thinker, trainable_parameters

    cfg = ModelConfig(name_or_path="runs/tiny-omni")        # or "Qwen/Qwen2.5-Omni-7B"
    processor = load_processor(cfg.name_or_path)
    model = apply_lora(load_thinker(cfg), cfg.lora)
    print(trainable_parameters(model))

A checkpoint directory holds either a Thinker alone (``model_type`` ``qwen2_5_omni_thinker``, as the
tiny build writes it) or the full Omni model (``qwen2_5_omni``: thinker + talker + token2wav, as the
7B repo ships it). For the full model only the thinker is built (from ``thinker_config``) and only
the ``thinker.*`` tensors are read: transformers' own key mapping for the Thinker class strips the
``thinker.`` prefix and renames the 7B's ``thinker.model.layers.*`` / ``thinker.audio_tower.*`` /
``thinker.visual.*`` to the module tree, while the talker and token2wav tensors, opened lazily from
the safetensors files, are never materialised.

Used by every training worker (:mod:`omnimer.training.worker`), the benches and the tests, with a
hub id or a local directory in ``model.name_or_path``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import (
    AutoProcessor,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
)
from transformers.utils import cached_file

from omnimer.config import LoraSettings, ModelConfig
from omnimer.model.source import hub_offline, resolve_checkpoint

log = logging.getLogger(__name__)

THINKER_MODEL_TYPE = "qwen2_5_omni_thinker"
OMNI_MODEL_TYPE = "qwen2_5_omni"

# The towers' attention and MLP projections, added to the text-model regex when lora.towers is set.
# Audio: Whisper-style layers (q/k/v/out_proj, fc1/fc2); vision: Qwen2.5-VL blocks (attn.q/k/v/proj
# and a gated MLP). The audio/vision output projections (audio_tower.proj, visual.merger) stay frozen.
TOWER_LORA_REGEX = (
    r".*audio_tower\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"
    r"|.*visual\.blocks\.\d+\.(attn\.(q|k|v|proj)|mlp\.(gate_proj|up_proj|down_proj))"
)


def _read_config_json(checkpoint: str) -> dict:
    if Path(checkpoint).is_dir():
        config_file = Path(checkpoint) / "config.json"
    else:
        config_file = Path(cached_file(checkpoint, "config.json", local_files_only=hub_offline()))
    return json.loads(config_file.read_text())


def thinker_config_of(checkpoint: str) -> tuple[str, Qwen2_5OmniThinkerConfig]:
    """``(model_type, thinker config)`` of a Thinker-only or full Omni checkpoint.

    Read from config.json directly: building the full ``Qwen2_5OmniConfig`` would also build talker
    configs, which is needless and, with transformers' class defaults, noisy.
    """
    raw = _read_config_json(checkpoint)
    model_type = raw.get("model_type")
    if model_type == OMNI_MODEL_TYPE:
        thinker_raw = raw.get("thinker_config")
        if not isinstance(thinker_raw, dict):
            raise ValueError(f"{checkpoint!r}: a {OMNI_MODEL_TYPE} config.json without thinker_config")
    elif model_type == THINKER_MODEL_TYPE:
        thinker_raw = raw
    else:
        raise ValueError(
            f"{checkpoint!r} holds a {model_type!r} model (architectures {raw.get('architectures')}); "
            f"expected a Qwen2.5-Omni checkpoint ({OMNI_MODEL_TYPE} or {THINKER_MODEL_TYPE})"
        )
    config = Qwen2_5OmniThinkerConfig.from_dict(thinker_raw)
    if getattr(config, "vision_start_token_id", None) is None:
        raise ValueError(
            f"{checkpoint!r}: the thinker config lacks vision_start_token_id, which the model's 3-D position "
            "ids (get_rope_index) need"
        )
    return model_type, config


def load_processor(name_or_path: str) -> Qwen2_5OmniProcessor:
    """The checkpoint's ``Qwen2_5OmniProcessor`` (tokenizer, Whisper features, image/video processors)."""
    checkpoint = resolve_checkpoint(name_or_path)
    processor = AutoProcessor.from_pretrained(checkpoint, local_files_only=hub_offline())
    if not isinstance(processor, Qwen2_5OmniProcessor):
        raise TypeError(f"{name_or_path!r} has a {type(processor).__name__}, expected a Qwen2_5OmniProcessor")
    return processor


def resolve_dtype(dtype: str, device: str | torch.device | None = None) -> torch.dtype:
    """``float32`` / ``bfloat16``; ``auto``: bfloat16 on CUDA (``device``, else any GPU), float32 else."""
    if dtype == "auto":
        on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
        return torch.bfloat16 if on_cuda else torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "float32":
        return torch.float32
    raise ValueError(f"model.dtype {dtype!r} is not one of float32, bfloat16, auto")


def load_thinker(
    cfg: ModelConfig, device: str | torch.device | None = None
) -> Qwen2_5OmniThinkerForConditionalGeneration:
    """Load the Thinker of ``cfg.name_or_path`` (Thinker-only or full Omni checkpoint).

    Weights in ``cfg.dtype``; the audio and vision towers frozen when ``cfg.freeze_towers``; gradient
    checkpointing (non-reentrant, so frozen inputs need no ``requires_grad`` hack) when
    ``cfg.gradient_checkpointing``. The model is returned in eval mode (call ``.train()`` to train) on
    ``device`` if given, else on the CPU.
    """
    checkpoint = resolve_checkpoint(cfg.name_or_path)
    model_type, config = thinker_config_of(checkpoint)
    dtype = resolve_dtype(cfg.dtype, device)
    model, info = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        checkpoint, config=config, dtype=dtype, local_files_only=hub_offline(), output_loading_info=True
    )
    # A renaming that silently failed would leave randomly initialised weights: refuse that.
    if info["missing_keys"] or info["mismatched_keys"]:
        raise ValueError(
            f"{checkpoint!r}: thinker weights missing {sorted(info['missing_keys'])[:8]} or mismatched "
            f"{sorted(info['mismatched_keys'])[:8]} (of {len(info['missing_keys'])} / "
            f"{len(info['mismatched_keys'])})"
        )
    foreign = [key for key in info["unexpected_keys"] if not key.startswith(("talker.", "token2wav."))]
    if foreign:
        log.warning(
            "%s: %d unexpected tensors ignored, e.g. %s", checkpoint, len(foreign), sorted(foreign)[:5]
        )
    if cfg.freeze_towers:
        model.model.audio_tower.requires_grad_(False)
        model.model.visual.requires_grad_(False)
    if cfg.gradient_checkpointing:
        # (transformers 5.24 renamed gradient_checkpointing_enable, now a deprecated alias, to this.)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        # A KV cache is useless in training and transformers warns that it conflicts with checkpointing.
        model.config.text_config.use_cache = False
    if device is not None:
        model.to(device)
    log.info(
        "loaded the Thinker of %s (%s) in %s: %s",
        cfg.name_or_path,
        model_type,
        dtype,
        trainable_parameters(model),
    )
    return model


def lora_target_regex(cfg: LoraSettings) -> str:
    """The peft ``target_modules`` regex (fully matched against module names) for ``cfg``."""
    if cfg.towers:
        return f"(?:{cfg.target_regex})|(?:{TOWER_LORA_REGEX})"
    return cfg.target_regex


def apply_lora(model: Qwen2_5OmniThinkerForConditionalGeneration, cfg: LoraSettings) -> PeftModel:
    """Wrap ``model`` with a fresh LoRA adapter; afterwards only the LoRA weights are trainable.

    The target is a regex string, not a list of names: a list like ``["q_proj", ...]`` would also wrap
    the audio tower's and vision MLP's same-named projections (DESIGN §8). peft freezes every other
    parameter, including the towers, whatever ``freeze_towers`` said.
    """
    lora_config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=lora_target_regex(cfg),
        bias="none",
        task_type=TaskType.CAUSAL_LM,
    )
    peft_model = get_peft_model(model, lora_config)
    log.info(
        "LoRA r=%d alpha=%g towers=%s: %s", cfg.rank, cfg.alpha, cfg.towers, trainable_parameters(peft_model)
    )
    return peft_model


def _component(name: str) -> str:
    if "lora_" in name:
        return "lora"
    for component in ("audio_tower", "visual", "language_model", "lm_head"):
        if f"{component}." in name or name.startswith(component):
            return component
    return "other"


@dataclass(frozen=True)
class ParameterCount:
    """Parameter counts of a model: in all, trainable, and ``(trainable, total)`` per component.

    Components: ``audio_tower``, ``visual``, ``language_model``, ``lm_head``, ``lora`` (adapter
    weights, wherever they sit) and ``other``.
    """

    total: int
    trainable: int
    by_component: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        parts = ", ".join(
            f"{name} {trainable:,}/{total:,}" for name, (trainable, total) in self.by_component.items()
        )
        return (
            f"{self.trainable:,} of {self.total:,} parameters trainable "
            f"({100 * self.trainable_fraction:.2f}%; trainable/total: {parts})"
        )


def trainable_parameters(model: torch.nn.Module) -> ParameterCount:
    """Count ``model``'s parameters (shared tensors once), split by component."""
    totals: dict[str, list[int]] = {}
    seen: set[int] = set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        counts = totals.setdefault(_component(name), [0, 0])
        counts[1] += parameter.numel()
        if parameter.requires_grad:
            counts[0] += parameter.numel()
    by_component = {name: (counts[0], counts[1]) for name, counts in sorted(totals.items())}
    return ParameterCount(
        total=sum(total for _, total in by_component.values()),
        trainable=sum(trainable for trainable, _ in by_component.values()),
        by_component=by_component,
    )
