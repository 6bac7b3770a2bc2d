"""Tiny Qwen2.5-Omni Thinker build, loader and LoRA (omnimer.model).

    .venv/bin/python -m pytest tests/test_model.py -q

Every model here is a random-init checkpoint written by ``build_tiny_model`` into pytest's tmp dir
and loaded back through the same loader as ``Qwen/Qwen2.5-Omni-7B``; nothing is mocked and nothing
is downloaded (HF_HUB_OFFLINE is set for each test).
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers.utils
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from transformers import Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration
from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni

from omnimer.config import LoraSettings, ModelConfig
from omnimer.model import load as model_load
from omnimer.model.load import (
    apply_lora,
    load_processor,
    load_thinker,
    resolve_dtype,
    trainable_parameters,
)
from omnimer.model.tiny import BUILD_INFO, HEAD_LOGIT_STD, build_tiny_model

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_SECONDS = 2.0
FRAMES, FRAME_SIZE = 4, 56
# 2 s of 16 kHz audio = 200 mel frames -> conv stride 2 -> pooling 2 = 50 audio tokens; 4 frames of
# 56x56 = 2 temporal patches x 4x4 patches of 14 px, merged 2x2 -> 2 x 2 x 2 = 8 video tokens.
EXPECTED_AUDIO_TOKENS = 50
EXPECTED_VIDEO_TOKENS = 8
# Frames are already resized at ingest: pin the video processor to that size (DESIGN §8).
VIDEOS_KWARGS = {
    "size": {"shortest_edge": FRAME_SIZE * FRAME_SIZE, "longest_edge": FRAME_SIZE * FRAME_SIZE},
    "fps": FRAMES / AUDIO_SECONDS,  # the real sampling rate of the frames: 4 frames over a 2 s clip
    # Opt in to transformers' coming default now (same result at a pinned size) and silence its warning.
    "cap_pixels_per_frame": True,
}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "thinker", seed=0)


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "omni", seed=0, full=True)


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return load_processor(str(tiny_dir))


def conversation(answer: str = "kebahagiaan") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "video"},
                {"type": "audio"},
                {"type": "text", "text": "Transkrip: aku senang sekali hari ini. Apa emosi pembicara?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def answer_labels(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """Labels that score only the assistant's answer (and its <|im_end|>): -100 elsewhere."""
    labels = input_ids.clone()
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False).input_ids
    for row in range(input_ids.shape[0]):
        ids = input_ids[row].tolist()
        starts = [i for i in range(len(ids)) if ids[i : i + len(header)] == header]
        labels[row, : starts[-1] + len(header)] = -100
        labels[row, input_ids[row] == tokenizer.pad_token_id] = -100
    return labels


@pytest.fixture(scope="module")
def batch(processor) -> dict:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(AUDIO_SECONDS * SAMPLE_RATE))).astype(np.float32)
    frames = rng.integers(0, 256, (FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    text = processor.apply_chat_template(conversation(), tokenize=False)
    inputs = processor(
        text=[text],
        audio=[audio],
        videos=[frames],
        videos_kwargs=VIDEOS_KWARGS,
        return_tensors="pt",
        padding=True,
    )
    inputs = dict(inputs)
    inputs["labels"] = answer_labels(inputs["input_ids"], processor.tokenizer)
    return inputs


def model_config(directory: Path, **overrides) -> ModelConfig:
    return ModelConfig(name_or_path=str(directory), dtype="float32", **overrides)


def test_tiny_thinker_loads_and_trains_on_a_processor_batch(tiny_dir, processor, batch):
    info = json.loads((tiny_dir / BUILD_INFO).read_text())
    assert info["kind"] == "qwen2_5_omni_thinker"
    model = load_thinker(model_config(tiny_dir))
    assert isinstance(model, Qwen2_5OmniThinkerForConditionalGeneration)
    counts = trainable_parameters(model)
    assert 400_000 <= counts.total <= 700_000, counts
    assert counts.by_component["audio_tower"][0] == 0 and counts.by_component["visual"][0] == 0

    ids = batch["input_ids"][0].tolist()
    assert ids.count(processor.audio_token_id) == EXPECTED_AUDIO_TOKENS
    assert ids.count(processor.video_token_id) == EXPECTED_VIDEO_TOKENS
    assert ids.count(processor.image_token_id) == 0
    assert batch["feature_attention_mask"].sum().item() == AUDIO_SECONDS * SAMPLE_RATE // 160
    answer = processor.tokenizer.decode(batch["input_ids"][0][batch["labels"][0] != -100])
    assert answer == "kebahagiaan<|im_end|>\n"

    model.train()
    model(**batch)  # warm-up: the first call pays one-off allocation costs
    model.zero_grad()
    start = time.perf_counter()
    output = model(**batch)
    output.loss.backward()
    seconds = time.perf_counter() - start
    log.info("forward+backward on %d tokens: %.3f s", len(ids), seconds)
    assert output.logits.shape == (1, len(ids), model.config.text_config.vocab_size)
    assert torch.isfinite(output.loss)
    # Random init: logits ~ N(0, s^2) over the vocabulary (s = HEAD_LOGIT_STD), so the answer's loss
    # starts near E[logsumexp] - E[target logit] = log(vocab) + s^2 / 2.
    expected = np.log(model.config.text_config.vocab_size) + HEAD_LOGIT_STD**2 / 2
    assert abs(output.loss.item() - expected) < HEAD_LOGIT_STD
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all(
        p.grad is None for name, p in model.named_parameters() if "audio_tower" in name or "visual" in name
    )


def test_processor_class_default_video_size_would_cost_288_tokens(processor):
    """Why every processor call must pass videos_kwargs={"size": ...} (DESIGN §8)."""
    frames = np.zeros((FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "video"}]}], tokenize=False)
    unpinned = processor(text=[text], videos=[frames], return_tensors="pt")
    assert unpinned["input_ids"][0].tolist().count(processor.video_token_id) == 288


