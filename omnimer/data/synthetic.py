"""Synthetic IndoMER-format corpus: the embedded default dataset of tests and the demo (DESIGN §6).

Writes exactly IndoMER's published layout (DESIGN §3) plus rendered media::

    Annotations.csv                      IndoMER's 8 columns + speaker_id, aux_keywords, aux_face, aux_prosody
    7_Class/7_class_{train,val}.json     sample_id, text, sentiment_label, label, video, audio
    3_Class/3_class_{train,val}.json     sample_id, text, audio_label, text_label, video_label, label, ...
    videos/clip_<video>_<topic>_<n>.mp4  H.264 video of a drawn face + AAC audio
    audios/clip_<video>_<topic>_<n>.wav  16 kHz mono int16, the same signal as the mp4's audio

Every modality carries its own label: the face's action units follow the video modality's emotion,
the voice's pitch, energy and tempo follow the audio modality's emotion, and the transcript holds
emotion keywords from the built-in lexicon when (and only when) the text modality is emotional. Each
modality agrees with the overall label only part of the time, at IndoMER's measured rates.

Run::

    omnimer synth --out DIR [--clips N] [--speakers N] [--seed S]     # a fresh synthetic corpus
    omnimer synth --out DIR --from-annotations ../shared/datasets/indomer  # media for real labels

or from Python: ``synthesize(Path("data/synth"), SynthConfig(clips=200))``. ``plan_corpus(config)``
draws the labels and transcripts without rendering anything (fast; used by tests).

Determinism: the corpus layout is drawn from ``seed``; each clip's labels, transcript and media from
its own generator seeded with ``(seed, stream, clip index)``, so clips render in any order or in
parallel and the same seed gives byte-identical annotation files and identical decoded media.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import wave
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from omnimer.data.lexicon import NO_KEYWORDS, find_keywords, load_lexicon
from omnimer.labels import INDOMER_EMOTION, INDOMER_EMOTION_SENTIMENT, INDOMER_SENTIMENT

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
EMOTIONS: tuple[str, ...] = INDOMER_EMOTION.names
SENTIMENTS: tuple[str, ...] = INDOMER_SENTIMENT.names
MODALITIES: tuple[str, ...] = ("text", "audio", "video")
SPLITS: tuple[str, ...] = ("train", "val")

ANNOTATION_COLUMNS: tuple[str, ...] = (
    "video_name", "audio_name", "emotion", "sentiment",
    "text_sentiment", "audio_sentiment", "video_sentiment", "text",
)  # fmt: skip
# Ground-truth columns appended after IndoMER's own (DESIGN §3, §4): targets of the auxiliary tasks.
EXTRA_COLUMNS: tuple[str, ...] = ("speaker_id", "aux_keywords", "aux_face", "aux_prosody")
# Key order of the published split files (they are JSON arrays of objects, indent 2, CRLF).
SEVEN_CLASS_KEYS: tuple[str, ...] = ("sample_id", "text", "sentiment_label", "label", "video", "audio")
THREE_CLASS_KEYS: tuple[str, ...] = (
    "sample_id", "text", "audio_label", "text_label", "video_label", "label", "video", "audio",
)  # fmt: skip

# Clip counts of the published Annotations.csv (1,944 clips): the long tail the corpus reproduces.
INDOMER_EMOTION_COUNTS: dict[str, int] = {
    "netral": 1316, "kebahagiaan": 317, "kesedihan": 174, "kemarahan": 82,
    "jijik": 38, "ketakutan": 9, "surprise": 8,
}  # fmt: skip
# Clip counts per topic in the published annotations ("Opinions", a 15-clip spelling variant, left out).
INDOMER_TOPIC_COUNTS: dict[str, int] = {
    "Sharing": 774, "Family": 272, "Tutorials": 215, "Health": 153, "Opinion": 123, "Blogger": 112,
    "Cooking": 55, "Makeup": 54, "Celebrity": 53, "Society": 35, "Product": 34, "Book": 34, "Politics": 15,
}  # fmt: skip
TOPICS: tuple[str, ...] = tuple(INDOMER_TOPIC_COUNTS)
CLIP_NAME = re.compile(r"^clip_(\d+)_([A-Za-z]+)_(\d+)$")

# Independent random streams of one seed: a clip's media never shifts when its labels change.
_STREAM_LAYOUT, _STREAM_LABELS, _STREAM_RENDER, _STREAM_SPEAKER, _STREAM_BACKGROUND = range(5)


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *keys])


# ---------------------------------------------------------------------------------------------------
# Configuration


def _agreement_with_consensus(c: float, rates: Sequence[float]) -> float:
    """P(text == audio == video) when all three copy the label with probability ``c``.

    Otherwise modality m agrees independently with q_m = (p_m - c) / (1 - c) and, when it disagrees,
    picks one of the two other sentiments uniformly: all three are equal when all agree, or when all
    disagree and pick the same wrong sentiment (2 · (1/2)³ = 1/4 of those cases).
    """
    if c >= 1.0:
        return 1.0
    q = [(p - c) / (1.0 - c) for p in rates]
    return c + (1.0 - c) * (math.prod(q) + math.prod(1.0 - x for x in q) / 4.0)


@functools.lru_cache(maxsize=64)  # called once per planned clip; a pure function of four floats
def consensus_probability(text: float, audio: float, video: float, all_agree: float) -> float:
    """Solve (bisection) for the probability that all modalities copy the overall sentiment.

    Raises ``ValueError`` quoting the rates when ``all_agree`` is outside what the generative model
    can produce for these per-modality rates.
    """
    rates = (text, audio, video)
    lo, hi = 0.0, min(rates)
    f_lo, f_hi = _agreement_with_consensus(lo, rates), _agreement_with_consensus(hi, rates)
    if not f_lo - 1e-9 <= all_agree <= f_hi + 1e-9:
        raise ValueError(
            f"all_modalities_agree={all_agree!r} is infeasible with text_agreement={text!r}, "
            f"audio_agreement={audio!r}, video_agreement={video!r}: it must lie in [{f_lo:.4f}, {f_hi:.4f}]"
        )
    for _ in range(80):
        mid = (lo + hi) / 2.0
        if _agreement_with_consensus(mid, rates) < all_agree:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


@dataclass(frozen=True)
class SynthConfig:
    """What to render. Validated on construction; errors quote the bad value."""

    clips: int = field(default=200, metadata={"help": "number of clips (ignored with from_annotations)"})
    speakers: int = field(default=20, metadata={"help": "number of speakers, each with one or more videos"})
    seed: int = field(default=0, metadata={"help": "seed of everything (layout, labels, media)"})
    seconds: float = field(default=2.0, metadata={"help": "clip duration in seconds (same for all clips)"})
    fps: int = field(default=8, metadata={"help": "video frame rate of the rendered mp4"})
    size: int = field(default=96, metadata={"help": "square video size in pixels (even, for yuv420p)"})
    text_agreement: float = field(default=0.68, metadata={"help": "P(text_sentiment == sentiment)"})
    audio_agreement: float = field(default=0.60, metadata={"help": "P(audio_sentiment == sentiment)"})
    video_agreement: float = field(default=0.64, metadata={"help": "P(video_sentiment == sentiment)"})
    all_modalities_agree: float = field(
        default=0.38, metadata={"help": "P(text == audio == video sentiment); IndoMER measures 0.379"}
    )
    test_fraction: float = field(
        default=0.18, metadata={"help": "share of clips (whole source videos) in the published val split"}
    )

    def __post_init__(self) -> None:
        for name in ("clips", "speakers", "seed", "fps", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.clips < 2:
            raise ValueError(f"clips must be >= 2 (one video per split at least), got {self.clips!r}")
        if not 1 <= self.speakers <= self.clips:
            raise ValueError(f"speakers must be in [1, clips={self.clips}], got {self.speakers!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if not isinstance(self.seconds, int | float) or not 0.25 <= self.seconds <= 30.0:
            raise ValueError(f"seconds must be in [0.25, 30], got {self.seconds!r}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be in [1, 60], got {self.fps!r}")
        if not 32 <= self.size <= 512 or self.size % 2:
            raise ValueError(f"size must be an even number of pixels in [32, 512], got {self.size!r}")
        for name in ("text_agreement", "audio_agreement", "video_agreement", "all_modalities_agree"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.test_fraction, int | float) or not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        self.consensus()  # raises when the agreement rates are jointly infeasible

    def consensus(self) -> float:
        """P(all three modalities copy the overall sentiment), solved from the agreement rates."""
        return consensus_probability(
            self.text_agreement, self.audio_agreement, self.video_agreement, self.all_modalities_agree
        )

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.fps))

    @property
    def samples(self) -> int:
        return round(self.seconds * SAMPLE_RATE)


# ---------------------------------------------------------------------------------------------------
# Expressions: what each modality shows, and its description (the aux_face / aux_prosody targets)

# Facial action units per emotion at full intensity (FACS prototypes; AU numbers in comments).
_FACE_UNITS: dict[str, dict[str, float]] = {
    "netral": {},
    "kebahagiaan": {"cheek_raise": 0.9, "lip_corner_pull": 1.0, "jaw_drop": 0.1},  # AU6 + AU12
    "kesedihan": {
        "brow_inner_raise": 1.0,
        "brow_lower": 0.35,
        "lid_droop": 0.8,
        "lip_corner_depress": 1.0,
    },  # AU1+15
    "kemarahan": {"brow_lower": 1.0, "lid_tighten": 0.7, "lip_press": 1.0},  # AU4 + AU7 + AU24
    "jijik": {  # AU9 + AU10 (+ AU4, AU15)
        "nose_wrinkle": 1.0,
        "upper_lip_raise": 1.0,
        "brow_lower": 0.5,
        "lid_tighten": 0.3,
        "lip_corner_depress": 0.4,
    },
    "ketakutan": {  # AU1 + AU2 + AU4 + AU5 + AU20 + AU26
        "brow_inner_raise": 1.0,
        "brow_outer_raise": 0.7,
        "brow_lower": 0.35,
        "lid_raise": 1.0,
        "lip_stretch": 1.0,
        "jaw_drop": 0.25,
    },
    "surprise": {
        "brow_inner_raise": 1.0,
        "brow_outer_raise": 1.0,
        "lid_raise": 0.8,
        "jaw_drop": 1.0,
    },  # AU1+2+5+26
}
_FACE_DESCRIPTIONS: dict[str, tuple[str, str]] = {  # (strong, mild)
    "netral": ("wajah datar dan rileks", "wajah datar dan rileks"),
    "kebahagiaan": ("tersenyum lebar, pipi terangkat", "tersenyum tipis, pipi sedikit terangkat"),
    "kesedihan": (
        "alis bagian dalam terangkat, sudut bibir turun",
        "alis bagian dalam sedikit terangkat, sudut bibir agak turun",
    ),
    "kemarahan": ("alis turun dan menyatu, bibir terkatup rapat", "alis agak turun, bibir sedikit ditekan"),
    "jijik": (
        "hidung mengernyit, bibir atas terangkat",
        "hidung sedikit mengernyit, bibir atas agak terangkat",
    ),
    "ketakutan": (
        "alis terangkat, mata terbelalak, bibir tertarik ke samping",
        "alis agak terangkat, mata melebar, bibir sedikit tertarik ke samping",
    ),
    "surprise": (
        "alis terangkat tinggi, mata terbuka lebar, mulut menganga",
        "alis terangkat, mata melebar, mulut sedikit terbuka",
    ),
}
_STRONG = 0.8  # intensity from which an expression is described without hedging words


@dataclass(frozen=True)
class FaceExpression:
    """Action-unit intensities in [0, 1] of the rendered face (0 everywhere = relaxed)."""

    emotion: str = "netral"
    intensity: float = 0.0
    brow_inner_raise: float = 0.0  # AU1
    brow_outer_raise: float = 0.0  # AU2
    brow_lower: float = 0.0  # AU4
    lid_raise: float = 0.0  # AU5
    cheek_raise: float = 0.0  # AU6
    lid_tighten: float = 0.0  # AU7
    lid_droop: float = 0.0  # upper lid lowered (sad gaze)
    nose_wrinkle: float = 0.0  # AU9
    upper_lip_raise: float = 0.0  # AU10
    lip_corner_pull: float = 0.0  # AU12
    lip_corner_depress: float = 0.0  # AU15
    lip_stretch: float = 0.0  # AU20
    lip_press: float = 0.0  # AU24
    jaw_drop: float = 0.0  # AU26


def face_expression(emotion: str, intensity: float) -> FaceExpression:
    """The prototype face of ``emotion`` scaled by ``intensity`` in [0, 1]."""
    INDOMER_EMOTION.index(emotion)
    units = {name: round(weight * intensity, 4) for name, weight in _FACE_UNITS[emotion].items()}
    return FaceExpression(emotion=emotion, intensity=round(intensity, 4), **units)


def describe_face(face: FaceExpression) -> str:
    """Short Indonesian description of the rendered expression (the aux_face target)."""
    strong, mild = _FACE_DESCRIPTIONS[face.emotion]
    return strong if face.intensity >= _STRONG else mild


# Prosody at full intensity. pitch_factor scales the speaker's own f0; range is the std of the f0
# contour and slope its overall drift, both in semitones; loudness is the RMS of speech (full scale 1).
_PROSODY_TARGETS: dict[str, dict[str, float]] = {
    "netral": dict(pitch_factor=1.0, pitch_range=1.5, pitch_slope=-1.0, loudness=0.08, syllable_rate=4.0,
                   pause_rate=0.12, tilt=1.2, tremor=0.0),
    "kebahagiaan": dict(pitch_factor=1.22, pitch_range=3.5, pitch_slope=0.0, loudness=0.14, syllable_rate=5.2,
                        pause_rate=0.08, tilt=1.0, tremor=0.0),
    "kesedihan": dict(pitch_factor=0.84, pitch_range=0.5, pitch_slope=-2.5, loudness=0.035, syllable_rate=2.7,
                      pause_rate=0.25, tilt=1.6, tremor=0.0),
    "kemarahan": dict(pitch_factor=1.12, pitch_range=2.5, pitch_slope=-1.5, loudness=0.2, syllable_rate=5.4,
                      pause_rate=0.06, tilt=0.7, tremor=0.0),
    "jijik": dict(pitch_factor=0.88, pitch_range=1.6, pitch_slope=-2.0, loudness=0.06, syllable_rate=3.0,
                  pause_rate=0.2, tilt=1.3, tremor=0.0),
    "ketakutan": dict(pitch_factor=1.3, pitch_range=3.2, pitch_slope=0.5, loudness=0.1, syllable_rate=5.8,
                      pause_rate=0.1, tilt=1.2, tremor=0.6),
    "surprise": dict(pitch_factor=1.28, pitch_range=3.0, pitch_slope=5.0, loudness=0.14, syllable_rate=4.4,
                     pause_rate=0.1, tilt=1.0, tremor=0.0),
}  # fmt: skip


@dataclass(frozen=True)
class Prosody:
    """Voice settings of one clip, relative to the speaker's habitual voice."""

    emotion: str = "netral"
    intensity: float = 0.0
    pitch_factor: float = 1.0  # multiplies the speaker's base f0
    pitch_range: float = 1.5  # std of the f0 contour, semitones
    pitch_slope: float = -1.0  # drift over the clip, semitones (declination < 0, rising > 0)
    loudness: float = 0.08  # RMS of the speech portions, full scale = 1
    syllable_rate: float = 4.0  # syllables per second
    pause_rate: float = 0.12  # probability of a short pause after a syllable
    tilt: float = 1.2  # harmonic amplitudes fall as k**-tilt (pressed, loud voices are brighter)
    tremor: float = 0.0  # 7 Hz f0 tremor depth, semitones (fear)


