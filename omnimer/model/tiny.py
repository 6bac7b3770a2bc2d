"""A tiny random-init Qwen2.5-Omni Thinker with a locally trained tokenizer, in the Hugging Face format.

No model hub is reachable in tests or the demo (DESIGN §6), so this module writes a checkpoint
directory that looks like ``Qwen/Qwen2.5-Omni-7B`` to every consumer: the real model classes
(``Qwen2_5OmniThinkerForConditionalGeneration``), the real processor classes
(``Qwen2_5OmniProcessor`` with ``WhisperFeatureExtractor``, ``Qwen2VLImageProcessor`` and
``Qwen2VLVideoProcessor``), the Qwen2.5-Omni special tokens and chat template — only the sizes are
tiny (~0.5 M parameters; DESIGN §8) and the tokenizer is a byte-level BPE trained offline on a
built-in Indonesian + English corpus (:mod:`omnimer.model.tokenizer`).

Run (CPU, a few seconds)::

    omnimer tiny-model --out runs/tiny-omni            # Thinker-only checkpoint
    omnimer tiny-model --out runs/tiny-omni-full --full # full Omni: thinker + talker + token2wav

or from Python: ``build_tiny_model(Path("runs/tiny-omni"), seed=0, full=False)``. The directory then
loads with ``omnimer.model.load.load_processor`` / ``load_thinker`` exactly as the 7B does.

The same seed gives identical weights and byte-identical ``model.safetensors``; the full checkpoint's
thinker weights equal the Thinker-only checkpoint's for the same seed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers
from transformers import (
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2Tokenizer,
)

from omnimer.model.tokenizer import build_processor, train_tokenizer

log = logging.getLogger(__name__)

# Written last into every build: marks a directory this module may overwrite on a re-run.
BUILD_INFO = "omnimer_tiny.json"

TEXT_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
    "tie_word_embeddings": False,
}
AUDIO_SIZES = {
    "num_mel_bins": 128,  # = the Whisper feature extractor's feature_size
    "encoder_layers": 2,
    "encoder_attention_heads": 4,
    "encoder_ffn_dim": 128,
    "d_model": 64,
    "output_dim": 64,  # = the text hidden size: audio features are scattered into the text embeddings
    "max_source_positions": 1500,
    "n_window": 100,
}
VISION_SIZES = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_heads": 4,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "out_hidden_size": 64,  # = the text hidden size
    "fullatt_block_indexes": [1],  # must lie within the depth (the 7B's [7, 15, 23, 31] does not)
}


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tiny_thinker_config(tokenizer: Qwen2Tokenizer) -> Qwen2_5OmniThinkerConfig:
    """Thinker config of DESIGN §8 with the token ids of ``tokenizer``."""
    token_id = tokenizer.convert_tokens_to_ids
    # Like the 7B (151665 tokens, vocab_size 152064), the embedding has spare rows; three of them are
    # the talker's text markers in the full build.
    vocab_size = _round_up(len(tokenizer) + 3, 64)
    user_ids = tokenizer("user", add_special_tokens=False).input_ids
    return Qwen2_5OmniThinkerConfig(
        text_config={
            **TEXT_SIZES,
            "vocab_size": vocab_size,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        audio_config=dict(AUDIO_SIZES),
        vision_config=dict(VISION_SIZES),
        audio_token_index=token_id("<|AUDIO|>"),
        image_token_index=token_id("<|IMAGE|>"),
        video_token_index=token_id("<|VIDEO|>"),
        audio_start_token_id=token_id("<|audio_bos|>"),
        audio_end_token_id=token_id("<|audio_eos|>"),
        user_token_id=user_ids[0],
        # Not a declared field, but get_rope_index reads it (DESIGN §8); the 7B's config sets it too.
        vision_start_token_id=token_id("<|vision_bos|>"),
        vision_end_token_id=token_id("<|vision_eos|>"),
    )


def tiny_omni_config(thinker_config: Qwen2_5OmniThinkerConfig) -> Qwen2_5OmniConfig:
    """Full Omni config around ``thinker_config`` with a talker and token2wav as small as they allow."""
    vocab_size = thinker_config.text_config.vocab_size
    # The talker config validates every *_token_id against its own vocab, and several of them are
    # thinker ids: give it the thinker's vocabulary size so that all of them are in range.
    talker = {
        "vocab_size": vocab_size,
        "embedding_size": thinker_config.text_config.hidden_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        "tts_text_pad_token_id": vocab_size - 3,
        "tts_text_start_token_id": vocab_size - 2,
        "tts_text_end_token_id": vocab_size - 1,
        "tts_codec_pad_token_id": vocab_size - 8,
        "tts_codec_start_token_id": vocab_size - 7,
        "tts_codec_end_token_id": vocab_size - 6,
        "tts_codec_mask_token_id": vocab_size - 4,
        "audio_token_index": thinker_config.audio_token_index,
        "image_token_index": thinker_config.image_token_index,
        "video_token_index": thinker_config.video_token_index,
        "audio_start_token_id": thinker_config.audio_start_token_id,
        "audio_end_token_id": thinker_config.audio_end_token_id,
        "vision_start_token_id": thinker_config.vision_start_token_id,
        "vision_end_token_id": thinker_config.vision_end_token_id,
    }
    dit = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "head_dim": 16,
        "ff_mult": 1,
        "emb_dim": 16,
        "num_embeds": vocab_size,
        "mel_dim": 16,
        "enc_emb_dim": 16,
        "enc_dim": 16,
        "enc_channels": [16, 16, 16, 16, 48],
        "enc_attention_channels": 8,
        "enc_se_channels": 8,
        "look_ahead_layers": [1],
        "look_backward_layers": [0],
        "block_size": 8,
    }
    bigvgan = {
        "mel_dim": 16,
        "upsample_initial_channel": 32,
        "resblock_kernel_sizes": [3],
        "resblock_dilation_sizes": [[1, 3, 5]],  # AMP blocks index three dilations
        "upsample_rates": [2, 2],
        "upsample_kernel_sizes": [4, 4],
    }
    return Qwen2_5OmniConfig(
        thinker_config=thinker_config.to_dict(),
        talker_config=talker,
        token2wav_config={"dit_config": dit, "bigvgan_config": bigvgan},
    )


HEAD_LOGIT_STD = 3.0


def init_thinker(config: Qwen2_5OmniThinkerConfig, seed: int) -> Qwen2_5OmniThinkerForConditionalGeneration:
    """Random-init Thinker; the caller's global RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
        # The output head stays frozen under LoRA, and the final RMSNorm fixes the hidden state's norm
        # at sqrt(hidden). With the usual N(0, 0.02) head a 64-wide model's logits stay within about
        # +-1.3 of each other, so no adapter could make it pick a label word with confidence. A head
        # with logits of std ~3 (like a trained LM's) makes the best-aligned token win by ~3 sigma.
        with torch.no_grad():
            hidden = model.lm_head.weight.shape[1]
            model.lm_head.weight.normal_(0.0, HEAD_LOGIT_STD * hidden**-0.5)
        return model


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings: saving an Omni config diffs it against the class defaults,
    whose talker defaults fail transformers' own token-id validation and warn about it."""
    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(previous)


