"""Visual phrases pulled from the text: how a character, creature, place or item looks.

Nothing is invented: every phrase is a run of words from the book ("pink eyes", "a sturdy
straw-haired man of thirty", "white palaces"), found next to a mention of the thing by a few
fixed patterns (adjectives before the name, appositives, "X was tall", "X had red hair",
"X wore a grey coat", "X with pink eyes", "X's tanned skin", "his/her ..." after it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from imaginize.analysis.offline.lexicon import (
    APPEARANCE_ADJECTIVES,
    BODY,
    CLOTHING,
    COLOURS,
    CREATURES,
    EVERYDAY_THINGS,
    FABRICS,
    ITEMS,
    LIKE_AS_VERB,
    MATERIALS,
    NOT_NAMES,
    PERSON_NOUNS,
    SETTING_NOUNS,
    SIMILE_OPENERS,
    VISUAL_ADJECTIVES,
    words,
)
from imaginize.analysis.offline.names import Mention, is_capitalised
from imaginize.analysis.offline.text import Sentence, Token, in_lexicon

_COPULAS = words("was is looked seemed appeared stood sat")
_INTENSIFIERS = words("very rather quite so too extremely most exceedingly always")
_DANGLING = NOT_NAMES | words(
    """
    against along among around behind beneath beside between beyond like near over past
    through toward towards under with within somewhere everywhere anywhere
    """
)
# Ages and counts a predicate may open with: "was twelve, tall and thin".
_NUMBER_WORDS = words(
    """
    one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy
    eighty ninety hundred
    """
)
# Participles of something on the skin or clothes: "dusted with flour", "caked in mud".
_COATED = words(
    """
    dusted covered stained smeared streaked spattered splashed caked daubed flecked
    powdered plastered crusted splattered blackened
    """
)
_ASIDE_OPEN = ("\u2014", "\u2013", "(", "--")
_ASIDE_CLOSE = ("\u2014", "\u2013", ")", "--")
_ASIDE_REACH = 14
# Subject and owner pronouns by gender; "n" is an animal's "it".
_PERSONAL = {"m": ("he", "his"), "f": ("she", "her"), "n": ("it", "its"), "i": ("i", "my")}
# Body words that say something only with an owner: "its great mossy back".
_OWNED_ONLY = words("back belly side sides")
_HAVE = words("had has")
_CLAUSE_WORDS = words("is was are were not be and or said")
# Predicate adjectives: how something looks, not shapes ("Alice looked round").
_PREDICATE_ADJECTIVES = APPEARANCE_ADJECTIVES | COLOURS
_WEAR = words("wore wearing dressed clad")
_ARTICLES = words("a an the")
_DETERMINERS = _ARTICLES | words("this that its their our his her my your")
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
# What a place looks like is told by its scenery, not by the boats moored in it.
_SCENERY = SETTING_NOUNS | EVERYDAY_THINGS
_CONCRETE = (
    SETTING_NOUNS | ITEMS | BODY | CLOTHING | CREATURES | PERSON_NOUNS | EVERYDAY_THINGS | MATERIALS
)


def adjectives_before(tokens: Sequence[Token], i: int) -> int:
    """Where the run of visual adjectives just before token `i` starts ("the little red fox":
    the index of "little"); `i` when there is none."""
    start = i
    while start > 0 and tokens[start - 1].lower in VISUAL_ADJECTIVES:
        start -= 1
    return start


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
    """A body or clothing word; compounds by any part ("tail-tip", "waistcoat-pocket")."""
    return in_lexicon(word, _WEARABLE) or (
        "-" in word and any(in_lexicon(p, _WEARABLE) for p in word.split("-"))
    )


def _gap(s: Sentence, a: int, b: int) -> str:
    return s.between(a, b)


def _plain_gap(s: Sentence, a: int, b: int) -> bool:
    return not any(ch in _PHRASE_STOPS for ch in _gap(s, a, b))


def _slice(s: Sentence, first: int, last: int) -> str:
    return " ".join(s.words(first, last).split())


def clause_end(s: Sentence, start: int, limit: int) -> int:
    """Index of the last token of the clause starting at `start` (at most `limit` tokens)."""
    toks = s.tokens
    end = start
    while end + 1 < len(toks) and end + 1 - start < limit and _plain_gap(s, end, end + 1):
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
    out.extend(_after(s, last, first))
    out.extend(_pronoun_features(s, last, gender))
    return out


def _adjectives_before(s: Sentence, first: int) -> str:
    toks = s.tokens
    j = first - 1
    while j >= 0 and toks[j].lower in _PREDICATE_ADJECTIVES and _plain_gap_or_comma(s, j, j + 1):
        j -= 1
    return _slice(s, j + 1, first - 1) if j + 1 <= first - 1 else ""


def _plain_gap_or_comma(s: Sentence, a: int, b: int) -> bool:
    gap = _gap(s, a, b).strip()
    return gap in ("", ",")


def _after(s: Sentence, last: int, first: int | None = None) -> list[str]:
    toks = s.tokens
    k = last + 1
    if k >= len(toks):
        return []
    if (
        first is not None
        and first > 0
        and toks[first - 1].comma_after
        and toks[last].comma_after
        and toks[k].lower in _COPULAS
    ):
        # "The sister, Catherine, was a slender, worldly girl": the name is an aside.
        return _after_verb(s, k)
    resume = _aside_end(s, last)
    if resume is not None:
        # "Tobias Marsh—Tib to everyone—was twelve": the aside says nothing of the looks.
        return _after_verb(s, resume)
    word = toks[k].lower
    if toks[last].comma_after and word in ("a", "an"):
        return _appositive(s, k)
    if not _plain_gap(s, last, k):
        return []
    if toks[last].possessive:
        return _owned_feature(s, k)
    return _after_verb(s, k)


def _after_verb(s: Sentence, k: int) -> list[str]:
    """Phrases after the verb at token k that follows a mention: "was tall", "had red hair",
    "wore a grey coat"."""
    toks = s.tokens
    word = toks[k].lower
    if word in _COPULAS:
        return _predicate(s, k + 1)
    if word in _HAVE or word == "with":
        return _feature_clause(s, k + 1, need_visual=True)
    if word in _WEAR:
        start = k + 2 if k + 1 < len(toks) and toks[k + 1].lower == "in" else k + 1
        return _feature_clause(s, start, need_visual=False)
    return []


def _aside_end(s: Sentence, last: int) -> int | None:
    """The token after a dash or bracket aside that follows token `last`, when the aside
    closes within a few words."""
    toks = s.tokens
    if last + 1 >= len(toks) or _gap(s, last, last + 1).strip() not in _ASIDE_OPEN:
        return None
    for j in range(last + 1, min(len(toks) - 1, last + _ASIDE_REACH)):
        gap = _gap(s, j, j + 1).strip()
        if gap in _ASIDE_CLOSE:
            return j + 1
        if gap:
            return None
    return None


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
    """ "was very tall and thin" -> "tall and thin"; "was dressed in white" -> the dress;
    "was twelve, tall and thin as a broom handle, and always dusted with flour" -> "tall and
    thin as a broom handle", "dusted with flour"."""
    toks = s.tokens
    k = _skip(toks, start, _INTENSIFIERS)
    if k < len(toks) and toks[k].lower in _WEAR:
        return _feature_clause(s, k, need_visual=False)
    if k < len(toks) and toks[k].lower in ("a", "an"):
        return _figure_phrase(s, k)
    k = _skip_age(s, k)
    out: list[str] = []
    end = k - 1
    while end + 1 < len(toks) and (
        toks[end + 1].lower in _PREDICATE_ADJECTIVES
        or (toks[end + 1].lower == "and" and end >= k)
        or (
            toks[end + 1].lower in _INTENSIFIERS
            and end >= k
            and end + 2 < len(toks)
            and toks[end + 2].lower in _PREDICATE_ADJECTIVES
        )
    ):
        if not _plain_gap_or_comma(s, end, end + 1) and end >= k:
            break
        end += 1
    while end >= k and toks[end].lower == "and":
        end -= 1
    if end >= k and (toks[k].lower in COLOURS or _striking(toks[k : end + 1])):
        end = _simile_end(s, end)
        out.append(_slice(s, k, end))
    coated = _coating(s, max(end + 1, k))
    if coated:
        out.append(coated)
    return out


