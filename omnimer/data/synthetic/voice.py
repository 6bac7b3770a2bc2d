"""The voice: a speech-like signal whose pitch, energy and tempo follow a :class:`Prosody`
(:func:`render_audio`), and the 16 kHz mono int16 wav it is written as (:func:`write_wav`).

Used by the clip renderer (:mod:`~omnimer.data.synthetic.render`, ``omnimer synth``).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnimer.data.synthetic.config import SAMPLE_RATE
from omnimer.data.synthetic.expressions import Prosody
from omnimer.data.synthetic.speakers import SpeakerStyle

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
