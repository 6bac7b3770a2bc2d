"""The face: a speaker's cartoon face showing a :class:`FaceExpression`'s action units (:func:`draw_face`),
and the frames of a clip with idle head sway, blinks and a mouth that follows the speech
(:func:`render_frames`). numpy only.

Used by the clip renderer (:mod:`~omnimer.data.synthetic.render`, ``omnimer synth``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from omnimer.data.synthetic.config import SAMPLE_RATE
from omnimer.data.synthetic.expressions import FaceExpression
from omnimer.data.synthetic.speakers import SpeakerStyle


@dataclass(frozen=True)
class Pose:
    """Per-frame state of the face: head offset/tilt, eyelid opening (blinks), mouth opening (speech)."""

    dx: float = 0.0
    dy: float = 0.0
    tilt: float = 0.0  # radians
    eye_open: float = 1.0
    speech: float = 0.0


ZOOM = 1.15  # close-up factor: face-local coordinates are frame coordinates / ZOOM


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
        self.x = (cos * (u - cx) + sin * (v - cy)) / ZOOM
        self.y = (-sin * (u - cx) + cos * (v - cy)) / ZOOM
        self.pixel = 2.0 / size / ZOOM

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


_EYE_Y = -0.1  # face-local heights of the eyes and the mouth
_MOUTH_Y = 0.4


def draw_face(
    style: SpeakerStyle,
    face: FaceExpression,
    size: int,
    pose: Pose = Pose(),
    background: Sequence[float] = (150.0, 160.0, 170.0),
) -> np.ndarray:
    """One frame (uint8 [size, size, 3]) of the speaker's cartoon face showing ``face``'s action units.

    Painted back to front: head, eyes and brows, nose, mouth.
    """
    c = _Canvas(size, background, pose)
    skin = np.asarray(style.skin)
    shade = skin * 0.7
    _draw_head(c, style, skin, shade)
    _draw_eyes_and_brows(c, style, face, pose, shade)
    _draw_nose(c, face, shade)
    _draw_mouth(c, style, face, pose, shade)
    return np.clip(np.round(c.image), 0, 255).astype(np.uint8)


def _draw_head(c: _Canvas, style: SpeakerStyle, skin: np.ndarray, shade: np.ndarray) -> None:
    """Neck, hair behind the face, the face and the fringe."""
    rx, ry = style.face_width, style.face_height
    c.paint(c.coverage(np.maximum(np.abs(c.x) - 0.24, 0.45 - c.y)), shade * 1.1)  # neck
    c.paint(c.ellipse(0.0, -0.1, rx * 1.1, ry * 0.98), style.hair)  # hair behind the face
    c.paint(c.ellipse(0.0, 0.0, rx, ry), skin)
    fringe = c.coverage(c.y - (-0.6 * ry + 0.04 * np.cos(c.x * 9.0))) * c.ellipse(0.0, 0.0, rx, ry)
    c.paint(fringe, style.hair)


def _draw_eyes_and_brows(
    c: _Canvas, style: SpeakerStyle, face: FaceExpression, pose: Pose, shade: np.ndarray
) -> None:
    """Forehead lines, eyes (opened by AU5, narrowed by AU6/AU7/lid droop, blinking), brows, cheeks."""
    eye_y = _EYE_Y
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


def _draw_nose(c: _Canvas, face: FaceExpression, shade: np.ndarray) -> None:
    """Bridge and nostrils, lifted and widened by the nose wrinkle (AU9), and its wrinkle lines."""
    eye_y = _EYE_Y
    nose_y = 0.15 - 0.035 * face.nose_wrinkle
    c.paint(c.segment(0.0, eye_y + 0.04, 0.0, nose_y - 0.02, 0.012), shade, 0.35)
    for side in (-1.0, 1.0):
        c.paint(
            c.ellipse(side * 0.045, nose_y, 0.028 * (1 + 0.4 * face.nose_wrinkle), 0.017), shade * 0.55, 0.8
        )
    for k in range(3):  # nose wrinkles (AU9)
        y_line = eye_y + 0.05 + 0.035 * k
        c.stroke(-0.065, y_line, 0.065, y_line, 0.009, shade * 0.7, 0.85 * face.nose_wrinkle)


def _draw_mouth(c: _Canvas, style: SpeakerStyle, face: FaceExpression, pose: Pose, shade: np.ndarray) -> None:
    """A lip line whose corners move up (AU12) or down (AU15), stretched (AU20), pressed (AU24), opened
    by the jaw (AU26) and by speech, with the upper lip lifted by AU10; nasolabial folds and teeth."""
    mouth_y = _MOUTH_Y
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