def test_same_seed_gives_identical_checkpoints(tmp_path, tiny_dir):
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()
    # A re-run replaces an earlier build, but never a directory it did not write.
    build_tiny_model(again, seed=0)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="stranger"):
        build_tiny_model(stranger)


def _train_steps(model, batch, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()


def test_only_lora_weights_change_after_training(tiny_dir, batch):
    model = apply_lora(load_thinker(model_config(tiny_dir)), LoraSettings())
    assert all("lora_" in name for name, p in model.named_parameters() if p.requires_grad)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _train_steps(model, batch)
    lora_b = 0
    for name, parameter in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(parameter, before[name]), f"{name} changed"
        elif "lora_B" in name:
            lora_b += 1
            assert not torch.equal(parameter, before[name]), f"{name} did not change"
    assert lora_b == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)


def test_adapter_save_load_round_trip_gives_identical_logits(tmp_path, tiny_dir, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    base_logits = load_thinker(model_config(tiny_dir))(**inputs).logits
    model = apply_lora(load_thinker(model_config(tiny_dir)), LoraSettings(rank=4, alpha=8))
    _train_steps(model, batch, steps=2)
    model.eval()
    with torch.no_grad():
        trained = model(**inputs).logits
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    reloaded = PeftModel.from_pretrained(load_thinker(model_config(tiny_dir)), tmp_path / "adapter")
    reloaded.eval()
    with torch.no_grad():
        again = reloaded(**inputs).logits
    assert torch.equal(trained, again)
    assert not torch.allclose(trained, base_logits)  # the adapter does change the model


def test_full_omni_checkpoint_yields_the_thinker_only_weights(tmp_path, tiny_dir, full_dir, monkeypatch):
    raw = json.loads((full_dir / "config.json").read_text())
    assert raw["model_type"] == "qwen2_5_omni"
    assert raw["architectures"] == ["Qwen2_5OmniForConditionalGeneration"]
    with safe_open(full_dir / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
    # The 7B's layout: thinker.model.layers.*, thinker.audio_tower.*, thinker.visual.*, talker.*, token2wav.*
    assert "thinker.model.layers.0.self_attn.q_proj.weight" in keys
    assert "thinker.audio_tower.conv1.weight" in keys and "thinker.visual.patch_embed.proj.weight" in keys
    assert any(k.startswith("talker.") for k in keys) and any(k.startswith("token2wav.") for k in keys)

    # transformers' own full class reads the directory (spk_dict.pt included) ...
    omni = Qwen2_5OmniForConditionalGeneration.from_pretrained(full_dir, dtype=torch.float32)
    expected = load_thinker(model_config(tiny_dir)).state_dict()
    assert all(torch.equal(omni.thinker.state_dict()[k], v) for k, v in expected.items())

    # ... while the loader never builds the talker or token2wav.
    def refuse(*args, **kwargs):
        raise AssertionError("the loader instantiated a talker/token2wav module")

    monkeypatch.setattr(modeling_qwen2_5_omni.Qwen2_5OmniTalkerForConditionalGeneration, "__init__", refuse)
    monkeypatch.setattr(modeling_qwen2_5_omni.Qwen2_5OmniToken2WavModel, "__init__", refuse)
    thinker = load_thinker(model_config(full_dir))
    assert type(thinker) is Qwen2_5OmniThinkerForConditionalGeneration
    assert not any("talker" in name or "token2wav" in name for name, _ in thinker.named_modules())
    loaded = thinker.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())

    # The 7B is sharded (model-0000i-of-00005.safetensors + index json): same result.
    omni.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    sharded = load_thinker(model_config(tmp_path / "sharded")).state_dict()
    assert all(torch.equal(sharded[k], v) for k, v in expected.items())


def _wrapped(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


@pytest.mark.parametrize("towers", [False, True])
def test_lora_targets_text_projections_and_towers_only_on_request(tiny_dir, towers):
    model = apply_lora(load_thinker(model_config(tiny_dir)), LoraSettings(towers=towers))
    wrapped = _wrapped(model)
    text = [name for name in wrapped if "language_model.layers" in name]
    assert len(text) == 2 * 7
    audio = [name for name in wrapped if "audio_tower" in name]
    vision = [name for name in wrapped if ".visual." in name]
    if towers:
        assert (
            len(audio) == 2 * 6 and len(vision) == 2 * 7
        )  # (q, k, v, out, fc1, fc2); (q, k, v, proj, 3 MLP)
    else:
        assert audio == [] and vision == []
        assert len(wrapped) == len(text)


def test_a_plain_name_list_would_also_wrap_the_towers(tiny_dir):
    """DESIGN §8: why the default target is a regex anchored on language_model."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        load_thinker(model_config(tiny_dir)), LoraConfig(target_modules=["q_proj", "up_proj"])
    )
    wrapped = _wrapped(model)
    assert any("audio_tower" in name for name in wrapped) and any(".visual." in name for name in wrapped)


def test_dtype_and_gradient_checkpointing_switches(tiny_dir, batch):
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("bfloat16") == torch.bfloat16

    model = load_thinker(
        ModelConfig(name_or_path=str(tiny_dir), dtype="bfloat16", gradient_checkpointing=True)
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.is_activation_checkpointing
    model = apply_lora(model, LoraSettings())
    model.train()
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for name, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LoraSettings(rank=0), "lora.rank must be an integer >= 1, got 0"),
        (lambda: LoraSettings(alpha=0), "lora.alpha must be a finite number > 0, got 0"),
        (lambda: LoraSettings(dropout=1.0), "lora.dropout must be in [0, 1), got 1.0"),
        (lambda: LoraSettings(target_regex="(q_proj"), "lora.target_regex '(q_proj' is not a valid regex"),
        (lambda: ModelConfig(dtype="float16"), "model.dtype 'float16' is not one of float32, bfloat16, auto"),
        (lambda: ModelConfig(name_or_path=""), "model.name_or_path must be a non-empty string, got ''"),
        (lambda: ModelConfig(lora={"rank": -2}), "lora.rank must be an integer >= 1, got -2"),
    ],
)
def test_bad_config_values_are_quoted(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_missing_model_directory_is_named_before_any_download(tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was consulted")

    monkeypatch.setattr(model_load, "cached_file", no_hub)
    monkeypatch.setattr(transformers.utils, "cached_file", no_hub)  # omnimer.model.source's lookup
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_thinker(model_config(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_processor(str(missing))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_thinker(model_config(tmp_path))


def test_uncached_repo_id_offline_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=r"'nobody-here/no-such-omni'.*HF_HUB_OFFLINE"):
        load_thinker(ModelConfig(name_or_path="nobody-here/no-such-omni"))


def test_a_non_omni_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    with pytest.raises(ValueError, match=r"holds a 'llama' model .*expected a Qwen2.5-Omni checkpoint"):
        load_thinker(model_config(tmp_path))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_lora_step_on_gpu_in_bfloat16(tiny_dir, batch):
    model = load_thinker(ModelConfig(name_or_path=str(tiny_dir)), device="cuda")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # dtype "auto" on CUDA
    model = apply_lora(model, LoraSettings())
    model.train()
    loss = model(**{k: v.to("cuda") for k, v in batch.items()}).loss
    loss.backward()
    assert torch.isfinite(loss)
