"""A tiny random-init Qwen2.5-Omni Thinker with a locally trained tokenizer, in the Hugging Face format.

No model hub is reachable in tests or the demo (DESIGN §6), so this module writes a checkpoint
directory that looks like ``Qwen/Qwen2.5-Omni-7B`` to every consumer: the real model classes
(``Qwen2_5OmniThinkerForConditionalGeneration``), the real processor classes
(``Qwen2_5OmniProcessor`` with ``WhisperFeatureExtractor``, ``Qwen2VLImageProcessor`` and
``Qwen2VLVideoProcessor``), the Qwen2.5-Omni special tokens and chat template — only the sizes are
tiny (~0.5 M parameters; DESIGN §8) and the tokenizer is a byte-level BPE trained here, offline, on a
built-in Indonesian + English corpus.

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
import itertools
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    WhisperFeatureExtractor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

log = logging.getLogger(__name__)

# Written last into every build: marks a directory this module may overwrite on a re-run.
BUILD_INFO = "omnimer_tiny.json"

TOKENIZER_VOCAB_SIZE = 1024  # byte-level BPE entries (256 byte symbols + merges), before special tokens

# Qwen2.5-Omni's special tokens in their real order (ids 151643..151656 in the 7B vocabulary); here
# they follow the BPE vocabulary. The processor reads the named ones from the tokenizer.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|vision_pad|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
)
NAMED_SPECIAL_TOKENS = {
    "audio_token": "<|AUDIO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

# The Qwen2.5-Omni chat template (as shipped with the processor of Qwen/Qwen2.5-Omni-7B and used by
# transformers' own processor tests): one placeholder per media item, expanded by the processor.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Sizes of DESIGN §8. The text head_dim is 64 / 4 = 16, so mrope_section must sum to 8; the 7B's
# [16, 24, 24] (sum 64 = 128 / 2) scales to [2, 3, 3].
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


# ---------------------------------------------------------------------------------------------------
# Tokenizer corpus: built-in, deterministic, Indonesian + English, covering the label words, the
# auxiliary-task answers and the kind of prompts the tasks ask, so that they tokenize compactly.

_ID_SUBJECTS = ("aku", "saya", "kami", "kita", "dia", "mereka", "kamu", "ibu aku", "teman saya", "adik aku")
_ID_FEELINGS = {
    "netral": ("biasa saja", "tenang", "santai", "tidak apa-apa", "lumayan"),
    "kebahagiaan": ("senang", "bahagia", "gembira", "bangga", "lega", "bersyukur", "puas", "ceria"),
    "kesedihan": ("sedih", "kecewa", "galau", "terpuruk", "putus asa", "kesepian", "menangis"),
    "kemarahan": ("marah", "kesal", "jengkel", "geram", "emosi", "dongkol", "benci"),
    "jijik": ("jijik", "muak", "mual", "geli", "jorok", "menjijikkan"),
    "ketakutan": ("takut", "cemas", "khawatir", "panik", "ngeri", "gugup", "was-was"),
    "surprise": ("kaget", "terkejut", "heran", "tidak menyangka", "kagum", "wow"),
}
_ID_CONTEXTS = (
    "hari ini",
    "waktu itu",
    "karena hasilnya",
    "setelah menonton video ini",
    "pas dengar kabar itu",
    "di rumah",
    "sejak kemarin",
    "waktu masak di dapur",
    "karena harga naik lagi",
    "setelah pemilihan umum",
)
_ID_TEMPLATES = (
    "{subject} merasa {feeling} {context}.",
    "Jujur, {subject} {feeling} sekali {context}.",
    "Rasanya {feeling} banget {context}, kata {subject}.",
    "Apakah {subject} {feeling} {context}?",
    "{subject} tidak bisa bohong, {feeling} rasanya {context}.",
)
_ID_TOPICS = (
    "Halo semuanya, selamat datang kembali di channel aku.",
    "Di video kali ini aku mau bahas tentang produk terbaru.",
    "Jangan lupa like dan subscribe untuk video berikutnya.",
    "Hari ini aku mau masak nasi goreng buat makan malam.",
    "Masukkan bawang ke dalam wajan, lalu aduk sampai rata.",
    "Minum air putih minimal delapan gelas sehari itu penting.",
    "Menurut aku, soal ini perlu dilihat dari dua sisi.",
    "Pemerintah daerah sedang memperbaiki jalan di sekitar pasar.",
    "Buku ini ditulis oleh penulis terkenal dan terbit tahun lalu.",
    "Film terbarunya akan tayang di bioskop mulai minggu depan.",
    "Pastikan pengaturannya sudah benar sebelum lanjut ke langkah berikutnya.",
    "Harga bahan pokok di pasar masih cukup stabil.",
    "Debat kandidat akan disiarkan langsung di televisi.",
    "Produk ini harganya sekitar lima puluh ribu rupiah.",
)
_ID_PROMPTS = (
    "Apa emosi pembicara dalam video ini?",
    "Jawab dengan satu kata: netral, kebahagiaan, kesedihan, kemarahan, jijik, ketakutan, atau surprise.",
    "Apa sentimen pembicara? Jawab dengan satu kata: negatif, netral, atau positif.",
    "Sebutkan kata-kata emosi dalam transkrip berikut, atau jawab tidak ada.",
    "Jelaskan ekspresi wajah orang dalam video ini.",
    "Jelaskan prosodi suara pembicara: nada, energi, dan tempo.",
    "Transkrip: ",
    "Perhatikan video, suara, dan transkrip berikut.",
)
_ID_ANSWERS = (
    "kata emosi: {words}; sentimen teks: {sentiment}",
    "ekspresi wajah: {face}; sentimen wajah: {sentiment}",
    "prosodi: nada {level} dan {variability}, energi {energy}, tempo {tempo}; sentimen suara: {sentiment}",
)
_ID_FACES = (
    "tersenyum lebar dengan mata menyipit",
    "alis turun dan sudut bibir ke bawah",
    "alis berkerut dan rahang mengencang",
    "hidung berkerut dan bibir atas terangkat",
    "mata terbuka lebar dan alis terangkat",
    "mulut terbuka dan alis naik tinggi",
    "wajah datar dan rileks",
)
_ID_PROSODY = {
    "level": ("tinggi", "rendah", "sedang"),
    "variability": (
        "sangat bervariasi",
        "bervariasi",
        "sedikit bervariasi",
        "datar",
        "bervariasi, naik di akhir",
    ),
    "energy": ("kuat", "lemah", "sedang"),
    "tempo": ("cepat", "lambat", "sedang"),
}
_INDOMER_EMOTIONS = ("netral", "kebahagiaan", "kesedihan", "kemarahan", "jijik", "ketakutan", "surprise")
_SENTIMENTS_ID = ("negatif", "netral", "positif")
_ID_EMOTION_SENTIMENT = {"netral": "netral", "kebahagiaan": "positif", "surprise": "positif"}
_ID_EMOTION_SENTIMENT.update(dict.fromkeys(("kesedihan", "kemarahan", "jijik", "ketakutan"), "negatif"))

_EN_SUBJECTS = ("I", "We", "You", "They", "She", "He", "My friend", "Everyone")
_EN_FEELINGS = {
    "neutral": ("fine", "okay", "calm"),
    "joy": ("happy", "glad", "thrilled", "excited"),
    "sadness": ("sad", "upset", "heartbroken", "disappointed"),
    "anger": ("angry", "furious", "annoyed", "mad"),
    "disgust": ("disgusted", "grossed out", "sick of it"),
    "fear": ("scared", "afraid", "nervous", "worried"),
    "surprise": ("surprised", "shocked", "amazed"),
}
_EN_CONTEXTS = ("today", "right now", "about the news", "after the party", "at work", "in the coffee house")
_EN_TEMPLATES = (
    "{subject} feel {feeling} {context}.",
    "Oh my God, {subject} am so {feeling} {context}!",
    "Are {subject} really {feeling} {context}?",
    "Honestly, {subject} was {feeling} {context}.",
)
_EN_PROMPTS = (
    "You are a helpful assistant.",
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech.",
    "What emotion does the speaker express? Answer with one word: neutral, joy, sadness, anger, disgust, "
    "fear, or surprise.",
    "What is the sentiment of the speaker? Answer with one word: negative, neutral, or positive.",
    "Describe the facial expression of the person in the video.",
    "Describe the speaker's voice: pitch, energy, and tempo.",
    "Transcript: ",
)
_ROLES = ("system", "user", "assistant")


def tiny_corpus() -> list[str]:
    """The tokenizer's training text: a few thousand deterministic Indonesian and English lines."""
    lines: list[str] = []
    for template, subject, feelings, context in itertools.product(
        _ID_TEMPLATES, _ID_SUBJECTS, _ID_FEELINGS.values(), _ID_CONTEXTS
    ):
        # Cycle through the feeling words instead of the full product: variety without a huge corpus.
        feeling = feelings[(len(lines) + len(subject)) % len(feelings)]
        text = template.format(subject=subject, feeling=feeling, context=context)
        lines.append(text[0].upper() + text[1:])
    for template, subject, feelings, context in itertools.product(
        _EN_TEMPLATES, _EN_SUBJECTS, _EN_FEELINGS.values(), _EN_CONTEXTS
    ):
        feeling = feelings[len(lines) % len(feelings)]
        lines.append(template.format(subject=subject, feeling=feeling, context=context))
    for index, (emotion, feelings) in enumerate(_ID_FEELINGS.items()):
        sentiment = _ID_EMOTION_SENTIMENT[emotion]
        words = ", ".join(feelings[:2]) if emotion != "netral" else "tidak ada"
        lines.append(_ID_ANSWERS[0].format(words=words, sentiment=sentiment))
        lines.append(_ID_ANSWERS[1].format(face=_ID_FACES[index], sentiment=sentiment))
    for values in itertools.product(*_ID_PROSODY.values()):
        level, variability, energy, tempo = values
        for sentiment in _SENTIMENTS_ID:
            lines.append(
                _ID_ANSWERS[2].format(
                    level=level, variability=variability, energy=energy, tempo=tempo, sentiment=sentiment
                )
            )
    labels = _INDOMER_EMOTIONS + _SENTIMENTS_ID + tuple(_EN_FEELINGS) + ("negative", "positive")
    for repeat in range(20):
        # Label words and chat roles recur in every training conversation: make them single tokens.
        lines.extend(labels)
        lines.extend(_ROLES)
        lines.extend(_ID_TOPICS)
        lines.extend(_ID_PROMPTS)
        lines.extend(_EN_PROMPTS)
        lines.append(" ".join(labels[repeat % len(labels) :] + labels[: repeat % len(labels)]))
    return lines