_FIGURE_REACH = 6  # words from "a" to the noun: "a sturdy straw-haired man"
_PLAIN_LOOKS = words("little small great large big old young")


def _figure_phrase(s: Sentence, k: int) -> list[str]:
    """ "was a tall, large woman, with strongly-marked features" -> "a tall, large woman",
    "strongly-marked features": adjectives that draw the figure, then a word for a person
    or an animal; "of thirty" stays with it. A lone "a little man" says too little."""
    toks = s.tokens
    j = k + 1
    looks: list[str] = []
    while j < len(toks) and j - k <= _FIGURE_REACH:
        w = toks[j].lower
        if w in PERSON_NOUNS or w in CREATURES:
            break
        if not toks[j].text[:1].islower() or w in _NOUN_STOPS - {"and"}:
            return []
        if not _plain_gap_or_comma(s, j - 1, j):
            return []
        if _visual(w):
            looks.append(w)
        j += 1
    else:
        return []
    if not looks or (len(looks) == 1 and looks[0] in _PLAIN_LOOKS and j - k == 2):
        return []
    end = j
    if (
        end + 2 < len(toks)
        and toks[end + 1].lower == "of"
        and (toks[end + 2].lower in _NUMBER_WORDS or toks[end + 2].text.isdigit())
        and _plain_gap(s, end, end + 2)
    ):
        end += 2  # "a sturdy straw-haired man of thirty"
    out = [_slice(s, k, end)]
    if end + 1 < len(toks) and toks[end + 1].lower == "with":
        out.extend(_feature_clause(s, end + 2, need_visual=True))
    return out


