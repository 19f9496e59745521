"""Text made safe for the models: cleaning, splitting to a limit, the script of a piece."""

import pytest

from services.tts.text import clean, script_language, split_to_fit


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello\x90 world", "Hello world"),
        ("a\u200bb", "a b"),
        ("  many   spaces\n\tand lines ", "many spaces and lines"),
        ("e\u0301", "\u00e9"),
        ("\x00\x01\x02", ""),
    ],
)
def test_clean(raw, expected):
    assert clean(raw) == expected


def test_split_prefers_punctuation_then_spaces_then_anything():
    def fits(piece):
        return len(piece) <= 20

    assert split_to_fit(["one two three, four five six seven"], fits) == ["one two three,", "four five six seven"]
    assert all(len(p) <= 20 for p in split_to_fit(["word " * 50], fits))
    pieces = split_to_fit(["x" * 100], fits)
    assert "".join(pieces) == "x" * 100 and all(len(p) <= 20 for p in pieces)


def test_split_keeps_every_character_and_order():
    text = "1234567890" * 40 + ", and then some words that go on and on without any stop at all"
    pieces = split_to_fit([text], lambda p: len(p) <= 37)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_a_single_character_that_never_fits_is_kept_for_the_model_to_judge():
    assert split_to_fit(["ab"], lambda p: False) == ["a", "b"]


@pytest.mark.parametrize(
    ("piece", "expected"),
    [("你好，世界", "zh-cn"), ("こんにちは", "ja"), ("안녕하세요", "ko"), ("Hello 你好", "en"), ("12345", "en")],
)
def test_script_language(piece, expected):
    assert script_language(piece, "en", ["en", "zh-cn", "ja", "ko"]) == expected


def test_script_language_keeps_the_default_when_the_model_lacks_the_language():
    assert script_language("你好", "en", ["en", "es"]) == "en"
