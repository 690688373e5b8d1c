# ruff: noqa: RUF001  (texts in other languages and scripts on purpose)
"""The offline analyzer beyond English prose: other languages, verse, dash dialogue."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imaginize.analysis.offline import languages
from imaginize.analysis.offline import paragraphs as paragraphs_module
from imaginize.analysis.offline.analyzer import OfflineAnalyzer
from imaginize.analysis.offline.text import (
    STANZA_WORDS,
    narrated_tokens,
    normalize_ws,
    quoted_shares,
    split_text,
)
from imaginize.model import Analysis, Chapter, ElementKind
from imaginize.reading.epub import read_book
from tests import language_books


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


# --- the language decides the analysis -------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "text", "expected"),
    [
        ("de", "The cat sat on the mat and the dog was in the garden.", "de"),
        ("en-GB", "The cat sat on the mat and the dog was in the garden.", "en"),
        ("und", "The cat sat on the mat and the dog was in the garden with her.", "en"),
        ("und", " ".join(["La casa estaba al final del camino, entre dos olivos."] * 4), "und"),
        ("und", "Rain fell.", "en"),  # too short to tell: English, as before
        ("", "山の上の小さな村に、花子という娘が住んでいた。", "ja"),
        ("und", "在山脚下的小镇上，住着一个叫李明的年轻铁匠。", "zh"),
        ("und", "كان بيت سليم في آخر الشارع، قرب البحر", "ar"),
        ("und", "Дом Ивана Петровича стоял на краю деревни.", "ru"),
        # A tool's default "en" on a book in another script: the script wins.
        ("en", "山の上の小さな村に、花子という娘が住んでいた。", "ja"),
    ],
)
def test_book_language(declared: str, text: str, expected: str) -> None:
    assert languages.book_language(declared, [text]) == expected


def _analyses(build, tmp_path: Path, scenes: int = 3) -> list[tuple[Chapter, Analysis]]:
    book = read_book(build(tmp_path / "book.epub"))
    analyzer = OfflineAnalyzer(book)
    return [(c, analyzer.analyze(c, scenes)) for c in book.chapters]


_CJK = re.compile("[\u3040-\u30ff\u4e00-\u9fff]")


def _shares_words(quote: str, prompt: str) -> bool:
    """Whether the prompt carries words of the quote (for CJK: characters)."""
    if _CJK.search(quote):
        return len(set(_CJK.findall(quote)) & set(_CJK.findall(prompt))) >= 5
    long_words = {w for w in re.findall(r"\w{4,}", quote.lower())}
    return len(long_words & set(re.findall(r"\w{4,}", prompt.lower()))) >= 3


@pytest.mark.parametrize(
    "build", [language_books.german, language_books.spanish, language_books.japanese]
)
def test_other_languages_get_paragraph_scenes_with_prompts_from_the_quote(
    build, tmp_path: Path
) -> None:
    for chapter, analysis in _analyses(build, tmp_path):
        assert analysis.scenes
        paragraphs = [normalize_ws(p) for p in chapter.paragraphs]
        for scene in analysis.scenes:
            # A whole paragraph (these are short): never a lone sentence cut out of one.
            assert scene.quote in paragraphs
            assert _shares_words(scene.quote, scene.image_prompt), scene.image_prompt
            # Nothing is said from English word lists about text they cannot read.
            assert not scene.lighting and not scene.mood and not scene.composition


def test_other_languages_choose_narration_over_dialogue(tmp_path: Path) -> None:
    quotes = [s.quote for _, a in _analyses(language_books.spanish, tmp_path, 2) for s in a.scenes]
    assert quotes and not any(q.startswith("—") for q in quotes)


def test_names_are_elements_where_the_script_has_capitals(tmp_path: Path) -> None:
    spanish = {e.name for _, a in _analyses(language_books.spanish, tmp_path) for e in a.elements}
    assert {"Tomás", "Lucía"} <= spanish
    # German capitalises every noun: the nouns are not taken for names.
    german = {e.name for _, a in _analyses(language_books.german, tmp_path) for e in a.elements}
    assert german == {"Anna", "Paul"}
    japanese = [e for _, a in _analyses(language_books.japanese, tmp_path) for e in a.elements]
    assert japanese == []


def test_english_books_keep_the_english_analysis(tmp_path: Path) -> None:
    """The English book's prompts still carry what the lexicons find (light, mood)."""
    verse = _analyses(language_books.english_verse, tmp_path)
    assert all(s.lighting and s.mood for _, a in verse for s in a.scenes)


# --- the warning ------------------------------------------------------------------------------

_CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENROUTER_API_KEY")
}


