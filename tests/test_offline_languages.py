# ruff: noqa: RUF001  (texts in other languages and scripts on purpose)
"""The offline analyzer beyond English prose: other languages, verse, dash dialogue."""

from __future__ import annotations

import pytest

from imaginize.analysis.offline.text import narrated_tokens, quoted_shares, split_text


def _speech(text: str) -> list[tuple[str, float]]:
    sentences = split_text(text)
    return [(s.text, q) for s, q in zip(sentences, quoted_shares(sentences), strict=True)]


def _narration(text: str) -> list[str]:
    sentences = split_text(text)
    return [
        t.text
        for s, flags in zip(sentences, narrated_tokens(sentences), strict=True)
        for t, narrated in zip(s.tokens, flags, strict=True)
        if narrated
    ]


@pytest.mark.parametrize(
    ("text", "narration"),
    [
        ("—¿Adónde vas? —preguntó ella.", ["preguntó", "ella"]),
        ("—Al puerto —dijo él—. Vuelvo antes de la noche.", ["dijo", "él"]),
        ("— В лес, за дровами, — ответил Иван. — Скоро вернусь.", ["ответил", "Иван"]),
        ("— Bonjour, dit-il en ôtant son chapeau.", []),
        (
            "»Was ist mit mir geschehen?« dachte er. Es war kein Traum.",
            ["dachte", "er", "Es", "war", "kein", "Traum"],
        ),
        (
            "„Komm sofort nach Hause“, sagte sie. Dann ging sie.",
            ["sagte", "sie", "Dann", "ging", "sie"],
        ),
        ("« Il faudra la repeindre », pensa Jeanne.", ["pensa", "Jeanne"]),
    ],
)
def test_dash_dialogue_and_guillemets_are_speech(text: str, narration: list[str]) -> None:
    assert _narration(text) == narration
    # The sentence that opens the paragraph is mostly speech.
    assert _speech(text)[0][1] > 0.5


def test_dashes_in_narration_are_not_speech() -> None:
    """A dash inside a paragraph that does not open with one is punctuation."""
    text = "Samsa war – wie immer – müde. Er sah zum Fenster — es regnete."
    assert all(q == 0 for _, q in _speech(text))
    assert "immer" in _narration(text) and "regnete" in _narration(text)


def test_an_apostrophe_does_not_end_a_quotation() -> None:
    text = "“The dogs’ bowls are empty,” said Ann."
    assert _narration(text) == ["said", "Ann"]
