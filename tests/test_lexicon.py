"""The built-in Indonesian emotion lexicon: contents, matching rules and TSV validation."""

from __future__ import annotations

from importlib import resources

import pytest

from omnimer.data.lexicon import (
    LEXICON_EMOTIONS,
    NO_KEYWORDS,
    find_keywords,
    keyword_emotions,
    keywords_answer,
    load_lexicon,
    parse_lexicon,
)
from omnimer.labels import INDOMER_EMOTION

HEADER = "emotion\tlemma\tforms\n"


def all_forms() -> set[str]:
    return {form for entries in load_lexicon().values() for _, forms in entries for form in forms}


def test_lexicon_covers_every_non_neutral_emotion() -> None:
    lexicon = load_lexicon()
    assert set(lexicon) == set(INDOMER_EMOTION.names) - {"netral"} == set(LEXICON_EMOTIONS)
    for emotion, entries in lexicon.items():
        assert 15 <= len(entries) <= 30, emotion
        for lemma, forms in entries:
            assert lemma in forms
            assert all(form == form.lower().strip() and form for form in forms)


def test_lexicon_is_package_data() -> None:
    assert resources.files("omnimer.data.lexicon").joinpath("id_emotion.tsv").is_file()
    assert load_lexicon() is load_lexicon()  # cached


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Aku sedih.", ["sedih"]),
        ("Sedihnya bukan main", ["sedihnya"]),
        ("Kesedihan itu datang lagi", ["kesedihan"]),
        ("Film ini menyedihkan", ["menyedihkan"]),
        ("Dia dimarahi bosnya, terus memarahi adiknya", ["dimarahi", "memarahi"]),
        ("Rumah itu menakutkan dan ditakuti warga", ["menakutkan", "ditakuti"]),
        ("Sebel, kesel, serem!", ["sebel", "kesel", "serem"]),
        ("Aku nangis terus", ["nangis"]),
        ("Jijik banget lihatnya", ["jijik"]),
        ("kaget aku", ["kaget"]),
    ],
)
def test_inflected_and_colloquial_forms_are_found(text: str, expected: list[str]) -> None:
    assert find_keywords(text) == expected


def test_whole_words_only() -> None:
    # Longer words that merely contain a form, and are not listed themselves, are not matches.
    for word in ("sedihlah", "penakut", "kagetnyaa", "marahnyaa"):
        assert word not in all_forms()
        assert find_keywords(f"Itu {word} sekali.") == []
    # Punctuation and hyphens are boundaries; digits and letters are not.
    assert find_keywords("(sedih)") == ["sedih"]
    assert find_keywords("sedih2") == []
    assert find_keywords("sedih-sedihan") == ["sedih"]


def test_multiword_phrases_and_longest_match() -> None:
    assert find_keywords("Aku lagi patah hati, ya ampun") == ["patah hati", "ya ampun"]
    assert find_keywords("aku patah\n  hati") == ["patah hati"]  # any whitespace run between words
    assert find_keywords("Aku nggak nyangka") == ["nggak nyangka"]
    assert find_keywords("sedih banget rasanya") == ["sedih banget"]  # not "sedih"
    assert find_keywords("riang gembira") == ["riang gembira"]
    assert find_keywords("marah-marah terus") == ["marah-marah"]


def test_case_insensitive_each_once_in_order() -> None:
    assert find_keywords("TAKUT, lalu Kaget, lalu takut lagi, lalu KAGET") == ["takut", "kaget"]
    assert find_keywords("Ya Ampun") == ["ya ampun"]
    assert keyword_emotions("Kaget, lalu sedih, lalu terkejut") == ["surprise", "kesedihan"]


def test_no_keywords() -> None:
    text = "Hari ini aku mau masak nasi goreng buat makan malam."
    assert find_keywords(text) == []
    assert keyword_emotions(text) == []
    assert keywords_answer(text) == NO_KEYWORDS == "tidak ada"
    assert keywords_answer("aku sedih, aku kesal") == "sedih, kesal"
    assert find_keywords("") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("bahagia\tsenang\tsenang\n", "line 2, column 'emotion': 'bahagia' is not"),
        ("netral\tbiasa\tbiasa\n", "'netral' is not a non-neutral IndoMER emotion"),
        ("kesedihan\tsedih\tsedihnya\n", "lemma 'sedih' is not among its forms"),
        ("kesedihan\tsedih\tsedih,,sedihnya\n", "empty form"),
        ("kesedihan\tsedih\n", "expected 3 tab-separated fields, got 2"),
        (
            "kesedihan\tsedih\tsedih\nkemarahan\tmarah\tmarah,sedih\n",
            "'sedih' is already listed under 'kesedihan'",
        ),
    ],
)
def test_tsv_validation_names_the_row(body: str, message: str) -> None:
    with pytest.raises(ValueError, match="lexicon.tsv line") as info:
        parse_lexicon(HEADER + body, source="lexicon.tsv")
    assert message in str(info.value)


def test_tsv_validation_header_and_coverage() -> None:
    with pytest.raises(ValueError, match="header must be"):
        parse_lexicon("emosi\tkata\tbentuk\n", source="x.tsv")
    with pytest.raises(ValueError, match="no entries for emotion"):
        parse_lexicon(HEADER + "kesedihan\tsedih\tsedih\n", source="x.tsv")
    rows = "".join(f"{e}\tkata{i}\tkata{i}\n" for i, e in enumerate(LEXICON_EMOTIONS))
    lexicon = parse_lexicon(HEADER + "# a comment\n\n" + rows, source="x.tsv")
    assert lexicon["surprise"] == [("kata5", ("kata5",))]