def _cli(book: Path, out: Path) -> tuple[int, list[str]]:
    """Run the CLI offline with two workers, as a user would; its exit status and lines."""
    done = subprocess.run(
        [sys.executable, "-m", "imaginize", str(book), "-o", str(out), "-j", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_CLEAN_ENV,
        cwd=Path(__file__).resolve().parents[1],
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


@pytest.mark.slow
def test_one_warning_line_for_a_book_not_in_english(tmp_path: Path) -> None:
    code, lines = _cli(language_books.spanish(tmp_path / "libro.epub"), tmp_path / "out")
    assert code == 0
    warned = [x for x in lines if "offline analyzer reads English" in x]
    assert len(warned) == 1, lines
    line = warned[0]
    assert "La barca roja" in line and "Spanish (es)" in line
    assert "--base-url" in line and "lighting" in line
    # The scenes still come out, one per chapter at least.
    assert (tmp_path / "out" / "Chapters.md").read_text().count("**Image prompt:**") >= 2


@pytest.mark.slow
def test_no_language_warning_for_an_english_book(tmp_path: Path) -> None:
    code, lines = _cli(language_books.english_verse(tmp_path / "poem.epub"), tmp_path / "out")
    assert code == 0
    assert not [x for x in lines if "reads English" in x], lines


# --- verse ------------------------------------------------------------------------------------


def test_verse_lines_are_grouped_into_stanzas(tmp_path: Path) -> None:
    """Lines as <br> in a <p>, or one <div> each: a quote is a stanza, never one line."""
    stanzas = {" ".join(lines) for lines in [*language_books.VERSE_1, *language_books.VERSE_2]}
    quotes = [
        s.quote for _, a in _analyses(language_books.english_verse, tmp_path) for s in a.scenes
    ]
    assert quotes and all(q in stanzas for q in quotes), quotes


def test_a_long_verse_run_is_cut_at_sentence_ends_and_eight_lines() -> None:
    lines = [f"the boat went out along the quay {n}," for n in range(12)]
    lines[4] = "and the lamps were lit."
    sentences = split_text("\n\n".join(lines))
    sizes = [len(s.text.split("\n\n")) for s in sentences]
    assert sizes == [5, 7]
    # A line break, like a sentence start, says nothing about a capital.
    poem = split_text(
        "\n\n".join(["Under the fog", "Lilacs grew by the wall", "Memory and", "Dull roots"])
    )
    assert [t.text for t in poem[0].tokens if not t.initial and t.text[0].isupper()] == []


def test_prose_is_not_taken_for_verse() -> None:
    """Short dialogue paragraphs end their sentences: each stays a paragraph of its own."""
    text = "\n\n".join(
        [
            "“Who are you?” said the Caterpillar.",
            "“I hardly know, sir.”",
            "“Explain yourself!”",
            "“I can’t explain myself, I’m afraid.”",
            "“I don’t see.”",
            "* * * * *",
        ]
    )
    assert [s.para for s in split_text(text)] == [0, 1, 2, 3, 4, 5]


# --- real books (../shared/corpus; skipped without it) ----------------------------------------

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _corpus_book(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.mark.slow
def test_die_verwandlung_gets_scenes_from_its_own_words() -> None:
    book = read_book(_corpus_book("gutenberg3-pg22367-images-3.epub"))
    analyzer = OfflineAnalyzer(book)
    assert analyzer.language == "de"
    elements: set[str] = set()
    for chapter in book.chapters:
        analysis = analyzer.analyze(chapter, 4)
        paragraphs = [normalize_ws(p) for p in chapter.paragraphs]
        assert len(analysis.scenes) == 4
        for scene in analysis.scenes:
            # A paragraph, or whole sentences of a long one: never across paragraphs.
            assert any(scene.quote in p for p in paragraphs)
            assert len(scene.quote.split()) <= paragraphs_module.MAX_WORDS
            assert _shares_words(scene.quote, scene.image_prompt)
        elements |= {e.name for e in analysis.elements}
    assert "Gregor Samsa" in elements and "Grete" in elements
    # German capitalises nouns: the room, the door and the father are no names.
    assert not elements & {"Zimmer", "Tür", "Vater", "Mutter", "Schwester", "Ordnung", "Angst"}


@pytest.mark.slow
def test_the_waste_land_quotes_stanzas() -> None:
    book = read_book(_corpus_book("idpf-wasteland.epub"))
    analyzer = OfflineAnalyzer(book)
    for chapter in book.chapters:
        lines = [normalize_ws(p) for p in chapter.paragraphs]
        for scene in analyzer.analyze(chapter, 2).scenes:
            inside = [x for x in lines if x in scene.quote]
            assert len(inside) >= 2, scene.quote  # several lines, not one
            assert len(scene.quote.split()) <= STANZA_WORDS


def test_sentences_of_scripts_without_capitals() -> None:
    """Arabic has no capitals to start a sentence and its own question mark and comma:
    sentences still end at a full stop, so a long paragraph is cut between sentences."""
    text = "هل أغلقت الباب؟ سألت الأم. مشى سليم بين الدكاكين الضيقة، والتجار يعرضون السجاد."
    assert [s.text for s in split_text(text)] == [
        "هل أغلقت الباب؟",
        "سألت الأم.",
        "مشى سليم بين الدكاكين الضيقة، والتجار يعرضون السجاد.",
    ]


def test_names_after_a_locative_preposition_are_places() -> None:
    text = "\n\n".join(
        [
            "Tomás vivía en Sevilla con su hermana.",
            "Cada mañana Tomás caminaba por las calles de la ciudad.",
            "El verano en Sevilla era largo y caluroso, y Tomás dormía la siesta.",
            "Un día Tomás se fue de viaje, pero pronto volvió a vivir en Sevilla.",
        ]
    )
    names = {n.name: n.kind for n in paragraphs_module.Names(split_text(text)).names}
    assert names == {"Tomás": ElementKind.CHARACTER, "Sevilla": ElementKind.PLACE}


def test_a_japanese_quotation_taken_up_by_to_is_one_sentence() -> None:
    text = "「どこへ行くの？」と母が聞いた。「川まで」花子は答えた。"
    assert [s for s, _ in _speech(text)] == [
        "「どこへ行くの？」と母が聞いた。",
        "「川まで」花子は答えた。",
    ]


def test_after_a_cut_inside_a_sentence_the_next_stanza_starts_a_sentence() -> None:
    lines = [f"the road wound past farm {n}," for n in range(9)]
    lines[8] = "and ended at the sea."
    lines += [
        "The gulls cried out,",
        "the boats came in,",
        "the nets were hung,",
        "the day was done.",
    ]
    units = [s.text.split("\n\n") for s in split_text("\n\n".join(lines))]
    assert [len(u) for u in units] == [8, 1, 4]
    assert units[2][0] == "The gulls cried out,"
