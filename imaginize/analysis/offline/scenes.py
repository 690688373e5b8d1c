"""Scenes: the passages of a chunk that most deserve a picture, and how to draw them.

Each sentence is scored for concrete visual language (colour, light, material, weather,
setting, action, bodies and clothes, named elements), dialogue is penalised, and windows of
one to three sentences inside a paragraph compete; the best ones, spread across the chunk
and never adjacent, become scenes described from their own words.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

from imaginize.analysis.offline.catalogue import Catalogue, Entry, Hit
from imaginize.analysis.offline.describe import (
    adjectives_before,
    clause_end,
    concrete_noun_spans,
    figurative_tokens,
    visual_noun_spans,
)
from imaginize.analysis.offline.lexicon import (
    ABBREVIATIONS,
    ACTION_VERBS,
    BODY,
    CLOTHING,
    COLOURS,
    CREATURES,
    DEFAULT_MOOD,
    EVERYDAY_THINGS,
    FACE,
    FIXTURES,
    INDOOR_SETTINGS,
    ITEMS,
    LIGHT,
    LIGHTING_PHRASES,
    MATERIALS,
    MOODS,
    NOT_A_PLACE_BEFORE,
    NOT_NAMES,
    OCCUPATIONS,
    PERSON_NOUNS,
    PLACE_NOUNS,
    PRONOUNS_F,
    PRONOUNS_M,
    SHAPES,
    SPEECH_VERBS,
    SUBJECT_PRONOUNS,
    TIME_OF_DAY,
    UNSEEN_VERBS,
    VEHICLES,
    VISIBLE_VERBS,
    VISUAL_ADJECTIVES,
    WEATHER,
    words,
)
from imaginize.analysis.offline.text import (
    Sentence,
    Token,
    in_lexicon,
    narrated_tokens,
    normalize_ws,
    quoted_shares,
    stem_variants,
    word_length,
)
from imaginize.model import ElementKind, Scene

# Feature slots per sentence: lexicon, weight (how much it says about a picture), and
# whether verb endings may be stripped to find a word in it ("glowing" -> "glow").
_CATEGORIES: tuple[tuple[frozenset[str], float, bool], ...] = (
    (COLOURS, 2.0, False),
    (LIGHT, 1.5, True),
    (MATERIALS, 1.0, False),
    (SHAPES, 0.4, False),
    (WEATHER, 1.5, True),
    (PLACE_NOUNS | FIXTURES, 1.2, False),
    (ACTION_VERBS, 1.0, True),
    (BODY | CLOTHING, 0.8, False),
    (CREATURES, 0.8, False),
    (ITEMS | EVERYDAY_THINGS, 0.6, False),
)
_N = len(_CATEGORIES)
_LIGHT, _WEATHER, _SETTING, _BODY = 1, 4, 5, 7  # positions in _CATEGORIES
_ENTITY_WEIGHT = 0.8
_VARIETY_WEIGHT = 0.7
_MAX_WINDOW = 3
_MAX_WINDOW_WORDS = 60
_LOOKBACK = 4  # sentences searched for who "she" is, or where we are
STYLE = "detailed storybook illustration"  # the last part of every prompt
_NUMBERS = words(
    """
    two three four five six seven eight nine ten twenty thirty forty fifty hundred
    hundreds thousand few several many
    """
)
_LOCATIVE = words("in at on into inside near across through over under along")
# What may stand between a subject and its verb: "had", "was", "then", "slowly".
_AUXILIARIES = words(
    """
    had has have was were is are did does would could should might must will shall been
    then also still just only soon already never always once suddenly now again all both
    """
)
_PREPOSITIONS = words("in with on at of from under behind beside near by inside")
_SUBJECT_DETERMINERS = words(
    "the a an this that these those his her its their my our your one two three some each"
)
_OWNERS = {"his": "m", "her": "f", "its": "n", "my": "i"}
_RELATIVES = words("which that whom whose")
_BE = words("was were is are be been being")
# An action ends before a clause of its own: "the pool of tears which she had wept".
_CLAUSE_OPENERS = words("which who whom whose that when while because though although until")
# Subjects a picture can be built on: beasts, vessels and people first, then things to draw.
_STRONG_SUBJECTS = CREATURES | VEHICLES
_PEOPLE = PERSON_NOUNS | OCCUPATIONS
_CONCRETE_SUBJECTS = (
    ITEMS | EVERYDAY_THINGS | BODY | CLOTHING | PERSON_NOUNS | LIGHT | WEATHER | PLACE_NOUNS
) | FIXTURES
_ANY_SUBJECT = _STRONG_SUBJECTS | _PEOPLE | _CONCRETE_SUBJECTS
# Verbs that put their subject after them: "By the wall lay the pieces of a jar".
# Past forms of ACTION_VERBS without "-ed": its base forms ("point", "fall") are nouns as often.
_IRREGULAR_PAST = words(
    """
    ran leapt fell flew swam rose sank sprang burst fought struck threw tore shook wept knelt
    strode drove rode caught put lit broke hung drew blew flung swung spread swept slid crept
    bit hid shut bore clung stood sat lay
    """
)
_INVERTING = words("stood lay sat rose hung came followed towered loomed stretched grew")
_MOMENT_REACH = 12  # words of the action after its verb
_LATER = 0.3  # a clause in a later sentence of the window needs this much more to win
_THIN = 0.7  # "Alice fell": a verb with next to nothing after it shows little
# Words an action should not end on ("stirring a large cauldron which" -> "... cauldron").
_DANGLING_ACTION = words(
    """
    a an the and or but nor of to with in on at by for from as that which who whom than
    like his its their my our your into onto upon over under about through among between
    across along around behind beside toward towards near past beyond within without
    against after before during he she they we i
    """
)
# "was trying to", "was going to": an -ing that shows nothing.
_UNSEEN_ING = words(
    """
    trying going thinking wondering wishing hoping waiting wanting considering remembering
    beginning getting being having saying telling asking feeling seeing hearing knowing
    """
)
# Speech verbs that are visible doings too, unless they lead into words ("went on").
_SPEECH_AND_DEED = words("went returned began laughed sobbed sighed screamed shouted called")
_MIN_MOMENT = 1.5  # below this, the quote itself says more than a guessed subject
_FALLBACK_WORDS = 30  # a prompt built from the quote itself keeps this many words
# Light words that only colour a scene; one of them may follow the main light source.
_SECONDARY_LIGHT = words("shadow shadows glow glitter gleam dark gloom")
_SUN_GOING = words("set setting sank sinking sunk")
_LIGHT_ORDER = {w: i for i, w in enumerate(LIGHTING_PHRASES)}
# Settings one is on or beside rather than in ("on the hill", "by the river").
_PLACE_PREPOSITIONS = (
    (
        "on",
        words(
            """
            hill mountain cliff shore beach bridge deck platform terrace porch veranda
            balcony quay wharf pier jetty causeway island roof lawn road street lane path
            track glacier bank riverbank steps plain moor
            """
        ),
    ),
    ("by", words("sea ocean lake pool river stream brook waterfall harbour-wall")),
)


@lru_cache(maxsize=65536)
def _categories(word: str) -> tuple[int, ...]:
    """Which feature slots a (lower-case) word falls in; a compound ("sea-green") falls in
    those of its parts."""
    parts = word.split("-") if "-" in word else [word]
    return tuple(
        i
        for i, (lex, _, verbal) in enumerate(_CATEGORIES)
        if any(v in lex for p in parts for v in stem_variants(p, verbal))
    )


@dataclass(slots=True)
class Features:
    """What one sentence offers a picture: hits per slot of `_CATEGORIES`, and its size."""

    counts: list[int]
    words: float
    quoted: float  # share of the sentence inside quotation marks
    speech: bool
    piece: bool


@dataclass(frozen=True, slots=True)
class Window:
    """Sentences first..last (inclusive) of one paragraph, as a scene candidate."""

    first: int
    last: int
    score: float


def window_quote(sentences: Sequence[Sentence], w: Window) -> str:
    """The window's text as a scene quotes it: verbatim but for runs of white space."""
    first, last = sentences[w.first], sentences[w.last]
    return normalize_ws(first.source[first.start : last.end])