def train_tokenizer(vocab_size: int = TOKENIZER_VOCAB_SIZE) -> Qwen2Tokenizer:
    """Train a byte-level BPE offline and wrap it as a ``Qwen2Tokenizer`` with the Omni special tokens.

    The BPE is trained with exactly the normalizer and pre-tokenizer that ``Qwen2Tokenizer`` builds
    around a vocabulary (NFC, Qwen2's split regex, byte-level), so the merges learned here are the
    ones it applies.
    """
    backend = Tokenizer(
        BPE(
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    state = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(state["vocab"])
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise RuntimeError("the trained BPE vocabulary is not contiguous; cannot append special tokens")
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(merge) for merge in state["merges"]],
        # As in the Qwen2.5 instruct tokenizers: no unk/bos, chat turns end with <|im_end|>.
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_specific_special_tokens=dict(NAMED_SPECIAL_TOKENS),
    )


def build_processor(tokenizer: Qwen2Tokenizer) -> Qwen2_5OmniProcessor:
    """The real processor classes with the 7B's settings (Whisper 128 mel bins, 14 px patches)."""
    feature_extractor = WhisperFeatureExtractor(
        feature_size=128,
        sampling_rate=16000,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
        return_attention_mask=True,
    )
    image_processor = Qwen2VLImageProcessor(
        min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2
    )
    video_processor = Qwen2VLVideoProcessor(patch_size=14, temporal_patch_size=2, merge_size=2)
    return Qwen2_5OmniProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


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
