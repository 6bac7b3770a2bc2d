"""The tiny Thinker's tokenizer and processor: a byte-level BPE trained offline on a built-in
Indonesian + English corpus, wrapped as ``Qwen2Tokenizer`` with Qwen2.5-Omni's special tokens and chat
template, and the real ``Qwen2_5OmniProcessor`` classes around it.

Used by :func:`omnimer.model.tiny.build_tiny_model` (``omnimer tiny-model --out DIR``). Most of this
module is data: the corpus's words and templates.
"""

from __future__ import annotations

import itertools
import json

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (
    Qwen2_5OmniProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    WhisperFeatureExtractor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

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
