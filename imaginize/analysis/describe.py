"""Visual phrases pulled from the text: how a character, creature, place or item looks.

Nothing is invented: every phrase is a run of words from the book ("pink eyes", "a sturdy
straw-haired man of thirty", "white palaces"), found next to a mention of the thing by a few
fixed patterns (adjectives before the name, appositives, "X was tall", "X had red hair",
"X wore a grey coat", "X with pink eyes", "X's tanned skin", "his/her ..." after it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence

from imaginize.analysis.lexicon import (
    APPEARANCE_ADJECTIVES,
    BODY,
    CLOTHING,
    COLOURS,
    CREATURES,
    EVERYDAY_THINGS,
    ITEMS,
    MATERIALS,
    NOT_NAMES,
    PERSON_NOUNS,
    PRONOUNS_F,
    PRONOUNS_M,
    SETTING_NOUNS,
    VISUAL_ADJECTIVES,
    words,
)
from imaginize.analysis.names import Mention, is_capitalised
from imaginize.analysis.text import Sentence, Token, in_lexicon

_COPULAS = words("was is looked seemed appeared stood sat")
_INTENSIFIERS = words("very rather quite so too extremely most exceedingly always")
_DANGLING = NOT_NAMES | words(
    """
    against along among around behind beneath beside between beyond like near over past
    through toward towards under with within
    """
)
_HAVE = words("had has")
_CLAUSE_WORDS = words("is was are were not be and or said")
# Predicate adjectives: how something looks, not shapes ("Alice looked round").
_PREDICATE_ADJECTIVES = APPEARANCE_ADJECTIVES | COLOURS
_WEAR = words("wore wearing dressed clad")
_ARTICLES = words("a an the")
_PHRASE_STOPS = frozenset(',.;:!?—–()“”"‘’[]')  # noqa: RUF001
_NOUN_STOPS = NOT_NAMES | words(
    """
    and or but nor with of in on at by to as was were is are be been had has have like
    than upon into over under about against between through out up down off away back
    around across along
    """
)
_WEARABLE = BODY | CLOTHING
_VIVID = COLOURS | MATERIALS
_COMPOUND_LOOKS = words("coloured colored haired eyed faced skinned cheeked tinted striped spotted")
_THINGS = ITEMS | EVERYDAY_THINGS
_CONCRETE = (
    SETTING_NOUNS | ITEMS | BODY | CLOTHING | CREATURES | PERSON_NOUNS | EVERYDAY_THINGS | MATERIALS
)


def _visual(word: str) -> bool:
    """A looks word; compounds count by their parts ("copper-brown", "mustard-yellow")."""
    if word in VISUAL_ADJECTIVES:
        return True
    if "-" not in word:
        return False
    *head, last = word.split("-")
    # "copper-brown", "sea-green"; "straw-haired", "rosy-coloured" (not "rose-tree").
    return last in VISUAL_ADJECTIVES or (last in _COMPOUND_LOOKS and any(map(_visual, head)))


def _wearable(word: str) -> bool:
    return in_lexicon(word, _WEARABLE) or in_lexicon(word.rsplit("-", 1)[-1], _WEARABLE)


def _gap(s: Sentence, a: Token, b: Token) -> str:
    return s.source[a.end : b.start]


def _plain_gap(s: Sentence, a: Token, b: Token) -> bool:
    return not any(ch in _PHRASE_STOPS for ch in _gap(s, a, b))


def _slice(s: Sentence, first: int, last: int) -> str:
    return " ".join(s.source[s.tokens[first].start : s.tokens[last].end].split())


def clause_end(s: Sentence, start: int, limit: int) -> int:
    """Index of the last token of the clause starting at `start` (at most `limit` tokens)."""
    toks = s.tokens
    end = start
    while (
        end + 1 < len(toks) and end + 1 - start < limit and _plain_gap(s, toks[end], toks[end + 1])
    ):
        end += 1
    # A clause cut short should not end on "against" or "the".
    while end > start and toks[end].lower in _DANGLING:
        end -= 1
    return end


# --- patterns around one mention ------------------------------------------------------------


def phrases_at(s: Sentence, first: int, last: int, gender: str | None) -> list[str]:
    """Descriptive phrases next to the mention at tokens first..last of sentence s."""
    out: list[str] = []
    pre = _adjectives_before(s, first)
    if pre:
        out.append(pre)
    out.extend(_after(s, last))
    out.extend(_pronoun_features(s, last, gender))
    return out


def _adjectives_before(s: Sentence, first: int) -> str:
    toks = s.tokens
    j = first - 1
    while j >= 0 and toks[j].lower in _PREDICATE_ADJECTIVES and _plain_gap_or_comma(s, j, j + 1):
        j -= 1
    return _slice(s, j + 1, first - 1) if j + 1 <= first - 1 else ""


def _plain_gap_or_comma(s: Sentence, a: int, b: int) -> bool:
    gap = _gap(s, s.tokens[a], s.tokens[b]).strip()
    return gap in ("", ",")


def _after(s: Sentence, last: int) -> list[str]:
    toks = s.tokens
    k = last + 1
    if k >= len(toks):
        return []
    word = toks[k].lower
    if toks[last].comma_after and word in ("a", "an"):
        return _appositive(s, k)
    if not _plain_gap(s, toks[last], toks[k]):
        return []
    if toks[last].possessive:
        return _owned_feature(s, k)
    if word in _COPULAS:
        return _predicate(s, k + 1)
    if word in _HAVE or word == "with":
        return _feature_clause(s, k + 1, need_visual=True)
    if word in _WEAR:
        start = k + 2 if k + 1 < len(toks) and toks[k + 1].lower == "in" else k + 1
        return _feature_clause(s, start, need_visual=False)
    return []


def _appositive(s: Sentence, start: int) -> list[str]:
    """ "Tom, a sturdy straw-haired man of thirty, ..." -> "a sturdy straw-haired man of thirty"."""
    end = clause_end(s, start, 12)
    toks = s.tokens[start : end + 1]
    # A list of other names or a clause with a verb is no appositive ("the Dodo, a Lory and
    # an Eaglet"; "Cat, a dog's not mad").
    if any(t.possessive or t.lower in _CLAUSE_WORDS or _is_name(t) for t in toks):
        return []
    words = [t.lower for t in toks]
    if any(w in PERSON_NOUNS or w in CREATURES or _wearable(w) for w in words[1:]):
        return [_slice(s, start, end)]
    return []


def _is_name(t: Token) -> bool:
    return is_capitalised(t) and not t.initial and t.lower not in NOT_NAMES


def _predicate(s: Sentence, start: int) -> list[str]:
    """ "was very tall and thin" -> "tall and thin"; "was dressed in white" -> the dress."""
    toks = s.tokens
    k = start
    while k < len(toks) and toks[k].lower in _INTENSIFIERS:
        k += 1
    if k < len(toks) and toks[k].lower in _WEAR:
        return _feature_clause(s, k, need_visual=False)
    end = k - 1
    while end + 1 < len(toks) and (
        toks[end + 1].lower in _PREDICATE_ADJECTIVES or (toks[end + 1].lower == "and" and end >= k)
    ):
        if not _plain_gap_or_comma(s, end, end + 1) and end >= k:
            break
        end += 1
    while end >= k and toks[end].lower == "and":
        end -= 1
    if end < k or (toks[k].lower not in COLOURS and not _striking(toks[k : end + 1])):
        return []
    return [_slice(s, k, end)]


def _striking(words: Sequence[Token]) -> bool:
    """Predicates worth drawing: more than a lone "little" or "old"."""
    return len(words) > 1 or words[0].lower not in ("little", "small", "great", "large", "big")


def _feature_clause(s: Sentence, start: int, need_visual: bool) -> list[str]:
    """ "had long white hair", "with pink eyes", "wore a grey coat"."""
    if start >= len(s.tokens):
        return []
    end = clause_end(s, start, 7)
    words = [t.lower for t in s.tokens[start : end + 1]]
    # Trim at the last body or clothing word: "pink eyes ran close by" -> "pink eyes".
    last_feature = max((i for i, w in enumerate(words) if _wearable(w)), default=-1)
    if last_feature < 0:
        return []
    words = words[: last_feature + 1]
    if need_visual and not any(_visual(w) for w in words):
        return []
    first = start + (1 if words[0] in _ARTICLES and len(words) > 1 and need_visual else 0)
    return [_slice(s, first, start + last_feature)]


def _owned_feature(s: Sentence, start: int) -> list[str]:
    """ "Gatsby's tanned skin" -> "tanned skin"."""
    toks = s.tokens
    end = start
    while end < len(toks) and end - start < 3 and not _wearable(toks[end].lower):
        if not _visual(toks[end].lower):
            return []
        end += 1
    if end >= len(toks) or end == start or not _wearable(toks[end].lower):
        return []
    return [_slice(s, start, end)]


def _pronoun_features(s: Sentence, last: int, gender: str | None) -> list[str]:
    """ "Daisy ... her white dress": his/her + visual words + a body or clothing word, in the
    same sentence and before any other name."""
    if gender is None:
        return []
    pronouns = PRONOUNS_M if gender == "m" else PRONOUNS_F
    toks = s.tokens
    for k in range(last + 1, min(len(toks), last + 25)):
        t = toks[k]
        if is_capitalised(t) and not t.initial and t.lower not in NOT_NAMES:
            return []
        if t.lower in ("his", "her") and t.lower in pronouns:
            found = _owned_feature(s, k + 1)
            if found:
                return found
    return []


# --- visual noun phrases (places, scene details) --------------------------------------------


def visual_noun_phrases(s: Sentence, narrated: Sequence[bool] | None = None) -> list[str]:
    """Adjective-led noun phrases worth drawing: "white palaces", "marble swimming pool",
    "long passage". Colour and material words may describe anything; size and shape words
    only something concrete (not "great disappointment"). With `narrated`, phrases inside
    quotation marks are skipped."""
    return [_slice(s, a, b) for a, b in visual_noun_spans(s, narrated)]


def visual_noun_spans(s: Sentence, narrated: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """Token spans of `visual_noun_phrases`."""
    toks = s.tokens
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(toks):
        if (
            not _visual(toks[i].lower)
            or (is_capitalised(toks[i]) and not toks[i].initial)
            or (narrated is not None and not narrated[i])
        ):
            i += 1
            continue
        j = i
        while j + 1 < len(toks) and _visual(toks[j + 1].lower) and _plain_gap_or_comma(s, j, j + 1):
            j += 1
        noun = _noun_after(s, j)
        if noun is None:
            i = j + 1
            continue
        if (
            noun + 1 < len(toks)
            and _concrete(toks[noun + 1])
            and _plain_gap(s, toks[noun], toks[noun + 1])
        ):
            noun += 1  # a compound: "swimming pool", "kid gloves"
        vivid = any(_vivid(t.lower) for t in toks[i : j + 1])
        if vivid or _concrete(toks[noun]):
            out.append((i, noun))
        i = noun + 1
    return out


def _vivid(word: str) -> bool:
    """A colour or material word, or a compound with one ("sea-green")."""
    return _visual(word) and any(in_lexicon(p, _VIVID) for p in word.split("-"))


def _concrete(t: Token) -> bool:
    """A noun for a thing one can draw; compounds by their last part ("rose-tree")."""
    return _noun_like(t) and in_lexicon(t.lower.rsplit("-", 1)[-1], _CONCRETE)


def _noun_after(s: Sentence, j: int) -> int | None:
    toks = s.tokens
    k = j + 1
    if k >= len(toks) or not _plain_gap(s, toks[j], toks[k]) or not _noun_like(toks[k]):
        return None
    return k


def _noun_like(t: Token) -> bool:
    w = t.lower
    return (
        t.text[:1].islower()
        and t.text.replace("-", "").isalpha()
        and w not in _NOUN_STOPS
        and not w.endswith("ly")
        and not (w.endswith("ed") and not in_lexicon(w, _CONCRETE))  # "lemons arrived"
        and not _visual(w)
    )


def concrete_nouns(s: Sentence, narrated: Sequence[bool]) -> list[str]:
    """Portable things named in narration with an article: "the hookah", "a jar"."""
    toks = s.tokens
    out: list[str] = []
    for k in range(1, len(toks)):
        t = toks[k]
        if not narrated[k] or toks[k - 1].lower not in _ARTICLES:
            continue
        if _noun_like(t) and in_lexicon(t.lower, _THINGS):
            out.append(t.text)
    return out


# --- ranking ----------------------------------------------------------------------------------


def rank_phrases(phrases: Iterable[str], limit: int) -> list[str]:
    """Most frequent first (ties: first seen); drop phrases contained in a chosen one."""
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    shown: dict[str, str] = {}
    for i, p in enumerate(phrases):
        key = p.lower()
        counts[key] += 1
        first_seen.setdefault(key, i)
        shown.setdefault(key, p)
    order = sorted(counts, key=lambda k: (-counts[k], -_richness(k), first_seen[k]))
    chosen: list[str] = []
    for key in order:
        if any(key in c or c in key for c in chosen):
            continue
        chosen.append(key)
        if len(chosen) == limit:
            break
    return [shown[k] for k in chosen]


def _richness(phrase: str) -> int:
    words = phrase.split()
    return sum(1 for w in words if _visual(w) or _wearable(w))


def mention_phrases(
    sentences: Sequence[Sentence],
    mentions: Sequence[Mention],
    gender: str | None,
    dialogue: Sequence[bool],
    figures: Collection[str],
) -> list[str]:
    """All descriptive phrases found around the mentions, in text order. Sentences flagged
    in `dialogue` are skipped: what characters say about each other is rarely a portrait.
    `figures` are the words of other characters' and creatures' names: a sentence naming
    one of them may be describing that one instead."""
    out: list[str] = []
    for m in mentions:
        if dialogue[m.sentence]:
            continue
        s = sentences[m.sentence]
        out.extend(phrases_at(s, m.first, m.last, gender))
        if not _other_figures(s, m.first, m.last, figures):
            out.extend(_worn(s, after=m.last))
            out.extend(_following(sentences, m.sentence, gender, dialogue, figures))
    return out


_FOLLOW = 3  # sentences after a mention that may go on describing the same figure


def _following(
    sentences: Sequence[Sentence],
    at: int,
    gender: str | None,
    dialogue: Sequence[bool],
    figures: Collection[str],
) -> list[str]:
    """ "Gatsby came in. He wore a pink suit. His face was pale." - the next few narrated
    sentences that open with the matching he/his or she/her, until another figure is named
    or the narration moves on (dialogue, or more than one paragraph later)."""
    if gender is None:
        return []
    subject, owner = ("he", "his") if gender == "m" else ("she", "her")
    out: list[str] = []
    for j in range(at + 1, min(len(sentences), at + 1 + _FOLLOW)):
        nxt = sentences[j]
        if dialogue[j] or nxt.para > sentences[at].para + 1 or not nxt.tokens:
            break
        if _other_figures(nxt, -1, -1, figures):
            break
        opening = nxt.tokens[0].lower
        if opening == subject:
            out.extend(_after(nxt, 0))
        if opening in (subject, owner):
            out.extend(_worn(nxt))
    return out


def _other_figures(s: Sentence, first: int, last: int, figures: Collection[str]) -> bool:
    """Whether the sentence names a figure besides the mention at first..last."""
    return any(t.base in figures and not first <= i <= last for i, t in enumerate(s.tokens))


def _worn(s: Sentence, after: int = -1) -> list[str]:
    """Visual phrases about a body or clothes ("short copper-brown hair") after token
    `after` of a sentence about one figure: they are almost always that figure's."""
    return [
        _slice(s, a, b)
        for a, b in visual_noun_spans(s)
        if a > after and _wearable(s.tokens[b].lower)
    ]


def phrases_near(s: Sentence, first: int, last: int, reach: int = 8) -> list[str]:
    """Visual noun phrases within `reach` words of tokens first..last."""
    return [
        _slice(s, a, b) for a, b in visual_noun_spans(s) if a <= last + reach and b >= first - reach
    ]
