"""Turning what users type into a clean list of phrases, and a phrase into the text a detector reads.

``"Window.Door."``, ``"window, door"`` and ``["window", " DOOR "]`` all become ``["window", "door"]``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Phrase separators: ';', '?', '!', line breaks, their CJK full-width forms, and '.' or ',' unless between
# two digits ("2.5 m", "1,000").
_SEPARATOR = re.compile(r"[;?!\n\r。．，、；？！]|(?<!\d)[.,]|[.,](?!\d)")
# Characters Grounding DINO itself treats as phrase boundaries inside its text encoder.
_MODEL_DELIMITER = re.compile(r"[.?]")
_WHITESPACE = re.compile(r"\s+")


def _is_word_char(char: str) -> bool:
    """Letters, digits and pictographs (emoji) carry meaning; punctuation and math symbols do not."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "So"


def _is_edge_junk(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] == "P"


def _normalise(piece: str) -> str:
    """Lower case, single spaces, no punctuation at either end; ``""`` if nothing meaningful is left."""
    text = _WHITESPACE.sub(" ", piece).strip().lower()
    start, end = 0, len(text)
    while start < end and _is_edge_junk(text[start]):
        start += 1
    while end > start and _is_edge_junk(text[end - 1]):
        end -= 1
    text = text[start:end]
    return text if any(_is_word_char(char) for char in text) else ""


def parse_prompt(text: str | Sequence[str]) -> list[str]:
    """Split a prompt into distinct, normalised phrases, in the order they first appear.

    Phrases are separated by ``.``, ``,``, ``;``, ``?``, ``!``, line breaks or the CJK ``。，、；？！``
    (a ``.`` or ``,`` between two digits is kept), lower-cased, with runs of whitespace collapsed and
    punctuation trimmed from both ends. Pieces with no letter, digit or pictograph are dropped, as are
    repeats. A sequence is parsed item by item and the results joined.

    Example:
        >>> parse_prompt("Window.Door.  window, a 2.5 m pole;;")
        ['window', 'door', 'a 2.5 m pole']

    Raises:
        TypeError: ``text`` is neither a string nor a sequence of strings.
    """
    if isinstance(text, str):
        pieces = _SEPARATOR.split(text)
    elif isinstance(text, Sequence) and all(isinstance(item, str) for item in text):
        pieces = [piece for item in text for piece in _SEPARATOR.split(item)]
    else:
        raise TypeError(
            f"a prompt must be a string such as 'cat. dog' or a list of strings, got {type(text).__name__}"
        )
    phrases: dict[str, None] = {}
    for piece in pieces:
        phrase = _normalise(piece)
        if phrase:
            phrases.setdefault(phrase, None)
    return list(phrases)


def model_text(phrase: str) -> str:
    """The text a Grounding DINO prompt uses for ``phrase``: normalised, with no inner ``.`` or ``?``.

    Grounding DINO splits its prompt at ``.`` and ``?`` tokens, so those become spaces here
    (``"2.5 m pole"`` → ``"2 5 m pole"``); the caller keeps the original phrase as the label.
    Returns ``""`` when nothing meaningful is left.
    """
    return _normalise(_MODEL_DELIMITER.sub(" ", phrase))


def check_phrases(phrases: str | Sequence[str]) -> list[str]:
    """The phrases a text stage prompts with: a string is split by :func:`parse_prompt`; a list is used as
    given (results index it), each entry checked to be a string with something to look for."""
    if isinstance(phrases, str):
        return parse_prompt(phrases)
    listed = list(phrases)
    for index, phrase in enumerate(listed):
        if not isinstance(phrase, str):
            raise TypeError(f"phrase {index} must be a string, got {type(phrase).__name__}")
        if not model_text(phrase):
            raise ValueError(
                f"phrase {index} ({phrase!r}) has nothing to look for; remove it, or pass the whole prompt "
                "as one string (or through parse_prompt) to drop such pieces"
            )
    return listed