def prosody(emotion: str, intensity: float) -> Prosody:
    """Voice settings of ``emotion`` at ``intensity``: interpolated from neutral towards the prototype."""
    INDOMER_EMOTION.index(emotion)
    neutral, target = _PROSODY_TARGETS["netral"], _PROSODY_TARGETS[emotion]
    values = {k: round(neutral[k] + intensity * (target[k] - neutral[k]), 4) for k in neutral}
    return Prosody(emotion=emotion, intensity=round(intensity, 4), **values)


def describe_prosody(voice: Prosody) -> str:
    """Indonesian description of pitch level/variability, energy and tempo (the aux_prosody target).

    Levels are relative to the speaker's habitual voice, as the emotion changes them.
    """
    level = "tinggi" if voice.pitch_factor >= 1.1 else "rendah" if voice.pitch_factor <= 0.93 else "sedang"
    if voice.pitch_range >= 3.0:
        variability = "sangat bervariasi"
    elif voice.pitch_range >= 2.0:
        variability = "bervariasi"
    elif voice.pitch_range <= 1.0:
        variability = "datar"
    else:
        variability = "sedikit bervariasi"
    contour = ", naik di akhir" if voice.pitch_slope >= 2.5 else ""
    energy = "kuat" if voice.loudness >= 0.12 else "lemah" if voice.loudness <= 0.055 else "sedang"
    tempo = "cepat" if voice.syllable_rate >= 4.8 else "lambat" if voice.syllable_rate <= 3.3 else "sedang"
    return f"nada {level} dan {variability}{contour}, energi {energy}, tempo {tempo}"


# ---------------------------------------------------------------------------------------------------
# Speakers


