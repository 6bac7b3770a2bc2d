from __future__ import annotations

import numpy as np
import pytest
import torch

from omnimer.data.prosody import describe_dataset, describe_prosody, prosody_features, track_pitch

SR = 16000


def voice(
    f0: float,
    seconds: float = 2.0,
    syllables_per_s: float = 4.0,
    amp: float = 0.2,
    slope: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Harmonic voice with an f0 glide of ``slope`` semitones/s and one energy bump per syllable."""
    t = np.arange(int(seconds * SR)) / SR
    f = f0 * 2 ** (slope * (t - seconds / 2) / 12)
    phase = 2 * np.pi * np.cumsum(f) / SR
    signal = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(np.pi * syllables_per_s * t), 0, 1) ** 2  # sin(pi r t) has r/2 bumps per second
    noise = 0.002 * np.random.default_rng(seed).standard_normal(t.size)
    return (amp * signal * envelope + noise).astype(np.float32)


@pytest.mark.parametrize("f0", [90.0, 150.0, 220.0, 380.0])
def test_pitch_tracker_accuracy(f0):
    pitch, periodicity = track_pitch(torch.from_numpy(voice(f0, syllables_per_s=0.5)), SR)
    voiced = periodicity > 0.5
    assert voiced.float().mean() > 0.5
    assert float(pitch[voiced].median()) == pytest.approx(f0, rel=0.03)


def test_features_follow_the_voice():
    low = prosody_features(voice(110, syllables_per_s=4, amp=0.05))
    high = prosody_features(voice(260, syllables_per_s=10, amp=0.4))
    assert low["f0_mean"] == pytest.approx(110, rel=0.05) and high["f0_mean"] == pytest.approx(260, rel=0.05)
    quiet, loud = prosody_features(voice(150, amp=0.05)), prosody_features(voice(150, amp=0.4))
    assert loud["energy_mean"] - quiet["energy_mean"] == pytest.approx(20 * np.log10(8), abs=1.0)
    assert low["speaking_rate"] == pytest.approx(2.0, abs=0.6) and high["speaking_rate"] == pytest.approx(
        5.0, abs=1.0
    )
    rising = prosody_features(voice(180, slope=4.0, syllables_per_s=1))
    falling = prosody_features(voice(180, slope=-4.0, syllables_per_s=1))
    assert rising["f0_slope"] == pytest.approx(4.0, abs=1.0) and falling["f0_slope"] == pytest.approx(
        -4.0, abs=1.0
    )
    assert 0.2 < low["voiced_fraction"] < 0.9


def test_silence_and_noise_are_unvoiced():
    assert prosody_features(np.zeros(SR, np.float32))["voiced_fraction"] == 0.0
    noise = prosody_features((0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32))
    assert noise["voiced_fraction"] < 0.05 and noise["f0_mean"] == 0.0


def test_description_is_relative_to_the_speaker():
    # Speaker "m" speaks around 110 Hz, speaker "f" around 230 Hz; each one's highest clip is "nada tinggi".
    clips = []
    for speaker, base in (("m", 110.0), ("f", 230.0)):
        for i, factor in enumerate((0.85, 1.0, 1.15)):
            clips.append(
                (f"{speaker}{i}", speaker, prosody_features(voice(base * factor, syllables_per_s=6)))
            )
    described = describe_dataset(clips)
    assert described["m2"].startswith("nada tinggi") and described["f2"].startswith("nada tinggi")
    assert described["m0"].startswith("nada rendah") and described["f0"].startswith("nada rendah")
    # Without speaker ids the 110 Hz speaker's highest clip is low against the whole dataset.
    anonymous = describe_dataset([(c, None, f) for c, _, f in clips])
    assert anonymous["m2"].startswith("nada rendah")
    # Equal loudness and tempo everywhere: tiny numerical spreads must not produce "kuat"/"lemah".
    assert all(", energi sedang, tempo sedang" in d for d in described.values())


def test_describe_prosody_words():
    z = {"f0_mean": 1.0, "f0_std": 1.0, "energy_mean": 1.0, "speaking_rate": 1.0}
    assert describe_prosody(z) == "nada tinggi dan bervariasi, energi kuat, tempo cepat"
    z = {"f0_mean": -1.0, "f0_std": -1.0, "energy_mean": 0.0, "speaking_rate": -1.0}
    assert describe_prosody(z) == "nada rendah dan datar, energi sedang, tempo lambat"
