"""Scenes and elements for a book in a language the offline analyzer has no word lists for.

The English lexicons (colours, light, places, moods, verbs) say nothing about German or
Japanese text, so here nothing is described, only chosen and quoted. A scene is a whole
paragraph (a stanza, for verse; the leading sentences of a long one, up to `MAX_WORDS`,
CJK characters counting as half a word), chosen by what holds in any language: a length a
picture can be drawn from, narration rather than speech, recurring names, and spread over
the chapter. Its image prompt is the quote itself with the names in it. Elements are the
book's recurring names where the script has capitals (never in CJK, Arabic and the like:
nothing is invented), each with the sentence that names it as its reference quote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from imaginize.analysis.offline.lexicon import ARTICLES, words
from imaginize.analysis.offline.scenes import STYLE, Window, pick_windows, window_quote
from imaginize.analysis.offline.text import Sentence, normalize_ws, quoted_shares, word_length
from imaginize.model import Analysis, Element, ElementKind, Scene

MAX_WORDS = 80
_MIN_NAME_COUNT = 3
# Languages that capitalise every noun (German): a capital mid-sentence says little there,
# so a name must also seldom follow an article and sometimes open a sentence. Such a text
# is told by its articles (`ARTICLES`): many (German ~11% of words; Spanish "de" ~3%,
# English "am" ~0.05%) and mostly followed by a capital (German 0.7-0.85, others < 0.3).
_ARTICLE_DENSITY = 0.03
_CAPITAL_AFTER_ARTICLE = 0.5
_MAX_ARTICLE_SHARE = 0.25
_MIN_INITIAL_SHARE = 0.05
# A capitalised word mostly followed by another name is a title ("Herr Samsa", "Señor").
_TITLE_SHARE = 0.5
# Prepositions that put a name on the map ("in Berlin", "en Sevilla", "в Москве").
_LOCATIVES = words("in im nach aus en à au aux dans em no na в во из")
_PLACE_SHARE = 0.4


@dataclass(frozen=True, slots=True)
class Name:
    """A recurring name: its display form, the single words that also stand for it."""

    name: str
    words: tuple[str, ...]
    aliases: tuple[str, ...]
    kind: ElementKind
    count: int


class Names:
    """The recurring names of a book, learnt from all its sentences."""

    def __init__(self, sentences: Sequence[Sentence]) -> None:
        self._words = _name_words(sentences)
        runs: Counter[tuple[str, ...]] = Counter()
        places: Counter[tuple[str, ...]] = Counter()
        for s in sentences:
            for first, run in self._runs(s):
                runs[run] += 1
                if first > 0 and s.tokens[first - 1].lower in _LOCATIVES:
                    places[run] += 1
        self.names: list[Name] = _group(runs, places, self._titles(sentences))
        self._by_run = {run: n for n in self.names for run in _keys(n)}

    def _titles(self, sentences: Sequence[Sentence]) -> set[str]:
        followed: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        for s in sentences:
            for k, t in enumerate(s.tokens):
                word = self._word(t.base)
                if word is None:
                    continue
                seen[word] += 1
                nxt = s.tokens[k + 1] if k + 1 < len(s.tokens) else None
                if nxt is not None and self._word(nxt.base) is not None:
                    followed[word] += 1
        return {w for w, n in seen.items() if followed[w] > _TITLE_SHARE * n}

    def _word(self, base: str) -> str | None:
        """The name word a token stands for ("Gregors" -> "Gregor"), or None."""
        if base.endswith("s") and base[:-1] in self._words:
            return base[:-1]  # a genitive without apostrophe: "Gregors"
        return base if base in self._words else None

    def _runs(self, s: Sentence) -> list[tuple[int, tuple[str, ...]]]:
        """(first token, name words) of each run of adjacent name words in a sentence."""
        out: list[tuple[int, tuple[str, ...]]] = []
        run: list[str] = []
        first = 0
        for k, t in enumerate(s.tokens):
            word = self._word(t.base)
            joined = run and s.spaced(k - 1)
            if word is not None and (joined or not run):
                if not run:
                    first = k
                run.append(word)
                continue
            if run:
                out.append((first, tuple(run)))
            run = [word] if word is not None else []
            first = k
        if run:
            out.append((first, tuple(run)))
        return out

    def find(self, s: Sentence) -> list[Name]:
        """The names a sentence mentions, in order, each once."""
        found: list[Name] = []
        for _, run in self._runs(s):
            n = self._by_run.get(run)
            if n is not None and n not in found:
                found.append(n)
        return found


def _name_words(sentences: Sequence[Sentence]) -> set[str]:
    """Words written with a capital mid-sentence, never in lower case, at least a few times;
    where nouns are capitalised too, only those that seldom follow an article and sometimes
    open a sentence."""
    lower = {t.lower for s in sentences for t in s.tokens if t.text[:1].islower()}
    mid: Counter[str] = Counter()
    initial: Counter[str] = Counter()
    after_article: Counter[str] = Counter()
    after: Counter[tuple[str, str]] = Counter()  # (word before, capitalised word)
    articles = seen = 0
    for s in sentences:
        for k, t in enumerate(s.tokens):
            seen += 1
            articles += t.lower in ARTICLES
            capital = t.base[:1].isupper() and not (len(t.base) > 1 and t.base.isupper())
            if t.initial:
                initial[t.base] += capital
                continue
            if not capital:
                continue
            mid[t.base] += 1
            if k > 0 and s.tokens[k - 1].lower in ARTICLES:
                after_article[t.base] += 1
            if k > 0:
                after[s.tokens[k - 1].base, t.base] += 1
    found = {w for w, n in mid.items() if n >= _MIN_NAME_COUNT and w.lower() not in lower}
    nouns_capitalised = (
        articles >= _ARTICLE_DENSITY * seen
        and sum(after_article.values()) >= _CAPITAL_AFTER_ARTICLE * articles > 0
    )
    if not nouns_capitalised:
        return found
    plain = {w for w in found if after_article[w] < _MAX_ARTICLE_SHARE * mid[w]}
    names = {w for w in plain if initial[w] >= _MIN_INITIAL_SHARE * (mid[w] + initial[w])}
    # A surname seldom opens a sentence, but follows a given name ("Gregor Samsa").
    return names | {w for (a, w), n in after.items() if n >= 2 and a in names and w in plain}


def _keys(n: Name) -> list[tuple[str, ...]]:
    return [tuple(n.name.split()), *((a,) for a in n.aliases)]


def _group(
    runs: Counter[tuple[str, ...]], places: Counter[tuple[str, ...]], titles: set[str]
) -> list[Name]:
    """One `Name` per multi-word run ("Anna Keller"), with the single words that belong to
    that run alone as aliases ("Anna"); other single words are names of their own. A title
    alone ("Herr") is none."""
    multi = [r for r in runs if len(r) > 1]
    owner: dict[str, tuple[str, ...] | None] = {}
    for r in multi:
        for w in {r[0], r[-1]} - titles:
            owner[w] = r if owner.get(w, r) == r else None
    aliases: dict[tuple[str, ...], list[str]] = {r: [] for r in multi}
    counts: Counter[tuple[str, ...]] = Counter({r: runs[r] for r in multi})
    placed: Counter[tuple[str, ...]] = Counter({r: places[r] for r in multi})
    for r, n in runs.items():
        if len(r) > 1:
            continue
        word = r[0]
        if word in titles:
            continue
        home = owner.get(word)
        if home is None:
            aliases[r] = []
            counts[r] += n
            placed[r] += places[r]
        else:
            aliases[home].append(word)
            counts[home] += n
            placed[home] += places[r]
    out = [
        Name(
            " ".join(r),
            r,
            tuple(sorted(aliases[r])),
            ElementKind.PLACE if placed[r] >= _PLACE_SHARE * counts[r] else ElementKind.CHARACTER,
            counts[r],
        )
        for r in aliases
        if counts[r] >= _MIN_NAME_COUNT or (len(r) > 1 and counts[r] >= 2)
    ]
    out.sort(key=lambda n: (-n.count, n.name))
    return out


# --- scenes ---------------------------------------------------------------------------------


def passages(sentences: Sequence[Sentence]) -> list[tuple[int, int]]:
    """(first, last) sentence indices of each paragraph, a long one cut into runs of whole
    sentences of up to MAX_WORDS."""
    out: list[tuple[int, int]] = []
    start = 0
    size = 0.0
    for i, s in enumerate(sentences):
        length = word_length(s.text)
        new_para = i > start and s.para != sentences[i - 1].para
        if i > start and (new_para or size + length > MAX_WORDS):
            out.append((start, i - 1))
            start, size = i, 0.0
        size += length
    if sentences:
        out.append((start, len(sentences) - 1))
    return out


def _length_factor(words: float) -> float:
    """Paragraphs of 25-80 words (50-160 CJK characters) give a picture enough to hold."""
    if words < 8:
        return 0.1
    if words < 15:
        return 0.4
    return 0.7 if words < 25 else 1.0


def analyze(
    sentences: Sequence[Sentence], scenes: int, names: Names | None, max_elements: int
) -> Analysis:
    """Scenes (quotes by paragraph, prompts from the quote) and the names of one chunk."""
    shares = quoted_shares(sentences)
    mentions = [names.find(s) if names else [] for s in sentences]
    windows: list[Window] = []
    for first, last in passages(sentences):
        span = range(first, last + 1)
        length = sum(word_length(sentences[i].text) for i in span)
        chars = sum(len(sentences[i].text) for i in span) or 1
        quoted = sum(shares[i] * len(sentences[i].text) for i in span) / chars
        speech = 0.1 if quoted > 0.7 else 1.0 - 0.85 * quoted
        named = len({n.name for i in span for n in mentions[i]})
        score = _length_factor(length) * speech * (1 + 0.2 * min(named, 3))
        windows.append(Window(first, last, score))
    chosen = pick_windows(windows, max(scenes, 0), len(sentences))
    return Analysis(
        scenes=tuple(_scene(sentences, w, mentions) for w in chosen),
        elements=tuple(_elements(sentences, mentions, max_elements)),
    )


def _scene(sentences: Sequence[Sentence], w: Window, mentions: Sequence[list[Name]]) -> Scene:
    quote = window_quote(sentences, w)
    span = range(w.first, w.last + 1)
    cast = [n.name for i in span for n in mentions[i] if n.kind is ElementKind.CHARACTER]
    characters = tuple(dict.fromkeys(cast))
    places = [n.name for i in span for n in mentions[i] if n.kind is ElementKind.PLACE]
    setting = places[0] if places else ""
    prompt = [quote, ", ".join(characters), setting, STYLE]
    return Scene(
        quote=quote,
        description=normalize_ws(sentences[w.first].text),
        characters=characters,
        setting=setting,
        image_prompt="; ".join(p for p in prompt if p),
    )


def _elements(
    sentences: Sequence[Sentence], mentions: Sequence[list[Name]], limit: int
) -> list[Element]:
    counts: Counter[Name] = Counter()
    quotes: dict[Name, list[str]] = {}
    for s, found in zip(sentences, mentions, strict=True):
        for n in found:
            counts[n] += 1
            q = quotes.setdefault(n, [])
            if len(q) < 2:
                q.append(normalize_ws(s.text))
    ranked = sorted(counts, key=lambda n: (-counts[n], n.name))[:limit]
    return [Element(n.name, n.kind, "", n.aliases, tuple(quotes[n])) for n in ranked]
