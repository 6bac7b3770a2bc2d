"""Typed configuration, one dataclass per concern, validated once at construction.

YAML files and command-line flags only supply values; every check lives in ``__post_init__`` and its
message quotes the offending value.

Used by every command that trains: ``omnimer train --config FILE key=value ...`` and
``sweeps/aux_ablation.py`` build a ``TrainConfig`` with :func:`load_train_config`; ``omnimer ingest``
builds an ``IngestConfig``.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import asdict, dataclass, field, fields

import yaml

FORMATS = ("indomer", "chsims", "meld", "jsonl")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class IngestConfig:
    """How a manifest is decoded into shards (recorded in ``dataset.json``)."""

    format: str = field(default="indomer", metadata={"help": f"manifest layout: one of {', '.join(FORMATS)}"})
    frames: int = field(default=8, metadata={"help": "T: frames sampled uniformly over each clip"})
    size: int = field(
        default=224, metadata={"help": "frames are resized to size x size pixels while decoding"}
    )
    max_audio_seconds: float = field(default=10.0, metadata={"help": "audio is clipped to this many seconds"})
    sample_rate: int = field(default=16000, metadata={"help": "audio sample rate (Hz), mono"})
    valid_fraction: float = field(
        default=0.1, metadata={"help": "share of train clips carved (by whole source video) into valid"}
    )
    test_fraction: float = field(
        default=0.18, metadata={"help": "share carved into test when a dataset publishes no test split"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the valid/test carving"})
    shard_mb: int = field(default=192, metadata={"help": "target Parquet shard size in MB"})
    video_dir: str = field(default="videos", metadata={"help": "IndoMER: media folder of the mp4 files"})
    audio_dir: str = field(default="audios", metadata={"help": "IndoMER: media folder of the wav files"})
    label_sets: str = field(
        default="indomer",
        metadata={"help": "JSONL only: whose label sets the labels use (indomer|chsims|meld)"},
    )
    decode_batch_size: int = field(default=8, metadata={"help": "clips per Ray Data map_batches call"})

    def __post_init__(self) -> None:
        _check(self.format in FORMATS, f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        _check(1 <= self.frames <= 256, f"frames must be in [1, 256], got {self.frames!r}")
        _check(
            self.size >= 14 and self.size % 2 == 0, f"size must be an even number >= 14, got {self.size!r}"
        )
        _check(
            0 < self.max_audio_seconds <= 600,
            f"max_audio_seconds must be in (0, 600], got {self.max_audio_seconds!r}",
        )
        _check(
            self.sample_rate == 16000,
            f"sample_rate must be 16000 (the Whisper encoder's), got {self.sample_rate!r}",
        )
        _check(0 <= self.valid_fraction < 1, f"valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        _check(0 < self.test_fraction < 1, f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        _check(self.shard_mb >= 1, f"shard_mb must be >= 1, got {self.shard_mb!r}")
        _check(self.decode_batch_size >= 1, f"decode_batch_size must be >= 1, got {self.decode_batch_size!r}")
        _check(
            self.label_sets in ("indomer", "chsims", "meld"),
            f"label_sets must be indomer, chsims or meld, got {self.label_sets!r}",
        )

    def to_json(self) -> dict:
        return asdict(self)


LOSS_SCHEMES = (
    "none",
    "inverse_freq",
    "sqrt_inverse_freq",
    "effective_number",
    "focal",
    "logit_adjust",
    "resample",
)


def _is_real(value: object) -> bool:
    # bool is an int subclass; a YAML `true` must not pass as a weight of 1.
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class LossConfig:
    """The training loss of DESIGN §4: main-task class rebalancing and the auxiliary-task weights λ.

    ``L = w_c · L_main + λ_text · L_text + λ_face · L_face + λ_prosody · L_prosody``; a λ of 0
    disables its task (its conversations are neither built nor run; :mod:`omnimer.aux_tasks`).
    """

    scheme: str = field(
        default="none", metadata={"help": f"main-task class rebalancing: one of {', '.join(LOSS_SCHEMES)}"}
    )
    beta: float = field(
        default=0.999, metadata={"help": "effective_number: β in (0, 1) of Cui et al. (2019)"}
    )
    gamma: float = field(default=2.0, metadata={"help": "focal: focusing exponent γ >= 0 (0 = plain CE)"})
    tau: float = field(
        default=1.0, metadata={"help": "logit_adjust: τ >= 0 scaling log class priors (0 = plain CE)"}
    )
    aux_weight_text: float = field(
        default=0.3, metadata={"help": "λ_text: weight of the emotion-keyword task (0 disables it)"}
    )
    aux_weight_face: float = field(
        default=0.3, metadata={"help": "λ_face: weight of the facial-expression task (0 disables it)"}
    )
    aux_weight_prosody: float = field(
        default=0.3, metadata={"help": "λ_prosody: weight of the prosody task (0 disables it)"}
    )

    def __post_init__(self) -> None:
        _check(
            self.scheme in LOSS_SCHEMES,
            f"loss.scheme {self.scheme!r} is not one of {', '.join(LOSS_SCHEMES)}",
        )
        _check(_is_real(self.beta) and 0 < self.beta < 1, f"loss.beta must be in (0, 1), got {self.beta!r}")
        for name in ("gamma", "tau", "aux_weight_text", "aux_weight_face", "aux_weight_prosody"):
            value = getattr(self, name)
            _check(_is_real(value), f"loss.{name} must be a number, got {value!r}")
            # Every comparison with NaN is False, so this rejects NaN as well as ±inf.
            _check(-float("inf") < value < float("inf"), f"loss.{name} must be finite, got {value!r}")
            _check(value >= 0, f"loss.{name} must be >= 0, got {value!r}")

    def to_json(self) -> dict:
        return asdict(self)


MODEL_DTYPES = ("float32", "bfloat16", "auto")

# The Thinker's text-model projections (attention + MLP). Anchored on `language_model` because the
# vision tower's MLP reuses the names gate_proj/up_proj/down_proj and the audio tower's attention
# reuses q_proj/k_proj/v_proj (DESIGN §8): a bare name list would wrap the towers too.
DEFAULT_LORA_TARGET_REGEX = (
    r".*language_model\.layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter of the Thinker (peft); only the adapter weights are trained."""

    rank: int = field(default=8, metadata={"help": "r: rank of the low-rank update (>= 1)"})
    alpha: float = field(default=16.0, metadata={"help": "lora_alpha: the update is scaled by alpha / rank"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter input, in [0, 1)"})
    target_regex: str = field(
        default=DEFAULT_LORA_TARGET_REGEX,
        metadata={"help": "modules to adapt: a regex fully matching module names (peft target_modules)"},
    )
    towers: bool = field(
        default=False,
        metadata={"help": "also adapt the audio/vision towers' attention and MLP projections"},
    )

    def __post_init__(self) -> None:
        import re  # local: config.py's module imports are shared with other concerns

        _check(
            isinstance(self.rank, int) and not isinstance(self.rank, bool) and self.rank >= 1,
            f"lora.rank must be an integer >= 1, got {self.rank!r}",
        )
        _check(
            _is_real(self.alpha) and 0 < self.alpha < float("inf"),
            f"lora.alpha must be a finite number > 0, got {self.alpha!r}",
        )
        _check(
            _is_real(self.dropout) and 0 <= self.dropout < 1,
            f"lora.dropout must be in [0, 1), got {self.dropout!r}",
        )
        _check(
            isinstance(self.target_regex, str) and self.target_regex != "",
            f"lora.target_regex must be a non-empty string, got {self.target_regex!r}",
        )
        try:
            re.compile(self.target_regex)
        except re.error as error:
            raise ValueError(
                f"lora.target_regex {self.target_regex!r} is not a valid regex: {error}"
            ) from None
        _check(isinstance(self.towers, bool), f"lora.towers must be true or false, got {self.towers!r}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    """Which Thinker checkpoint to load and how (omnimer.model.load)."""

    name_or_path: str = field(
        default="Qwen/Qwen2.5-Omni-7B",
        metadata={
            "help": "a local directory (Thinker-only or full Qwen2.5-Omni checkpoint, e.g. from "
            "`omnimer tiny-model`) or a Hugging Face repo id"
        },
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": f"weights dtype: one of {', '.join(MODEL_DTYPES)} (auto = bfloat16 on CUDA, else float32)"
        },
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in the backward pass to save memory"}
    )
    freeze_towers: bool = field(default=True, metadata={"help": "freeze the audio and vision encoders"})
    stage_dir: str = field(
        default="",
        metadata={
            "help": "node-local directory: the first worker on a node copies (or downloads) the "
            "checkpoint there and every later worker and trial on the node loads that copy; empty: "
            "every worker loads model.name_or_path itself"
        },
    )
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "the LoRA adapter"})

    def __post_init__(self) -> None:
        # YAML supplies the nested section as a mapping; build (and so validate) it here.
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", LoraSettings(**self.lora))
        _check(
            isinstance(self.name_or_path, str) and self.name_or_path.strip() != "",
            f"model.name_or_path must be a non-empty string, got {self.name_or_path!r}",
        )
        _check(
            self.dtype in MODEL_DTYPES, f"model.dtype {self.dtype!r} is not one of {', '.join(MODEL_DTYPES)}"
        )
        for name in ("gradient_checkpointing", "freeze_towers"):
            value = getattr(self, name)
            _check(isinstance(value, bool), f"model.{name} must be true or false, got {value!r}")
        _check(isinstance(self.lora, LoraSettings), f"model.lora must be a LoraSettings, got {self.lora!r}")

    def to_json(self) -> dict:
        return asdict(self)


TARGETS = ("emotion", "sentiment")
LANGUAGES = ("id", "en")


@dataclass(frozen=True)
class DataConfig:
    """Which sharded dataset to train on, and what to predict."""

    path: str = field(
        default="runs/demo/shards", metadata={"help": "dataset dir written by `omnimer ingest`"}
    )
    target: str = field(default="emotion", metadata={"help": f"main-task label: one of {', '.join(TARGETS)}"})
    label_set: str = field(
        default="",
        metadata={"help": "expected label set key (e.g. indomer-emotion); empty = the dataset's own"},
    )
    language: str = field(default="id", metadata={"help": f"prompt language: one of {', '.join(LANGUAGES)}"})
    audio_in_video: bool = field(
        default=False,
        metadata={"help": "interleave the main task's audio into the video tokens (time-aligned)"},
    )
    audio_feature_cache_mb: int = field(
        default=512,
        metadata={
            "help": "per-worker memory for each clip's Whisper features, extracted once and reused across "
            "tasks, epochs and the runs of a trial (0 = extract on every step)"
        },
    )

    def __post_init__(self) -> None:
        _check(self.target in TARGETS, f"data.target {self.target!r} is not one of {', '.join(TARGETS)}")
        _check(
            self.language in LANGUAGES,
            f"data.language {self.language!r} is not one of {', '.join(LANGUAGES)}",
        )
        _check(
            isinstance(self.path, str) and self.path != "",
            f"data.path must be a directory, got {self.path!r}",
        )
        _check(
            isinstance(self.audio_feature_cache_mb, int)
            and not isinstance(self.audio_feature_cache_mb, bool)
            and self.audio_feature_cache_mb >= 0,
            f"data.audio_feature_cache_mb must be an integer >= 0, got {self.audio_feature_cache_mb!r}",
        )


@dataclass(frozen=True)
class TrainSettings:
    """The optimisation loop (omnimer.training)."""

    epochs: int = field(default=3, metadata={"help": "passes over the train split"})
    batch_size: int = field(default=4, metadata={"help": "clips per worker per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "share of steps with linear warmup, then cosine"}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    max_steps_per_epoch: int = field(default=0, metadata={"help": "cap on steps per epoch (0 = whole split)"})
    eval_batch_size: int = field(default=8, metadata={"help": "clips per evaluation forward pass"})
    seed: int = field(default=0, metadata={"help": "seeds model init, LoRA init, data order and dropout"})
    num_workers: int = field(default=2, metadata={"help": "Ray Train workers (data-parallel ranks)"})
    use_gpu: bool = field(default=False, metadata={"help": "one GPU per worker, bf16 + NCCL"})
    cpus_per_worker: float = field(
        default=0.5, metadata={"help": "CPUs reserved per worker (fractional on CPU)"}
    )
    deepspeed_config: str = field(
        default="cluster/deepspeed/zero2.json", metadata={"help": "DeepSpeed JSON (ZeRO stage, offload)"}
    )
    max_failures: int = field(default=1, metadata={"help": "worker-group restarts from the last checkpoint"})
    fail_at_epoch: int = field(
        default=-1,
        metadata={"help": "resilience drill: rank 1 dies once after this epoch's checkpoint (-1 = never)"},
    )

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size", "num_workers"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 1, f"train.{name} must be an integer >= 1, got {value!r}"
            )
        _check(_is_real(self.lr) and 0 < self.lr < 1, f"train.lr must be in (0, 1), got {self.lr!r}")
        _check(0 <= self.warmup_ratio < 1, f"train.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        _check(self.max_grad_norm >= 0, f"train.max_grad_norm must be >= 0, got {self.max_grad_norm!r}")
        _check(
            self.max_steps_per_epoch >= 0,
            f"train.max_steps_per_epoch must be >= 0, got {self.max_steps_per_epoch!r}",
        )
        _check(self.cpus_per_worker > 0, f"train.cpus_per_worker must be > 0, got {self.cpus_per_worker!r}")
        _check(self.max_failures >= 0, f"train.max_failures must be >= 0, got {self.max_failures!r}")


SCORING_METHODS = ("auto", "sequence", "first_token")


@dataclass(frozen=True)
class EvalSettings:
    """How the closed-set evaluation scores the label verbalizers (omnimer.training.evaluate)."""

    scoring: str = field(
        default="auto",
        metadata={
            "help": "sequence: sum of every verbalizer token's log-probability up to the end of the turn; "
            "first_token: the first token's only; auto: sequence when a verbalizer has more than one token"
        },
    )

    def __post_init__(self) -> None:
        _check(
            self.scoring in SCORING_METHODS,
            f"eval.scoring must be one of {', '.join(SCORING_METHODS)}, got {self.scoring!r}",
        )


@dataclass(frozen=True)
class RunSettings:
    """Where a run's outputs go."""

    output_dir: str = field(default="runs/train", metadata={"help": "storage path (local dir, NFS or s3://)"})
    name: str = field(default="run", metadata={"help": "run name: outputs go to <output_dir>/<name>"})

    def __post_init__(self) -> None:
        _check(bool(self.name) and "/" not in self.name, f"run.name must be a plain name, got {self.name!r}")


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainSettings,
    "eval": EvalSettings,
    "run": RunSettings,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; YAML sections map to the dataclasses above."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    run: RunSettings = field(default_factory=RunSettings)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        unknown = [k for k in values if k not in SECTIONS]
        if unknown:
            raise ValueError(_unknown_key_message(unknown[0], list(SECTIONS)))
        sections = {}
        for name, section_cls in SECTIONS.items():
            section = dict(values.get(name) or {})
            known = [f.name for f in fields(section_cls)]
            for key in section:
                if key not in known:
                    raise ValueError(_unknown_key_message(f"{name}.{key}", [f"{name}.{k}" for k in known]))
            sections[name] = section_cls(**section)
        return cls(**sections)


def _unknown_key_message(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown config key {key!r}{hint}"


def _parse_value(text: str):
    """A dotted override's value: YAML scalars (numbers, true/false, null), else the plain string."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` (and ``model.lora.rank=16``) overrides to a config mapping."""
    values = copy.deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) < 2:
            raise ValueError(f"override {item!r} needs a section, e.g. train.{parts[0]}=...")
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text)
    return values


def load_train_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A TrainConfig from a YAML file (optional) and dotted overrides, validated once."""
    values: dict = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of sections (data, model, loss, train, eval, run)")
        values = loaded
    return TrainConfig.from_dict(apply_overrides(values, overrides or []))