def _skip(toks: Sequence[Token], k: int, skipped: Collection[str]) -> int:
    while k < len(toks) and toks[k].lower in skipped:
        k += 1
    return k


def _skip_age(s: Sentence, k: int) -> int:
    """Past an age or count opening a predicate: "twelve,", "eleven years old and"."""
    toks = s.tokens
    if k >= len(toks) or not (toks[k].lower in _NUMBER_WORDS or toks[k].text.isdigit()):
        return k
    j = k + 1
    if j + 1 < len(toks) and toks[j].lower in ("years", "year") and toks[j + 1].lower == "old":
        j += 2
    if j < len(toks) and toks[j].lower == "and":
        j += 1
    elif j >= len(toks) or _gap(s, j - 1, j).strip() != ",":
        return k
    return j


def _simile_end(s: Sentence, end: int) -> int:
    """ "thin as a broom handle": the comparison belongs to the picture."""
    toks = s.tokens
    if (
        end + 3 < len(toks)
        and toks[end + 1].lower == "as"
        and toks[end + 2].lower in _ARTICLES
        and _plain_gap(s, end, end + 3)
    ):
        return clause_end(s, end + 3, 3)
    return end


def _coating(s: Sentence, k: int) -> str:
    """ ", and always dusted with flour" -> "dusted with flour"."""
    toks = s.tokens
    if k > 0 and k < len(toks) and _gap(s, k - 1, k).strip() not in ("", ","):
        return ""
    k = _skip(toks, _skip(toks, k, ("and",)), _INTENSIFIERS)
    if (
        k + 2 >= len(toks)
        or toks[k].lower not in _COATED
        or toks[k + 1].lower not in ("with", "in")
    ):
        return ""
    if not _plain_gap(s, k, k + 2):
        return ""
    return _slice(s, k, clause_end(s, k + 2, 4))


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

    def owned(word: str) -> bool:
        return _wearable(word) or word in _OWNED_ONLY

    end = start
    while end < len(toks) and end - start < 3 and not owned(toks[end].lower):
        if not _visual(toks[end].lower):
            return []
        end += 1
    if end >= len(toks) or not owned(toks[end].lower):
        return []
    if end == start:
        return _body_predicate(s, start)
    return [_slice(s, start, end)]


