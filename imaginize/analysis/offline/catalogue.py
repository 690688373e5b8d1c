"""The book-wide catalogue of elements: every recurring character, creature, place and item,
with its aliases and a visual description gathered from the whole book.

Built once per book; each chunk is then matched against it, so a character is named and
described the same way in every chapter.
"""

from __future__ import annotations

import gc
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from imaginize.analysis.offline.describe import (
    adjectives_before,
    described_run,
    first_person_phrases,
    mention_phrases,
    phrases_at,
    place_phrases_at,
    rank_phrases,
    with_phrase_at,
)
from imaginize.analysis.offline.lexicon import (
    ADULT_TITLES,
    BARE_HONORIFICS,
    COLOURS,
    CREATURES,
    EPITHETS,
    HONORIFICS,
    ITEMS,
    MATERIALS_SHAPES,
    NOT_NAMES,
    PERSON_NOUNS,
    PLACE_PREFIXES,
    PLACE_TYPES,
    VEHICLES,
    VISUAL_ADJECTIVES,
    words,
)
from imaginize.analysis.offline.names import (
    Key,
    Mention,
    NameGroup,
    appositive_noun,
    core,
    first_person_share,
    group_names,
    is_capitalised,
    name_word,
    narrator_group,
    vessel_mentions,
    with_teller_names,
)
from imaginize.analysis.offline.text import (
    Sentence,
    narrated_tokens,
    normalize_ws,
    quoted_shares,
    split_text,
    split_texts,
    word_length,
)
from imaginize.model import Element, ElementKind

# Determiners that make a common noun a particular thing: "the key", "her fan".
_DETERMINERS = words("the this that his her my its their your our a an one")
_DEFINITE = words("the this that his her my its their your our")
# Generic words for animals say little on their own; they need more mentions to count.
_GENERIC_CREATURES = words("animal animals creature creatures beast beasts thing")
_PLACE_LEADS = {"Mount": "mountain", "Mt": "mountain", "Mont": "mountain", "Isle": "island"}
_MAX_DESCRIPTION_PHRASES = 4
_FIGURES = (ElementKind.CHARACTER, ElementKind.CREATURE)
# The sentence that closes a description with no looks in it. It tells the reader of the
# guide that the text describes nothing; prompt builders drop it (`look_of`).
NO_LOOK = "The text gives no physical description."
NARRATOR = "the narrator"  # the name of a first-person narrator nobody names
# Share of the narration that is "I" from which a story is told in the first person.
FIRST_PERSON_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Entry:
    """One catalogued element. `keys` are the token sequences that mention it (lower case
    when `common`, i.e. an item or creature known by a common noun, like "the golden key")."""

    name: str
    kind: ElementKind
    aliases: tuple[str, ...]
    gender: str | None  # "m", "f", "n" (an animal's "it") or unknown
    count: int
    description: str
    descriptor: str
    keys: tuple[Key, ...]
    common: bool
    narrator: bool = False  # the "I" of a first-person story


@dataclass(frozen=True, slots=True)
class Hit:
    """A mention of entry `entry` at tokens first..last of sentence `sentence`."""

    sentence: int
    entry: int
    first: int
    last: int


_GENDERS = (None, "m", "f", "n")


def _entry_json(e: Entry) -> dict[str, Any]:
    return {
        "name": e.name,
        "kind": e.kind.value,
        "aliases": list(e.aliases),
        "gender": e.gender,
        "count": e.count,
        "description": e.description,
        "descriptor": e.descriptor,
        "keys": [list(k) for k in e.keys],
        "common": e.common,
        "narrator": e.narrator,
    }


