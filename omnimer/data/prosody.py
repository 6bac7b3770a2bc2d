"""Prosody features of 16 kHz mono speech and their Indonesian description.

Features (all float32, in the ``prosody`` struct of a shard row):

- ``f0_mean`` (Hz), ``f0_std`` (semitones) and ``f0_slope`` (semitones/s) over voiced frames, from a
  normalised autocorrelation pitch tracker (torch FFTs; ``torchaudio.functional.detect_pitch_frequency``
  halves or doubles the pitch too often on short clips to describe it);
- ``energy_mean``, ``energy_std`` (dB of frame RMS over voiced frames);
- ``speaking_rate``: syllable nuclei per second (energy peaks in voiced stretches separated by a dip,
  after de Jong & Wempe 2009);
- ``voiced_fraction``: share of 10 ms frames that are voiced (energetic and periodic).

The description ("nada tinggi dan bervariasi, energi kuat, tempo cepat") is built from z-scores
against the speaker's own clips when the speaker has enough clips, else against the whole dataset,
because a pitch that is high for one speaker is low for another.

Used by ingest (:mod:`omnimer.data.ingest`, ``omnimer ingest``): the features go to the shards'
``prosody`` column, the description into the prosody task's target.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch

PROSODY_FIELDS = (
    "f0_mean",
    "f0_std",
    "f0_slope",
    "energy_mean",
    "energy_std",
    "speaking_rate",
    "voiced_fraction",
)
HOP_SECONDS = 0.01
WINDOW_SECONDS = 0.025
F0_MIN, F0_MAX = 60.0, 500.0
SILENCE_DB = -50.0  # frames quieter than this (dBFS) are never voiced
DYNAMIC_RANGE_DB = 25.0  # frames more than this below the clip's loud frames are treated as silence
MIN_SPEAKER_CLIPS = 3
# Smallest spread used as a z-score denominator: differences below these are not audible prosody
# (Hz, semitones, dB, syllables/s), so a speaker whose clips barely differ is described as "sedang".
MIN_SPREAD = {
    "f0_mean": 3.0,
    "f0_std": 0.3,
    "energy_mean": 1.5,
    "speaking_rate": 0.3,
}  # fewer clips than this: normalise against the dataset instead of the speaker
Z_THRESHOLD = 0.5


def _frames(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    win = int(WINDOW_SECONDS * sample_rate)
    hop = int(HOP_SECONDS * sample_rate)
    if audio.numel() < win:
        audio = torch.nn.functional.pad(audio, (0, win - audio.numel()))
    return audio.unfold(0, win, hop)


PITCH_WINDOW_SECONDS = 0.04  # two periods of the lowest pitch (60 Hz)
PERIODICITY = 0.5  # normalised autocorrelation peak above which a frame counts as periodic


def track_pitch(audio: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per 10 ms frame: (f0 in Hz, periodicity in [0, 1]) by normalised autocorrelation.

    Takes the shortest lag whose peak reaches 90% of the best one, which avoids the classic
    octave-down error of picking a multiple of the true period.
    """
    win = int(PITCH_WINDOW_SECONDS * sample_rate)
    hop = int(HOP_SECONDS * sample_rate)
    if audio.numel() < win:
        audio = torch.nn.functional.pad(audio, (0, win - audio.numel()))
    frames = audio.unfold(0, win, hop)
    frames = (frames - frames.mean(dim=1, keepdim=True)) * torch.hann_window(win, periodic=False)
    spectrum = torch.fft.rfft(frames, n=2 * win)
    acf = torch.fft.irfft(spectrum.abs().pow(2), n=2 * win)[:, :win]
    lag_weight = torch.hann_window(win, periodic=False)
    window_acf = torch.fft.irfft(torch.fft.rfft(lag_weight, n=2 * win).abs().pow(2), n=2 * win)[:win]
    acf = acf / window_acf.clamp_min(1e-9)  # undo the window's own taper of the correlation
    acf = acf / acf[:, :1].clamp_min(1e-12)
    lo, hi = int(sample_rate / F0_MAX), int(sample_rate / F0_MIN)
    band = acf[:, lo : hi + 1]
    best = band.max(dim=1).values
    good = band >= 0.9 * best[:, None]
    is_peak = torch.zeros_like(good)
    is_peak[:, 1:-1] = (band[:, 1:-1] >= band[:, :-2]) & (band[:, 1:-1] >= band[:, 2:])
    candidates = good & is_peak
    first = torch.where(candidates.any(dim=1), candidates.float().argmax(dim=1), band.argmax(dim=1))
    lag = (first + lo).float()
    # Parabolic interpolation around the chosen lag for sub-sample precision.
    idx = first.clamp(1, band.shape[1] - 2)
    y0, y1, y2 = (band.gather(1, (idx + d)[:, None])[:, 0] for d in (-1, 0, 1))
    denom = y0 - 2 * y1 + y2
    shift = torch.where(denom.abs() > 1e-9, 0.5 * (y0 - y2) / denom, torch.zeros_like(denom)).clamp(-1, 1)
    lag = torch.where(first == idx, lag + shift, lag)
    return sample_rate / lag, best.clamp(0, 1)