def _body_predicate(s: Sentence, k: int) -> list[str]:
    """ "her eyes were dark" -> "dark eyes"; "his eyes were bright and tired" -> "bright and
    tired eyes" (the words of the text, the noun put after them); "her coat was covered in
    mud" -> "coat covered in mud"."""
    toks = s.tokens
    if k + 1 >= len(toks) or toks[k + 1].lower not in ("was", "were", "is", "are"):
        return []
    if not _plain_gap(s, k, k + 1):
        return []
    looks = _predicate(s, k + 2)
    if not looks or _wearable(looks[0].split()[-1].lower()):
        return []
    if looks[0].split()[0].lower() in _COATED:
        return [f"{toks[k].text} {looks[0]}"]  # "coat covered in mud"
    return [f"{looks[0]} {toks[k].text}"]


def _pronoun_features(s: Sentence, last: int, gender: str | None) -> list[str]:
    """ "Daisy ... her white dress": his/her + visual words + a body or clothing word, in the
    same sentence and before any other name."""
    if gender not in _PERSONAL:
        return []
    subject, owner = _PERSONAL[gender]
    toks = s.tokens
    for k in range(last + 1, min(len(toks), last + 25)):
        t = toks[k]
        if is_capitalised(t) and not t.initial and t.lower not in NOT_NAMES:
            return []
        if t.lower == subject and k + 1 < len(toks) and toks[k + 1].lower in _WEAR:
            # "was the King; and as he wore his crown over the wig"
            found = _feature_clause(s, k + 2, need_visual=False)
            if found:
                return found
        if t.lower == owner:
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
        if noun is None and j > i and toks[j].lower in MATERIALS and not toks[j].initial:
            out.append((i, j))  # "shaggy brown fur", "white silk": the material is the noun
            i = j + 1
            continue
        if noun is None:
            i = j + 1
            continue
        if noun + 1 < len(toks) and _concrete(toks[noun + 1]) and _plain_gap(s, noun, noun + 1):
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
    if k >= len(toks) or not _plain_gap(s, j, k) or not _noun_like(toks[k]):
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
    return [s.tokens[k].text for k, _ in concrete_noun_spans(s, narrated)]


def concrete_noun_spans(s: Sentence, narrated: Sequence[bool]) -> list[tuple[int, int]]:
    """Token spans (one token each) of `concrete_nouns`."""
    toks = s.tokens
    out: list[tuple[int, int]] = []
    for k in range(1, len(toks)):
        t = toks[k]
        if not narrated[k] or toks[k - 1].lower not in _ARTICLES:
            continue
        if _noun_like(t) and in_lexicon(t.lower, _THINGS):
            out.append((k, k))
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
    figures: Mapping[str, str | None],
) -> list[str]:
    """All descriptive phrases found around the mentions, in text order. Sentences flagged
    in `dialogue` are skipped: what characters say about each other is rarely a portrait.
    `figures` are the words of characters' and creatures' names (with the pronoun gender
    of each, None when unknown or shared): a sentence naming another one of them may be
    describing that one instead."""
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
    figures: Mapping[str, str | None],
) -> list[str]:
    """ "Gatsby came in. He wore a pink suit. His face was pale." - the next few narrated
    sentences that open with the matching he/his or she/her, until another figure is named
    or the narration moves on (dialogue, or more than one paragraph later)."""
    if gender not in _PERSONAL:
        return []
    out: list[str] = []
    moved = False
    for j in range(at + 1, min(len(sentences), at + 1 + _FOLLOW)):
        nxt = sentences[j]
        if dialogue[j] or nxt.para > sentences[at].para + 1 or not nxt.tokens:
            break
        if not _about(nxt, gender):
            moved = True
            continue
        got = _continued(nxt, gender, figures)
        if got is None:
            break
        if moved:
            # "... when the proprietor himself appeared. He was a blond, spiritless man":
            # once the narration has turned to something else, "He was a ..." may bring in
            # someone new.
            got = [p for p in got if p.split()[0].lower() not in ("a", "an")]
        out.extend(got)
    return out


def _about(s: Sentence, gender: str) -> bool:
    """Whether a sentence goes on about someone by pronoun: it opens with he or his (she or
    her, it or its), or a clause after a semicolon opens with he."""
    subject, owner = _PERSONAL[gender]
    opening = s.tokens[0].lower
    return opening in (subject, owner) or _clause_opening(s, subject) is not None