def sentence_features(sentences: Sequence[Sentence]) -> list[Features]:
    out: list[Features] = []
    for s, q in zip(sentences, quoted_shares(sentences), strict=True):
        counts = [0] * _N
        speech = False
        for t in s.tokens:
            for c in _categories(t.lower):
                counts[c] += 1
            speech = speech or t.lower in SPEECH_VERBS
        out.append(Features(counts, word_length(s.text), q, speech, s.piece))
    return out


def _score(feats: Sequence[Features], entities: int) -> float:
    counts = [sum(f.counts[c] for f in feats) for c in range(_N)]
    length = sum(f.words for f in feats)
    if length <= 0:
        return 0.0
    visual = sum(counts[c] * _CATEGORIES[c][1] for c in range(_N))
    visual += _ENTITY_WEIGHT * min(entities, 3)
    visual += _VARIETY_WEIGHT * sum(1 for c in counts if c)
    density = visual / length**0.5
    quoted = sum(f.quoted * f.words for f in feats) / length
    dialogue = 0.1 if quoted > 0.7 else 1.0 - 0.85 * quoted
    if any(f.speech for f in feats) and quoted > 0.3:
        dialogue *= 0.7
    # Clause pieces of an overlong sentence read less well than whole sentences.
    whole = 0.8 if any(f.piece for f in feats) else 1.0
    return density * _length_factor(length) * dialogue * whole


def _length_factor(length: float) -> float:
    """Quotes of 15-60 words read best; a few words are too thin to draw from."""
    if length < 8:
        return 0.25
    if length < 15:
        return 0.6
    if length <= 60:
        return 1.0
    return 0.75 if length <= 80 else 0.5


def candidate_windows(
    sentences: Sequence[Sentence], feats: Sequence[Features], per_sentence: Sequence[list[int]]
) -> list[Window]:
    """Every run of one to three sentences of a paragraph (up to 60 words), scored."""
    out: list[Window] = []
    for a in range(len(sentences)):
        length = 0.0
        entities: set[int] = set()
        for b in range(a, min(a + _MAX_WINDOW, len(sentences))):
            if sentences[b].para != sentences[a].para:
                break
            length += feats[b].words
            if b > a and length > _MAX_WINDOW_WORDS:
                break
            entities.update(per_sentence[b])
            out.append(Window(a, b, _score(feats[a : b + 1], len(entities))))
    return out


