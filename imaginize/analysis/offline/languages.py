"""Which language a book is in, as far as the offline analyzer is concerned.

The offline analyzer's word lists (colours, light, places, moods, verbs) are English; only an
English book gets the full analysis. The book's declared language (the EPUB's dc:language)
decides; a book that declares none ("und"), or declares English on text mostly in another
script, is judged from a sample of its text: the script (CJK, Arabic, Cyrillic,
...), and for Latin script the share of English function words. The guess is cheap and
coarse: it tells English from not English, and names a script's usual language only to
say so in the warning.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

ENGLISH = "en"
UNDETERMINED = "und"
# Enough text to judge by: a few pages from the start of the book.
_SAMPLE_CHARS = 20_000
# English prose: "the", "and", "of", ... make up about a quarter of the words; French, German
# or Spanish text shares a few of them ("in", "a") at well under a tenth.
_ENGLISH_SHARE = 0.12
_FUNCTION_WORDS = frozenset(
    re.findall(
        r"\w+",
        "the and of to a in was he she it that his her i you with had for as on at but not "
        "they is be my said have this from",
    )
)
# Fewer Latin-script words than this say too little to be judged not English.
_FEW_WORDS = 30
_WORD_RE = re.compile(r"[^\W\d_]+")

# The usual language of a script, for a book that does not declare one.
_SCRIPT_LANGUAGE = {
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "CJK": "zh",
    "HANGUL": "ko",
    "ARABIC": "ar",
    "HEBREW": "he",
    "CYRILLIC": "ru",
    "GREEK": "el",
    "DEVANAGARI": "hi",
    "THAI": "th",
}

_NAMES = {
    "ar": "Arabic",
    "ca": "Catalan",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "eo": "Esperanto",
    "es": "Spanish",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "la": "Latin",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "zh": "Chinese",
}


def primary(tag: str) -> str:
    """The language of a BCP 47 tag, lower case: "en-US" -> "en", "" -> "und"."""
    code = tag.strip().replace("_", "-").split("-")[0].lower()
    return code if code.isalpha() else UNDETERMINED


def name(code: str) -> str:
    """ "German" for "de"; an unknown code as it is."""
    return _NAMES.get(code, code)


def book_language(declared: str, texts: Sequence[str]) -> str:
    """The language the offline analyzer treats the book as being in: the declared one,
    unless none is declared or English is declared on a text in another script (a tool's
    default). English declared on Latin-script text is believed: filler and lists are no
    evidence against it."""
    code = primary(declared)
    if code not in (UNDETERMINED, ENGLISH):
        return code
    sample = _sample(texts)
    if code == ENGLISH and _main_script(sample) in (None, "LATIN"):
        return ENGLISH
    return guess(sample)


def guess(text: str) -> str:
    """A language for undeclared text: its script's usual one, or for Latin script English
    when English function words are common (or the text is too short to tell), else "und"."""
    script = _main_script(text)
    if script is None:
        return UNDETERMINED
    if script != "LATIN":
        return _SCRIPT_LANGUAGE.get(script, UNDETERMINED)
    words = [w.lower() for w in _WORD_RE.findall(text)]
    if len(words) < _FEW_WORDS:
        return ENGLISH  # too little to tell: the analyzer's own language
    share = sum(1 for w in words if w in _FUNCTION_WORDS) / len(words)
    return ENGLISH if share >= _ENGLISH_SHARE else UNDETERMINED


def is_english(code: str) -> bool:
    return code == ENGLISH


def offline_warning(title: str, code: str) -> str:
    """The one line a run on a book the offline analyzer does not read fully says."""
    language = "an undetermined language" if code == UNDETERMINED else f"{name(code)} ({code})"
    return (
        f"{title}: the offline analyzer reads English; this book is in {language}, so its "
        "scenes are whole paragraphs with the quote as their image prompt, without the looks, "
        "settings, lighting and moods it finds in English text; for those use a model server "
        "(--base-url URL, or an OPENAI_API_KEY)"
    )


def _sample(texts: Sequence[str]) -> str:
    out: list[str] = []
    size = 0
    for text in texts:
        out.append(text[: _SAMPLE_CHARS - size])
        size += len(out[-1])
        if size >= _SAMPLE_CHARS:
            break
    return "\n".join(out)


def _main_script(text: str) -> str | None:
    """The script most letters of `text` are in ("LATIN", "CYRILLIC", "CJK", ...), by the
    first word of their Unicode names; None when it has no letters."""
    counts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            first = unicodedata.name(ch, "").split(" ", 1)[0]
            # Kana marks a Japanese text even where kanji (CJK) outnumber it.
            counts[first] += 3 if first in ("HIRAGANA", "KATAKANA") else 1
    if not counts:
        return None
    return counts.most_common(1)[0][0]