@dataclass(frozen=True)
class SpeakerStyle:
    """A speaker's face and voice: what stays the same across all of their clips."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]
    face_width: float  # half-axes of the face ellipse, in frame units (frame = [-1, 1]²)
    face_height: float
    eye_spacing: float  # horizontal offset of each eye from the face centre
    eye_size: float
    brow_thickness: float
    mouth_width: float  # half-width of the relaxed mouth
    base_f0: float  # Hz
    formant_scale: float  # vocal-tract length: higher voices get higher formants
    speech_rate: float  # multiplies the emotion's syllable rate
    head_motion: float  # amplitude of the idle head sway


_SKIN_TONES = (
    (255, 224, 196),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (161, 102, 54),
    (112, 72, 45),
)
_HAIR_COLOURS = ((25, 18, 14), (45, 30, 20), (15, 15, 18), (70, 45, 28), (95, 70, 50))
_IRIS_COLOURS = ((60, 35, 20), (45, 30, 25), (30, 25, 20), (80, 60, 40))


def speaker_style(seed: int, speaker_key: int) -> SpeakerStyle:
    """The face and voice of speaker ``speaker_key`` (any non-negative int) under ``seed``."""
    rng = _rng(seed, _STREAM_SPEAKER, speaker_key)
    skin = np.asarray(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], float) + rng.normal(0, 6, 3)
    hair = np.asarray(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], float) + rng.normal(0, 4, 3)
    lips = skin * 0.72 + np.array([55.0, 5.0, 15.0])
    base_f0 = float(rng.uniform(110.0, 230.0))
    return SpeakerStyle(
        skin=_rgb(skin),
        hair=_rgb(hair),
        lips=_rgb(lips),
        iris=_rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]),
        face_width=float(rng.uniform(0.54, 0.66)),
        face_height=float(rng.uniform(0.74, 0.84)),
        eye_spacing=float(rng.uniform(0.22, 0.29)),
        eye_size=float(rng.uniform(0.9, 1.1)),
        brow_thickness=float(rng.uniform(0.03, 0.045)),
        mouth_width=float(rng.uniform(0.19, 0.24)),
        base_f0=base_f0,
        # Higher-pitched voices tend to come from shorter vocal tracts; a loose link is enough.
        formant_scale=float(
            np.clip(0.85 + (base_f0 - 110.0) / 120.0 * 0.25 + rng.normal(0, 0.03), 0.82, 1.15)
        ),
        speech_rate=float(rng.uniform(0.9, 1.1)),
        head_motion=float(rng.uniform(0.5, 1.0)),
    )


def video_background(seed: int, video: int) -> tuple[float, float, float]:
    """A muted background colour per source video (each video is its own recording setting)."""
    rng = _rng(seed, _STREAM_BACKGROUND, video)
    return _rgb(rng.uniform(70, 200, 3) * 0.6 + 128 * 0.4)


def _rgb(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(np.clip(v, 0, 255)) for v in values)
    return (round(r, 2), round(g, 2), round(b, 2))


# ---------------------------------------------------------------------------------------------------
# Transcripts

_FILLERS: dict[str, tuple[str, ...]] = {
    "waktu": ("hari ini", "kemarin", "minggu lalu", "tadi pagi", "akhir pekan ini", "tahun lalu", "sore ini"),
    "orang": ("teman aku", "adik aku", "kakak aku", "ibu aku", "ayah aku", "tetangga aku", "sepupu aku"),
    "tempat": ("rumah", "kantor", "pasar", "kampus", "Bandung", "Surabaya", "Yogyakarta", "Medan"),
    "masakan": ("nasi goreng", "sayur asem", "ayam bakar", "soto ayam", "tumis kangkung", "rendang"),
    "bahan": ("bawang putih", "cabai merah", "tomat", "daun salam", "santan", "kecap manis"),
    "jumlah": ("dua siung", "tiga buah", "satu sendok makan", "setengah gelas", "secukupnya"),
    "menit": ("lima", "sepuluh", "lima belas", "dua puluh", "tiga puluh"),
    "menu": ("pengaturan", "profil", "tampilan", "akun", "riwayat"),
    "bagian": ("kedua", "berikutnya", "terakhir", "tambahan"),
    "fasilitas": ("puskesmas", "klinik terdekat", "rumah sakit", "apotek"),
    "isu": ("transportasi umum", "harga tiket", "jam kerja", "sekolah daring", "media sosial"),
    "barang": ("tas ransel", "sepatu lari", "kamera saku", "botol minum", "lampu meja"),
    "produk": ("pelembap", "primer", "tabir surya", "alas bedak"),
    "warna": ("cokelat muda", "merah bata", "emas", "abu-abu"),
    "artis": ("Raka Pratama", "Dinda Maharani", "grup Nada Kota", "Sari Wulandari"),
    "hari": ("hari Jumat", "awal bulan", "pekan depan", "akhir tahun"),
    "harga": ("lima puluh", "tujuh puluh lima", "seratus", "dua ratus"),
    "durasi": ("dua minggu", "satu bulan", "tiga bulan", "setengah tahun"),
    "penulis": ("Ahmad Fauzi", "Rina Kartika", "Budi Santoso", "Maya Anggraini"),
    "tahun": ("dua ribu lima belas", "dua ribu sembilan belas", "dua ribu dua puluh dua"),
    "jam": ("tujuh", "delapan", "setengah tujuh"),
}
# Neutral sentences per topic. They must contain no lexicon form, with any filler (tests check).
_TOPIC_SENTENCES: dict[str, tuple[str, ...]] = {
    "Sharing": (
        "Jadi {waktu} aku mau cerita sedikit tentang pengalaman aku di {tempat}.",
        "Waktu itu aku lagi sama {orang} dan kita ngobrol soal banyak hal.",
        "Terus aku pikir, ya sudah, aku coba saja dulu.",
        "Ini ceritanya cukup panjang, jadi dengar sampai selesai ya.",
        "Kalian pernah mengalami hal yang mirip seperti ini?",
    ),
    "Family": (
        "Di keluarga kami, {orang} biasanya yang paling sering masak.",
        "Setiap {hari} kami kumpul bareng di {tempat}.",
        "Anak-anak sekarang sudah mulai sekolah lagi.",
        "Kami biasanya makan malam bersama sekitar jam {jam}.",
    ),
    "Tutorials": (
        "Langkah pertama, buka dulu aplikasinya lalu pilih menu {menu}.",
        "Setelah itu klik tombol simpan di pojok kanan atas.",
        "Pastikan pengaturannya sudah benar sebelum lanjut ke langkah berikutnya.",
        "Kalau sudah, kita lanjut ke bagian {bagian}.",
    ),
    "Health": (
        "Minum air putih minimal delapan gelas sehari itu penting.",
        "Kalau mau olahraga, mulai saja dari jalan kaki sekitar {menit} menit.",
        "Jangan lupa periksa tekanan darah secara rutin ke {fasilitas}.",
        "Tidur yang cukup juga membantu menjaga daya tahan tubuh.",
    ),
    "Opinion": (
        "Menurut aku, soal {isu} ini perlu dilihat dari dua sisi.",
        "Banyak orang punya pendapat yang berbeda tentang hal ini.",
        "Coba kita bahas satu per satu argumennya.",
        "Ini cuma pendapat pribadi aku ya, kalian boleh setuju atau tidak.",
    ),
    "Blogger": (
        "Halo semuanya, selamat datang kembali di channel aku.",
        "Di video kali ini aku mau bahas tentang {barang}.",
        "Jangan lupa like dan subscribe untuk video berikutnya.",
        "Sampai jumpa di video selanjutnya ya.",
    ),
    "Cooking": (
        "Hari ini aku mau masak {masakan} buat makan malam.",
        "Pertama, siapkan {bahan} sekitar {jumlah}.",
        "Masukkan {bahan} ke dalam wajan, lalu aduk sampai rata.",
        "Tunggu kira-kira {menit} menit sampai matang.",
    ),
    "Makeup": (
        "Pertama aku pakai {produk} dulu supaya kulitnya lembap.",
        "Setelah itu ratakan pakai spons secara perlahan.",
        "Untuk bagian mata, aku pakai warna {warna}.",
        "Terakhir, semprotkan setting spray supaya tahan lama.",
    ),
    "Celebrity": (
        "Kabarnya {artis} baru saja merilis lagu terbaru.",
        "Banyak penggemar yang menunggu konser mereka {hari}.",
        "Dia juga sempat tampil di acara televisi {waktu}.",
        "Film terbarunya akan tayang di bioskop mulai {hari}.",
    ),
    "Society": (
        "Warga di {tempat} mengadakan kerja bakti setiap akhir pekan.",
        "Pemerintah daerah sedang memperbaiki jalan di sekitar pasar.",
        "Harga bahan pokok di {tempat} masih cukup stabil.",
        "Banyak anak muda yang ikut kegiatan sosial di lingkungannya.",
    ),
    "Product": (
        "Produk ini harganya sekitar {harga} ribu rupiah.",
        "Kemasannya cukup kecil, jadi gampang dibawa ke mana-mana.",
        "Aku sudah pakai {barang} ini kurang lebih {durasi}.",
        "Kalian bisa beli di toko online atau di {tempat}.",
    ),
    "Book": (
        "Buku ini ditulis oleh {penulis} dan terbit tahun {tahun}.",
        "Ceritanya tentang seorang anak yang pindah ke {tempat}.",
        "Bukunya terdiri dari dua belas bab.",
        "Aku baca buku ini dalam waktu {durasi}.",
    ),
    "Politics": (
        "Pemilihan umum akan diadakan tahun depan.",
        "Setiap partai sudah mulai menyiapkan calonnya masing-masing.",
        "Debat kandidat akan disiarkan langsung di televisi.",
        "Menurut data terbaru, jumlah pemilih muda terus bertambah.",
    ),
}
# Frames that carry the emotion keywords; {kw} / {Kw} (capitalised) are the inserted lexicon forms.
_KEYWORD_FRAMES_ONE: tuple[str, ...] = (
    "Jujur, aku merasa {kw} waktu itu.",
    "Pas {orang} cerita soal itu, rasanya {kw}.",
    "Aku tidak bisa bohong, {kw} sekali rasanya.",
    "{Kw}, itu yang aku rasakan sekarang.",
    "Rasanya campur aduk, pokoknya {kw}.",
)
_KEYWORD_FRAMES_TWO: tuple[str, ...] = (
    "Aku merasa {kw} dan juga {kw2} waktu itu.",
    "{Kw}, {kw2}, semuanya jadi satu.",
    "Pokoknya {kw}, terus {kw2} juga.",
)


def _fill(template: str, rng: np.random.Generator, **given: str) -> str:
    slots = re.findall(r"\{(\w+)\}", template)
    values = dict(given)
    for slot in slots:
        if slot not in values and slot in _FILLERS:
            options = _FILLERS[slot]
            values[slot] = options[rng.integers(len(options))]
    return template.format(**values)


def _pick_keywords(emotion: str, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` forms of distinct lemmas of ``emotion``: the lemma itself half the time (most natural)."""
    entries = load_lexicon()[emotion]
    chosen = rng.choice(len(entries), size=min(count, len(entries)), replace=False)
    forms = []
    for i in chosen:
        lemma, all_forms = entries[int(i)]
        forms.append(lemma if rng.random() < 0.5 else all_forms[rng.integers(len(all_forms))])
    return forms