def pick_windows(windows: Sequence[Window], count: int, total: int) -> list[Window]:
    """The best `count` windows, spread out: first keeping a wide berth around each pick,
    then only refusing overlapping or adjacent ones. Returned in text order."""
    if count <= 0:
        return []
    ranked = sorted(windows, key=lambda w: (-w.score, w.first, w.last))
    chosen: list[Window] = []
    for gap in sorted({max(1, total // (2 * count)), 1}, reverse=True):
        for w in ranked:
            if len(chosen) >= count:
                break
            if all(w.first > c.last + gap or w.last < c.first - gap for c in chosen):
                chosen.append(w)
    return sorted(chosen, key=lambda w: w.first)


@dataclass(frozen=True, slots=True)
class Moment:
    """The subject and action of a window, in the book's words: "Tom Buchanan in riding
    clothes was standing with his legs apart on the front porch". `entry` is the catalogue
    figure doing it, None for anything else (the whale, the car, the light)."""

    text: str
    entry: int | None
    subject: str
    score: float


# --- describing a chosen window ---------------------------------------------------------------


class SceneBuilder:
    """Turns chosen windows of one chunk into `Scene`s."""

    def __init__(
        self,
        sentences: Sequence[Sentence],
        feats: Sequence[Features],
        hits: Sequence[Hit],
        catalogue: Catalogue,
        era: str = "",
    ) -> None:
        self.sentences = sentences
        self.feats = feats
        self.entries = catalogue.entries
        self.era = era
        self.narrator = catalogue.narrator
        self.narrated = narrated_tokens(sentences)
        # Tokens inside a comparison ("like a wild beast") describe nothing in the picture.
        self.figurative = _Figurative(sentences)
        self.per_sentence: list[list[Hit]] = [[] for _ in sentences]
        for h in hits:
            self.per_sentence[h.sentence].append(h)

    def build(self, w: Window) -> Scene:
        span = range(w.first, w.last + 1)
        quote = window_quote(self.sentences, w)
        ids = self._characters(w)
        moment = self._moment(w)
        if moment is not None and moment.entry is not None and moment.entry not in ids:
            ids = [moment.entry, *ids][:4]  # "Alice's head struck the roof": Alice is in it
        cast = [self.entries[i] for i in ids]
        # Who else is there, besides whoever the moment is about.
        others = [self.entries[i].name for i in ids if moment is None or i != moment.entry]
        setting = self._setting(w)
        lighting = self._lighting(w, setting)
        mood = self._mood(span)
        action = moment.text if moment else ""
        details = [d for d in self._details(span, setting) if d.lower() not in action.lower()]
        composition = self._composition(span, cast, setting, moment)
        names = tuple(e.name for e in cast)
        subject = action or _trimmed(quote, _FALLBACK_WORDS)
        people = [e.descriptor for e in cast if e.descriptor != e.name or e.name not in subject]
        prompt = [
            subject,
            _join(people),
            _where(setting),
            ", ".join(details),
            self.era,
            lighting,
            composition,
            f"{mood} mood",
            STYLE,
        ]
        return Scene(
            quote=quote,
            description=self._description(others, subject, setting, lighting, details),
            composition=composition,
            characters=names,
            setting=setting,
            lighting=lighting,
            mood=mood,
            image_prompt="; ".join(p for p in prompt if p),
        )

    def _description(
        self,
        names: Sequence[str],
        moment: str,
        setting: str,
        lighting: str,
        details: Sequence[str],
    ) -> str:
        end = "" if moment[-1:] in ".!?\u2026" else "."
        parts = [f"{moment[:1].upper()}{moment[1:]}{end}"]
        others = [n for n in names if n not in moment]
        if others:
            parts.append(f"With {_join(others)}.")
        where = setting or "not stated"
        parts.append(f"Setting: {where}{f' ({self.era})' if self.era else ''}; {lighting}.")
        if details:
            parts.append(f"Visual details: {', '.join(details)}.")
        return " ".join(parts)

    # -- what happens ---------------------------------------------------------------------

    def _moment(self, w: Window) -> Moment | None:
        """The best subject + action clause of the window: a figure or a beast, vessel or
        thing doing something visible, in the book's words (a pronoun subject is replaced
        by whom it means). None when no clause is clear enough."""
        best: Moment | None = None
        for i in range(w.first, w.last + 1):
            s = self.sentences[i]
            for k in range(len(s.tokens)):
                m = self._moment_at(i, k, i - w.first)
                if m is not None and (best is None or m.score > best.score):
                    best = m
        return best if best is not None and best.score >= _MIN_MOMENT else None

    def _moment_at(self, i: int, k: int, later: int) -> Moment | None:
        """The subject + action whose verb is token k of sentence i, the `later`-th of its
        window (a later sentence needs a slightly better clause to win)."""
        s = self.sentences[i]
        toks = s.tokens
        if not self.narrated[i][k] or k in self.figurative[i] or not toks[k].text[:1].islower():
            return None
        verb = toks[k].lower
        after = toks[k + 1].lower if k + 1 < len(toks) else ""
        if verb in SPEECH_VERBS and (verb not in _SPEECH_AND_DEED or after == "on"):
            return None
        if not _is_visible_verb(verb, after) or after in _UNSEEN_ING:
            return None
        if verb in VISUAL_ADJECTIVES and not in_lexicon(verb, ACTION_VERBS | VISIBLE_VERBS):
            return None  # "the amputated wheel" is a verb form; "pointed" may be either
        if not _finite(verb) or (k > 0 and toks[k - 1].lower in _SUBJECT_DETERMINERS):
            return None  # "a certain point", "the wicked man": nouns and adjectives
        if k > 0 and toks[k - 1].lower in _ANY_PREPOSITION:
            return None  # "the birds with draggled feathers"
        weight = 1.0 if any(v in ACTION_VERBS for v in stem_variants(verb)) else 0.5
        if verb in ("was", "were", "is", "are"):
            weight = 1.0 if any(v in ACTION_VERBS for v in stem_variants(after)) else 0.5
        start = k
        while start > 0 and _plain(s, start - 1) and _auxiliary(toks[start - 1].lower):
            start -= 1
        if weight < 1.0 and any(t.lower in _BE for t in toks[start:k]):
            return None  # "Alice was tired": a state, not a doing
        end = _action_end(s, k, _MOMENT_REACH)
        figurative = [x for x in self.figurative[i] if k < x <= end]
        if figurative:
            # Up to the "like": no simile taken literally.
            end = _action_end(s, k, max(1, min(figurative) - 1 - k))
        bonus = weight - _LATER * later - (_THIN if end - k < 2 else 0.0) - _deeper(s, k)
        rest = s.words(start, end)
        found = self._subject_before(i, start)
        if found is not None:
            subj_start, subj_end, entry, score, text = found
            if text is None:
                # The book's words from the subject to the end of the action.
                text = s.words(subj_start, end)
            else:
                if entry is not None and entry == self.narrator and toks[subj_start].text == "I":
                    rest = _third_person(rest, self.entries[entry].gender)
                text = f"{text} {rest}"
            name = _subject_name(s, subj_start, subj_end)
            return Moment(normalize_ws(text), entry, name, score + bonus)
        if verb in _INVERTING and start > 0:
            return self._inverted(i, start, k, bonus)
        return None

    def _subject_before(
        self, i: int, verb: int
    ) -> tuple[int, int, int | None, float, str | None] | None:
        """The subject ending just before token `verb`: (first, last, entry, score, text),
        where `text` replaces the book's words up to the verb (a pronoun resolved, an aside
        left out), or is None when they stand as written."""
        s = self.sentences[i]
        toks = s.tokens
        if verb == 0:
            return None
        j = verb - 1
        aside = False
        if not _plain(s, j):
            j = _aside_start(s, j)
            if j is None:
                return None
            aside = True
        found = self._subject_at(i, j)
        if found is None:
            # "Tom Buchanan in riding clothes was standing": past a short modifier.
            for p in range(j, max(0, j - 8), -1):
                if not _plain(s, p - 1) or (p > 0 and not self.narrated[i][p - 1]):
                    break
                w = toks[p].lower
                if w in NOT_NAMES and w not in _SUBJECT_DETERMINERS and w not in _PREPOSITIONS:
                    break  # "came to the door with me and stood": "and" ends it
                if toks[p].lower in _PREPOSITIONS and p > 0:
                    found = self._subject_at(i, p - 1)
                    if found is not None:
                        break
        if found is None:
            return None
        first, last, entry, score, text = found
        if aside and text is None:
            # The subject with its modifier, the aside left out: "the clear voices of
            # children, already gathered like crickets on the grass, rose".
            text = s.words(first, max(last, j))
        return first, last, entry, score, text

    def _subject_at(self, i: int, j: int) -> tuple[int, int, int | None, float, str | None] | None:
        """What the subject ending at token j is, if it is one: a catalogued figure, a
        pronoun for one, or a noun phrase."""
        s = self.sentences[i]
        toks = s.tokens
        if j < 0 or j in self.figurative[i] or not self.narrated[i][j]:
            return None
        if j > 0 and toks[j - 1].lower in _RELATIVES:
            return None  # "the pool of tears which she had wept": not the scene's doing
        for h in self.per_sentence[i]:
            if h.last == j and _is_figure(self.entries[h.entry]):
                e = self.entries[h.entry]
                if toks[h.first].text == "I":  # the narrator: "I hurried" -> "Nick hurried"
                    return h.first, j, h.entry, 3.0, e.name
                return _subject_start(s, h.first), j, h.entry, 3.0, None
        word = toks[j].lower
        gender = {"he": "m", "she": "f"}.get(word)
        if gender is not None:
            ref = self._who(i, j, gender)
            if ref is None:
                return j, j, None, 0.5, None
            return j, j, ref, 2.8, self.entries[ref].name
        if word in NOT_NAMES or word in _AUXILIARIES or not toks[j].text.replace("-", "").isalpha():
            return None
        if toks[j].text[:1].isupper():
            if toks[j].initial and not in_lexicon(word, _ANY_SUBJECT):
                if j == 0 and len(word) > 3 and word.endswith("s") and word not in NOT_NAMES:
                    return j, j, None, 1.0, None  # "Tears, unrestrained, fell"
                return None
            if not toks[j].initial:
                # A name the catalogue does not know: "Marta Ashby skippered".
                first = j
                while first > 0 and _plain(s, first - 1) and _is_name_word(toks[first - 1]):
                    first -= 1
                if first > 0 and toks[first - 1].lower == "the" and _plain(s, first - 1):
                    first -= 1  # "The Queen turned crimson"
                return first, j, None, 2.5, None
        elif word.endswith("ly") or (word in VISUAL_ADJECTIVES and word not in MATERIALS):
            return None  # "bright", "tall"; but "dust" and "glass" are things
        first = adjectives_before(toks, j)
        lead = _determiner_before(s, first)
        if lead is not None:
            first = lead
        if _object_of_preposition(s, first):
            return None  # "in riding clothes was standing": the clothes do not stand
        if lead is None and not (toks[j].text[:1].isupper() or word.endswith("s")):
            return None  # a bare singular noun is rarely a subject: "ring the bell"
        score = (
            3.0
            if in_lexicon(word, _STRONG_SUBJECTS)
            else 2.5
            if in_lexicon(word, _PEOPLE)
            else 2.0
            if in_lexicon(word, _CONCRETE_SUBJECTS) or toks[j].text[:1].isupper()
            else 1.0
        )
        owner = _OWNERS.get(toks[first].lower)
        if owner is not None and owner != "n":
            # "her head struck the roof" -> "Alice's head struck the roof".
            ref = self.narrator if owner == "i" else self._who(i, first, owner)
            if ref is not None:
                name = self.entries[ref].name
                noun = s.words(first + 1, j)
                return first, j, ref, score, f"{name}\u2019s {noun}"
        return first, j, None, score, None

    def _who(self, i: int, j: int, gender: str) -> int | None:
        """The figure a he/she at token j of sentence i means: the last one of that gender
        named before it in the sentence, else in the sentences before."""
        for h in reversed(self._figures(i)):
            # In the same sentence a figure whose pronouns are unknown may be the one meant:
            # "the face of the monster; he seemed to jeer".
            if h.last < j and self.entries[h.entry].gender in (gender, None):
                return h.entry
        found = self._referent(i, gender)
        if found is None:
            # A figure whose pronouns the book never shows, named just before: the one meant.
            near = [
                h.entry
                for x in (i, i - 1)
                if x >= 0
                for h in self._figures(x)
                if self.entries[h.entry].gender is None and (x < i or h.last < j)
            ]
            if len(set(near)) == 1:
                found = near[0]
        return found

    def _inverted(self, i: int, start: int, k: int, bonus: float) -> Moment | None:
        """ "By the wall lay the pieces of a great glass jar" -> "the pieces of a great
        glass jar lay by the wall": the subject after the verb, put first."""
        s = self.sentences[i]
        toks = s.tokens
        a = k + 1
        if a >= len(toks) or not _plain(s, k):
            return None
        b = clause_end(s, a, 8)
        entry = next(
            (
                h.entry
                for h in self.per_sentence[i]
                if a <= h.first <= a + 1 and _is_figure(self.entries[h.entry])
            ),
            None,
        )
        head = toks[a].lower
        named = toks[a].text[:1].isupper() and head not in NOT_NAMES
        if entry is None and head not in _SUBJECT_DETERMINERS and not named:
            return None
        lead = start
        while lead > 0 and _plain(s, lead - 1):
            lead -= 1
        if lead == start:
            return None
        subject = s.words(a, b)
        before = s.words(lead, start - 1)
        if toks[lead].initial and not _is_proper(toks[lead]):
            before = before[:1].lower() + before[1:]
        text = f"{subject} {s.words(start, k)} {before}"
        score = 3.0 if entry is not None or toks[a].text[:1].isupper() else 2.0
        return Moment(normalize_ws(text), entry, _subject_name(s, a, b), score + bonus - 0.5)

    # -- who ------------------------------------------------------------------------------

    def _figures(self, i: int) -> list[Hit]:
        return [h for h in self.per_sentence[i] if _is_figure(self.entries[h.entry])]

    def _characters(self, w: Window) -> list[int]:
        """Named figures in the window, plus whoever "she" or "he" opening it refers to:
        the last matching figure named just before."""
        found: list[int] = []
        for i in range(w.first, w.last + 1):
            for h in self._figures(i):
                if h.entry not in found:
                    found.append(h.entry)
        subject = self._opening_pronoun(w, 8) if found else self._any_pronoun(w)
        if subject and not any(self.entries[e].gender == subject for e in found):
            ref = self._referent(w.first, subject)
            if ref is not None and ref not in found:
                found.insert(0, ref)
        return found[:4]

    def _opening_pronoun(self, w: Window, reach: int) -> str | None:
        """'m' or 'f' when the window's first sentence opens with he or she (within `reach`
        words), the usual sign that it continues about someone named earlier."""
        for t in self.sentences[w.first].tokens[:reach]:
            g = SUBJECT_PRONOUNS.get(t.lower)
            if g in ("m", "f"):
                return g
        return None

    def _any_pronoun(self, w: Window) -> str | None:
        """'m' or 'f' from the first he/she/his/her in a window that names nobody."""
        for i in range(w.first, w.last + 1):
            for t in self.sentences[i].tokens:
                if t.lower in PRONOUNS_M:
                    return "m"
                if t.lower in PRONOUNS_F:
                    return "f"
        return None

    def _referent(self, first: int, gender: str) -> int | None:
        for i in range(first - 1, max(-1, first - 1 - _LOOKBACK), -1):
            for h in reversed(self._figures(i)):
                if self.entries[h.entry].gender == gender:
                    return h.entry
        return None

    # -- where ----------------------------------------------------------------------------

    def _setting(self, w: Window) -> str:
        # Earlier sentences of the same paragraph may say where we are; a paragraph before
        # is often elsewhere ("They had spent a year in France").
        before = self._same_paragraph_before(w)
        where = self._setting_phrase(range(w.first, w.last + 1))
        if not where:
            where = self._setting_phrase(before)
        place = self._place(range(w.first, w.last + 1))
        if not place:
            place = self._place(before, latest=True)
        if where and place:
            return f"{where}, {place}"
        return where or place

    def _same_paragraph_before(self, w: Window) -> range:
        start = w.first
        para = self.sentences[w.first].para
        while start > max(0, w.first - _LOOKBACK) and self.sentences[start - 1].para == para:
            start -= 1
        return range(start, w.first)

    def _place(self, span: range, latest: bool = False) -> str:
        """A catalogued place the text puts us in ("at West Egg"), not one merely named."""
        found = ""
        for i in span:
            toks = self.sentences[i].tokens
            for h in self.per_sentence[i]:
                if self.entries[h.entry].kind != ElementKind.PLACE or not self.narrated[i][h.first]:
                    continue
                if _locative(toks, h.first):
                    found = self.entries[h.entry].name
                    if not latest:
                        return found
        return found

    def _setting_phrase(self, span: range) -> str:
        """The most telling place phrase in narration: "the long hall", else a fixture to
        place the scene by: "by the little door"."""
        fixture = ""
        for i in span:
            s = self.sentences[i]
            for start, end in _noun_phrases(s, self.narrated[i]):
                if end in self.figurative[i]:
                    continue  # "like children leaving a pleasant street": no street here
                head = s.tokens[end].lower
                det = s.tokens[start - 1].lower if start > 0 else ""
                article = det if det in ("the", "a", "an") else "the"
                text = f"{article} {normalize_ws(s.words(start, end))}"
                if any(v in PLACE_NOUNS for v in stem_variants(head, False)):
                    return text
                if not fixture and any(v in FIXTURES for v in stem_variants(head, False)):
                    fixture = f"by {text}"
        return fixture

    # -- how it looks ---------------------------------------------------------------------

    def _lighting(self, w: Window, setting: str) -> str:
        found = self._light_words(range(w.first, w.last + 1), LIGHTING_PHRASES.keys())
        if not found:
            # Earlier sentences set the time of day; their lamps and candles are elsewhere.
            before = range(max(0, w.first - 3 * _LOOKBACK), w.first)
            found = self._light_words(before, TIME_OF_DAY)[-1:]
        if found:
            return ", ".join(_combine_lights(found))
        indoor = any(v in INDOOR_SETTINGS for x in setting.split() for v in stem_variants(x, False))
        return "soft interior light" if indoor else "natural daylight"

    def _light_words(self, span: range, allowed: Collection[str]) -> list[str]:
        found = [
            t.lower
            for i in span
            for k, (t, narrated) in enumerate(
                zip(self.sentences[i].tokens, self.narrated[i], strict=True)
            )
            if narrated and t.lower in allowed and k not in self.figurative[i]
        ]
        if "sun" in found and any(
            t.lower in _SUN_GOING for i in span for t in self.sentences[i].tokens
        ):
            found = ["sunset" if w == "sun" else w for w in found]  # "the sun had set"
        return found

    def _mood(self, span: range) -> str:
        scores = dict.fromkeys(MOODS, 0)
        for i in span:
            for t in self.sentences[i].tokens:
                for mood, lexicon in MOODS.items():
                    if any(v in lexicon for v in stem_variants(t.lower)):
                        scores[mood] += 1
        ranked = sorted(scores, key=lambda m: -scores[m])  # stable: ties keep MOODS order
        top, second = scores[ranked[0]], scores[ranked[1]]
        if top == 0:
            return DEFAULT_MOOD
        if second >= 2 and second * 2 >= top:
            return f"{ranked[0]}, {ranked[1]}"
        return ranked[0]

    def _details(self, span: range, setting: str) -> list[str]:
        """Things to draw, in the text's words: "little glass table", "the hookah"."""
        out: list[str] = []
        for i in span:
            s = self.sentences[i]
            spans = [
                *visual_noun_spans(s, self.narrated[i]),
                *concrete_noun_spans(s, self.narrated[i]),
            ]
            for a, b in spans:
                if b in self.figurative[i]:
                    continue  # "like the blue honey of the Mediterranean"
                p = normalize_ws(s.words(a, b))
                low = p.lower()
                if low in setting.lower() or any(low in o.lower() for o in out):
                    continue
                out = [o for o in out if o.lower() not in low]
                out.append(p)
        return out[:5]

    def _face_words(self, span: range) -> int:
        return sum(1 for i in span for t in self.sentences[i].tokens if t.lower in FACE)

    def _composition(
        self, span: range, cast: Sequence[Entry], setting: str, moment: Moment | None
    ) -> str:
        counts = [sum(self.feats[i].counts[c] for i in span) for c in range(_N)]
        scenery = counts[_SETTING] + counts[_WEATHER] + counts[_LIGHT]
        named = [e.name for e in cast]
        if moment is not None and moment.entry is None and _drawable(moment.subject):
            # The whale rams the ship: the shot is of the whale, not of a named bystander.
            thing = _lower_article(moment.subject)
            if scenery >= 2 and setting:
                return f"wide shot of {setting.removeprefix('by ')} with {thing}"
            return f"medium shot of {thing}"
        if moment is not None and moment.entry is not None:
            lead = self.entries[moment.entry].name
            named = [lead, *(n for n in named if n != lead)]
        items = [
            self.entries[h.entry].name
            for i in span
            for h in self.per_sentence[i]
            if self.entries[h.entry].kind == ElementKind.ITEM
        ]
        if len(named) >= 3:
            return f"group scene with {_join(named)}"
        if len(named) == 2:
            return f"two-shot of {_join(named)}"
        if items and scenery < 2:
            return f"close-up on the {items[0]}"
        if named and counts[_BODY] >= 2 and scenery < 3:
            # Faces and hair make a close-up; clothes want the whole figure.
            face = self._face_words(span) * 2 >= counts[_BODY]
            return f"{'close-up' if face else 'full-length shot'} of {named[0]}"
        if scenery >= 2 or (setting and not named):
            where = f" of {setting.removeprefix('by ')}" if setting else ""
            return f"wide establishing shot{where}" + (f", {named[0]} in frame" if named else "")
        return f"medium shot of {named[0]}" if named else "medium shot"


class _Figurative:
    """Per sentence, the tokens inside a comparison (`figurative_tokens`), worked out the
    first time a sentence is looked at: most sentences of a chunk never are."""

    def __init__(self, sentences: Sequence[Sentence]) -> None:
        self._sentences = sentences
        self._found: dict[int, frozenset[int]] = {}

    def __getitem__(self, i: int) -> frozenset[int]:
        found = self._found.get(i)
        if found is None:
            found = self._found[i] = figurative_tokens(self._sentences[i])
        return found


def _subject_start(s: Sentence, first: int) -> int:
    """Where the subject ending at token `first` begins: "the Hatter" -> at "the", and
    "the March Hare and the Hatter" -> at the first "the" (when both are names)."""
    toks = s.tokens
    start = first - 1 if first > 0 and toks[first - 1].lower in ("the", "a", "an") else first
    if start > 1 and toks[start - 1].lower == "and" and toks[start - 2].text[:1].isupper():
        start -= 2
        while start > 0 and (toks[start - 1].text[:1].isupper() or toks[start - 1].lower == "the"):
            start -= 1
    return start


def _is_figure(e: Entry) -> bool:
    return e.kind in (ElementKind.CHARACTER, ElementKind.CREATURE)


def _is_visible_verb(word: str, after: str) -> bool:
    """Whether a verb after a name shows something: "ran", "poured", "was sitting"."""
    if word in ("was", "were", "is", "are"):
        return after.endswith("ing") and after not in UNSEEN_VERBS
    if word in UNSEEN_VERBS:
        return False
    return (
        any(v in ACTION_VERBS for v in stem_variants(word))
        or word in VISIBLE_VERBS
        or (word.endswith("ed") and len(word) > 4)
    )


def _noun_phrases(s: Sentence, narrated: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) token spans of narrated noun phrases ending in a setting noun, led by
    any adjectives: "long, low hall" -> the span of "long, low hall"."""
    out: list[tuple[int, int]] = []
    toks = s.tokens
    for k, t in enumerate(toks):
        if not narrated[k] or not t.text[:1].islower() or _SETTING not in _categories(t.lower):
            continue
        if k > 0 and (toks[k - 1].lower in _NUMBERS or toks[k - 1].text.isdigit()):
            continue  # "a hundred yards" is a distance, not a yard
        if _figurative(s, k):
            continue  # "a forest of striped awnings" is no forest
        start = adjectives_before(toks, k)
        if start > 0 and toks[start - 1].lower in NOT_A_PLACE_BEFORE:
            continue  # "it was plain that", "did not desert her": no plain, no desert
        out.append((start, k))
    return out


def _figurative(s: Sentence, k: int) -> bool:
    """ "a forest of awnings", "a sea of faces": a setting noun right after "a" and right
    before "of" counts or compares things; it does not place the scene."""
    toks = s.tokens
    return (
        k > 0
        and toks[k - 1].lower in ("a", "an")
        and k + 1 < len(toks)
        and toks[k + 1].lower == "of"
        and s.spaced(k)
    )


def _locative(toks: Sequence[Token], first: int) -> bool:
    """Whether the name at `first` is where things are: "in Brindlehook", "at the Plaza",
    "the streets of Brindlehook" (not "a letter from Geneva")."""
    back = first - 1
    if back >= 0 and toks[back].lower == "the":
        back -= 1
    if back < 0:
        return False
    prev = toks[back].lower
    if prev in _LOCATIVE:
        return True
    return prev == "of" and back > 0 and _SETTING in _categories(toks[back - 1].lower)


def _combine_lights(words: Sequence[str]) -> list[str]:
    """The strongest light source, plus one shading word ("moonlight, strong shadows")."""
    ordered = sorted(dict.fromkeys(words), key=lambda x: _LIGHT_ORDER[x])
    primary = [x for x in ordered if x not in _SECONDARY_LIGHT][:1]
    secondary = [x for x in ordered if x in _SECONDARY_LIGHT][:1]
    out: list[str] = []
    for x in primary + secondary if primary else secondary:
        p = LIGHTING_PHRASES[x]
        if p not in out:
            out.append(p)
    return out


def _where(setting: str) -> str:
    """ "in the long hall", "on the hill", "by the stream", or "by the table" as it stands."""
    if not setting:
        return ""
    if setting.startswith("by "):
        return setting
    head = setting.split(",")[0].split()[-1].lower()
    for preposition, nouns in _PLACE_PREPOSITIONS:
        if any(v in nouns for v in stem_variants(head, False)):
            return f"{preposition} {setting}"
    return f"in {setting}"


def _join(names: Sequence[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _plain(s: Sentence, j: int) -> bool:
    """Whether nothing but space stands between tokens j and j + 1."""
    return 0 <= j < len(s.tokens) - 1 and s.spaced(j)


def _auxiliary(word: str) -> bool:
    """Words between a subject and its verb: "had", "was", "slowly"."""
    return word in _AUXILIARIES or (len(word) > 4 and word.endswith("ly"))


_ASIDE_REACH = 14
_ASIDE_MARKS = (",", "\u2014", "\u2013", "--")


def _aside_start(s: Sentence, j: int) -> int | None:
    """When an aside ends at token j (", who had been hovering about the room,"), the last
    token before it opens; None when the text before the verb is no such aside."""
    toks = s.tokens
    gap = s.between(j, j + 1).strip()
    if gap not in _ASIDE_MARKS:
        return None
    for m in range(j, max(0, j - _ASIDE_REACH), -1):
        before = s.between(m - 1, m).strip()
        if before == gap or (gap != "," and before in _ASIDE_MARKS):
            # ", who had been ...", ", a tall man,", ", unable to ...": an aside; not
            # ", and the clear voices of children," (another clause).
            return m - 1 if _opens_aside(toks[m].lower) else None
        if before:
            return None
    return None


_ASIDE_OPENERS = words(
    "who which whose whom where a an with in still now already perhaps unable unrestrained"
)


def _opens_aside(word: str) -> bool:
    return (
        word in _ASIDE_OPENERS
        or word in VISUAL_ADJECTIVES
        or (len(word) > 4 and word.endswith(("ed", "ing", "ly")))
    )


def _subject_name(s: Sentence, first: int, last: int) -> str:
    return normalize_ws(s.words(first, last))


def _is_proper(t: Token) -> bool:
    """Whether a capitalised word opening a sentence is a name rather than "By" or "A"."""
    return not (t.lower in NOT_NAMES or t.lower in _PREPOSITIONS or t.lower in _SUBJECT_DETERMINERS)


def _trimmed(text: str, limit: int) -> str:
    """The text cut to `limit` words on a word boundary, without a dangling comma; its
    semicolons become commas, as "; " separates the parts of a prompt."""
    parts = text.replace(";", ",").split()
    if len(parts) <= limit:
        return " ".join(parts)
    return " ".join(parts[:limit]).rstrip(",;:\u2014\u2013-") + "\u2026"


def _finite(verb: str) -> bool:
    """A verb form that narrates: past ("rushed", "fell"), "-s" present ("crawls") or the
    "was" of "was running"; not a bare base form, which is as often a noun ("point")."""
    if verb in ("was", "were", "is", "are") or verb in VISIBLE_VERBS or verb in _IRREGULAR_PAST:
        return True
    return verb.isalpha() and verb.endswith(("ed", "s")) and len(verb) > 3


_MODIFIER_REACH = 2  # words between a determiner and its noun: "the last sunshine"
# Words that end a noun phrase going backwards: no determiner lies beyond them.
_NOT_MODIFIERS = (
    words("and or but nor that which who whom when while as if than so then i you he she we they")
    | words("me him us them it to for into through about against upon onto over past like")
    | _PREPOSITIONS
    | _LOCATIVE
)


def _determiner_before(s: Sentence, first: int) -> int | None:
    """The determiner opening the noun phrase whose adjectives start at token `first`,
    reaching past a couple of other modifiers ("the last sunshine", "a damp gleam")."""
    toks = s.tokens
    for back in range(1, _MODIFIER_REACH + 2):
        d = first - back
        if d < 0 or s.between(d, d + 1).strip() not in ("", ","):
            return None
        if toks[d].lower in _SUBJECT_DETERMINERS:
            return d
        if not toks[d].text[:1].islower() or toks[d].lower in _NOT_MODIFIERS:
            return None
    return None


def _object_of_preposition(s: Sentence, first: int) -> bool:
    """Whether the noun phrase starting at token `first` follows a preposition ("in riding
    clothes", "of grey cars"): then it is no subject."""
    toks = s.tokens
    reach = 1 if toks[first].lower in _SUBJECT_DETERMINERS else _MODIFIER_REACH + 1
    for d in range(first - 1, max(-1, first - 1 - reach), -1):
        if not _plain(s, d):
            return False
        w = toks[d].lower
        if w in _ANY_PREPOSITION:
            return True
        if not toks[d].text[:1].islower() or w in _NOT_MODIFIERS:
            return False
    return False


_ANY_PREPOSITION = (
    _PREPOSITIONS
    | _LOCATIVE
    | words(
        """
        to for into through about against upon onto over past like than across beneath
        without toward towards among between around behind below above beyond
        """
    )
)


_PHRASE_REACH = 4


def _action_end(s: Sentence, k: int, limit: int) -> int:
    """The last token of the action whose verb is token k: up to the next clause mark (at
    most `limit` words on), not ending on "the" or "and"; an object pronoun stays ("opened
    it")."""
    toks = s.tokens
    end = k
    while (
        end + 1 < len(toks)
        and end + 1 - k < limit
        and (_plain(s, end) or _abbreviated(s, end))
        and toks[end + 1].lower not in _CLAUSE_OPENERS
    ):
        end += 1
    if (
        end > k + 1
        and end + 1 < len(toks)
        and toks[end - 1].lower in _SUBJECT_DETERMINERS
        and s.between(end, end + 1).strip() == ","
        and toks[end + 1].text[:1].islower()
        and toks[end + 1].lower not in NOT_NAMES
        and toks[end + 1].lower not in _ANY_PREPOSITION
    ):
        # "indicated a gorgeous, scarcely human orchid": the comma is inside the phrase.
        end += 1
        stop = min(len(toks) - 1, end + _PHRASE_REACH)
        while end < stop and _plain(s, end):
            end += 1
    if end + 1 - k >= limit and end + 1 < len(toks) and _plain(s, end):
        # Cut by the limit mid-phrase ("along Fifth Avenue in his alert"): end before the
        # last short prepositional phrase instead.
        for p in range(end, max(k + 2, end - 3), -1):
            if toks[p].lower in _ANY_PREPOSITION:
                return _trim_dangling(toks, k, p - 1)
    # Not cut inside a noun phrase: "lit the great" goes on to "lit the great brass lamp".
    reach = end + _PHRASE_REACH
    while (
        end + 1 < min(len(toks), reach)
        and _plain(s, end)
        and (toks[end].lower in _DANGLING_ACTION or toks[end].lower in VISUAL_ADJECTIVES)
    ):
        end += 1
    return _trim_dangling(toks, k, end)


def _trim_dangling(toks: Sequence[Token], k: int, end: int) -> int:
    while end > k and toks[end].lower in _DANGLING_ACTION:
        end -= 1
    return end


def _abbreviated(s: Sentence, j: int) -> bool:
    """ "Mr. Gatz": a full stop after an abbreviation or an initial does not end a clause."""
    toks = s.tokens
    return (
        j + 1 < len(toks)
        and s.between(j, j + 1).strip() == "."
        and (toks[j].text in ABBREVIATIONS or (len(toks[j].text) == 1 and toks[j].text.isupper()))
    )


def _is_name_word(t: Token) -> bool:
    return t.text[:1].isupper() and t.lower not in NOT_NAMES


def _drawable(subject: str) -> bool:
    """A subject a shot can be of: not an unresolved "she" or "they"."""
    return bool(subject) and subject.lower() not in NOT_NAMES


def _lower_article(phrase: str) -> str:
    """ "A white ashen dust" -> "a white ashen dust" (names keep their capitals)."""
    head, _, rest = phrase.partition(" ")
    if head.lower() in _SUBJECT_DETERMINERS and rest:
        return f"{head.lower()} {rest}"
    return phrase


_CLAUSE_COST = {",": 0.15, ";": 0.5, ":": 0.5, "\u2014": 0.5, "\u2013": 0.5}
_MAX_DEPTH = 1.0


def _deeper(s: Sentence, k: int) -> float:
    """How far into its sentence token k is, in clause marks: the opening clause usually
    carries the moment ("The ice cracked behind us ...; a breeze sprang from the west")."""
    gaps = s.source[s.starts[0] : s.starts[k]] if k else ""
    return min(_MAX_DEPTH, sum(gaps.count(mark) * c for mark, c in _CLAUSE_COST.items()))


_FIRST_TO_THIRD = {
    "m": {"my": "his", "me": "him", "myself": "himself", "mine": "his"},
    "f": {"my": "her", "me": "her", "myself": "herself", "mine": "hers"},
}


def _third_person(text: str, gender: str | None) -> str:
    """ "gnashed my teeth" -> "gnashed his teeth": the narrator's action told of them by
    name; "their" when the narrator's gender is unknown."""
    table = _FIRST_TO_THIRD.get(gender or "", {"my": "their", "me": "them", "myself": "themself"})
    return _FIRST_PERSON_RE.sub(lambda m: table.get(m.group().lower(), m.group()), text)


_FIRST_PERSON_RE = re.compile(r"\b(?:my|me|myself|mine)\b", re.IGNORECASE)