def _save_full(thinker: Qwen2_5OmniThinkerForConditionalGeneration, directory: Path, seed: int) -> int:
    """Save a full Omni checkpoint whose thinker is ``thinker``; returns its parameter count."""
    config = tiny_omni_config(thinker.config)
    with torch.random.fork_rng(devices=[]):
        # A different stream for talker/token2wav; the thinker's weights are copied in below.
        torch.manual_seed(seed + 1)
        omni = Qwen2_5OmniForConditionalGeneration(config)
        speakers = {
            name: {
                "cond": torch.randn(1, config.token2wav_config.dit_config.enc_emb_dim),
                "ref_mel": torch.randn(1, 30, config.token2wav_config.dit_config.mel_dim),
                "bos_token": config.talker_config.tts_text_start_token_id,
            }
            for name in ("Chelsie", "Ethan")
        }
    omni.thinker.load_state_dict(thinker.state_dict())
    with _quiet_transformers():
        omni.save_pretrained(directory)
    # The 7B ships its voices in spk_dict.pt, and Qwen2_5OmniForConditionalGeneration.from_pretrained
    # requires the file: a tiny one keeps the directory loadable by transformers' own full class.
    torch.save(speakers, directory / "spk_dict.pt")
    return sum(p.numel() for p in omni.parameters())


def _check_out_dir(out: Path) -> None:
    """Refuse to replace anything but an empty directory or an earlier tiny build."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"tiny-model output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / BUILD_INFO).is_file():
        raise FileExistsError(
            f"tiny-model output {out} is a non-empty directory that is not an earlier tiny build "
            f"(no {BUILD_INFO}); choose another --out or empty it"
        )


def build_tiny_model(out: Path, seed: int = 0, full: bool = False) -> Path:
    """Write a tiny Thinker (``full=False``) or full Omni checkpoint plus processor into ``out``.

    ``omnimer tiny-model --out DIR [--full] [--seed S]``. The directory is built beside ``out`` and
    moved into place at the end, so an interrupted build never leaves a half-written checkpoint;
    a re-run replaces an earlier tiny build. Returns ``out``.
    """
    out = Path(out)
    _check_out_dir(out)
    tokenizer = train_tokenizer()
    processor = build_processor(tokenizer)
    config = tiny_thinker_config(tokenizer)
    thinker = init_thinker(config, seed)
    thinker_parameters = sum(p.numel() for p in thinker.parameters())

    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    if full:
        total_parameters = _save_full(thinker, staging, seed)
    else:
        thinker.save_pretrained(staging)
        total_parameters = thinker_parameters
    processor.save_pretrained(staging)
    info = {
        "kind": "qwen2_5_omni" if full else "qwen2_5_omni_thinker",
        "seed": seed,
        "thinker_parameters": thinker_parameters,
        "total_parameters": total_parameters,
        "vocab_size": config.text_config.vocab_size,
        "tokenizer_size": len(tokenizer),
        "transformers": transformers.__version__,
    }
    (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    log.info(
        "tiny %s checkpoint in %s: %d thinker parameters (%d in all), %d tokens",
        info["kind"],
        out,
        thinker_parameters,
        total_parameters,
        len(tokenizer),
    )
    return out
