"""Targets of the three auxiliary perception tasks (DESIGN §4), one string per task and clip.

- ``aux_keywords``: the manifest's column, else the emotion words the built-in Indonesian lexicon
  finds in the transcript ("tidak ada" when none) — plus the text sentiment where annotated;
- ``aux_face``: the manifest's column, plus the video sentiment where annotated;
- ``aux_prosody``: the manifest's column, else the description computed from the audio — plus the
  audio sentiment where annotated.

The parts are joined with "; " so a reader (and the model) sees which part is which, e.g.
``kata emosi: sedih, kecewa; sentimen teks: negatif``. A target with no source at all is null.

Used by ingest (:mod:`omnimer.data.ingest`, ``omnimer ingest``), which writes them to the shards'
``aux_keywords``, ``aux_face`` and ``aux_prosody`` columns (:mod:`omnimer.aux_tasks`).
"""

from __future__ import annotations

from omnimer.data.lexicon import NO_KEYWORDS, find_keywords


def _join(*parts: str | None) -> str | None:
    kept = [p for p in parts if p]
    return "; ".join(kept) if kept else None


def keywords_target(
    text: str | None, column: str | None, text_sentiment: str | None, *, use_lexicon: bool
) -> str | None:
    """Emotion-keyword target; the lexicon is Indonesian, so other languages rely on the column."""
    words = column
    if words is None and use_lexicon and text is not None:
        words = ", ".join(find_keywords(text)) or NO_KEYWORDS
    return _join(
        f"kata emosi: {words}" if words else None,
        f"sentimen teks: {text_sentiment}" if text_sentiment else None,
    )


def face_target(column: str | None, video_sentiment: str | None) -> str | None:
    return _join(
        f"ekspresi wajah: {column}" if column else None,
        f"sentimen wajah: {video_sentiment}" if video_sentiment else None,
    )


def prosody_target(column: str | None, descriptor: str | None, audio_sentiment: str | None) -> str | None:
    prosody = column or descriptor
    return _join(
        f"prosodi: {prosody}" if prosody else None,
        f"sentimen suara: {audio_sentiment}" if audio_sentiment else None,
    )
