"""Prompt parsing: separators, case, whitespace, duplicates, junk, long and non-Latin text."""

from __future__ import annotations

import pytest

from grounded_sam.text.prompts import model_text, parse_prompt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("window. door", ["window", "door"]),
        ("window, door", ["window", "door"]),
        ("Window.Door.", ["window", "door"]),
        ("WINDOW . door .", ["window", "door"]),
        ("  traffic   light ;\n\tcar  ", ["traffic light", "car"]),
        ("cat. Dog, CAT. dog.", ["cat", "dog"]),
        ("dog? cat! (bird)", ["dog", "cat", "bird"]),
        ("a 2.5 m pole, 1,000 ants", ["a 2.5 m pole", "1,000 ants"]),
        ("t-shirt. o'clock sign", ["t-shirt", "o'clock sign"]),
        (["Traffic Light", " car ", "dog. cat"], ["traffic light", "car", "dog", "cat"]),
        (("cat", "Cat."), ["cat"]),
    ],
)
def test_phrases_are_split_normalised_and_deduplicated(text, expected) -> None:
    assert parse_prompt(text) == expected


@pytest.mark.parametrize("text", ["", "   ", ".", ". , ;", "...!!??", "\n\n", "-- ++ ==", [], ["", " . "]])
def test_prompts_without_words_give_no_phrases(text) -> None:
    assert parse_prompt(text) == []


def test_emoji_and_cjk_are_phrases() -> None:
    assert parse_prompt("🐱 cat. 猫, 信号機。🐶、犬") == ["🐱 cat", "猫", "信号機", "🐶", "犬"]


def test_very_long_prompts() -> None:
    long_phrase = "very " * 400
    assert parse_prompt(long_phrase) == [long_phrase.strip()]
    many = ". ".join(f"thing {i}" for i in range(300))
    assert len(many) > 2000
    phrases = parse_prompt(many)
    assert len(phrases) == 300 and phrases[0] == "thing 0" and phrases[-1] == "thing 299"


@pytest.mark.parametrize("bad", [None, 3, b"cat", ["cat", 3]])
def test_non_text_is_a_type_error(bad) -> None:
    with pytest.raises(TypeError, match="a prompt must be a string"):
        parse_prompt(bad)


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [("Traffic  Light", "traffic light"), ("2.5 m pole", "2 5 m pole"), ("what?", "what"), ("...", "")],
)
def test_model_text_has_no_delimiters(phrase, expected) -> None:
    assert model_text(phrase) == expected
