"""Text plumbing for the offline analyzer: paragraphs, sentences and tokens with offsets.

Everything works on character offsets into the original text, so a quote is always a slice of
it; nothing here rewrites text except `normalize_ws`, which gives the form quotes are compared in.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from imaginize.analysis.offline.lexicon import ABBREVIATIONS

# CJK ideographs, kana and hangul: scripts written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
CJK_RE = re.compile(f"[{_CJK}]")

# A word: letters/digits with inner apostrophes or hyphens ("don't", "waistcoat-pocket").
TOKEN_RE = re.compile(r"\w+(?:[’'\-]\w+)*")  # noqa: RUF001
_POSSESSIVE_RE = re.compile(r"[’']s$", re.IGNORECASE)  # noqa: RUF001
# Contractions glued to a word: "Dinah'll", "I'm", "we've" (the base is the word before).
_CONTRACTION_RE = re.compile(r"[’'](?:ll|d|ve|re|m)$", re.IGNORECASE)  # noqa: RUF001

_PARA_BREAK_RE = re.compile(r"\n[ \t\r\f\v]*\n")
# Sentence-final punctuation plus any closing quotes or brackets that belong to it.
_TERMINATOR_RE = re.compile(r"(?:[.!?…؟]+|[。！？]+)[”’\"')\]」』»«“]*")  # noqa: RUF001
_CJK_TERMINATORS = frozenset("。！？")  # noqa: RUF001
_OPENERS = frozenset("“‘\"'(«»„[「『—―–¿¡")  # noqa: RUF001
# Where an overlong sentence may be cut: after a clause mark (never inside a word).
_CLAUSE_RE = re.compile(r"[,;:—–，、；：،؛](?=\s|\ufeff|[^\W\d_]|$)")  # noqa: RUF001
_TRAILING_CLAUSE_MARKS = ",;:—–，、；：،؛\ufeff \n\t"  # noqa: RUF001

# Quote sizes, in words (CJK: two characters count as one word).
MAX_UNIT_WORDS = 70
TARGET_PIECE_WORDS = 50


def normalize_ws(text: str) -> str:
    """The form quotes are compared in: runs of whitespace become one space."""
    return " ".join(text.split())


def word_length(text: str) -> float:
    """Length in words; CJK characters count as half a word each, as they carry no spaces."""
    cjk = len(CJK_RE.findall(text))
    if not cjk:
        return float(len(text.split()))
    return len(CJK_RE.sub(" ", text).split()) + cjk / 2


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank paragraph, trimmed of surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _PARA_BREAK_RE.finditer(text):
        _add_trimmed(text, pos, m.start(), spans)
        pos = m.end()
    _add_trimmed(text, pos, len(text), spans)
    return spans


def _add_trimmed(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        out.append((start, end))


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split text[start:end] (one paragraph) into sentences, as absolute (start, end) pairs."""
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _TERMINATOR_RE.finditer(text, start, end):
        cut = m.end()
        if _is_boundary(text, m, end):
            _add_trimmed(text, pos, cut, spans)
            pos = cut
    _add_trimmed(text, pos, end, spans)
    return spans


def _is_boundary(text: str, m: re.Match[str], end: int) -> bool:
    mark = m.group()
    after = m.end()
    if mark[0] in _CJK_TERMINATORS:
        # A Japanese quotation closed and taken up by "と" ("said that") goes on, as in
        # 「…？」と母が聞いた。; any other closing mark ends the sentence.  # noqa: RUF003
        return not (mark[-1] in "」』" and after < end and text[after] == "と")
    if after >= end:
        return True
    if not text[after].isspace():
        return False
    if mark[0] == "." and _is_abbreviation(text, m.start()):
        return False
    nxt = after
    while nxt < end and text[nxt].isspace():
        nxt += 1
    if nxt >= end:
        return True
    ch = text[nxt]
    # A letter of a script without case (CJK, Arabic, Hebrew) may start a sentence too.
    return ch.isupper() or ch.isdigit() or ch in _OPENERS or (ch.isalpha() and not ch.islower())


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the word before the full stop at `dot` is "Mr", "St", an initial, ..."""
    begin = dot
    while begin > 0 and text[begin - 1].isalpha():
        begin -= 1
    word = text[begin:dot]
    return word in ABBREVIATIONS or (len(word) == 1 and word.isupper())


def split_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut an overlong sentence into pieces of about TARGET_PIECE_WORDS at clause marks,
    falling back to whitespace (or between CJK characters); short sentences pass unchanged."""
    if word_length(text[start:end]) <= MAX_UNIT_WORDS:
        return [(start, end)]
    cuts = [m.end() for m in _CLAUSE_RE.finditer(text, start, end)]
    pieces: list[tuple[int, int]] = []
    piece_start = start
    last_ok = start
    for cut in [*cuts, end]:
        if word_length(text[piece_start:cut]) > TARGET_PIECE_WORDS and last_ok > piece_start:
            pieces.append((piece_start, last_ok))
            piece_start = last_ok
        last_ok = cut
    pieces.append((piece_start, end))
    out: list[tuple[int, int]] = []
    for a, b in pieces:
        for c, d in _hard_split(text, a, b):
            _add_clause(text, c, d, out)
    return out