def _continued(s: Sentence, gender: str, figures: Mapping[str, str | None]) -> list[str] | None:
    """The phrases of a sentence that goes on about a figure by pronoun ("She wore a grey
    coat", "Its eyes were amber"), or None when it names another figure the pronoun may
    mean. A figure the pronoun cannot mean (Wren, for an "it") leaves the pronoun's own
    phrases: "It stopped beside Wren, until its great mossy back was level with her"."""
    subject, owner = _PERSONAL[gender]
    opening = s.tokens[0].lower
    others = {figures[t.base] for t in s.tokens if t.base in figures}
    if others and (gender in others or None in others):
        return None
    if opening not in (subject, owner):
        # "I wish you could see him; he is very tall of his age, with ... blue eyes"
        k = _clause_opening(s, subject)
        if k is None:
            return []
        return _after(s, k) + ([] if others else _worn(s, after=k))
    got = _after(s, 0) if opening == subject else []
    if opening == owner:
        got += _owned_feature(s, 1)  # "Its eyes were large and amber."
    if opening not in (subject, owner):
        return got
    if not others:
        return got + _worn(s)
    owned = [k + 1 for k, t in enumerate(s.tokens) if t.lower == owner]
    return got + [p for k in owned for p in _owned_feature(s, k)]


def _clause_opening(s: Sentence, subject: str) -> int | None:
    """The token of a clause after a semicolon that opens with `subject` ("; he is")."""
    toks = s.tokens
    for k in range(1, len(toks)):
        if toks[k].lower == subject and ";" in _gap(s, k - 1, k):
            return k
    return None


def first_person_phrases(
    sentences: Sequence[Sentence], narrated: Sequence[Sequence[bool]], dialogue: Sequence[bool]
) -> list[str]:
    """What a first-person narrator says of their own looks: "I was tall and thin", "I wore
    a grey coat", "my red hair"."""
    out: list[str] = []
    for s, flags, spoken in zip(sentences, narrated, dialogue, strict=True):
        if spoken:
            continue
        for k, (t, flag) in enumerate(zip(s.tokens, flags, strict=True)):
            if flag and t.text == "I":
                out.extend(phrases_at(s, k, k, "i"))
    return out


def described_run(
    sentences: Sequence[Sentence],
    at: int,
    gender: str | None,
    dialogue: Sequence[bool],
    figures: Mapping[str, str | None],
) -> tuple[int, int]:
    """The last of the sentences right after `at`, in its paragraph, that go on describing
    the figure ("Madame Corvo sat at her stall. She was small and very old, with white
    hair ..."), and how many phrases they give."""
    if gender not in _PERSONAL:
        return at, 0
    last, found = at, 0
    for j in range(at + 1, min(len(sentences), at + 1 + _FOLLOW)):
        nxt = sentences[j]
        if dialogue[j] or nxt.para != sentences[at].para or not nxt.tokens:
            break
        got = _continued(nxt, gender, figures)
        if not got:
            break
        last, found = j, found + len(got)
    return last, found


def _other_figures(s: Sentence, first: int, last: int, figures: Mapping[str, str | None]) -> bool:
    """Whether the sentence names a figure besides the mention at first..last."""
    return any(t.base in figures and not first <= i <= last for i, t in enumerate(s.tokens))


def _worn(s: Sentence, after: int = -1) -> list[str]:
    """Visual phrases about a body, clothes or a cloth ("short copper-brown hair",
    "cream-coloured chiffon") after token `after` of a sentence about one figure: they are
    almost always that figure's."""
    return [
        _slice(s, a, b)
        for a, b in visual_noun_spans(s)
        if a > after and (_wearable(s.tokens[b].lower) or s.tokens[b].lower in FABRICS)
    ]


