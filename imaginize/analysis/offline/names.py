"""Recurring proper names: find them, merge their variants, decide what each one names.

A name is a run of capitalised words that is not just a capitalised sentence start ("Alice",
"Captain Orrin Vale", "Queen of Hearts", "West Egg"). Variants of one name are merged into a
group ("Captain Orrin Vale", "Vale", "Orrin"), and the group is classified as a character,
place, creature or item from the words around its mentions across the whole book.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from imaginize.analysis.offline.lexicon import (
    ABBREVIATIONS,
    ACTION_VERBS,
    APPEARANCE_ADJECTIVES,
    ARTICLES,
    BARE_HONORIFICS,
    BODY,
    CREATURE_VERBS,
    CREATURES,
    DIMINUTIVES,
    HONORIFICS,
    ITEMS,
    NAME_CONNECTORS,
    NOT_ALONE,
    NOT_NAMES,
    PERSON_NOUNS,
    PERSON_VERBS,
    PLACE_NOUNS,
    PLACE_PREFIXES,
    PLACE_PREPOSITIONS,
    PLACE_TYPES,
    SPEECH_VERBS,
    SUBJECT_PRONOUNS,
    TITLE_CLASSES,
    VEHICLES,
    VESSEL_PARTS,
    VESSEL_VERBS,
    VISIBLE_VERBS,
    words,
)
from imaginize.analysis.offline.text import Sentence, Token
from imaginize.model import ElementKind

Key = tuple[str, ...]

# Words after which "of" continues a name: "Queen of Hearts", "Isle of Wight".
_OF_AFTER = frozenset(HONORIFICS) | PLACE_TYPES | {"Knave", "Jack", "Isle"}
# English prose capitalises about 5-7% of words mid-sentence, German about 19%.
NOUN_CAPITALS_SHARE = 0.13
_COPULAS = words("was is were are had has seemed")
_GAZE_VERBS = words("looked glanced stared smiled nodded waved turned came went")
# A narrator's name is mostly spoken by others, and said to them a few times at least.
_NARRATOR_SPOKEN = 0.6
_NARRATOR_ADDRESSED = 3
_NICKNAME_AUDIENCE = words(
    "everyone everybody all his her their friends family the most us me them"
)
_DETERMINERS = words("the a an this that his her my your our their")
_CLASS_GENDER = {"m": "m", "mrs": "f", "miss": "f"}


@dataclass(frozen=True, slots=True)
class Mention:
    sentence: int  # index into the sentence list
    first: int  # first token index
    last: int  # last token index (inclusive)
    key: Key


@dataclass(slots=True)
class NameGroup:
    """One named thing: its display name, kind, variants and every mention of it."""

    name: str
    kind: ElementKind
    keys: list[Key]
    aliases: list[str]
    gender: str | None
    mentions: list[Mention] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.mentions)


def is_capitalised(tok: Token) -> bool:
    """Starts with a capital and is not an all-capitals word (headings, signs, "I")."""
    b = tok.base
    return b[:1].isupper() and not (len(b) > 1 and b.isupper())


class _Stats:
    """How often each word is capitalised mid-sentence versus written in lower case."""

    def __init__(self, sentences: Sequence[Sentence]) -> None:
        self.mid_caps: Counter[str] = Counter()
        self.lower: Counter[str] = Counter()
        for s in sentences:
            for t in s.tokens:
                b = t.base
                # `is_capitalised`, inline: this sees every token of the book.
                if b[:1].isupper() and not (len(b) > 1 and b.isupper()):
                    if not t.initial:
                        self.mid_caps[b] += 1
                elif b[:1].islower():
                    self.lower[t.lower] += 1

    def can_start(self, tok: Token) -> bool:
        if not is_capitalised(tok) or tok.lower in NOT_NAMES:
            return False
        # A capital at a sentence start proves nothing unless the word is also capitalised
        # mid-sentence somewhere in the book.
        return not tok.initial or self.mid_caps[tok.base] > 0

    def nouns_capitalised(self) -> bool:
        """Whether the text capitalises common nouns (German): then a capital mid-sentence
        says little, and names must be told from nouns another way."""
        caps = sum(self.mid_caps.values())
        return caps > NOUN_CAPITALS_SHARE * (caps + sum(self.lower.values()))

    def mostly_capitalised(self, word: str) -> bool:
        return self.mid_caps[word] >= 0.5 * self.lower[word.lower()]


def find_mentions(sentences: Sequence[Sentence], stats: _Stats) -> list[Mention]:
    out: list[Mention] = []
    for si, s in enumerate(sentences):
        toks = s.tokens
        i = 0
        while i < len(toks):
            # Every name starts with a capital (titles too): most tokens go no further.
            if not toks[i].base[:1].isupper() or (
                not stats.can_start(toks[i]) and not _titled_start(s, i)
            ):
                i += 1
                continue
            j = _run_end(s, i)
            key = tuple(name_word(t, k == j) for k, t in enumerate(toks[i : j + 1], start=i))
            out.append(Mention(si, i, j, key))
            i = j + 1
    return out


def _titled_start(s: Sentence, i: int) -> bool:
    """A title opening a sentence still starts a name: "Captain Orrin Vale was tall"."""
    toks = s.tokens
    return (
        toks[i].base in HONORIFICS
        and i + 1 < len(toks)
        and is_capitalised(toks[i + 1])
        and _joined(s, i, i + 1)
    )


def _run_end(s: Sentence, i: int) -> int:
    """Index of the last token of the name starting at token i."""
    toks = s.tokens
    j = i
    while j + 1 < len(toks) and (not toks[j].possessive or _owned_place(toks[j + 1])):
        if not _joined(s, j, j + 1):
            break
        nxt = toks[j + 1]
        if is_capitalised(nxt) and nxt.lower not in NOT_NAMES:
            j += 1
        elif _connects(s, j):
            j += 2
        else:
            break
    return j


def name_word(tok: Token, last: bool) -> str:
    """A token as a word of a name key: possessives inside a name keep their "'s" ("Marsh's
    Bakery" is no Marsh), a possessive at the end drops it ("Vale's" is Vale)."""
    return f"{tok.base}'s" if tok.possessive and not last else tok.base


def _owned_place(tok: Token) -> bool:
    """ "Marsh's Bakery", "St. Paul's Cathedral": a possessive inside a place's name."""
    return tok.base in PLACE_TYPES and is_capitalised(tok) and not tok.possessive


def _joined(s: Sentence, a: int, b: int) -> bool:
    """Whether tokens a and b are one name's words: nothing between them but spaces (or the
    dot of an initial)."""
    gap = s.between(a, b).replace("\ufeff", "")
    if not gap.strip():
        return True
    word = s.tokens[a].text
    return gap.strip() == "." and (word in ABBREVIATIONS or (len(word) == 1 and word.isupper()))


def _connects(s: Sentence, j: int) -> bool:
    """Whether toks[j+1] is "of", "de", ... inside a name followed by a capitalised word."""
    toks = s.tokens
    if j + 2 >= len(toks):
        return False
    conn, after = toks[j + 1], toks[j + 2]
    if conn.text not in NAME_CONNECTORS or not is_capitalised(after):
        return False
    if after.lower in NOT_NAMES or not _joined(s, j + 1, j + 2):
        return False
    return conn.text != "of" or toks[j].base in _OF_AFTER


# --- grouping -----------------------------------------------------------------------------


def core(key: Key) -> Key:
    """The key without leading titles ("Captain Orrin Vale" -> "Orrin Vale"); a title joined
    by "of" stays ("Queen of Hearts"), and a title alone stays itself ("Queen")."""
    i = 0
    while i < len(key) - 1 and key[i] in HONORIFICS and key[i + 1] not in NAME_CONNECTORS:
        i += 1
    return key[i:]


def _drop_common_nouns(
    sentences: Sequence[Sentence], by_key: dict[Key, list[Mention]]
) -> dict[Key, list[Mention]]:
    """Keep the capitalised words that behave like names: rarely after an article or an
    adjective after one ("der Vater", "dem großen Tisch"), as common nouns mostly are."""
    kept: dict[Key, list[Mention]] = defaultdict(list)
    for key, ms in by_key.items():
        led = 0
        for m in ms:
            before = [t.lower for t in sentences[m.sentence].tokens[max(0, m.first - 2) : m.first]]
            if any(w in ARTICLES for w in before):
                led += 1
        if led <= 0.2 * len(ms):
            kept[key] = ms
    return kept


def _valid_key(key: Key, stats: _Stats) -> bool:
    if len(key) == 1:
        w = key[0]
        return (
            len(w) > 1
            and w.lower() not in NOT_ALONE
            and w not in BARE_HONORIFICS
            and not w.isdigit()
            and stats.mostly_capitalised(w)
        )
    return not all(w in HONORIFICS or w.lower() in NOT_ALONE for w in key)


def group_names(sentences: Sequence[Sentence], min_count: int | None = None) -> list[NameGroup]:
    """The recurring names of a text. Names seen fewer than `min_count` times are dropped:
    by default twice for a short text, three times for a book, where one-off pairs are
    mostly noise ("Latitude or Longitude")."""
    if min_count is None:
        words = sum(len(s.tokens) for s in sentences)
        min_count = 2 if words < 20_000 else 3
    stats = _Stats(sentences)
    mentions = [m for m in find_mentions(sentences, stats) if _valid_key(m.key, stats)]
    mentions = _unglued(sentences, mentions, stats)
    families = _family_keys(sentences, mentions)
    mentions = [m for m in mentions if m.key not in families]
    by_key: dict[Key, list[Mention]] = defaultdict(list)
    for m in mentions:
        by_key[m.key].append(m)
    if stats.nouns_capitalised():
        by_key = _drop_common_nouns(sentences, by_key)
    votes = {k: _gender_votes(sentences, k, ms) for k, ms in by_key.items()}
    genders = {k: _decide_gender(v, 2) for k, v in votes.items()}
    leaning = {k: _decide_gender(v, 1) for k, v in votes.items()}
    links = [*_nicknames(sentences, mentions), *_species_appositions(sentences, mentions)]
    clusters = _cluster(by_key, genders, links, leaning, _relatives(sentences, by_key))
    groups: list[NameGroup] = []
    for keys in clusters:
        ms = sorted((m for k in keys for m in by_key[k]), key=lambda m: (m.sentence, m.first))
        if len(ms) < min_count:
            continue
        group_votes = sum((votes[k] for k in keys), Counter())
        group = _make_group(sentences, keys, ms, by_key, _decide_gender(group_votes, 1))
        if group is not None:
            groups.append(group)
    groups.sort(key=lambda g: (-g.count, g.name))
    return groups


# A run of names is a place and a person side by side ("to Moscow Pierre went") when the
# first part alone follows "in", "to", "from" ... this often, the second part this rarely.
_PLACE_LED = 0.4
_PERSON_LED = 0.2
_GLUE_LEAST = 3  # mentions of each part alone, at least


def _unglued(
    sentences: Sequence[Sentence], mentions: list[Mention], stats: _Stats
) -> list[Mention]:
    """Split runs of capitalised words that are a place and a name meeting across a boundary
    the text leaves unmarked ("When he returned to Moscow Pierre went to the club"): the
    first part alone is mostly somewhere one goes ("in Moscow"), the second mostly not, and
    each is named alone more often than the run. "Henry Clerval" stays: nobody goes "to Henry"."""
    counts = Counter(m.key for m in mentions)
    led: Counter[Key] = Counter()
    for m in mentions:
        toks = sentences[m.sentence].tokens
        back = m.first - 1 if m.first > 0 and toks[m.first - 1].lower == "the" else m.first
        led[m.key] += back > 0 and toks[back - 1].lower in PLACE_PREPOSITIONS

    def place(k: Key) -> bool:
        return led[k] >= _PLACE_LED * counts[k]

    def person(k: Key) -> bool:
        return led[k] < _PERSON_LED * counts[k]

    out: list[Mention] = []
    for m in mentions:
        key = m.key
        cut = 0
        if len(key) > 1 and not any(w in HONORIFICS or w in NAME_CONNECTORS for w in key):
            need = max(_GLUE_LEAST, counts[key] + 1)
            cut = next(
                (
                    i
                    for i in range(1, len(key))
                    if counts[key[:i]] >= need
                    and counts[key[i:]] >= need
                    and place(key[:i])
                    and person(key[i:])
                    and "'s" not in key[i - 1]
                ),
                0,
            )
        if not cut:
            out.append(m)
            continue
        out.append(Mention(m.sentence, m.first, m.first + cut - 1, key[:cut]))
        out.append(Mention(m.sentence, m.first + cut, m.last, key[cut:]))
    return [m for m in out if _valid_key(m.key, stats)]


def _family_keys(sentences: Sequence[Sentence], mentions: Sequence[Mention]) -> set[Key]:
    """Plural surnames ("the Bennets", "the Lucases"): a family, not one person to draw. The
    singular must be a word of another name in the text, and "the" must lead most mentions."""
    words_of = {w for m in mentions if not _plural_of(m.key) for w in m.key}
    led: Counter[Key] = Counter()
    total: Counter[Key] = Counter()
    for m in mentions:
        if _plural_of(m.key) and _plural_of(m.key) & words_of:
            total[m.key] += 1
            led[m.key] += m.first > 0 and sentences[m.sentence].tokens[m.first - 1].lower == "the"
    return {k for k, n in total.items() if led[k] * 2 >= n}


def _plural_of(key: Key) -> set[str]:
    """The singulars a one-word plural name may be of: "Lucases" -> Lucase, Lucas."""
    if len(key) != 1 or not key[0].endswith("s") or len(key[0]) < 4:
        return set()
    w = key[0]
    return {w[:-1], w[:-2]} if w.endswith("es") else {w[:-1]}


_LIST_WORDS = words("and or the a an")


def _species_appositions(
    sentences: Sequence[Sentence], mentions: Sequence[Mention]
) -> list[tuple[Key, Key]]:
    """A name and a capitalised species set side by side, twice or more: "(it was Bill, the
    Lizard)", "the poor little Lizard, Bill, was in the middle" - one animal. Lists ("the
    Dodo, the Lory and the Eaglet") pair two species, or go on with "and" or "the"."""
    seen: Counter[tuple[Key, Key]] = Counter()
    for a, b in itertools.pairwise(mentions):
        if a.sentence != b.sentence or len(a.key) != 1 or len(b.key) != 1:
            continue
        toks = sentences[a.sentence].tokens
        gap = b.first - a.last
        if not toks[a.last].comma_after or not (
            gap == 1 or (gap == 2 and toks[a.last + 1].lower == "the")
        ):
            continue
        if a.first > 0 and toks[a.first - 1].comma_after:
            continue  # "..., Alice, the Mouse": a list
        if b.last + 1 < len(toks) and toks[b.last + 1].lower in _LIST_WORDS:
            continue
        species = [k for k in (a.key, b.key) if k[0].lower() in CREATURES]
        if len(species) == 1:
            name = b.key if species[0] == a.key else a.key
            seen[(name, species[0])] += 1
    return [pair for pair, n in seen.items() if n >= 2]


def _nicknames(sentences: Sequence[Sentence], mentions: Sequence[Mention]) -> list[tuple[Key, Key]]:
    """Pairs of names the text says are one: "Tobias Marsh—Tib to everyone", "Elizabeth
    (Lizzy to her sisters)", "Robert, Bob to his friends"."""
    out: list[tuple[Key, Key]] = []
    for a, b in itertools.pairwise(mentions):
        if a.sentence != b.sentence or b.first != a.last + 1:
            continue
        s = sentences[a.sentence]
        toks = s.tokens
        gap = s.between(a.last, b.first).strip()
        if gap not in ("\u2014", "\u2013", "(", ",", "--") or b.last + 2 >= len(toks):
            continue
        if toks[b.last + 1].lower == "to" and toks[b.last + 2].lower in _NICKNAME_AUDIENCE:
            out.append((a.key, b.key))
    return out


_KIN = words("mother father son daughter")
_KIN_OWNERS = words("his her their")


def _relatives(sentences: Sequence[Sentence], by_key: dict[Key, list[Mention]]) -> set[Key]:
    """Titled surnames the text calls someone's parent or child, beside the given name of
    another of that surname: "Madame Moritz, her mother, was a widow ..., of whom Justine was
    the third". She is Justine Moritz's mother, not Justine by her title. Spouses are left
    out: "Mrs. Wilson, her husband's wife" is Myrtle Wilson."""
    givens: dict[str, set[str]] = defaultdict(set)
    for k in by_key:
        c = core(k)
        if len(c) == 2 and c[0] not in HONORIFICS:
            givens[c[1]].add(c[0])
    out: set[Key] = set()
    for k, ms in by_key.items():
        if len(k) != 2 or k[0] not in HONORIFICS or not givens.get(k[1]):
            continue
        for m in ms:
            toks = sentences[m.sentence].tokens
            after = toks[m.last + 1 : m.last + 3]
            if not (
                toks[m.last].comma_after
                and len(after) == 2
                and after[0].lower in _KIN_OWNERS
                and after[1].lower in _KIN
            ):
                continue
            near = sentences[max(0, m.sentence - 1) : m.sentence + 2]
            if any(t.base in givens[k[1]] for s in near for t in s.tokens):
                out.add(k)
                break
    return out


def _cluster(
    by_key: dict[Key, list[Mention]],
    genders: dict[Key, str | None],
    links: Sequence[tuple[Key, Key]] = (),
    leaning: dict[Key, str | None] | None = None,
    apart: Collection[Key] = (),
) -> list[list[Key]]:
    """Merge keys naming the same thing: same core, or a single word that is the first (or
    the only possible last) word of longer names, or names `links` says are one. Titled
    surnames in `apart` (a parent or child of that surname: `_relatives`) stay on their own."""
    by_core: dict[Key, list[Key]] = defaultdict(list)
    for k in sorted(by_key):
        by_core[core(k)].append(k)
    core_count = {c: sum(len(by_key[k]) for k in ks) for c, ks in by_core.items()}
    parent = {c: c for c in by_core}

    def find(c: Key) -> Key:
        while parent[c] != c:
            c = parent[c]
        return c

    for c in sorted(by_core):
        if len(c) == 1:
            for p in _owners(c[0], by_core, core_count, genders, leaning or genders):
                ra, rb = find(c), find(p)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    lean = leaning or genders
    for a, b in [*links, *_diminutive_links(by_key, by_core, lean)]:
        ra, rb = find(core(a)), find(core(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    lasts = _index_lasts(by_core, core_count)
    root_gender = _root_genders(by_core, leaning or genders, find)
    clusters: dict[Key, list[Key]] = defaultdict(list)
    for c in sorted(by_core):
        for k in by_core[c]:
            # Titled surnames ("Mrs. Wilson") go by gender when the surname is shared, and
            # never join a name of the other gender ("Mrs. Buchanan" is not Tom).
            root = find(_titled_owner(k, c, lasts, genders))
            g = HONORIFICS.get(k[0]) if len(k) > 1 else None
            clash = g is not None and root_gender.get(root) not in (None, g)
            clusters[k if clash or k in apart else root].append(k)
    out: list[list[Key]] = []
    for _, ks in sorted(clusters.items()):
        out.extend(_by_title_class(ks, by_key, lean))
    return [sorted(ks) for ks in _eldest_daughters(out, by_key, lean)]


_DAUGHTER_REACH = 2  # sentences around "Miss Bennet" in which to look for her given name
_DAUGHTER_TIES = 3  # ... at least this many times, twice as often as any sister's


def _eldest_daughters(
    clusters: list[list[Key]], by_key: dict[Key, list[Mention]], leaning: dict[Key, str | None]
) -> list[list[Key]]:
    """ "Miss Bennet" alone is the eldest unmarried daughter: join it to the one woman of
    that surname with a given name ("Jane Bennet", "Jane") whom the text names around it,
    far more often than her sisters. Sisters the text calls "Miss Elizabeth" or "Miss Lydia
    Bennet" are not "Miss Bennet"."""
    out = [list(ks) for ks in clusters]
    for misses in [ks for ks in out if all(_title_class(k) == "miss" for k in ks)]:
        surnames = {k[1] for k in misses}
        if len(surnames) != 1:
            continue
        surname = next(iter(surnames))
        around = Counter(
            m.sentence + d
            for k in misses
            for m in by_key[k]
            for d in range(-_DAUGHTER_REACH, _DAUGHTER_REACH + 1)
        )
        ties: dict[int, int] = {}
        for i, ks in enumerate(out):
            if ks is misses or not any(len(k) >= 2 and k[-1] == surname for k in ks):
                continue
            firsts = {core(k)[0] for k in ks if len(core(k)) >= 2 and core(k)[-1] == surname}
            if not firsts or any(k[0] == "Miss" and k[1] != surname for k in ks):
                continue  # no given name, or called "Miss Elizabeth Bennet": a younger one
            if any(leaning.get(k) == "m" for k in ks) or any(
                TITLE_CLASSES.get(k[0]) in ("m", "mrs") for k in ks
            ):
                continue
            ties[i] = sum(1 for k in ks for m in by_key[k] if m.sentence in around)
        ranked = sorted(ties.items(), key=lambda kv: -kv[1])
        if not ranked or ranked[0][1] < _DAUGHTER_TIES:
            continue
        if len(ranked) > 1 and ranked[0][1] < 2 * ranked[1][1]:
            continue
        out[ranked[0][0]].extend(misses)
        misses.clear()
    return [ks for ks in out if ks]


_PET_REACH = 3  # sentences between a pet form and its full name that tie the two...
_PET_TIES = 2  # ... this many times


def _diminutive_links(
    by_key: dict[Key, list[Mention]],
    by_core: dict[Key, list[Key]],
    leaning: dict[Key, str | None],
) -> list[tuple[Key, Key]]:
    """Pet forms and the given names they are short for ("Lizzy", "Eliza" -> "Elizabeth"),
    when exactly one name starts with that given name and the two are used within a few
    sentences of each other more than once: the Lizard Bill is no Father William."""
    starts: dict[str, list[Key]] = defaultdict(list)
    for c in by_core:
        starts[c[0].lower()].append(c)
    out: list[tuple[Key, Key]] = []
    for c in sorted(by_core):
        if len(c) != 1:
            continue
        fulls = [t for f in DIMINUTIVES.get(c[0].lower(), ()) for t in starts.get(f, ()) if t != c]
        if not fulls:
            continue
        # The shortest one: "Elizabeth" over "Elizabeth Bennet" (they are merged anyway).
        target = min(fulls, key=lambda t: (len(t), t))
        if any(len(t) == len(target) and t != target for t in fulls):
            continue
        g, h = leaning.get(c), next((leaning[k] for k in by_core[target] if leaning.get(k)), None)
        if g and h and g != h:
            continue
        near = {
            m.sentence + d
            for k in by_core[target]
            for m in by_key[k]
            for d in range(-_PET_REACH, _PET_REACH + 1)
        }
        if sum(m.sentence in near for k in by_core[c] for m in by_key[k]) >= _PET_TIES:
            out.append((c, target))
    return out


def _title_class(k: Key) -> str | None:
    """ "m" for "Mr. Bennet", "mrs" for "Mrs. Bennet", "miss" for "Miss Bennet": a title
    before a lone surname that says which of a family is meant; None otherwise."""
    if len(k) != 2 or k[1] in HONORIFICS:
        return None
    return TITLE_CLASSES.get(k[0])


def _by_title_class(
    keys: list[Key], by_key: dict[Key, list[Mention]], genders: dict[Key, str | None]
) -> list[list[Key]]:
    """Split a cluster whose surname is given with titles of different people: Mr. Bennet,
    Mrs. Bennet and Miss Bingley are a husband, a wife and a sister, not one person. Other
    keys go with the class of their own gender; a bare surname with the man, else the most
    mentioned class; a full name of unknown gender ("Caroline Bingley") stays on its own."""
    classes: dict[str, list[Key]] = defaultdict(list)
    for k in keys:
        tc = _title_class(k)
        if tc is not None:
            classes[tc].append(k)
    if len(classes) < 2:
        return [keys]
    size = {tc: sum(len(by_key[k]) for k in ks) for tc, ks in classes.items()}
    top = max(sorted(size), key=lambda tc: size[tc])
    alone: list[Key] = []
    for k in keys:
        if _title_class(k) is None:
            g = genders.get(k)
            if g is None and len(k) == 1 and "m" in classes:
                g = "m"  # a bare surname ("Bingley danced") is the man's, in English prose
            if g is None and len(core(k)) > 1:
                alone.append(k)
                continue
            own = [tc for tc in sorted(classes) if _CLASS_GENDER[tc] == g]
            tc = max(own, key=lambda c: size[c]) if own else top
            classes[tc].append(k)
    return [classes[tc] for tc in sorted(classes)] + ([alone] if alone else [])


def _root_genders(
    by_core: dict[Key, list[Key]], genders: dict[Key, str | None], find: Callable[[Key], Key]
) -> dict[Key, str | None]:
    """The gender of each merged cluster, from its untitled variants."""
    votes: dict[Key, Counter[str]] = defaultdict(Counter)
    for c, ks in by_core.items():
        for k in ks:
            g = genders.get(k)
            if g and k[0] not in HONORIFICS:
                votes[find(c)][g] += 1
    return {r: v.most_common(1)[0][0] if len(v) == 1 else None for r, v in votes.items()}


def _index_lasts(by_core: dict[Key, list[Key]], core_count: dict[Key, int]) -> dict[str, list[Key]]:
    lasts: dict[str, list[Key]] = defaultdict(list)
    for c in sorted(by_core):
        if len(c) > 1 and core_count[c] >= 2:
            lasts[c[-1]].append(c)
    return lasts


def _owners(
    word: str,
    by_core: dict[Key, list[Key]],
    core_count: dict[Key, int],
    genders: dict[Key, str | None],
    leaning: dict[Key, str | None],
) -> list[Key]:
    """The longer names a one-word name is short for ("Daisy" -> "Daisy Buchanan"), or none
    when it is ambiguous ("Egg" in "East Egg" and "West Egg"). `leaning` are genders on
    slighter evidence (one pronoun), enough to keep apart a surname and a full name."""
    longer = [c for c in sorted(by_core) if len(c) > 1 and word in (c[0], c[-1])]
    # One-off runs such as "April Daisy" are usually two names side by side.
    recurring = [c for c in longer if core_count[c] >= 2] or longer
    firsts = [c for c in recurring if c[0] == word]
    lasts = [c for c in recurring if c[-1] == word]
    if firsts and lasts:
        return []
    alone = core_count[(word,)]
    if firsts:
        if len({c[-1] for c in firsts}) == 1:
            return firsts
        # Several surnames after one first name: one person (maiden and married names)
        # only when the first name is used on its own about as much as the full names.
        top = max(core_count[c] for c in firsts)
        return firsts if alone >= 3 and alone * 2 >= top else []
    g = genders.get((word,))
    if len(lasts) == 1:
        # "Beaufort", her father, is not "Caroline Beaufort".
        lean = leaning.get((word,))
        other = {leaning.get(k) for k in by_core[lasts[0]]} - {None, lean}
        return [] if lean is not None and other else lasts
    same = [c for c in lasts if any(genders.get(k) == g for k in by_core[c])] if g else []
    return same if len(same) == 1 else []


def _titled_owner(
    k: Key,
    c: Key,
    lasts: dict[str, list[Key]],
    genders: dict[Key, str | None],
) -> Key:
    """Which core a titled one-word name belongs to: "Mrs. Wilson" -> "Myrtle Wilson". Not
    "Miss Bennet" among several daughters: `_eldest_daughters` says which one she is."""
    if len(c) != 1 or k == c or len(lasts[c[0]]) < 2 or _title_class(k) == "miss":
        return c
    g = HONORIFICS.get(k[0])
    if g is None:
        return c
    same = [o for o in lasts[c[0]] if genders.get(o) == g]
    return same[0] if len(same) == 1 else c


def _gender_votes(sentences: Sequence[Sentence], key: Key, mentions: list[Mention]) -> Counter[str]:
    """Evidence for 'm', 'f' or 'n' (it): titles, and the pronouns that follow the name."""
    votes: Counter[str] = Counter()
    for w in key:
        g = HONORIFICS.get(w)
        if g:
            votes[g] += 3 * len(mentions)
    for m in mentions[:300]:
        p = _next_pronoun(sentences, m) or _next_sentence_subject(sentences, m)
        if p:
            votes[p] += 1
    return votes


def _decide_gender(votes: Counter[str], least: int) -> str | None:
    """'m' or 'f' when at least `least` votes say so and twice as many as say otherwise."""
    top = max(("m", "f", "n"), key=lambda g: votes[g])
    rest = sum(votes.values()) - votes[top]
    if top == "n" or votes[top] < least or votes[top] < 2 * rest:
        return None
    return top


def _next_pronoun(sentences: Sequence[Sentence], m: Mention) -> str | None:
    """Gender of the first pronoun after a mention that is the subject of its clause
    ("Daisy took her face in her hands", "said Gatsby, and he"), unless another name comes
    first. Object pronouns ("told her") usually mean someone else and end the search."""
    s = sentences[m.sentence]
    toks = s.tokens
    nxt = toks[m.last + 1] if m.last + 1 < len(toks) else None
    prev = toks[m.first - 1].lower if m.first > 0 else ""
    if not (prev in SPEECH_VERBS or (nxt is not None and _verb_like(nxt.lower))):
        return None
    following = toks[m.last + 1 : m.last + 11]
    nxt_sentence = sentences[m.sentence + 1] if m.sentence + 1 < len(sentences) else None
    if m.last + 11 > len(toks) and nxt_sentence is not None and nxt_sentence.para == s.para:
        following = [*following, *nxt_sentence.tokens[:4]]
    for i, t in enumerate(following):
        g = SUBJECT_PRONOUNS.get(t.lower)
        if g:
            return g
        if t.lower == "her":
            # "her face" is hers; "told her that" is someone else.
            owned = following[i + 1].lower if i + 1 < len(following) else ""
            return "f" if owned and owned not in NOT_NAMES else None
        if t.lower in ("him", "it", "they", "them", "their"):
            return None  # object pronouns mostly mean someone (or something) else
        if is_capitalised(t) and not t.initial and t.lower not in NOT_NAMES:
            return None
    return None


def _next_sentence_subject(sentences: Sequence[Sentence], m: Mention) -> str | None:
    """ "Mira Quill lived in Brindlehook. She wore ...": the next sentence of the paragraph
    opens with he or she, and the mention opened this one."""
    s = sentences[m.sentence]
    if m.first > 1 or (m.first == 1 and s.tokens[0].lower != "the"):
        return None
    if m.sentence + 1 >= len(sentences):
        return None
    nxt = sentences[m.sentence + 1]
    if nxt.para != s.para or not nxt.tokens:
        return None
    return {"he": "m", "she": "f"}.get(nxt.tokens[0].lower)


def _verb_like(word: str) -> bool:
    return (
        word in SPEECH_VERBS
        or word in PERSON_VERBS
        or word in VISIBLE_VERBS
        or word in ACTION_VERBS
        or (word.endswith("ed") and len(word) > 4)
    )


# --- naming and classifying a group -------------------------------------------------------


def _make_group(
    sentences: Sequence[Sentence],
    keys: list[Key],
    mentions: list[Mention],
    by_key: dict[Key, list[Mention]],
    gender: str | None,
) -> NameGroup | None:
    """The group of these keys, or None when it names nothing worth drawing."""
    displays = {k: _display(sentences, by_key[k]) for k in keys}
    counts = {k: len(by_key[k]) for k in keys}
    best = _best_key(keys, counts)
    aliases = [displays[k] for k in sorted(keys, key=lambda k: (-counts[k], k)) if k != best]
    kind, person = _classify(sentences, keys, mentions, gender)
    if kind == ElementKind.CHARACTER and (
        not _is_person(person, gender, len(mentions)) or _in_titles(sentences, mentions)
    ):
        return None
    return NameGroup(displays[best], kind, keys, aliases[:8], gender, mentions)


def _in_titles(sentences: Sequence[Sentence], mentions: Sequence[Mention]) -> bool:
    """Whether a name is mostly met as the end of a title, "the <Capitalised> of ...": "the
    Sorrows of Werter" (a book the characters read), not someone who comes on stage. Titles
    of people ("the Duke of York") are part of the name itself and never get here."""
    titled = 0
    for m in mentions:
        toks = sentences[m.sentence].tokens
        if (
            m.first >= 3
            and toks[m.first - 1].lower == "of"
            and is_capitalised(toks[m.first - 2])
            and toks[m.first - 2].base not in HONORIFICS
            and toks[m.first - 3].lower == "the"
        ):
            titled += 1
    return titled >= 2 and 2 * titled >= len(mentions)


def _best_key(keys: list[Key], counts: dict[Key, int]) -> Key:
    """The fullest variant that recurs ("Jay Gatsby" over "Gatsby"); titles add nothing."""
    recurring = [k for k in keys if counts[k] >= 2] or keys
    best = min(recurring, key=lambda k: (-len(core(k)), -counts[k], k))
    # A full name given once ("Captain Orrin Vale", then "Vale" throughout) still names it,
    # when it is the only full name in the group.
    full = {core(k) for k in keys if len(core(k)) > len(core(best))}
    if len(full) == 1:
        longest = [k for k in keys if core(k) in full]
        return min(longest, key=lambda k: (-counts[k], -len(k), k))
    return best


def _display(sentences: Sequence[Sentence], mentions: list[Mention]) -> str:
    """The most common way the name is written in the text, e.g. "Mr. Gatsby"."""
    forms: Counter[str] = Counter()
    for m in mentions:
        s = sentences[m.sentence]
        end = s.starts[m.last] + len(s.tokens[m.last].base)
        forms[" ".join(s.source[s.starts[m.first] : end].split())] += 1
    return min(forms.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def classify(
    sentences: Sequence[Sentence], keys: list[Key], mentions: list[Mention]
) -> ElementKind:
    """Weigh the evidence of the name's words and of the words around each mention."""
    return _classify(sentences, keys, mentions)[0]


def _classify(
    sentences: Sequence[Sentence],
    keys: list[Key],
    mentions: list[Mention],
    gender: str | None = None,
) -> tuple[ElementKind, float]:
    """The kind, and how much the words around the mentions say "a person" (speech verbs,
    titles, person verbs: see `_score_mention`)."""
    score: Counter[ElementKind] = Counter()
    for m in mentions:
        _score_mention(sentences, m, score)
    # Someone does things: "Alice ran", "Alice followed" count a little too.
    person = score[ElementKind.CHARACTER] + 0.5 * sum(1 for m in mentions if _acts(sentences, m))
    # The head noun decides outright: a talking "White Rabbit" is still a rabbit.
    longest = max(keys, key=lambda k: (len(core(k)), k))
    if core(longest)[-1].lower() in CREATURES or (
        len(core(longest)) == 1 and any(core(k)[-1].lower() in CREATURES for k in keys)
    ):
        return ElementKind.CREATURE, person
    # A person's title decides too: "Captain Orrin Vale" is no vale.
    if any(k[0] in HONORIFICS and k[0] not in ("St", "Saint") and len(k) > 1 for k in keys):
        return ElementKind.CHARACTER, max(person, 3.0)
    # "West Egg Village", "Mount Doom", or a place word used as a name ("the Sound"); but
    # a he or she who acts like a person is only named like a place ("Tom Marsh").
    someone = gender is not None and person > score[ElementKind.PLACE]
    if not someone and (
        any(k[-1] in PLACE_TYPES or k[0] in PLACE_PREFIXES for k in keys if len(k) > 1)
        or all(len(k) == 1 and k[0] in PLACE_TYPES for k in keys)
    ):
        score[ElementKind.PLACE] += max(8, len(mentions))
    # "the Golden Key"; but a he who speaks and acts is only named like a thing ("Flask").
    if not someone and any(k[-1].lower() in ITEMS for k in keys):
        score[ElementKind.ITEM] += max(6, len(mentions))
    order = [ElementKind.CHARACTER, ElementKind.PLACE, ElementKind.CREATURE, ElementKind.ITEM]
    best = max(order, key=lambda k: (score[k], -order.index(k)))
    # A stray "in Gregor" among hundreds of mentions proves nothing: other kinds need
    # evidence from a fair share of the mentions; recurring names are mostly people.
    if best != ElementKind.CHARACTER and score[best] < 0.08 * len(mentions):
        return ElementKind.CHARACTER, person
    return best, person


def _acts(sentences: Sequence[Sentence], m: Mention) -> bool:
    """Whether the mention is followed by a verb, as the subject of a clause."""
    toks = sentences[m.sentence].tokens
    if m.last + 1 >= len(toks) or toks[m.last].possessive:
        return False
    prev = toks[m.first - 1].lower if m.first > 0 else ""
    nxt = toks[m.last + 1].lower
    if (
        nxt in _COPULAS
        or prev in PLACE_PREPOSITIONS
        or _quote_between(sentences[m.sentence], m.last)
    ):
        return False
    return _verb_like(nxt)


def _is_person(person: float, gender: str | None, count: int) -> bool:
    """Whether a name taken for a character shows any sign of being someone: a he or a she,
    or speech, titles and person verbs around a fair share of its mentions. Book titles,
    rivers and magazines ("Paradise Lost", "the Arve", "Town Tattle") show none."""
    return gender is not None or person >= min(1.5, 0.3 * count)


def _score_mention(sentences: Sequence[Sentence], m: Mention, score: Counter[ElementKind]) -> None:
    s = sentences[m.sentence]
    toks = s.tokens
    # Look past an article: "said the Hatter", "in the Middle West".
    back = m.first - 1 if m.first > 0 and toks[m.first - 1].lower == "the" else m.first
    prev = toks[back - 1].lower if back > 0 else ""
    prev2 = toks[back - 2].lower if back > 1 else ""
    nxt = toks[m.last + 1].lower if m.last + 1 < len(toks) else ""
    if m.key[0] in HONORIFICS and m.key[0] not in ("St", "Saint") and len(m.key) > 1:
        score[ElementKind.CHARACTER] += 3
    if prev in SPEECH_VERBS or (nxt in SPEECH_VERBS and not _quote_between(s, m.last)):
        score[ElementKind.CHARACTER] += 2
    elif nxt in CREATURE_VERBS:
        score[ElementKind.CREATURE] += 1.5
    else:
        if nxt in PERSON_VERBS:
            score[ElementKind.CHARACTER] += 0.7
        # "The Mossback lifted its head": something that acts but is an "it".
        if _verb_like(nxt) and nxt not in _COPULAS and _next_pronoun(sentences, m) == "n":
            score[ElementKind.CREATURE] += 1.5
    if _its_body(toks, m.last):
        score[ElementKind.CREATURE] += 3
    if toks[m.last].possessive:
        score[ElementKind.CHARACTER] += 0.3
    if _vocative(s, m):
        score[ElementKind.CHARACTER] += 1
    elif prev in PLACE_PREPOSITIONS and _glued(s, back - 1, m.first):
        if prev in ("to", "at", "from") and (prev2 in SPEECH_VERBS or prev2 in _GAZE_VERBS):
            score[ElementKind.CHARACTER] += 1
        else:
            score[ElementKind.PLACE] += PLACE_PREPOSITIONS[prev]
    # "the old Metropole", "the dark Rhine": a name after "the" and a looks word is seldom
    # someone's ("the old De Lacey" is one mention of many).
    if (
        m.first >= 2
        and toks[m.first - 1].lower in APPEARANCE_ADJECTIVES
        and toks[m.first - 2].lower == "the"
        and m.key[0] not in HONORIFICS
    ):
        score[ElementKind.PLACE] += 1
    # "the dog Rufus", "a dragon called Smaug"
    before = [t.lower for t in toks[max(0, m.first - 3) : m.first]]
    if any(w in CREATURES for w in before[-2:]):
        score[ElementKind.CREATURE] += 3
    if before and before[-1] in ("called", "named") and any(w in CREATURES for w in before):
        score[ElementKind.CREATURE] += 4
    if before and before[-1] in ITEMS:
        score[ElementKind.ITEM] += 3
    if _vessel_evidence(toks, m, back):
        score[ElementKind.ITEM] += 3
    # "Bill, the Lizard", "the Kittiwake, the fastest boat", "the Spine, the causeway"
    found = appositive_noun(toks, m.last)
    if found is not None:
        score[found[0]] += 3


def _vessel_evidence(toks: Sequence[Token], m: Mention, back: int) -> bool:
    """ "aboard the Pequod", "the deck of the Pequod", "the whaler Rachel", "the Pequod
    sailed": the name of a ship (or another vessel), which is drawn as a thing."""
    prev = toks[back - 1].lower if back > 0 else ""
    prev2 = toks[back - 2].lower if back > 1 else ""
    before = toks[m.first - 1].lower if m.first > 0 else ""
    nxt = toks[m.last + 1].lower if m.last + 1 < len(toks) else ""
    return (
        (back < m.first and prev in ("aboard", "board"))
        or (back < m.first and prev == "of" and prev2 in VESSEL_PARTS)
        or before in VEHICLES
        or nxt in VESSEL_VERBS
    )


def vessel_mentions(sentences: Sequence[Sentence], mentions: Sequence[Mention]) -> int:
    """How many of the mentions say the name is a vessel's."""
    n = 0
    for m in mentions:
        toks = sentences[m.sentence].tokens
        back = m.first - 1 if m.first > 0 and toks[m.first - 1].lower == "the" else m.first
        n += _vessel_evidence(toks, m, back)
    return n


def _its_body(toks: Sequence[Token], last: int) -> bool:
    """ "The Mossback lifted its head", "chewed with its eyes closed": a body part that the
    name owns as an "it" is an animal's. Nothing but a verb (and a preposition) may come
    between, so "took the bottle by its neck" says nothing about who took it."""
    for k in range(last + 1, min(len(toks) - 1, last + 4)):
        w = toks[k].lower
        if w == "its":
            return toks[k + 1].lower in BODY and k > last + 1
        if w in _DETERMINERS or w in SUBJECT_PRONOUNS or is_capitalised(toks[k]):
            return False
    return False


def first_person_share(sentences: Sequence[Sentence], narrated: Sequence[Sequence[bool]]) -> float:
    """How much of the narration (outside quotation marks) is "I": about 2-4% of the words
    of a first-person novel, a fraction of a percent of a third-person one."""
    words = mine = 0
    for s, flags in zip(sentences, narrated, strict=True):
        for t, flag in zip(s.tokens, flags, strict=True):
            if flag:
                words += 1
                mine += t.text == "I"
    return mine / words if words else 0.0


def narrator_group(
    sentences: Sequence[Sentence], groups: Sequence[NameGroup], narrated: Sequence[Sequence[bool]]
) -> NameGroup | None:
    """The character who tells a first-person story: the narration never names them, but
    the others speak to them ("Won't you come in, Nick?"). None when nobody is addressed
    like that often enough."""
    best: tuple[int, int] = (0, 0)
    found: NameGroup | None = None
    for i, g in enumerate(groups):
        if g.kind != ElementKind.CHARACTER:
            continue
        spoken = sum(1 for m in g.mentions if not narrated[m.sentence][m.first])
        addressed = sum(1 for m in g.mentions if _vocative(sentences[m.sentence], m))
        if spoken < _NARRATOR_SPOKEN * g.count or addressed < _NARRATOR_ADDRESSED:
            continue
        if (addressed, -i) > best:
            best, found = (addressed, -i), g
    return found


# A narrator's other name: at most this share of its mentions in narration ("I" never names
# themselves), and spoken to at least once.
_TELLER_NARRATED = 0.25


def with_teller_names(
    sentences: Sequence[Sentence],
    groups: list[NameGroup],
    teller: NameGroup,
    narrated: Sequence[Sequence[bool]],
) -> list[NameGroup]:
    """`groups` with the narrator's other name folded into the narrator's group: "Nick" is
    also "Mr. Carraway", "Frankenstein" also "Victor". The other name shares no word with
    the narrator's, has their gender, is almost never said in the narration and is said to
    someone: only the others speak of or to the one telling the story."""
    own = {w for k in teller.keys for w in core(k)}
    out: list[NameGroup] = []
    for g in groups:
        if (
            g is teller
            or g.kind != ElementKind.CHARACTER
            or teller.gender is None
            or g.gender != teller.gender
            or any(w in own for k in g.keys for w in core(k))
        ):
            out.append(g)
            continue
        told = sum(1 for m in g.mentions if narrated[m.sentence][m.first])
        spoken_to = any(_vocative(sentences[m.sentence], m) for m in g.mentions)
        if told > _TELLER_NARRATED * g.count or not spoken_to:
            out.append(g)
            continue
        teller.keys.extend(g.keys)
        teller.aliases.extend([g.name, *g.aliases])
        teller.mentions.extend(g.mentions)
        teller.mentions.sort(key=lambda m: (m.sentence, m.first))
    return out


def _glued(s: Sentence, a: int, b: int) -> bool:
    """Whether tokens a..b follow each other with nothing but spaces between."""
    return all(s.spaced(i) for i in range(a, b))


def _vocative(s: Sentence, m: Mention) -> bool:
    """ "Won't you come in, Nick?", "Good night, Nick," said Daisy: a name set off by a
    comma and ending the sentence or the quotation is someone spoken to."""
    toks = s.tokens
    if m.first == 0 or not toks[m.first - 1].comma_after:
        return False
    tail = s.source[s.ends[m.last] : s.starts[m.last + 1] if m.last + 1 < len(toks) else s.end]
    # "Good night, Nick," said Daisy: a comma that closes the quotation ends it too.
    return tail.strip() in (',"', ",\u201d") or (
        any(ch in tail for ch in '?!.\u201d"') and "," not in tail
    )


def _quote_between(s: Sentence, last: int) -> bool:
    """Whether a quotation closes right after token `last` ("A Mossback," breathed Wren):
    then the name was spoken, and the speech verb belongs to someone else."""
    if last + 1 >= len(s.tokens):
        return False
    gap = s.between(last, last + 1)
    return any(ch in gap for ch in '"\u201d\u2019')


def appositive_noun(toks: Sequence[Token], last: int) -> tuple[ElementKind, str] | None:
    """The kind and head noun of an appositive after a name: ", the fastest boat"."""
    if not toks[last].comma_after or last + 1 >= len(toks):
        return None
    if toks[last + 1].lower not in ("a", "an", "the", "our", "my", "his", "her"):
        return None
    for t in toks[last + 2 : last + 6]:
        w = t.lower
        if w in CREATURES:
            return ElementKind.CREATURE, w
        if w in ITEMS or w in VEHICLES:
            return ElementKind.ITEM, w
        if w in PLACE_NOUNS:
            return ElementKind.PLACE, w
        if w in PERSON_NOUNS:
            return ElementKind.CHARACTER, w
    return None