def _hard_split(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split a clause with no usable punctuation into windows, cutting only between words."""
    if word_length(text[start:end]) <= MAX_UNIT_WORDS:
        return [(start, end)]
    if CJK_RE.search(text, start, end) and not re.search(r"\s", text[start:end]):
        step = TARGET_PIECE_WORDS * 2  # characters
        return [(i, min(i + step, end)) for i in range(start, end, step)]
    out: list[tuple[int, int]] = []
    words = [m.span() for m in re.finditer(r"\S+", text[start:end])]
    for i in range(0, len(words), TARGET_PIECE_WORDS):
        group = words[i : i + TARGET_PIECE_WORDS]
        out.append((start + group[0][0], start + group[-1][1]))
    return out


def _add_clause(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    """Keep a clause piece without the comma or dash it was cut after."""
    while end > start and text[end - 1] in _TRAILING_CLAUSE_MARKS:
        end -= 1
    while start < end and text[start].isspace():
        start += 1
    if start < end:
        out.append((start, end))


# Verse arrives one line per paragraph (a <div> or a <br> per line). A run of at least
# `_VERSE_RUN` short paragraphs, at least half of them ending without a full stop, is verse;
# its lines are grouped into stanzas of up to `STANZA_LINES` lines and `STANZA_WORDS` words,
# closed after a line that ends a sentence once they have `_STANZA_MIN` lines. (Where the
# book's own stanza breaks fall is not kept in the text; sentence ends stand in for them.)
VERSE_LINE_WORDS = 14
_VERSE_LINE_CHARS = 120  # longer is prose, whatever the words (cheap to check first)
_VERSE_RUN = 4
STANZA_LINES = 8
STANZA_WORDS = 60
_STANZA_MIN = 4
_LINE_END_RE = re.compile(r"[.!?…;。！？][”’\"')\]」』»«“]*$")  # noqa: RUF001


def stanzas(text: str, spans: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """The paragraph spans in order, grouped: each run of verse lines into stanzas, every
    other paragraph alone."""
    out: list[list[tuple[int, int]]] = []
    i = 0
    while i < len(spans):
        j = i
        while j < len(spans) and _is_line(text, spans[j]):
            j += 1
        run = spans[i:j]
        open_lines = sum(1 for a, b in run if not _LINE_END_RE.search(text, a, b))
        if len(run) >= _VERSE_RUN and 2 * open_lines >= len(run):
            out += _stanzas(text, run)
        else:
            out += [[span] for span in spans[i : max(j, i + 1)]]
        i = max(j, i + 1)
    return out


def _is_line(text: str, span: tuple[int, int]) -> bool:
    """A short paragraph with words in it (a row of asterisks is a scene break, no line)."""
    a, b = span
    if b - a > _VERSE_LINE_CHARS:
        return False
    line = text[a:b]
    return word_length(line) <= VERSE_LINE_WORDS and any(ch.isalpha() for ch in line)


def _stanzas(text: str, run: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    out: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    words = 0.0
    # After a cut inside a sentence, the rest of that sentence is a unit of its own, so the
    # next stanza starts where a sentence does.
    rest_of_sentence = False
    for a, b in run:
        size = word_length(text[a:b])
        if current and (len(current) >= STANZA_LINES or words + size > STANZA_WORDS):
            out.append(current)
            current, words, rest_of_sentence = [], 0.0, True
        current.append((a, b))
        words += size
        least = 1 if rest_of_sentence else _STANZA_MIN
        if len(current) >= least and _LINE_END_RE.search(text, a, b):
            out.append(current)
            current, words, rest_of_sentence = [], 0.0, False
    if current:
        out.append(current)
    return out


class Token(NamedTuple):
    """A word of a sentence, wherever it stands: its offsets are the sentence's (`starts`,
    `ends`), so equal words share one Token. `base` drops a possessive "'s"; `initial` says
    whether the word starts a sentence or a quotation, where capitals say nothing about
    names."""

    text: str
    base: str
    lower: str
    initial: bool
    possessive: bool
    comma_after: bool


# The offline catalogue holds every token of a book at once (2 million in a 2,000-chapter
# book): one shared Token per distinct word and flags, and offsets in arrays, take ~45 bytes a
# token where a Token of its own with offsets took ~125 (a building worker 380 -> 189 MiB).
_TOKENS: dict[Token, Token] = {}
_MAX_TOKENS = 1 << 20  # distinct tokens kept for sharing (a vocabulary, not a book)


def tokenize(text: str, start: int, end: int) -> tuple[list[Token], array[int], array[int]]:
    """Tokens of text[start:end] (one sentence), with their absolute start and end offsets."""
    spans = [m.span() for m in TOKEN_RE.finditer(text, start, end)]
    # gaps[i] is the text before token i; gaps[-1] the text after the last one.
    bounds = [start, *(x for span in spans for x in span), end]
    gaps = [text[bounds[k] : bounds[k + 1]] for k in range(0, len(bounds), 2)]
    tokens: list[Token] = []
    prev_word = ""
    shared = _TOKENS
    if len(shared) > _MAX_TOKENS:
        shared.clear()
    for i, (a, b) in enumerate(spans):
        word = text[a:b]
        base, possessive = _base(word)
        gap, after = gaps[i], gaps[i + 1]
        token = Token(
            word,
            base,
            base.lower(),
            # A line break (verse) says no more about a capital than a sentence start.
            i == 0 or (gap != " " and ("\n" in gap or _starts_clause(gap, prev_word))),
            possessive,
            "," in after or "\uff0c" in after,  # ASCII or fullwidth comma
        )
        tokens.append(shared.setdefault(token, token))
        prev_word = word
    return tokens, array("I", [a for a, _ in spans]), array("I", [b for _, b in spans])


def _base(word: str) -> tuple[str, bool]:
    """The word without a possessive "'s" or a glued contraction, and whether it was a
    possessive."""
    if "'" not in word and "\u2019" not in word:
        return word, False
    if len(word) > 2:
        base = _POSSESSIVE_RE.sub("", word)
        if base != word:
            return base, True
    return _CONTRACTION_RE.sub("", word), False


def _starts_clause(gap: str, prev_word: str) -> bool:
    """Whether the text between two words makes the second one start a sentence or quote."""
    for ch in gap:
        if ch in '“‘«»„「『¿¡("[:':  # noqa: RUF001
            return True
        if ch in "!?…":
            return True
        if ch == "." and prev_word not in ABBREVIATIONS and not _is_initial(prev_word):
            return True
    stripped = gap.rstrip()
    return len(stripped) >= 2 and stripped[-1] == "'" and stripped[-2].isspace()


def _is_initial(word: str) -> bool:
    return len(word) == 1 and word.isupper()


_NOUN_ENDINGS = (("ies", "y"), ("es", ""), ("s", ""))
_VERB_ENDINGS = (*_NOUN_ENDINGS, ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("d", ""))


@lru_cache(maxsize=65536)
def stem_variants(word: str, verbal: bool = True) -> tuple[str, ...]:
    """The word and the forms it may be listed under: "lamps" -> "lamp", and for verbs also
    "glowing" -> "glow". Nouns only lose plural endings, so "deserting" is no "desert"."""
    out = [word]
    for suffix, repl in _VERB_ENDINGS if verbal else _NOUN_ENDINGS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            out.append(word[: len(word) - len(suffix)] + repl)
    return tuple(out)


def in_lexicon(word: str, lexicon: frozenset[str], verbal: bool = False) -> bool:
    return any(v in lexicon for v in stem_variants(word, verbal))


@dataclass(slots=True)
class Sentence:
    """One sentence (or piece of an overlong one) of a text, with its tokens."""

    source: str  # the whole text the offsets point into
    para: int  # running paragraph number, to keep windows inside one paragraph
    start: int
    end: int
    tokens: list[Token]
    starts: array[int]  # where each token starts in `source`
    ends: array[int]
    piece: bool = False  # cut out of an overlong sentence at a clause mark

    @property
    def text(self) -> str:
        return self.source[self.start : self.end]

    def between(self, i: int, j: int) -> str:
        """The text from the end of token i to the start of token j."""
        return self.source[self.ends[i] : self.starts[j]]

    def spaced(self, i: int) -> bool:
        """Whether nothing but space stands between token i and the next."""
        return not self.source[self.ends[i] : self.starts[i + 1]].strip()

    def words(self, i: int, j: int) -> str:
        """The text from the start of token i to the end of token j."""
        return self.source[self.starts[i] : self.ends[j]]


def split_text(text: str, para_offset: int = 0) -> list[Sentence]:
    """All sentence units of a text in order; overlong sentences are cut at clauses, and
    verse lines are grouped into stanzas, each one unit (`stanzas`)."""
    out: list[Sentence] = []
    for p, group in enumerate(stanzas(text, paragraph_spans(text))):
        if len(group) > 1:
            a, b = group[0][0], group[-1][1]
            out.append(Sentence(text, para_offset + p, a, b, *tokenize(text, a, b)))
            continue
        ps, pe = group[0]
        for ss, se in sentence_spans(text, ps, pe):
            for us, ue in split_long(text, ss, se):
                piece = (us, ue) != (ss, se)
                tokens = tokenize(text, us, ue)
                out.append(Sentence(text, para_offset + p, us, ue, *tokens, piece=piece))
    return out


def split_texts(texts: Iterable[str]) -> Iterator[list[Sentence]]:
    """Each text's sentences (`split_text`), paragraph numbers running on across them, so
    no window of a book-wide pass joins the end of one chapter to the next."""
    para = 0
    for text in texts:
        own = split_text(text, para)
        if own:
            para = own[-1].para + 1
        yield own


# Marks that open or close speech: quotation marks of many languages (English “…”, German
# „…“ and »…«, French «…», CJK 「…」), and dashes, which open speech only in a paragraph
# that starts with one ("—¿Adónde vas? —preguntó ella.", "— Bonjour, dit-il."); there each
# dash switches between speech and narration. An en dash counts only after a space.
_QUOTE_RE = re.compile(r"[“”\"‘„«»「」『』—―]|(?<=\S)’(?![\w])|(?<!\S)–")  # noqa: RUF001
_DASHES = frozenset("—―–")  # noqa: RUF001
_DASH_SPEECH = "—"  # the closer of dash speech: the next dash
# The marks that end a quotation opened by each mark.
_CLOSERS = {
    "“": "”",
    "‘": "’",  # noqa: RUF001
    "„": "“”",
    "«": "»",
    "»": "«",
    "「": "」",
    "『": "』",
    '"': '"',
}
# Where a paragraph's speech stands: the marks that would close the open quotation ("" in
# narration), and whether the paragraph is dash dialogue.
_State = tuple[str, bool]


def quoted_shares(sentences: Sequence[Sentence]) -> list[float]:
    """How much of each sentence lies inside quotation marks (or dash speech)."""
    return [share for share, _ in _quote_states(sentences)]


def narrated_tokens(sentences: Sequence[Sentence]) -> list[list[bool]]:
    """For each token of each sentence, whether it is narration (outside quotation marks)."""
    out: list[list[bool]] = []
    for s, (_, state) in zip(sentences, _quote_states(sentences), strict=True):
        marks = [(m.start() + s.start, m.group()) for m in _QUOTE_RE.finditer(s.text)]
        flags: list[bool] = []
        k = 0
        for start in s.starts:
            while k < len(marks) and marks[k][0] < start:
                state = _step(state, marks[k][1])
                k += 1
            flags.append(not state[0])
        out.append(flags)
    return out


def _quote_states(sentences: Sequence[Sentence]) -> list[tuple[float, _State]]:
    """(share of the sentence inside quotation marks, the state it starts in). A
    quotation may span the sentences of a paragraph, so the state carries over until the
    paragraph ends."""
    out: list[tuple[float, _State]] = []
    state: _State = ("", False)
    para = -1
    for s in sentences:
        text = s.text
        if s.para != para:
            state, para = ("", text[:1] in _DASHES), s.para
        start = state
        quoted = 0
        pos = 0
        for m in _QUOTE_RE.finditer(text):
            if state[0]:
                quoted += m.start() - pos
            state = _step(state, m.group())
            pos = m.end()
        if state[0]:
            quoted += len(text) - pos
        out.append((quoted / max(1, len(text)), start))
    return out


def _step(state: _State, mark: str) -> _State:
    closer, dash = state
    if mark in _DASHES:
        if dash and closer in ("", _DASH_SPEECH):
            return ("" if closer else _DASH_SPEECH, dash)
        return state  # a dash in narration, or inside a quotation
    if closer:
        # Only the matching mark closes: an apostrophe or a nested quote does not.
        return ("", dash) if closer != _DASH_SPEECH and mark in closer else state
    return (_CLOSERS.get(mark, ""), dash)
