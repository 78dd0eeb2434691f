"""Latin skeletons: look-alike spellings of a Latin text become that text; genuine non-Latin text stays."""

from __future__ import annotations

import pytest

from bench.variants import homoglyph
from service.models.confusables import CONFUSABLES, latin_skeleton


@pytest.mark.parametrize(
    ("sent", "seen"),
    [
        ("grеаt gаmе", "great game"),  # Cyrillic е, а
        ("ΑΙ is gοοd", "AI is good"),  # Greek capitals, omicron
        ("ｇｏｏｄ ｄａｙ!", "good day!"),  # fullwidth (NFKC)
        ("sο", "so"),  # a word wholly of look-alikes beside ASCII words
        ("ɡood", "good"),  # Latin script g, which NFKC keeps
    ],
)
def test_look_alike_spellings_fold_to_the_latin_text(sent: str, seen: str) -> None:
    assert latin_skeleton(sent) == seen


@pytest.mark.parametrize(
    "text", ["привет, как дела", "καλημέρα κόσμε", "naïve café", "日本語のテキスト", "ok 🙂"]
)
def test_words_with_other_letters_keep_their_spelling(text: str) -> None:
    assert latin_skeleton(text) == text


def test_every_homoglyph_variant_of_the_bench_is_its_original() -> None:
    texts = ["I love this phone so much", "worst service ever, never again", "cars are expensive"]
    for text in texts:
        made = homoglyph(text, 31)
        assert len(set(made)) == 31 and text not in made
        assert {latin_skeleton(v) for v in made} == {text}


def test_the_table_maps_single_non_ascii_letters_to_ascii_letters() -> None:
    for glyph, letter in CONFUSABLES.items():
        assert len(glyph) == 1 and not glyph.isascii() and glyph.isalpha(), glyph
        assert len(letter) == 1 and letter.isascii() and letter.isalpha(), (glyph, letter)
