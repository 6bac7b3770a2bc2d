"""Built-in Indonesian emotion lexicon: the default target source of the ``text`` aux task (DESIGN §4).

``id_emotion.tsv`` (package data) lists, for every IndoMER emotion except ``netral``, common emotion
words with their inflected and colloquial forms (``sedih``: sedih, sedihnya, kesedihan, bersedih,
menyedihkan; ``kesal``: kesal, kesel, ngeselin, ...) and multiword phrases (``patah hati``, ``ya
ampun``). Columns: ``emotion``, ``lemma``, ``forms`` (comma-separated, the lemma included).

Usage::

    from omnimer.data.lexicon import find_keywords, NO_KEYWORDS
    find_keywords("Aku sedih banget, jujur kesel juga")   # ['sedih banget', 'kesel']
    ", ".join(find_keywords(text)) or NO_KEYWORDS         # the text task's answer

Matching is case-insensitive on whole words (Unicode word boundaries), multiword forms match across
any run of whitespace, and at each position the longest listed form wins.

Used by ingest's text targets (:mod:`omnimer.data.aux_targets`) and the synthetic corpus's
transcripts.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from omnimer.labels import INDOMER_EMOTION

LEXICON_FILE = "id_emotion.tsv"
COLUMNS = ("emotion", "lemma", "forms")
# The text task's answer for a transcript without emotion words (DESIGN §4).
NO_KEYWORDS = "tidak ada"
# Emotions the lexicon covers: every IndoMER emotion except the neutral class.
LEXICON_EMOTIONS: tuple[str, ...] = tuple(e for e in INDOMER_EMOTION.names if e != "netral")

Lexicon = dict[str, list[tuple[str, tuple[str, ...]]]]


def _normalize(form: str) -> str:
    """Lowercase and collapse whitespace, so that forms and matches compare equal."""
    return " ".join(form.lower().split())


def parse_lexicon(text: str, source: str = LEXICON_FILE) -> Lexicon:
    """Parse and validate lexicon TSV text into ``{emotion: [(lemma, forms), ...]}``.

    Every problem raises ``ValueError`` naming ``source``, the 1-based line and the column: a wrong
    header, a wrong number of fields, an emotion outside IndoMER's non-neutral emotions, an empty
    lemma or form, a lemma missing from its own forms, or a form listed under two emotions (which
    would make ``keyword_emotions`` ambiguous). Blank lines and lines starting with ``#`` are skipped.
    """
    lexicon: Lexicon = {emotion: [] for emotion in LEXICON_EMOTIONS}
    owner: dict[str, tuple[str, int]] = {}  # form -> (emotion, line) of its first listing
    header_seen = False
    for line_no, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{source} line {line_no}"
        if not header_seen:
            if tuple(f.strip() for f in fields) != COLUMNS:
                raise ValueError(f"{where}: header must be {'<TAB>'.join(COLUMNS)!r}, got {line!r}")
            header_seen = True
            continue
        if len(fields) != len(COLUMNS):
            raise ValueError(
                f"{where}: expected {len(COLUMNS)} tab-separated fields, got {len(fields)}: {line!r}"
            )
        emotion, lemma, forms_field = (f.strip() for f in fields)
        if emotion not in lexicon:
            raise ValueError(
                f"{where}, column 'emotion': {emotion!r} is not a non-neutral IndoMER emotion "
                f"(expected one of {', '.join(LEXICON_EMOTIONS)})"
            )
        lemma = _normalize(lemma)
        if not lemma:
            raise ValueError(f"{where}, column 'lemma': empty lemma")
        forms: list[str] = []
        for form in (_normalize(f) for f in forms_field.split(",")):
            if not form:
                raise ValueError(f"{where}, column 'forms': empty form in {forms_field!r}")
            if form in owner and owner[form][0] != emotion:
                other, other_line = owner[form]
                raise ValueError(
                    f"{where}, column 'forms': {form!r} is already listed under {other!r} (line {other_line})"
                )
            owner.setdefault(form, (emotion, line_no))
            if form not in forms:
                forms.append(form)
        if lemma not in forms:
            raise ValueError(
                f"{where}, column 'forms': lemma {lemma!r} is not among its forms {forms_field!r}"
            )
        lexicon[emotion].append((lemma, tuple(forms)))
    if not header_seen:
        raise ValueError(f"{source}: empty lexicon (no header)")
    missing = [e for e, entries in lexicon.items() if not entries]
    if missing:
        raise ValueError(f"{source}: no entries for emotion(s) {', '.join(missing)}")
    return lexicon


@functools.cache
def load_lexicon() -> Lexicon:
    """The built-in lexicon, read once from package data and validated (see :func:`parse_lexicon`)."""
    text = resources.files(__name__).joinpath(LEXICON_FILE).read_text(encoding="utf-8")
    return parse_lexicon(text, source=LEXICON_FILE)


@functools.cache
def _form_emotion() -> dict[str, str]:
    return {
        form: emotion for emotion, entries in load_lexicon().items() for _, forms in entries for form in forms
    }


@functools.cache
def _pattern() -> re.Pattern[str]:
    # Longest forms first: at a given position the regex engine takes the first alternative that
    # matches, so "patah hati" beats "patah" and "sedih banget" beats "sedih". Lookarounds on \w
    # (Unicode-aware for str patterns) give whole-word matching without \b's trouble at hyphens.
    forms = sorted(_form_emotion(), key=lambda f: (-len(f), f))
    alternatives = [r"\s+".join(re.escape(word) for word in form.split()) for form in forms]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def find_keywords(text: str) -> list[str]:
    """Lexicon forms occurring in ``text`` as whole words: lowercased, each once, in order of appearance."""
    found: list[str] = []
    for match in _pattern().finditer(text):
        form = _normalize(match.group(0))
        if form not in found:
            found.append(form)
    return found


def keyword_emotions(text: str) -> list[str]:
    """The emotions of the keywords found in ``text``, each once, in order of first appearance."""
    table = _form_emotion()
    emotions: list[str] = []
    for form in find_keywords(text):
        if table[form] not in emotions:
            emotions.append(table[form])
    return emotions


def keywords_answer(text: str) -> str:
    """The text task's answer for ``text``: its keywords joined by ", ", or :data:`NO_KEYWORDS`."""
    return ", ".join(find_keywords(text)) or NO_KEYWORDS


__all__ = [
    "LEXICON_EMOTIONS",
    "NO_KEYWORDS",
    "Lexicon",
    "find_keywords",
    "keyword_emotions",
    "keywords_answer",
    "load_lexicon",
    "parse_lexicon",
]