def prosody_features(audio: np.ndarray, sample_rate: int = 16000) -> dict[str, float]:
    """Compute the prosody features of one clip (see module docstring)."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    frames = _frames(x, sample_rate)
    rms = frames.pow(2).mean(dim=1).clamp_min(1e-10).sqrt()
    energy_db = 20 * torch.log10(rms)
    voiced = energy_db > max(float(torch.quantile(energy_db, 0.95)) - DYNAMIC_RANGE_DB, SILENCE_DB)

    pitch, periodicity = track_pitch(x, sample_rate)
    n = min(len(pitch), len(voiced))
    voiced = voiced[:n] & (periodicity[:n] > PERIODICITY)
    energy_db = energy_db[:n]
    f0 = pitch[:n][voiced]
    if f0.numel() >= 2:
        semitones = 12 * torch.log2(f0 / f0.median())
        times = torch.nonzero(voiced).flatten().float() * HOP_SECONDS
        f0_mean = float(f0.mean())
        f0_std = float(semitones.std())
        t = times - times.mean()
        denom = float((t * t).sum())
        f0_slope = float((t * (semitones - semitones.mean())).sum()) / denom if denom > 0 else 0.0
    else:
        f0_mean = f0_std = f0_slope = 0.0

    voiced_energy = energy_db[voiced]
    energy_mean = float(voiced_energy.mean()) if voiced_energy.numel() else float(energy_db.mean())
    energy_std = float(voiced_energy.std()) if voiced_energy.numel() >= 2 else 0.0
    duration = x.numel() / sample_rate
    return {
        "f0_mean": f0_mean,
        "f0_std": f0_std,
        "f0_slope": f0_slope,
        "energy_mean": energy_mean,
        "energy_std": energy_std,
        "speaking_rate": _syllable_nuclei(energy_db, voiced) / max(duration, 1e-6),
        "voiced_fraction": float(voiced.float().mean()),
    }


def _syllable_nuclei(energy_db: torch.Tensor, voiced: torch.Tensor, min_dip_db: float = 2.0) -> int:
    """Count energy peaks in voiced frames with a dip of at least ``min_dip_db`` between neighbours."""
    kernel = torch.ones(1, 1, 5) / 5
    smooth = torch.nn.functional.conv1d(energy_db[None, None], kernel, padding=2)[0, 0].numpy()
    voiced_np = voiced.numpy()
    peaks = [
        i
        for i in range(1, len(smooth) - 1)
        if voiced_np[i] and smooth[i] >= smooth[i - 1] and smooth[i] > smooth[i + 1]
    ]
    count, last = 0, None
    for i in peaks:
        if last is None or smooth[last : i + 1].min() <= min(smooth[last], smooth[i]) - min_dip_db:
            count += 1
            last = i
        elif smooth[i] > smooth[last]:
            last = i
    return count


def _level(z: float, low: str, mid: str, high: str) -> str:
    if z < -Z_THRESHOLD:
        return low
    if z > Z_THRESHOLD:
        return high
    return mid


def describe_prosody(z: dict[str, float]) -> str:
    """Indonesian words for z-scored prosody: ``nada tinggi dan bervariasi, energi kuat, tempo cepat``."""
    pitch = _level(z["f0_mean"], "nada rendah", "nada sedang", "nada tinggi")
    variability = _level(z["f0_std"], "datar", "agak bervariasi", "bervariasi")
    energy = _level(z["energy_mean"], "energi lemah", "energi sedang", "energi kuat")
    tempo = _level(z["speaking_rate"], "tempo lambat", "tempo sedang", "tempo cepat")
    return f"{pitch} dan {variability}, {energy}, {tempo}"


def _stats(values: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    out = {}
    for key in ("f0_mean", "f0_std", "energy_mean", "speaking_rate"):
        arr = np.array([v[key] for v in values], dtype=np.float64)
        out[key] = (float(arr.mean()), float(arr.std()))
    return out


def describe_dataset(clips: list[tuple[str, str | None, dict[str, float]]]) -> dict[str, str]:
    """Descriptions for ``(clip_id, speaker_id, features)`` triples, z-scored per speaker where possible.

    Spreads are floored at :data:`MIN_SPREAD`, so near-identical clips are all "sedang".
    """
    if not clips:
        return {}
    global_stats = _stats([f for _, _, f in clips])
    by_speaker: dict[str, list[dict[str, float]]] = defaultdict(list)
    for _, speaker, feats in clips:
        if speaker is not None:
            by_speaker[speaker].append(feats)
    speaker_stats = {s: _stats(v) for s, v in by_speaker.items() if len(v) >= MIN_SPEAKER_CLIPS}
    out = {}
    for clip_id, speaker, feats in clips:
        stats = speaker_stats.get(speaker, global_stats) if speaker is not None else global_stats
        z = {}
        for key, (mean, std) in stats.items():
            z[key] = (feats[key] - mean) / max(std, MIN_SPREAD[key]) if math.isfinite(feats[key]) else 0.0
        out[clip_id] = describe_prosody(z)
    return out