def _entry_from_json(d: Any) -> Entry:
    """An `Entry` from `_entry_json`'s data, every field checked (ValueError otherwise)."""
    texts = ("name", "description", "descriptor")
    if (
        not all(isinstance(d[f], str) for f in texts)
        or not _strings(d["aliases"])
        or not isinstance(d["keys"], list)
        or not all(_strings(k) and k for k in d["keys"])
        or d["gender"] not in _GENDERS
        or type(d["count"]) is not int
        or type(d["common"]) is not bool
        or type(d["narrator"]) is not bool
    ):
        raise ValueError(f"bad entry {str(d)[:80]}")
    return Entry(
        name=d["name"],
        kind=ElementKind(d["kind"]),
        aliases=tuple(d["aliases"]),
        gender=d["gender"],
        count=d["count"],
        description=d["description"],
        descriptor=d["descriptor"],
        keys=tuple(tuple(k) for k in d["keys"]),
        common=d["common"],
        narrator=d["narrator"],
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class Catalogue:
    """Every recurring element of a set of texts (a book's chapters), and the means to find
    them again in any chunk of those texts."""

    def __init__(self, texts: Sequence[str]) -> None:
        # Each text's sentences, so a chunk that is a whole chapter is not split twice.
        self._split: dict[str, list[Sentence]] = {}
        # The cyclic collector would walk the book's millions of tokens again and again while
        # they pile up (a fifth of the build on a 2-million-word book); nothing built here
        # is garbage in a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            entries, self.figures, self._name_words = self._build(texts)
        finally:
            if collecting:
                gc.enable()
        self._index(entries)

    def _build(self, texts: Sequence[str]) -> tuple[list[Entry], dict[str, str | None], set[str]]:
        sentences: list[Sentence] = []
        for text, own in zip(texts, split_texts(texts), strict=True):
            self._split.setdefault(text, own)
            sentences.extend(own)
        # Words never written in lower case: names, even when they open a sentence.
        common = {t.lower for s in sentences for t in s.tokens if t.text[:1].islower()}
        name_words = {t.base for s in sentences for t in s.tokens if t.lower not in common}
        groups = group_names(sentences)
        dialogue = _spoken(sentences, quoted_shares(sentences))
        figures = _figure_words(groups)
        # A first-person story: who "I" is, by name when the others address them by one.
        narrated = narrated_tokens(sentences)
        first_person = first_person_share(sentences, narrated) >= FIRST_PERSON_SHARE
        teller = narrator_group(sentences, groups, narrated) if first_person else None
        if teller is not None:
            groups = with_teller_names(sentences, groups, teller, narrated)
        own = first_person_phrases(sentences, narrated, dialogue) if first_person else []
        looks = _species_looks(sentences, groups)
        entries = [
            _name_entry(sentences, g, dialogue, figures, own if g is teller else None, looks)
            for g in groups
        ]
        taken = {w.lower() for g in groups for k in g.keys for w in k}
        entries += _common_entries(sentences, taken)
        if first_person and teller is None:
            entries.append(_unnamed_narrator(own, sentences, narrated))
        entries.sort(key=lambda e: (-e.count, e.name))
        return entries, figures, name_words

    def _index(self, entries: Sequence[Entry]) -> None:
        """What `find` looks names up in."""
        self.entries: tuple[Entry, ...] = tuple(entries)
        self.narrator = next((i for i, e in enumerate(self.entries) if e.narrator), None)
        self._names: dict[str, list[tuple[Key, int]]] = defaultdict(list)
        self._common: dict[str, int] = {}
        for i, e in enumerate(self.entries):
            for k in e.keys:
                if e.common:
                    self._common.setdefault(k[0], i)
                else:
                    self._names[k[0]].append((k, i))
        for cands in self._names.values():
            cands.sort(key=_longest)

    def to_json(self) -> dict[str, Any]:
        """What `find` and the chunks' elements need, as JSON data (`from_json`): not the
        book's sentences, which a chunk splits again (`sentences`)."""
        return {
            "entries": [_entry_json(e) for e in self.entries],
            "figures": self.figures,
            "name_words": sorted(self._name_words),
        }

    @classmethod
    def from_json(cls, data: Any) -> Catalogue:
        """The catalogue `to_json` gave; ValueError when `data` is not one."""
        try:
            entries = [_entry_from_json(e) for e in data["entries"]]
            figures = data["figures"]
            name_words = data["name_words"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a catalogue: {exc!r}") from exc
        if not isinstance(figures, dict) or not all(
            isinstance(k, str) and v in (None, "m", "f", "n") for k, v in figures.items()
        ):
            raise ValueError("not a catalogue: bad figures")
        if not isinstance(name_words, list) or not all(isinstance(w, str) for w in name_words):
            raise ValueError("not a catalogue: bad name_words")
        catalogue = cls.__new__(cls)
        catalogue._split = {}
        catalogue.figures = figures
        catalogue._name_words = set(name_words)
        catalogue._index(entries)
        return catalogue

    def sentences(self, text: str) -> list[Sentence]:
        """The sentences of `text`, reusing the split of a catalogued text."""
        found = self._split.get(text)
        return found if found is not None else split_text(text)

    def find(self, sentences: Sequence[Sentence]) -> list[Hit]:
        """Every mention of a catalogued element, in text order; longest name wins."""
        hits: list[Hit] = []
        names, common = self._names, self._common
        for si, s in enumerate(sentences):
            toks = s.tokens
            i = 0
            while i < len(toks):
                t = toks[i]
                if t.base not in names and t.lower not in common and not t.possessive:
                    i += 1  # most words start no name: no call for them
                    continue
                hit = self._match_name(si, s, i) or self._match_common(si, s, i)
                if hit is None:
                    i += 1
                    continue
                hits.append(hit)
                i = hit.last + 1
        return self._with_narrator(sentences, hits)

    def _with_narrator(self, sentences: Sequence[Sentence], hits: list[Hit]) -> list[Hit]:
        """The hits plus each narrated "I" as a mention of the narrator, in a chunk told in
        the first person (and naming the narrator, when they have a name: another part of
        the book may be told by someone else)."""
        n = self.narrator
        if n is None or not sentences:
            return hits
        if self.entries[n].keys and not any(h.entry == n for h in hits):
            return hits
        narrated = narrated_tokens(sentences)
        if first_person_share(sentences, narrated) < FIRST_PERSON_SHARE:
            return hits
        mine = [
            Hit(si, n, k, k)
            for si, (s, flags) in enumerate(zip(sentences, narrated, strict=True))
            for k, (t, flag) in enumerate(zip(s.tokens, flags, strict=True))
            if flag and t.text == "I"
        ]
        return sorted([*hits, *mine], key=lambda h: (h.sentence, h.first))

    def _match_name(self, si: int, s: Sentence, i: int) -> Hit | None:
        toks = s.tokens
        first = toks[i]
        cands = self._names.get(first.base, [])
        if first.possessive:
            cands = sorted([*cands, *self._names.get(name_word(first, False), ())], key=_longest)
        for key, entry in cands:
            n = len(key)
            if i + n <= len(toks) and all(
                name_word(toks[i + j], j == n - 1) == key[j] for j in range(n)
            ):
                if n == 1 and _inside_longer_name(s, i, self._name_words):
                    return None  # "Ashby" in "Marta Ashby" is not Wren Ashby
                return Hit(si, entry, i, i + n - 1)
        return None

    def _match_common(self, si: int, s: Sentence, i: int) -> Hit | None:
        toks = s.tokens
        entry = self._common.get(toks[i].lower)
        if entry is None or not toks[i].text[:1].islower():
            return None
        j = adjectives_before(toks, i) - 1
        if j == i - 1 and (j < 0 or toks[j].lower not in _DETERMINERS):
            return None  # "to watch", "ring the bell": the noun needs an article or adjective
        return Hit(si, entry, i, i)


# A paragraph this long and this much inside quotation marks is a letter or a tale told
# within the story (Frankenstein's letters, the creature's account): its descriptions count.
_TOLD_WORDS = 60
_TOLD_SHARE = 0.9


def _spoken(sentences: Sequence[Sentence], shares: Sequence[float]) -> list[bool]:
    """Which sentences are speech, whose words about others are rarely a portrait: mostly
    inside quotation marks, unless their paragraph is a long told passage."""
    words: Counter[int] = Counter()
    quoted: Counter[int] = Counter()
    for s, q in zip(sentences, shares, strict=True):
        words[s.para] += len(s.tokens)
        quoted[s.para] += q * len(s.tokens)
    told = {p for p, n in words.items() if n >= _TOLD_WORDS and quoted[p] >= _TOLD_SHARE * n}
    return [q > 0.5 and s.para not in told for s, q in zip(sentences, shares, strict=True)]


def _longest(cand: tuple[Key, int]) -> tuple[int, int]:
    return -len(cand[0]), cand[1]


def _inside_longer_name(s: Sentence, i: int, name_words: Collection[str]) -> bool:
    """Whether token i is glued to a capitalised neighbour that is not part of the match
    (and is a name word, not just a capitalised sentence start like "Suddenly")."""
    toks = s.tokens
    for j in (i - 1, i + 1):
        if not 0 <= j < len(toks):
            continue
        t = toks[j]
        if not s.spaced(min(i, j)) or (j < i and t.possessive):
            continue
        if (
            is_capitalised(t)
            and t.lower not in NOT_NAMES
            and (not t.initial or t.base in name_words)
        ):
            return True
    return False


# --- entries from proper names --------------------------------------------------------------


def _name_entry(
    sentences: Sequence[Sentence],
    g: NameGroup,
    dialogue: Sequence[bool],
    figures: Mapping[str, str | None],
    own: Sequence[str] | None = None,
    species_looks: Mapping[str, list[str]] | None = None,
) -> Entry:
    """The entry of a named element; `own` are the phrases "I" says of themselves when
    this is the narrator of a first-person story; `species_looks` the adjectives the text
    puts before creature nouns ("a large blue caterpillar"), for creatures named by one."""
    species, seen = _named_animal(sentences, g) if g.kind == ElementKind.CREATURE else ("", [])
    if g.kind == ElementKind.PLACE:
        phrases = _place_phrases(sentences, g.mentions, dialogue)
    else:
        phrases = mention_phrases(sentences, g.mentions, _pronouns(g), dialogue, figures)
    if g.kind == ElementKind.ITEM:
        phrases += [
            p
            for m in g.mentions
            if not dialogue[m.sentence]
            for p in with_phrase_at(sentences[m.sentence], m.last)
        ]
    if seen:
        # The animal before (and after) it got its name: "It was a fox ... Its eyes were
        # large and amber." ... "I'm going to call him Flint."
        phrases += [" ".join(_modifiers_at(sentences, m)) for m in seen]
        phrases += mention_phrases(sentences, seen, "n", dialogue, figures)
        phrases = [p for p in phrases if p]
    elif g.kind == ElementKind.CREATURE and species_looks:
        phrases += species_looks.get(_species_noun(g), [])
    ranked = rank_phrases([*phrases, *(own or ())], _MAX_DESCRIPTION_PHRASES)
    lead = species or _lead(sentences, g)
    if g.kind == ElementKind.CHARACTER and lead in ("", "man", "woman", "male", "female"):
        lead = _person_noun(ranked) or lead
    narrator = own is not None
    return Entry(
        name=g.name,
        kind=g.kind,
        aliases=tuple(g.aliases),
        gender=_pronouns(g),
        count=g.count,
        description=_description(lead, ranked, g.kind, narrator),
        descriptor=_descriptor(g.name, lead, ranked),
        keys=tuple(g.keys),
        common=False,
        narrator=narrator,
    )


_NAMING_VERBS = words("call calls called name names named christened dubbed")
_NAMING_REACH = 6  # sentences before a naming in which to look for the animal named
_SPECIES_REACH = 40  # sentences around the naming in which that animal is the named one


def _named_animal(sentences: Sequence[Sentence], g: NameGroup) -> tuple[str, list[Mention]]:
    """A name given to an animal the text has been calling "the fox" ("I'm going to call him
    Flint"): that noun, and its mentions near the naming (another fox fifty pages on is
    likely another fox)."""
    for m in g.mentions:
        toks = sentences[m.sentence].tokens
        if m.first < 2 or toks[m.first - 2].lower not in _NAMING_VERBS:
            continue
        if toks[m.first - 1].lower not in ("him", "her", "it"):
            continue
        order = [m.sentence - d for d in range(0, _NAMING_REACH + 1)] + [m.sentence + 1]
        for si in order:
            if not 0 <= si < len(sentences):
                continue
            noun = next((n for n, _ in _animal_nouns(sentences[si], si)), "")
            if noun:
                lo, hi = m.sentence - _SPECIES_REACH, m.sentence + _SPECIES_REACH
                seen = [
                    a
                    for i in range(max(0, lo), min(len(sentences), hi))
                    for n, a in _animal_nouns(sentences[i], i)
                    if n == noun
                ]
                return noun, seen
    return "", []


def _species_noun(g: NameGroup) -> str:
    """The creature noun a creature is named by: "caterpillar" for "the Caterpillar",
    "cat" for "the Cheshire Cat"; "" for a name like "Rufus"."""
    longest = max((core(k) for k in g.keys), key=lambda c: (len(c), c))
    noun = longest[-1].lower()
    return noun if noun in CREATURES and noun not in _GENERIC_CREATURES else ""


def _species_looks(
    sentences: Sequence[Sentence], groups: Sequence[NameGroup]
) -> dict[str, list[str]]:
    """The adjectives before each lower-case mention of the nouns creatures are named by
    ("a large blue caterpillar" for the Caterpillar): the same animal, seen before the
    text starts calling it by its capitalised name."""
    nouns = {_species_noun(g) for g in groups if g.kind == ElementKind.CREATURE} - {""}
    out: dict[str, list[str]] = defaultdict(list)
    if not nouns:
        return out
    for s in sentences:
        toks = s.tokens
        for i, t in enumerate(toks):
            if t.lower in nouns and t.text[:1].islower():
                j = adjectives_before(toks, i)
                if j < i and j > 0 and toks[j - 1].lower in _DETERMINERS:
                    out[t.lower].append(" ".join(tk.lower for tk in toks[j:i]))
    return out


def _animal_nouns(s: Sentence, si: int) -> list[tuple[str, Mention]]:
    """Specific animal nouns with an article or adjectives: "the little fox", "a fox"."""
    toks = s.tokens
    out: list[tuple[str, Mention]] = []
    for i, t in enumerate(toks):
        if t.lower not in CREATURES or t.lower in _GENERIC_CREATURES or t.lower in EPITHETS:
            continue
        if not t.text[:1].islower():
            continue
        j = adjectives_before(toks, i) - 1
        if j >= 0 and toks[j].lower in _DETERMINERS:
            out.append((t.lower, Mention(si, j + 1, i, (t.lower,))))
    return out


def _unnamed_narrator(
    own: Sequence[str], sentences: Sequence[Sentence], narrated: Sequence[Sequence[bool]]
) -> Entry:
    """The "I" of a first-person story whose name nobody says."""
    ranked = rank_phrases(own, _MAX_DESCRIPTION_PHRASES)
    count = sum(
        1
        for s, flags in zip(sentences, narrated, strict=True)
        for t, flag in zip(s.tokens, flags, strict=True)
        if flag and t.text == "I"
    )
    head = "The narrator, never named"
    look = f"{head}: {'; '.join(ranked)}." if ranked else f"{head}. {NO_LOOK}"
    return Entry(
        name=NARRATOR,
        kind=ElementKind.CHARACTER,
        aliases=(),
        gender=None,
        count=count,
        description=look,
        descriptor=_descriptor(NARRATOR, "", ranked),
        keys=(),
        common=False,
        narrator=True,
    )


def _figure_words(groups: Sequence[NameGroup]) -> dict[str, str | None]:
    """Each word of a character's or creature's name, with the pronoun gender that goes
    with it (None when unknown, or when names of different genders share the word)."""
    out: dict[str, str | None] = {}
    for g in groups:
        if g.kind not in _FIGURES:
            continue
        gender = _pronouns(g)
        for w in {w for k in g.keys for w in core(k)}:
            out[w] = gender if out.get(w, gender) == gender else None
    return out


def _pronouns(g: NameGroup) -> str | None:
    """Which pronouns go on about the element: he, she, or an animal's "it"."""
    if g.gender is None and g.kind == ElementKind.CREATURE:
        return "n"
    return g.gender


def _place_phrases(
    sentences: Sequence[Sentence], mentions: Sequence[Mention], dialogue: Sequence[bool]
) -> list[str]:
    """What the narration says the place looks like: "white palaces" of East Egg."""
    out: list[str] = []
    for m in mentions:
        if not dialogue[m.sentence]:
            out.extend(place_phrases_at(sentences[m.sentence], m.first, m.last))
    return out


def _appositive_lead(sentences: Sequence[Sentence], g: NameGroup) -> str:
    """The noun most often put next to the name for this kind: "the Kittiwake, the fastest
    boat" -> "boat"."""
    nouns: Counter[str] = Counter()
    for m in g.mentions:
        found = appositive_noun(sentences[m.sentence].tokens, m.last)
        if found is not None and found[0] == g.kind:
            nouns[found[1]] += 1
    return min(nouns, key=lambda w: (-nouns[w], w)) if nouns else ""


def _lead(sentences: Sequence[Sentence], g: NameGroup) -> str:
    """What the thing is, in a word or two: "queen", "woman", "white rabbit", "lighthouse"."""
    cores = [core(k) for k in g.keys]
    noun = _appositive_lead(sentences, g)
    if g.kind == ElementKind.CREATURE:
        for c in sorted(cores, key=len, reverse=True):
            if c[-1].lower() in CREATURES:
                colours = [w.lower() for w in c[:-1] if w.lower() in COLOURS]
                return " ".join([*colours, c[-1].lower()])
        return noun or "creature"
    if g.kind == ElementKind.PLACE:
        for c in cores:
            if len(c) > 1 and c[-1] in PLACE_TYPES:
                return c[-1].lower()
            if len(c) > 1 and c[0] in PLACE_PREFIXES:
                return _PLACE_LEADS.get(c[0], c[0].lower())
        return noun or "place"
    if g.kind == ElementKind.ITEM:
        if noun or cores[0][-1].lower() in ITEMS:
            return noun or cores[0][-1].lower()
        # A name that is no word for a thing: a vessel's ("the Pequod"), when the text says so.
        vessels = Counter(
            t.lower
            for m in g.mentions
            for t in sentences[m.sentence].tokens[max(0, m.first - 2) : m.first]
            if t.lower in VEHICLES
        )
        if vessels:
            return min(vessels, key=lambda w: (-vessels[w], w))
        return "ship" if vessel_mentions(sentences, g.mentions) else cores[0][-1].lower()
    # A rank or role ("queen", "captain") when the text mostly calls them by it.
    titles = Counter(m.key[0] for m in g.mentions if m.key[0] in HONORIFICS)
    for title, n in sorted(titles.items(), key=lambda kv: (-kv[1], kv[0])):
        if title not in BARE_HONORIFICS and n * 10 >= 3 * len(g.mentions):
            return title.lower()
    # "Mr." and "Mrs." say grown-up; otherwise only the sex is known ("Miss Alice" is seven).
    if any(k[0] in ADULT_TITLES for k in g.keys if len(k) > 1):
        return {"m": "man", "f": "woman"}.get(g.gender or "", "")
    return {"m": "male", "f": "female"}.get(g.gender or "", "")


def _person_noun(phrases: Sequence[str]) -> str:
    """ "girl" from an appositive like "a little girl": a truer lead than "woman"."""
    for p in phrases:
        tokens = p.lower().split()
        if tokens[0] in ("a", "an"):
            for w in tokens:
                if w in PERSON_NOUNS:
                    return w
    return ""


def _description(
    lead: str, phrases: Sequence[str], kind: ElementKind, narrator: bool = False
) -> str:
    if lead in ("male", "female"):
        head = f"a {lead} character"
    else:
        head = _article(lead) if lead else {ElementKind.CHARACTER: "A character"}.get(kind, "It")
    head = head[:1].upper() + head[1:]
    if narrator:
        head += ', the narrator ("I")'
    if not phrases:
        return f"{head}. {NO_LOOK}"
    return f"{head}: {'; '.join(phrases)}."


def look_of(description: str) -> str:
    """What of a description may go into an image prompt: nothing when it says the text
    gives no look (a bare "A rock." or "A male character." only adds noise there)."""
    return "" if description.endswith(NO_LOOK) else description


def _descriptor(name: str, lead: str, phrases: Sequence[str]) -> str:
    """The short form used in image prompts: "Jay Gatsby (man, tanned skin, pink suit)"."""
    parts = [p for p in (lead, *phrases[:2]) if p]
    return f"{name} ({', '.join(parts)})" if parts else name


def _article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


# --- entries from common nouns: "the golden key", "the monster" -----------------------------


@dataclass(slots=True)
class _NounStats:
    """How a common noun ("key") is used: mentions, how many definite, its adjectives."""

    definite: int = 0
    mentions: list[Mention] = field(default_factory=list)
    modifiers: Counter[str] = field(default_factory=Counter)


def _common_entries(sentences: Sequence[Sentence], taken: set[str]) -> list[Entry]:
    stats: dict[str, _NounStats] = {}
    for si, s in enumerate(sentences):
        toks = s.tokens
        for i, t in enumerate(toks):
            noun = t.lower
            if (noun not in ITEMS and noun not in CREATURES) or noun in taken:
                continue
            if not t.text[:1].islower():
                continue
            j = adjectives_before(toks, i) - 1
            det = toks[j].lower if j >= 0 else ""
            if j == i - 1 and det not in _DETERMINERS:
                continue
            st = stats.setdefault(noun, _NounStats())
            st.mentions.append(Mention(si, j + 1, i, (noun,)))
            st.definite += det in _DEFINITE
            for w in (tk.lower for tk in toks[j + 1 : i]):
                st.modifiers[w] += 1
    # "the fiend", "the monster", "the dæmon": one being called names, not three.
    epithets = sorted(
        (n for n in stats if n in EPITHETS), key=lambda n: (-len(stats[n].mentions), n)
    )
    if len(epithets) > 1:
        head = stats[epithets[0]]
        for other in epithets[1:]:
            st = stats.pop(other)
            head.mentions.extend(st.mentions)
            head.definite += st.definite
            head.modifiers.update(st.modifiers)
        head.mentions.sort(key=lambda m: (m.sentence, m.first))
    entries: list[Entry] = []
    for noun in sorted(stats):
        st = stats[noun]
        names = [noun, *epithets[1:]] if epithets and noun == epithets[0] else [noun]
        entry = _common_entry(sentences, names, st)
        if entry is not None:
            entries.append(entry)
    return entries


def _common_entry(sentences: Sequence[Sentence], nouns: list[str], st: _NounStats) -> Entry | None:
    """The entry of a common noun (`nouns[0]`; any others are other words for the same)."""
    noun = nouns[0]
    creature = noun in CREATURES
    need = 12 if noun in _GENERIC_CREATURES else 6 if creature else 3
    if st.definite < need or len(st.mentions) < need + 1:
        return None
    # The name takes the most telling modifier the thing is usually called by ("golden
    # key"; colour or material before size), not one of several cars of different colours.
    mods = sorted(
        (w for w, n in st.modifiers.items() if n >= 2 and n * 4 >= len(st.mentions)),
        key=lambda w: (w not in COLOURS and w not in MATERIALS_SHAPES, -st.modifiers[w], w),
    )
    name = f"{mods[0]} {noun}" if mods else noun
    phrases = [" ".join(w for w in _modifiers_at(sentences, m)) for m in st.mentions]
    phrases = [p for p in phrases if p]
    phrases += [
        p for m in st.mentions for p in phrases_at(sentences[m.sentence], m.last, m.last, None)
    ]
    ranked = rank_phrases(phrases, _MAX_DESCRIPTION_PHRASES)
    kind = ElementKind.CREATURE if creature else ElementKind.ITEM
    aliases = [n for n in nouns if n != name]
    return Entry(
        name=name,
        kind=kind,
        aliases=tuple(aliases),
        gender=None,
        count=len(st.mentions),
        description=_description(noun, ranked, kind),
        descriptor=_descriptor(name, "", ranked),
        keys=tuple((n,) for n in nouns),
        common=True,
    )


def _modifiers_at(sentences: Sequence[Sentence], m: Mention) -> list[str]:
    return [t.lower for t in sentences[m.sentence].tokens[m.first : m.last]]


# --- per-chunk elements ---------------------------------------------------------------------


def chunk_elements(
    catalogue: Catalogue, sentences: Sequence[Sentence], hits: Sequence[Hit], limit: int = 30
) -> list[Element]:
    """The catalogued elements present in a chunk, most mentioned first, each with up to
    three reference quotes from the chunk (the sentences that describe it best)."""
    by_entry: dict[int, list[Hit]] = defaultdict(list)
    for h in hits:
        by_entry[h.entry].append(h)
    chosen = [
        i
        for i in sorted(by_entry, key=lambda i: (-len(by_entry[i]), i))
        if not catalogue.entries[i].common or len(by_entry[i]) >= 2
    ][:limit]
    dialogue = [q > 0.5 for q in quoted_shares(sentences)]
    out: list[Element] = []
    for i in chosen:
        e = catalogue.entries[i]
        found = by_entry[i]
        if e.narrator:
            found = _narrator_quote_hits(sentences, found)
        quotes = _reference_quotes(sentences, found, e.gender, dialogue, catalogue.figures)
        out.append(
            Element(
                name=e.name,
                kind=e.kind,
                description=e.description,
                aliases=e.aliases,
                quotes=tuple(quotes),
            )
        )
    return out


_MAX_QUOTE_WORDS = 70


def _narrator_quote_hits(sentences: Sequence[Sentence], hits: Sequence[Hit]) -> list[Hit]:
    """Where to quote a narrator from: where the others call them by name, and where "I"
    tells of their own looks, not every sentence with an "I" in it."""
    named = [h for h in hits if sentences[h.sentence].tokens[h.first].text != "I"]
    looks = [
        h
        for h in hits
        if sentences[h.sentence].tokens[h.first].text == "I"
        and phrases_at(sentences[h.sentence], h.first, h.last, "i")
    ]
    return sorted([*named, *looks], key=lambda h: (h.sentence, h.first)) or list(hits)


def _reference_quotes(
    sentences: Sequence[Sentence],
    hits: Sequence[Hit],
    gender: str | None,
    dialogue: Sequence[bool],
    figures: Mapping[str, str | None] | None = None,
) -> list[str]:
    """Up to three passages mentioning the element, those that describe it first (the
    first mention when none does), in text order. A mention may run on into the sentences
    that go on describing it ("... sat Wren Ashby. She was eleven, with short copper-brown
    hair"). Narration comes before dialogue, where a sentence is often a scrap of someone's
    speech ('"Captain Vale will fix it.')."""
    scored: dict[tuple[int, int], float] = {}
    for h in hits:
        s = sentences[h.sentence]
        words = word_length(s.text)
        described = len(phrases_at(s, h.first, h.last, gender))
        end = h.sentence
        if not dialogue[h.sentence]:
            last, more = described_run(sentences, h.sentence, gender, dialogue, figures or {})
            run_words = word_length(s.source[s.start : sentences[last].end])
            if more and run_words <= _MAX_QUOTE_WORDS:
                end, described, words = last, described + more, run_words
        visual = sum(
            1
            for i in range(h.sentence, end + 1)
            for t in sentences[i].tokens
            if t.lower in VISUAL_ADJECTIVES
        )
        fit = 1.0 if 6 <= words <= _MAX_QUOTE_WORDS else 0.3
        spoken = 0.3 if dialogue[h.sentence] else 1.0
        score = (3 * described + min(visual, 4) + 0.5) * fit * spoken
        span = (h.sentence, end)
        scored[span] = max(score, scored.get(span, 0.0))
    best = sorted(scored.items(), key=lambda x: (-x[1], x[0]))
    picked: list[tuple[int, int]] = []
    for (a, b), score in best:
        if any(a <= d and c <= b for c, d in picked):
            continue  # overlaps a passage already taken
        if score >= 3 or not picked:
            picked.append((a, b))
        if len(picked) == 3:
            break
    return [_quote_text(sentences, a, b) for a, b in sorted(picked)]


def _quote_text(sentences: Sequence[Sentence], a: int, b: int) -> str:
    s = sentences[a]
    return _without_stray_quote_marks(normalize_ws(s.source[s.start : sentences[b].end]))


_CLOSING_SINGLE_RE = re.compile("\u2019(?!\\w)")


def _without_stray_quote_marks(text: str) -> str:
    """A sentence cut out of a longer speech keeps a quotation mark that is never closed
    ('"Nell had one friend.') or never opened: drop it, so the quote reads whole."""
    whole = text
    first, last = text[:1], text[-1:]
    if (
        (first == "\u201c" and "\u201d" not in text)
        or (first == "\u2018" and not _CLOSING_SINGLE_RE.search(text))
        or (first == '"' and text.count('"') == 1)
    ):
        text = text[1:].lstrip()
    if (
        (last == "\u201d" and "\u201c" not in text)
        or (last == "\u2019" and "\u2018" not in text and text[-2:-1] in ".,!?;:\u2014")
        or (last == '"' and text.count('"') == 1)
    ):
        text = text[:-1].rstrip()
    return text or whole
