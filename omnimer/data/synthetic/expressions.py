"""What each modality shows for an emotion, and its description: the face's action units and the voice's
prosody, with the Indonesian descriptions that are the aux_face and aux_prosody targets.

:func:`face_expression` and :func:`prosody` scale an emotion's prototype by an intensity;
:func:`describe_face` and :func:`describe_prosody` say in words what the rendered clip shows.

Used by the planning (:mod:`~omnimer.data.synthetic.planning`) and the renderers.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnimer.labels import INDOMER_EMOTION

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