def compose_transcript(topic: str, emotion: str, rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """An Indonesian transcript on ``topic`` expressing ``emotion`` in words; returns (text, keywords).

    Neutral text is one or two topic sentences with no lexicon word. Emotional text is a topic
    sentence plus a sentence with one or two keywords of ``emotion``; the keywords returned are
    exactly what :func:`find_keywords` finds in the text.
    """
    sentences = _TOPIC_SENTENCES[topic]
    if emotion == "netral":
        count = 1 + int(rng.random() < 0.5)
        picked = rng.choice(len(sentences), size=count, replace=False)
        return " ".join(_fill(sentences[int(i)], rng) for i in picked), ()
    # A keyword next to a frame word could form a longer lexicon phrase; redraw in that rare case.
    for _ in range(50):
        keywords = _pick_keywords(emotion, 1 + int(rng.random() < 0.4), rng)
        frames = _KEYWORD_FRAMES_TWO if len(keywords) == 2 else _KEYWORD_FRAMES_ONE
        frame = frames[rng.integers(len(frames))]
        values = {"kw": keywords[0], "Kw": keywords[0][:1].upper() + keywords[0][1:]}
        if len(keywords) == 2:
            values["kw2"] = keywords[1]
        emotional = _fill(frame, rng, **values)
        neutral = _fill(sentences[rng.integers(len(sentences))], rng)
        text = f"{neutral} {emotional}" if rng.random() < 0.5 else f"{emotional} {neutral}"
        if find_keywords(text) == keywords:
            return text, tuple(keywords)
    raise RuntimeError(f"could not compose a transcript for {topic!r} / {emotion!r} whose keywords match")


# ---------------------------------------------------------------------------------------------------
# Planning: labels, transcripts and expressions of every clip, without rendering


@dataclass(frozen=True)
class ClipPlan:
    """Everything about one clip except its pixels and samples."""

    index: int  # position in the corpus; seeds the clip's generators
    name: str  # clip_<video>_<topic>_<n>
    video: int
    topic: str
    speaker_id: str
    speaker_key: int  # seeds the speaker's face and voice
    split: str  # "train" or "val" (IndoMER's published names)
    emotion: str
    sentiment: str
    text_sentiment: str
    audio_sentiment: str
    video_sentiment: str
    text_emotion: str  # the emotion each modality expresses
    audio_emotion: str
    video_emotion: str
    text: str
    aux_keywords: str  # inserted keywords joined by ", ", NO_KEYWORDS, or "" for real transcripts
    face: FaceExpression
    voice: Prosody

    @property
    def aux_face(self) -> str:
        return describe_face(self.face)

    @property
    def aux_prosody(self) -> str:
        return describe_prosody(self.voice)


_POSITIVE_EMOTIONS = tuple(e for e in EMOTIONS if INDOMER_EMOTION_SENTIMENT[e] == "positif")
_NEGATIVE_EMOTIONS = tuple(e for e in EMOTIONS if INDOMER_EMOTION_SENTIMENT[e] == "negatif")


def _expressed_emotion(emotion: str, modality_sentiment: str, rng: np.random.Generator) -> str:
    """The emotion a modality shows: the clip's own where its sentiment is the emotion's, else one of its own
    sentiment's (netral -> netral, positif -> kebahagiaan/surprise, negatif -> a negative emotion)."""
    if modality_sentiment == INDOMER_EMOTION_SENTIMENT[emotion]:
        return emotion
    if modality_sentiment == "netral":
        return "netral"
    pool = _POSITIVE_EMOTIONS if modality_sentiment == "positif" else _NEGATIVE_EMOTIONS
    # Softened IndoMER frequencies: mostly the common emotions, but every one appears.
    weights = np.sqrt([INDOMER_EMOTION_COUNTS[e] for e in pool])
    return pool[rng.choice(len(pool), p=weights / weights.sum())]


def _draw_modality_sentiments(
    sentiment: str, rates: Sequence[float], consensus: float, rng: np.random.Generator
) -> list[str]:
    if rng.random() < consensus:
        return [sentiment] * len(rates)
    others = [s for s in SENTIMENTS if s != sentiment]
    drawn = []
    for rate in rates:
        agree = (rate - consensus) / (1.0 - consensus)
        drawn.append(sentiment if rng.random() < agree else others[rng.integers(len(others))])
    return drawn


def _intensity(emotion: str, rng: np.random.Generator) -> float:
    # Strong enough to be visible at 56x56 pixels and audible in pitch statistics.
    return 0.0 if emotion == "netral" else float(rng.uniform(0.65, 1.0))


def _plan_clip(
    *,
    seed: int,
    index: int,
    name: str,
    video: int,
    topic: str,
    speaker_id: str,
    speaker_key: int,
    split: str,
    emotion: str,
    sentiment: str,
    modality_sentiments: Sequence[str] | None,
    text: str | None,
    config: SynthConfig,
) -> ClipPlan:
    rng = _rng(seed, _STREAM_LABELS, index)
    if modality_sentiments is None:
        rates = (config.text_agreement, config.audio_agreement, config.video_agreement)
        modality_sentiments = _draw_modality_sentiments(sentiment, rates, config.consensus(), rng)
    text_sentiment, audio_sentiment, video_sentiment = modality_sentiments
    text_emotion, audio_emotion, video_emotion = (
        _expressed_emotion(emotion, s, rng) for s in modality_sentiments
    )
    if text is None:
        text, keywords = compose_transcript(topic, text_emotion, rng)
        aux_keywords = ", ".join(keywords) or NO_KEYWORDS
    else:
        aux_keywords = ""  # a real transcript: its keywords are not known ground truth
    return ClipPlan(
        index=index,
        name=name,
        video=video,
        topic=topic,
        speaker_id=speaker_id,
        speaker_key=speaker_key,
        split=split,
        emotion=emotion,
        sentiment=sentiment,
        text_sentiment=text_sentiment,
        audio_sentiment=audio_sentiment,
        video_sentiment=video_sentiment,
        text_emotion=text_emotion,
        audio_emotion=audio_emotion,
        video_emotion=video_emotion,
        text=text,
        aux_keywords=aux_keywords,
        face=face_expression(video_emotion, _intensity(video_emotion, rng)),
        voice=prosody(audio_emotion, _intensity(audio_emotion, rng)),
    )


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    weights_arr = np.asarray(weights, float)
    exact = total * weights_arr / weights_arr.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def _split_videos(sizes: dict[int, int], test_fraction: float, rng: np.random.Generator) -> dict[int, str]:
    """Whole videos to val until about ``test_fraction`` of the clips are there; both splits non-empty."""
    videos = sorted(sizes)
    order = [videos[i] for i in rng.permutation(len(videos))]
    total = sum(sizes.values())
    target = test_fraction * total
    val: list[int] = []
    val_clips = 0
    for video in order:
        if len(val) == len(videos) - 1:
            break
        if val_clips + sizes[video] <= target * 1.15 + 1:
            val.append(video)
            val_clips += sizes[video]
        if val_clips >= target:
            break
    if not val:
        val.append(min(videos, key=lambda v: (sizes[v], v)))
    return {v: ("val" if v in val else "train") for v in videos}


def _emotion_sequence(n: int, min_per_class: int, rng: np.random.Generator) -> list[str]:
    """``n`` emotions in IndoMER's long-tailed proportions, ``min_per_class`` of each guaranteed."""
    quota = min(min_per_class, n // len(EMOTIONS))
    counts = _largest_remainder(n - quota * len(EMOTIONS), [INDOMER_EMOTION_COUNTS[e] for e in EMOTIONS])
    emotions = [e for e, c in zip(EMOTIONS, counts, strict=True) for _ in range(c + quota)]
    return [emotions[i] for i in rng.permutation(len(emotions))]


def plan_corpus(config: SynthConfig) -> list[ClipPlan]:
    """Draw the layout (speakers, videos, topics, splits) and every clip's labels and transcript.

    Videos: about 8 clips each (IndoMER has 9.4), every speaker at least one. Splits are by whole
    video. Emotions follow IndoMER's proportions per split, with at least 2 clips of every class in
    each split when ``clips >= 100`` (1 in smaller corpora, where the split has room for 7).
    """
    rng = _rng(config.seed, _STREAM_LAYOUT)
    n_videos = min(config.clips, max(config.speakers, 2, round(config.clips / 8)))
    owners = list(rng.permutation(config.speakers)) + list(
        rng.integers(0, config.speakers, n_videos - config.speakers)
    )
    sizes_arr = 1 + rng.multinomial(config.clips - n_videos, rng.dirichlet(np.full(n_videos, 2.0)))
    topic_weights = np.array([INDOMER_TOPIC_COUNTS[t] for t in TOPICS], float)
    topics = [
        TOPICS[i] for i in rng.choice(len(TOPICS), size=n_videos, p=topic_weights / topic_weights.sum())
    ]
    sizes = {v + 1: int(sizes_arr[v]) for v in range(n_videos)}
    splits = _split_videos(sizes, config.test_fraction, rng)
    min_per_class = 2 if config.clips >= 100 else 1
    emotions_by_split = {
        split: _emotion_sequence(sum(n for v, n in sizes.items() if splits[v] == split), min_per_class, rng)
        for split in SPLITS
    }
    plans: list[ClipPlan] = []
    for video in range(1, n_videos + 1):
        speaker = int(owners[video - 1]) + 1
        split = splits[video]
        for clip in range(1, sizes[video] + 1):
            emotion = emotions_by_split[split].pop()
            plans.append(
                _plan_clip(
                    seed=config.seed,
                    index=len(plans),
                    name=f"clip_{video}_{topics[video - 1]}_{clip}",
                    video=video,
                    topic=topics[video - 1],
                    speaker_id=f"speaker_{speaker}",
                    speaker_key=speaker,
                    split=split,
                    emotion=emotion,
                    sentiment=INDOMER_EMOTION_SENTIMENT[emotion],
                    modality_sentiments=None,
                    text=None,
                    config=config,
                )
            )
    return plans


# ---------------------------------------------------------------------------------------------------
# Reading an existing IndoMER annotation set (from_annotations)


@dataclass
class AnnotationSource:
    """The annotation files found in a source directory, and the clips merged from them."""

    directory: Path
    csv_path: Path | None
    seven_class: dict[str, Path]  # split -> file
    three_class: dict[str, Path]
    records: dict[str, dict[str, str]]  # clip name -> field -> value


def _json_paths(directory: Path, folder: str, stem: str) -> dict[str, Path]:
    found = {split: directory / folder / f"{stem}_{split}.json" for split in SPLITS}
    present = {split: path for split, path in found.items() if path.is_file()}
    if present and len(present) != len(SPLITS):
        missing = [str(p) for s, p in found.items() if s not in present]
        raise ValueError(f"{directory}: {folder} has {sorted(present)} but lacks {', '.join(missing)}")
    return present


def _check_label(value: str, allowed: Sequence[str], where: str) -> str:
    if value not in allowed:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value


def read_annotations(directory: Path) -> AnnotationSource:
    """Read IndoMER annotations (``Annotations.csv`` and/or the split JSONs) into merged records.

    Each record has emotion, sentiment, the three modality sentiments, text (the JSONs' text when
    present: the CSV has some mojibake) and split (from the JSONs; absent when only the CSV exists).
    Conflicting labels between files raise ``ValueError`` naming both places.
    """
    directory = Path(directory)
    csv_path = directory / "Annotations.csv"
    source = AnnotationSource(
        directory=directory,
        csv_path=csv_path if csv_path.is_file() else None,
        seven_class=_json_paths(directory, "7_Class", "7_class"),
        three_class=_json_paths(directory, "3_Class", "3_class"),
        records={},
    )
    if source.csv_path is None and not source.seven_class and not source.three_class:
        raise ValueError(
            f"no IndoMER annotations in {directory}: expected Annotations.csv, "
            "7_Class/7_class_{train,val}.json or 3_Class/3_class_{train,val}.json"
        )
    origin: dict[tuple[str, str], str] = {}

    def put(name: str, key: str, value: str, where: str) -> None:
        record = source.records.setdefault(name, {})
        if key in record and record[key] != value:
            raise ValueError(
                f"{where}: {key}={value!r} conflicts with {record[key]!r} from {origin[name, key]}"
            )
        if key not in record:
            record[key] = value
            origin[name, key] = where

    # JSON text first: it wins over the CSV's (put() keeps the first text it sees).
    for kind, paths in (("7", source.seven_class), ("3", source.three_class)):
        for split, path in paths.items():
            try:
                items = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from None
            if not isinstance(items, list):
                raise ValueError(f"{path}: expected a JSON array of samples, got {type(items).__name__}")
            keys = SEVEN_CLASS_KEYS if kind == "7" else THREE_CLASS_KEYS
            for i, item in enumerate(items):
                where = f"{path} item {i}"
                missing = [k for k in keys if not isinstance(item, dict) or k not in item]
                if missing:
                    raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
                name = str(item["sample_id"])
                where = f"{path} item {i} ({name})"
                put(name, "split", split, where)
                if "text" not in source.records[name]:
                    put(name, "text", str(item["text"]), where)
                if kind == "7":
                    emotion = _check_label(item["label"], EMOTIONS, f"{where}, key 'label'")
                    sentiment = _check_label(
                        item["sentiment_label"], SENTIMENTS, f"{where}, key 'sentiment_label'"
                    )
                    put(name, "emotion", emotion, where)
                    put(name, "sentiment", sentiment, where)
                    continue
                put(
                    name, "sentiment", _check_label(item["label"], SENTIMENTS, f"{where}, key 'label'"), where
                )
                for modality in MODALITIES:
                    key = f"{modality}_label"
                    value = _check_label(item[key], SENTIMENTS, f"{where}, key {key!r}")
                    put(name, f"{modality}_sentiment", value, where)
    if source.csv_path is not None:
        with source.csv_path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ANNOTATION_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f"{source.csv_path}: missing column(s) {', '.join(missing)}")
            for row_no, row in enumerate(reader, start=2):
                name = Path(row["video_name"]).stem
                where = f"{source.csv_path} line {row_no} ({name})"
                put(
                    name,
                    "emotion",
                    _check_label(row["emotion"], EMOTIONS, f"{where}, column 'emotion'"),
                    where,
                )
                for key in ("sentiment", "text_sentiment", "audio_sentiment", "video_sentiment"):
                    put(name, key, _check_label(row[key], SENTIMENTS, f"{where}, column {key!r}"), where)
                if "text" not in source.records[name]:
                    put(name, "text", row["text"], where)
                if row.get("speaker_id"):
                    put(name, "speaker_id", row["speaker_id"], where)
    required = ("emotion", "sentiment", "text_sentiment", "audio_sentiment", "video_sentiment", "text")
    for name, record in source.records.items():
        if not CLIP_NAME.match(name):
            raise ValueError(
                f"{origin[name, next(iter(record))]}: clip name {name!r} is not clip_<video>_<topic>_<n>"
            )
        missing = [k for k in required if k not in record]
        if missing:
            raise ValueError(f"{directory}: clip {name!r} has no {', '.join(missing)} in any annotation file")
        if (source.seven_class or source.three_class) and "split" not in record:
            raise ValueError(f"{origin[name, 'emotion']}: clip {name!r} is in no split JSON")
    return source


def plan_from_annotations(directory: Path, config: SynthConfig) -> tuple[list[ClipPlan], AnnotationSource]:
    """Plans that keep the source's clip names, texts, labels and splits; only media are synthetic.

    The speaker is the source video (IndoMER does not identify speakers) unless the CSV has a
    ``speaker_id`` column. Without split JSONs, whole videos are split with ``config.test_fraction``.
    """
    source = read_annotations(directory)

    def parse(name: str) -> tuple[int, str, int]:
        match = CLIP_NAME.match(name)
        assert match is not None  # checked by read_annotations
        return int(match.group(1)), match.group(2), int(match.group(3))

    names = sorted(source.records, key=lambda n: (*parse(n), n))
    splits: dict[int, str] = {}
    if not (source.seven_class or source.three_class):
        sizes = Counter(parse(n)[0] for n in names)
        splits = _split_videos(dict(sizes), config.test_fraction, _rng(config.seed, _STREAM_LAYOUT))
    else:
        by_video: dict[int, set[str]] = {}
        for name in names:
            by_video.setdefault(parse(name)[0], set()).add(source.records[name]["split"])
        shared = sorted(v for v, s in by_video.items() if len(s) > 1)
        if shared:
            log.warning(
                "%s: %d video(s) have clips in both splits (kept as published): %s",
                directory,
                len(shared),
                shared[:10],
            )
    plans = []
    for index, name in enumerate(names):
        record = source.records[name]
        video, topic, _ = parse(name)
        speaker_id = record.get("speaker_id", str(video))
        plans.append(
            _plan_clip(
                seed=config.seed,
                index=index,
                name=name,
                video=video,
                topic=topic,
                speaker_id=speaker_id,
                speaker_key=video if speaker_id == str(video) else zlib.crc32(speaker_id.encode()),
                split=record.get("split") or splits[video],
                emotion=record["emotion"],
                sentiment=record["sentiment"],
                modality_sentiments=[record[f"{m}_sentiment"] for m in MODALITIES],
                text=record["text"],
                config=config,
            )
        )
    return plans, source


# ---------------------------------------------------------------------------------------------------
# Audio rendering

# Formants (F1, F2, F3 in Hz) of Indonesian's five vowels for an adult male tract; scaled per speaker.
_VOWEL_FORMANTS = np.array(
    [[750, 1250, 2600], [320, 2250, 2900], [340, 850, 2400], [480, 1900, 2600], [500, 950, 2500]]
)
_FORMANT_BANDWIDTHS = np.array([90.0, 130.0, 200.0])


@dataclass(frozen=True)
class RenderedAudio:
    signal: np.ndarray  # float32 in [-1, 1], 16 kHz
    envelope: np.ndarray  # syllable envelope in [0, 1] per sample (0 in pauses); drives the mouth
    f0: np.ndarray  # Hz per sample, 0 where unvoiced


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``width`` samples (edges padded), via a running sum."""
    if width <= 1:
        return x
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    running = np.concatenate([[0.0], np.cumsum(padded)])
    return (running[width:] - running[:-width]) / width


def render_audio(
    voice: Prosody, style: SpeakerStyle, seconds: float, rng: np.random.Generator
) -> RenderedAudio:
    """A voiced, speech-like signal: harmonics of an f0 contour, shaped by vowel formants and syllables.

    Syllables follow the voice's rate with short pauses; f0 = speaker base × emotion factor, moved by
    a slow random contour (pitch_range), a drift (pitch_slope) and a tremor; loudness sets the RMS of
    the speech portions. Consonant-like noise bursts mark syllable onsets.
    """
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.zeros(n)
    formants = np.zeros((n, 3))
    accents = np.zeros(n)
    bursts = np.zeros(n)
    rate = voice.syllable_rate * style.speech_rate
    position = rng.uniform(0.02, 0.12)
    while position < seconds - 0.06:
        duration = min(rng.uniform(0.75, 1.25) / rate, seconds - position)
        start, stop = round(position * SAMPLE_RATE), round((position + duration) * SAMPLE_RATE)
        x = np.linspace(0.0, 1.0, stop - start, endpoint=False)
        envelope[start:stop] = np.sin(np.pi * x) ** 0.6 * rng.uniform(0.6, 1.0)
        formants[start:stop] = _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))] * style.formant_scale
        accents[start:stop] = rng.normal(0.0, 0.5 * voice.pitch_range)
        burst = min(stop - start, round(0.025 * SAMPLE_RATE))
        bursts[start : start + burst] = np.linspace(1.0, 0.0, burst) * rng.uniform(0.1, 0.3)
        position += duration
        if rng.random() < voice.pause_rate:
            position += rng.uniform(0.1, 0.25)
    # Formant targets glide between syllables instead of jumping (no clicks).
    formants = np.stack([_smooth(formants[:, i], round(0.03 * SAMPLE_RATE)) for i in range(3)], axis=1)
    formants = np.where(formants > 0, formants, _VOWEL_FORMANTS[0] * style.formant_scale)

    contour = np.zeros(n)
    for _ in range(3):
        contour += np.sin(2 * np.pi * rng.uniform(0.4, 2.5) * t + rng.uniform(0, 2 * np.pi))
    contour = contour / np.sqrt(1.5)  # unit variance of a sum of three sinusoids
    semitones = (
        voice.pitch_range * 0.7 * contour
        + _smooth(accents, round(0.05 * SAMPLE_RATE))
        + voice.pitch_slope * (t / seconds - 0.5)
        + voice.tremor * np.sin(2 * np.pi * 7.0 * t)
    )
    f0 = style.base_f0 * voice.pitch_factor * 2.0 ** (semitones / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = np.zeros(n)
    for k in range(1, int(4000 / f0.min()) + 1):
        frequency = k * f0
        # A sum of resonances approximates the vocal-tract filter at each harmonic's frequency.
        gain = 0.05 + sum(
            1.0 / (1.0 + ((frequency - formants[:, i]) / _FORMANT_BANDWIDTHS[i]) ** 2) for i in range(3)
        )
        voiced += np.where(frequency < 0.45 * SAMPLE_RATE, k**-voice.tilt * gain, 0.0) * np.sin(k * phase)
    noise = rng.normal(0.0, 1.0, n)
    hiss = np.diff(noise, prepend=0.0)  # differenced white noise: a crude high-pass for fricatives
    speech = voiced * envelope + 0.8 * hiss * bursts
    active = envelope > 0.05
    rms = float(np.sqrt(np.mean(speech[active] ** 2))) if active.any() else 1.0
    signal = speech * (voice.loudness / max(rms, 1e-9)) + 0.002 * noise
    signal = np.clip(signal, -0.99, 0.99).astype(np.float32)
    return RenderedAudio(signal=signal, envelope=envelope.astype(np.float32), f0=np.where(active, f0, 0.0))


def write_wav(path: Path, signal: np.ndarray) -> np.ndarray:
    """Write 16 kHz mono int16 PCM; returns the int16 samples written."""
    samples = np.round(np.clip(signal, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(samples.tobytes())
    return samples


# ---------------------------------------------------------------------------------------------------
# Video rendering (numpy only)


@dataclass(frozen=True)
class Pose:
    """Per-frame state of the face: head offset/tilt, eyelid opening (blinks), mouth opening (speech)."""

    dx: float = 0.0
    dy: float = 0.0
    tilt: float = 0.0  # radians
    eye_open: float = 1.0
    speech: float = 0.0


_ZOOM = 1.15


class _Canvas:
    """Float RGB image on frame coordinates [-1, 1]² with anti-aliased shapes in face-local coordinates."""

    def __init__(self, size: int, background: Sequence[float], pose: Pose) -> None:
        centres = (np.arange(size) + 0.5) / size * 2.0 - 1.0
        v, u = np.meshgrid(centres, centres, indexing="ij")
        self.image = np.empty((size, size, 3), np.float32)
        self.image[:] = np.asarray(background, np.float32)
        self.image *= (1.05 - 0.1 * (v[..., None] + 1.0) / 2.0).astype(
            np.float32
        )  # soft vertical light falloff
        cos, sin = math.cos(pose.tilt), math.sin(pose.tilt)
        cx, cy = pose.dx, 0.1 + pose.dy
        # A close-up (zoom > 1) keeps the expressive parts large enough to read at 56x56 pixels.
        self.x = (cos * (u - cx) + sin * (v - cy)) / _ZOOM
        self.y = (-sin * (u - cx) + cos * (v - cy)) / _ZOOM
        self.pixel = 2.0 / size / _ZOOM

    def coverage(self, distance: np.ndarray) -> np.ndarray:
        """Signed distance (negative inside) to a one-pixel anti-aliased coverage in [0, 1]."""
        return np.clip(0.5 - distance / self.pixel, 0.0, 1.0)

    def paint(self, alpha: np.ndarray, colour: Sequence[float], opacity: float = 1.0) -> None:
        if opacity <= 0.0:
            return
        # Blend only inside the shape's bounding box: most shapes cover a small part of the frame.
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            return
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        a = (alpha[box] * opacity)[..., None].astype(np.float32)
        region = self.image[box]
        region += a * (np.asarray(colour, np.float32) - region)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        radius = np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
        return self.coverage((radius - 1.0) * min(rx, ry))

    def segment(self, x0: float, y0: float, x1: float, y1: float, half_width: float) -> np.ndarray:
        dx, dy = x1 - x0, y1 - y0
        h = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        distance = np.hypot(self.x - x0 - h * dx, self.y - y0 - h * dy)
        return self.coverage(distance - half_width)

    def stroke(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        half_width: float,
        colour: Sequence[float],
        opacity: float,
    ) -> None:
        """Paint a line segment; skipped when invisible (most action units are 0 most of the time)."""
        if opacity > 0.0:
            self.paint(self.segment(x0, y0, x1, y1, half_width), colour, opacity)


def draw_face(
    style: SpeakerStyle,
    face: FaceExpression,
    size: int,
    pose: Pose = Pose(),
    background: Sequence[float] = (150.0, 160.0, 170.0),
) -> np.ndarray:
    """One frame (uint8 [size, size, 3]) of the speaker's cartoon face showing ``face``'s action units."""
    c = _Canvas(size, background, pose)
    skin = np.asarray(style.skin)
    shade = skin * 0.7
    rx, ry = style.face_width, style.face_height

    c.paint(c.coverage(np.maximum(np.abs(c.x) - 0.24, 0.45 - c.y)), shade * 1.1)  # neck
    c.paint(c.ellipse(0.0, -0.1, rx * 1.1, ry * 0.98), style.hair)  # hair behind the face
    c.paint(c.ellipse(0.0, 0.0, rx, ry), skin)
    fringe = c.coverage(c.y - (-0.6 * ry + 0.04 * np.cos(c.x * 9.0))) * c.ellipse(0.0, 0.0, rx, ry)
    c.paint(fringe, style.hair)

    eye_y = -0.1
    spacing, eye_w = style.eye_spacing, 0.105 * style.eye_size
    openness = (
        1.0 + 0.7 * face.lid_raise - 0.35 * face.cheek_raise - 0.45 * face.lid_tighten - 0.4 * face.lid_droop
    )
    eye_h = 0.06 * style.eye_size * max(0.06, pose.eye_open * openness)
    brow_raise_any = max(face.brow_inner_raise, face.brow_outer_raise)
    for y_line in (-0.42, -0.48):  # forehead lines when the brows go up (AU1/AU2)
        c.stroke(-0.2, y_line, 0.2, y_line, 0.008, shade, 0.7 * brow_raise_any)
    for side in (-1.0, 1.0):
        ex = side * spacing
        c.paint(c.ellipse(ex, eye_y, eye_w + 0.018, eye_h + 0.018), shade * 0.6)  # lids and lashes
        sclera = c.ellipse(ex, eye_y, eye_w, eye_h)
        c.paint(sclera, (240.0, 238.0, 232.0))
        c.paint(c.ellipse(ex, eye_y, 0.05 * style.eye_size, 0.05 * style.eye_size) * sclera, style.iris)
        c.paint(
            c.ellipse(ex, eye_y, 0.022 * style.eye_size, 0.022 * style.eye_size) * sclera, (10.0, 10.0, 12.0)
        )
        # Brows: AU1 lifts the inner end, AU2 the outer, AU4 pulls both down and the inner ends together.
        inner_x = side * (spacing - 0.085 - 0.045 * face.brow_lower)
        inner_y = eye_y - 0.13 - 0.13 * face.brow_inner_raise + 0.08 * face.brow_lower
        outer_x = side * (spacing + 0.115)
        outer_y = eye_y - 0.12 - 0.12 * face.brow_outer_raise + 0.025 * face.brow_lower
        c.paint(
            c.segment(
                inner_x, inner_y, outer_x, outer_y, style.brow_thickness * (1 + 0.25 * face.brow_lower)
            ),
            style.hair,
        )
        # Cheek raise (AU6): cheeks bunch up and flush under the eyes.
        c.paint(
            c.ellipse(side * (spacing + 0.03), eye_y + 0.2, 0.1, 0.06),
            (235.0, 120.0, 120.0),
            0.45 * face.cheek_raise,
        )
    for side in (-1.0, 1.0):  # frown lines between the brows (AU4)
        c.stroke(side * 0.018, eye_y - 0.1, side * 0.018, eye_y - 0.02, 0.008, shade, 0.8 * face.brow_lower)

    nose_y = 0.15 - 0.035 * face.nose_wrinkle
    c.paint(c.segment(0.0, eye_y + 0.04, 0.0, nose_y - 0.02, 0.012), shade, 0.35)
    for side in (-1.0, 1.0):
        c.paint(
            c.ellipse(side * 0.045, nose_y, 0.028 * (1 + 0.4 * face.nose_wrinkle), 0.017), shade * 0.55, 0.8
        )
    for k in range(3):  # nose wrinkles (AU9)
        y_line = eye_y + 0.05 + 0.035 * k
        c.stroke(-0.065, y_line, 0.065, y_line, 0.009, shade * 0.7, 0.85 * face.nose_wrinkle)

    # Mouth: a lip line whose corners move up (AU12) or down (AU15), stretched (AU20), pressed (AU24),
    # opened by the jaw (AU26) and by speech, with the upper lip lifted by AU10.
    mouth_y = 0.4
    half_width = style.mouth_width * (
        1 + 0.35 * face.lip_stretch + 0.2 * face.lip_corner_pull - 0.2 * face.lip_press - 0.3 * face.jaw_drop
    )
    corner = -0.12 * face.lip_corner_pull + 0.1 * face.lip_corner_depress
    opening = (
        0.012
        + pose.speech * 0.07 * (1 - 0.85 * face.lip_press)
        + 0.2 * face.jaw_drop
        + 0.04 * face.lip_corner_pull
        + 0.03 * face.upper_lip_raise
        + 0.02 * face.lip_stretch
    )
    t = np.clip(c.x / half_width, -1.0, 1.0)
    bulge = 1.0 - t**2
    centre = mouth_y + corner * t**2
    upper = centre - (0.25 * opening + 0.06 * face.upper_lip_raise) * bulge
    lower = centre + 0.75 * opening * bulge**0.8
    within = c.coverage(np.abs(c.x) - half_width)
    interior = c.coverage(np.maximum(upper - c.y, c.y - lower)) * within
    for side in (-1.0, 1.0):  # nasolabial folds deepen in a smile
        c.stroke(
            side * (half_width + 0.09),
            mouth_y - 0.2,
            side * (half_width + 0.01),
            mouth_y + corner,
            0.008,
            shade,
            0.6 * face.lip_corner_pull,
        )
    lip = 0.04 * (1 - 0.7 * face.lip_press) * (0.35 + 0.65 * bulge)
    upper_lip = c.coverage(np.maximum(upper - lip - c.y, c.y - upper)) * within
    lower_lip = c.coverage(np.maximum(lower - c.y, c.y - lower - 1.2 * lip)) * within
    c.paint(upper_lip, style.lips)
    c.paint(lower_lip, style.lips)
    c.paint(interior, (70.0, 22.0, 28.0))
    teeth = interior * c.coverage(c.y - (upper + 0.035))
    c.paint(
        teeth,
        (235.0, 232.0, 220.0),
        min(1.0, 2.0 * (face.lip_corner_pull + face.upper_lip_raise) + face.jaw_drop),
    )
    return np.clip(np.round(c.image), 0, 255).astype(np.uint8)


def render_frames(
    face: FaceExpression,
    style: SpeakerStyle,
    background: Sequence[float],
    envelope: np.ndarray,
    seconds: float,
    fps: int,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """uint8 [T, size, size, 3]: the face with idle head sway, blinks and a mouth that follows speech."""
    frames = max(1, round(seconds * fps))
    times = np.arange(frames) / fps
    amplitude = 0.035 * style.head_motion
    sway = [(rng.uniform(0.2, 0.6), rng.uniform(0, 2 * np.pi)) for _ in range(3)]
    blinks = np.cumsum(rng.exponential(3.0, size=int(seconds / 0.5) + 2)) - rng.uniform(0, 3.0)
    images = np.empty((frames, size, size, 3), np.uint8)
    half = 0.5 / fps
    for i, time_s in enumerate(times):
        lo, hi = round(max(0.0, time_s - half) * SAMPLE_RATE), round((time_s + half) * SAMPLE_RATE)
        speech = float(envelope[lo:hi].mean()) if hi > lo and lo < len(envelope) else 0.0
        blinking = bool(np.any(np.abs(blinks - time_s) < max(0.07, half)))
        pose = Pose(
            dx=amplitude * math.sin(2 * math.pi * sway[0][0] * time_s + sway[0][1]),
            dy=0.5 * amplitude * math.sin(2 * math.pi * sway[1][0] * time_s + sway[1][1]),
            tilt=math.radians(3.0)
            * style.head_motion
            * math.sin(2 * math.pi * sway[2][0] * time_s + sway[2][1]),
            eye_open=0.08 if blinking else 1.0,
            speech=min(1.0, speech),
        )
        images[i] = draw_face(style, face, size, pose, background)
    return images


def _video_codec() -> str:
    if "libx264" not in av.codecs_available:
        raise RuntimeError("this PyAV build has no libx264 encoder; install the av wheel from PyPI")
    return "libx264"


def write_mp4(path: Path, frames: np.ndarray, fps: int, samples: np.ndarray) -> None:
    """H.264 (yuv420p) video + AAC audio of the same int16 samples as the wav, both muxed with PyAV."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(_video_codec(), rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        # Reproducible bytes need one x264 thread (the "threads" option reaches x264;
        # codec_context.thread_count does not) and no macroblock-tree rate control, whose SIMD path
        # gave run-to-run differences on these small frames (measured: 2-3 variants in 25 encodes of
        # the same frames; with mbtree=0, one). Clips already render in parallel processes.
        video.options = {"preset": "veryfast", "crf": "18", "threads": "1", "x264-params": "mbtree=0"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        audio.bit_rate = 48_000
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        pcm = (samples.astype(np.float32) / 32768.0)[None, :]
        audio_frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
        audio_frame.sample_rate = SAMPLE_RATE
        audio_frame.pts = 0
        container.mux(audio.encode(audio_frame))
        container.mux(audio.encode(None))


@dataclass(frozen=True)
class _RenderJob:
    directory: str
    name: str
    index: int
    seed: int
    face: FaceExpression
    voice: Prosody
    style: SpeakerStyle
    background: tuple[float, float, float]
    seconds: float
    fps: int
    size: int


def _render_job(job: _RenderJob) -> str:
    """Render one clip's wav and mp4 (runs in a worker process)."""
    try:
        rng = _rng(job.seed, _STREAM_RENDER, job.index)
        audio = render_audio(job.voice, job.style, job.seconds, rng)
        frames = render_frames(
            job.face, job.style, job.background, audio.envelope, job.seconds, job.fps, job.size, rng
        )
        directory = Path(job.directory)
        samples = write_wav(directory / "audios" / f"{job.name}.wav", audio.signal)
        write_mp4(directory / "videos" / f"{job.name}.mp4", frames, job.fps, samples)
    except Exception as err:
        raise RuntimeError(f"rendering {job.name} failed: {err}") from err
    return job.name


def _start_method() -> str:
    """fork where it is safe (a single-threaded caller), else spawn.

    fork starts workers instantly and does not re-run an unguarded ``__main__`` script; a process
    that already runs threads (Ray, a tqdm monitor, a data loader) may hold locks a forked child
    would inherit locked, so there the workers are spawned instead.
    """
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


def render_clips(
    directory: Path,
    plans: Sequence[ClipPlan],
    config: SynthConfig,
    *,
    workers: int = 2,
    progress: bool = True,
) -> None:
    """Render every planned clip into ``directory``/videos and /audios, ``workers`` processes at a time."""
    (directory / "videos").mkdir(parents=True, exist_ok=True)
    (directory / "audios").mkdir(parents=True, exist_ok=True)
    styles: dict[int, SpeakerStyle] = {}
    jobs = []
    for plan in plans:
        if plan.speaker_key not in styles:
            styles[plan.speaker_key] = speaker_style(config.seed, plan.speaker_key)
        jobs.append(
            _RenderJob(
                directory=str(directory),
                name=plan.name,
                index=plan.index,
                seed=config.seed,
                face=plan.face,
                voice=plan.voice,
                style=styles[plan.speaker_key],
                background=video_background(config.seed, plan.video),
                seconds=float(config.seconds),
                fps=config.fps,
                size=config.size,
            )
        )
    if workers <= 1:
        with _progress_bar(len(jobs), progress) as bar:
            for job in jobs:
                _render_job(job)
                bar.update()
        return
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # Submitting first starts the workers before tqdm starts its monitor thread.
        results = pool.map(_render_job, jobs, chunksize=8)
        with _progress_bar(len(jobs), progress) as bar:
            for _ in results:
                bar.update()


def _progress_bar(total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, desc="render", unit="clip", file=sys.stderr, disable=not enabled)


# ---------------------------------------------------------------------------------------------------
# Annotation files


def _json_text(items: list[dict[str, str]]) -> bytes:
    # Byte-compatible with the published files: indent 2, raw UTF-8, CRLF, no final newline.
    return json.dumps(items, indent=2, ensure_ascii=False).replace("\n", "\r\n").encode("utf-8")


def _seven_class_item(plan: ClipPlan) -> dict[str, str]:
    values = {
        "sample_id": plan.name,
        "text": plan.text,
        "sentiment_label": plan.sentiment,
        "label": plan.emotion,
        "video": f"{plan.name}.mp4",
        "audio": f"{plan.name}.wav",
    }
    return {key: values[key] for key in SEVEN_CLASS_KEYS}


def _three_class_item(plan: ClipPlan) -> dict[str, str]:
    values = {
        "sample_id": plan.name,
        "text": plan.text,
        "audio_label": plan.audio_sentiment,
        "text_label": plan.text_sentiment,
        "video_label": plan.video_sentiment,
        "label": plan.sentiment,
        "video": f"{plan.name}.mp4",
        "audio": f"{plan.name}.wav",
    }
    return {key: values[key] for key in THREE_CLASS_KEYS}


def _annotation_row(plan: ClipPlan) -> list[str]:
    return [
        f"{plan.name}.mp4",
        f"{plan.name}.wav",
        plan.emotion,
        plan.sentiment,
        plan.text_sentiment,
        plan.audio_sentiment,
        plan.video_sentiment,
        plan.text,
        plan.speaker_id,
        plan.aux_keywords,
        plan.aux_face,
        plan.aux_prosody,
    ]


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)  # excel dialect (CRLF, minimal quoting), as the published file
    return buffer.getvalue().encode("utf-8")


def write_annotations(
    directory: Path, plans: Sequence[ClipPlan], source: AnnotationSource | None = None
) -> None:
    """Write Annotations.csv and the four split JSONs of ``plans``.

    With a ``source``, its split JSONs are copied byte for byte and its Annotations.csv keeps every
    original row and column, with speaker_id, aux_keywords (empty: the text is real), aux_face and
    aux_prosody appended (or refreshed, where the source already has them).
    """
    (directory / "7_Class").mkdir(parents=True, exist_ok=True)
    (directory / "3_Class").mkdir(parents=True, exist_ok=True)
    by_split = {split: [p for p in plans if p.split == split] for split in SPLITS}
    for folder, stem, item, copies in (
        ("7_Class", "7_class", _seven_class_item, source.seven_class if source else {}),
        ("3_Class", "3_class", _three_class_item, source.three_class if source else {}),
    ):
        for split in SPLITS:
            target = directory / folder / f"{stem}_{split}.json"
            if split in copies:
                shutil.copyfile(copies[split], target)
            else:
                target.write_bytes(_json_text([item(p) for p in by_split[split]]))
    if source is None or source.csv_path is None:
        rows = [[*ANNOTATION_COLUMNS, *EXTRA_COLUMNS], *(_annotation_row(p) for p in plans)]
    else:
        by_name = {p.name: p for p in plans}
        with source.csv_path.open(encoding="utf-8", newline="") as handle:
            original = list(csv.reader(handle))
        header = list(original[0])
        header += [c for c in EXTRA_COLUMNS if c not in header]
        column = {name: i for i, name in enumerate(header)}
        rows = [header]
        for row in original[1:]:
            if not row:
                continue
            row = row + [""] * (len(header) - len(row))
            plan = by_name[Path(row[column["video_name"]]).stem]
            row[column["speaker_id"]] = row[column["speaker_id"]] or plan.speaker_id
            row[column["aux_face"]] = plan.aux_face
            row[column["aux_prosody"]] = plan.aux_prosody
            rows.append(row)
    (directory / "Annotations.csv").write_bytes(_csv_bytes(rows))


# ---------------------------------------------------------------------------------------------------
# Entry point


def realized_agreement(plans: Sequence[ClipPlan]) -> dict[str, float]:
    """Measured P(modality sentiment == sentiment) per modality and P(all three modalities equal)."""
    n = max(1, len(plans))
    rates = {m: sum(getattr(p, f"{m}_sentiment") == p.sentiment for p in plans) / n for m in MODALITIES}
    rates["all_modalities"] = (
        sum(p.text_sentiment == p.audio_sentiment == p.video_sentiment for p in plans) / n
    )
    return rates


def summarize(plans: Sequence[ClipPlan]) -> dict:
    """Counts per split × emotion / sentiment, videos and speakers (no paths, no timings)."""
    splits = {}
    for split in SPLITS:
        members = [p for p in plans if p.split == split]
        emotions = Counter(p.emotion for p in members)
        sentiments = Counter(p.sentiment for p in members)
        splits[split] = {
            "clips": len(members),
            "videos": len({p.video for p in members}),
            "emotion": {e: emotions.get(e, 0) for e in EMOTIONS},
            "sentiment": {s: sentiments.get(s, 0) for s in SENTIMENTS},
        }
    return {
        "clips": len(plans),
        "videos": len({p.video for p in plans}),
        "speakers": len({p.speaker_id for p in plans}),
        "splits": splits,
        "agreement": {k: round(v, 4) for k, v in realized_agreement(plans).items()},
    }


def synthesize(
    out: Path,
    config: SynthConfig,
    from_annotations: Path | None = None,
    *,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Render an IndoMER-format corpus into ``out`` and return its summary.

    Without ``from_annotations`` the clips, labels and transcripts are drawn from ``config``; with it,
    the annotation set in that directory is kept (names, texts, labels, splits) and only media are
    synthesised. ``out`` must not exist or be empty: everything is written into a temporary sibling
    directory that is renamed to ``out`` at the end, so ``out`` is either complete or absent.

    ``workers`` processes render clips (1: in this process); they are forked when the caller runs a
    single thread, else spawned, and spawning needs the usual ``if __name__ == "__main__":`` guard
    in a calling script. ``progress`` shows a tqdm bar on stderr.

    Summary keys: clips, videos, speakers, splits (per split: clips, videos, emotion and sentiment
    counts), agreement (realised per-modality and all-modality rates), out, annotations, split_files,
    videos_dir, audios_dir, from_annotations, seed, seconds, fps, size, elapsed_s.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"output directory {out} exists and is not empty; choose a new --out or remove it"
        )
    started = time.perf_counter()
    source = None
    if from_annotations is None:
        plans = plan_corpus(config)
    else:
        plans, source = plan_from_annotations(Path(from_annotations), config)
    log.info(
        "synthesizing %d clips (%d videos) into %s with %d worker(s)",
        len(plans),
        len({p.video for p in plans}),
        out,
        workers,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        write_annotations(staging, plans, source)
        render_clips(staging, plans, config, workers=workers, progress=progress)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = summarize(plans)
    summary.update(
        out=str(out),
        annotations=str(out / "Annotations.csv"),
        split_files={
            f"{stem}_{split}": str(out / folder / f"{stem}_{split}.json")
            for folder, stem in (("7_Class", "7_class"), ("3_Class", "3_class"))
            for split in SPLITS
        },
        videos_dir=str(out / "videos"),
        audios_dir=str(out / "audios"),
        from_annotations=None if from_annotations is None else str(from_annotations),
        seed=config.seed,
        seconds=config.seconds,
        fps=config.fps,
        size=config.size,
        elapsed_s=round(time.perf_counter() - started, 2),
    )
    log.info(
        "wrote %s: %d clips (train %d, val %d) in %.1f s",
        out,
        summary["clips"],
        summary["splits"]["train"]["clips"],
        summary["splits"]["val"]["clips"],
        summary["elapsed_s"],
    )
    return summary


__all__ = [
    "ANNOTATION_COLUMNS",
    "EXTRA_COLUMNS",
    "SAMPLE_RATE",
    "SEVEN_CLASS_KEYS",
    "THREE_CLASS_KEYS",
    "TOPICS",
    "AnnotationSource",
    "ClipPlan",
    "FaceExpression",
    "Pose",
    "Prosody",
    "RenderedAudio",
    "SpeakerStyle",
    "SynthConfig",
    "compose_transcript",
    "consensus_probability",
    "describe_face",
    "describe_prosody",
    "draw_face",
    "face_expression",
    "plan_corpus",
    "plan_from_annotations",
    "prosody",
    "read_annotations",
    "realized_agreement",
    "render_audio",
    "render_clips",
    "render_frames",
    "speaker_style",
    "summarize",
    "synthesize",
    "video_background",
    "write_annotations",
    "write_mp4",
    "write_wav",
]