def with_phrase_at(s: Sentence, last: int) -> list[str]:
    """A named thing's (a ship's, a sword's) "with ..." after its name or its appositive:
    "the Kittiwake, the fastest boat in the fleet, with a sea-green hull and sails dyed the
    deep red of rosehips"; only when it carries a looks word."""
    out: list[str] = []
    toks = s.tokens
    k = last + 1
    if k < len(toks) and _gap(s, last, k).strip() == "," and toks[k].lower in _ARTICLES:
        # Past the appositive, to the comma that closes it.
        end = clause_end(s, k, 12)
        k = end + 1 if toks[end].comma_after else len(toks)
    if k + 1 < len(toks) and toks[k].lower == "with":
        end = clause_end(s, k + 1, 14)
        span = toks[k + 1 : end + 1]
        # Its looks, not who is aboard: "with three old men aboard" is no hull.
        aboard = any(t.lower in PERSON_NOUNS or t.lower in CREATURES for t in span)
        if any(_visual(t.lower) for t in span) and not aboard and not any(map(_is_name, span)):
            out.append(_slice(s, k + 1, end))
    return out


def place_phrases_at(s: Sentence, first: int, last: int) -> list[str]:
    """How the text shows a place named at tokens first..last: an appositive ("Gannet Rock:
    a black tooth of stone with white birds wheeling around it"), "the white palaces of
    East Egg", "Brindlehook was grey and steep". Scenery merely near the name ("up the long
    green hill to where ... Hollowmere Wood began") is some other place."""
    toks = s.tokens
    out: list[str] = []
    pre = _adjectives_before(s, first)
    if pre:
        det = first - len(pre.split()) - 1
        # "the dark Rhine", not "before them rose Mont Blanc".
        if det >= 0 and toks[det].lower in _DETERMINERS:
            out.append(pre)
    k = last + 1
    if k < len(toks) and toks[k].lower in _COPULAS and _plain_gap(s, last, k):
        out.extend(_predicate(s, k + 1))
    if (
        k < len(toks)
        and _gap(s, last, k).strip() in (",", ":", "\u2014")
        and toks[k].lower in _ARTICLES
    ):
        end = clause_end(s, k, 12)
        span = [t.lower for t in toks[k : end + 1]]
        if any(map(_visual, span)) and not any(_is_name(t) for t in toks[k : end + 1]):
            out.append(_slice(s, k, end))
    for a, b in visual_noun_spans(s):
        if not in_lexicon(toks[b].lower, _SCENERY):
            continue  # "the tragic eyes and short upper lips of southeastern Europe"
        if b + 2 <= first and toks[b + 1].lower == "of" and first - (b + 2) <= 2:
            between = toks[b + 2 : first]
            if all(t.text[:1].islower() for t in between) and _plain_gap(s, b, first):
                out.append(_slice(s, a, b))
    return out


# --- comparisons ------------------------------------------------------------------------------


def figurative_tokens(s: Sentence) -> frozenset[int]:
    """Indices of the tokens inside a comparison, which a picture must not take literally:
    "glaring at her like a wild beast", "as if to a vigil beside a body", "as pale as a
    ghost". A comparison runs to the next clause mark or "and"."""
    toks = s.tokens
    out: set[int] = set()
    k = 0
    while k < len(toks):
        start = _comparison_start(s, k)
        if start is None:
            k += 1
            continue
        end = start
        while (
            end < len(toks)
            and toks[end].lower != "and"
            and (end == start or _plain_gap(s, end - 1, end))
        ):
            out.add(end)
            end += 1
        k = max(end, k + 1)
    return frozenset(out)


def _comparison_start(s: Sentence, k: int) -> int | None:
    """The first token compared with when a comparison opens at token k, else None."""
    toks = s.tokens
    w = toks[k].lower
    nxt = toks[k + 1].lower if k + 1 < len(toks) else ""
    if w in SIMILE_OPENERS:
        prev = toks[k - 1].lower if k > 0 else ""
        if not nxt or nxt == "to" or prev in LIKE_AS_VERB:
            return None
        return k + 1
    if w == "as" and nxt in ("if", "though") and k + 2 < len(toks):
        return k + 2
    # "as pale as a ghost": the second "as" before an article.
    if (
        w == "as"
        and k >= 2
        and toks[k - 2].lower == "as"
        and nxt in _ARTICLES
        and _plain_gap(s, k - 2, k)
    ):
        return k + 1
    return None
