"""Scenes: the passages of a chunk that most deserve a picture, and how to draw them.

Each sentence is scored for concrete visual language (colour, light, material, weather,
setting, action, bodies and clothes, named elements), dialogue is penalised, and windows of
one to three sentences inside a paragraph compete; the best ones, spread across the chunk
and never adjacent, become scenes described from their own words.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

from imaginize.analysis.offline.catalogue import Catalogue, Entry, Hit
from imaginize.analysis.offline.describe import (
    adjectives_before,
    clause_end,
    concrete_nouns,
    visual_noun_phrases,
)
from imaginize.analysis.offline.lexicon import (
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
    PLACE_NOUNS,
    PRONOUNS_F,
    PRONOUNS_M,
    SHAPES,
    SPEECH_VERBS,
    SUBJECT_PRONOUNS,
    TIME_OF_DAY,
    UNSEEN_VERBS,
    VISIBLE_VERBS,
    WEATHER,
    words,
)
from imaginize.analysis.offline.text import (
    Sentence,
    Token,
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
_STYLE = "detailed storybook illustration"
_NUMBERS = words(
    """
    two three four five six seven eight nine ten twenty thirty forty fifty hundred
    hundreds thousand few several many
    """
)
_LOCATIVE = words("in at on into inside near across through over under along")
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


# --- describing a chosen window ---------------------------------------------------------------


class SceneBuilder:
    """Turns chosen windows of one chunk into `Scene`s."""

    def __init__(
        self,
        sentences: Sequence[Sentence],
        feats: Sequence[Features],
        hits: Sequence[Hit],
        catalogue: Catalogue,
    ) -> None:
        self.sentences = sentences
        self.feats = feats
        self.entries = catalogue.entries
        self.narrated = narrated_tokens(sentences)
        self.per_sentence: list[list[Hit]] = [[] for _ in sentences]
        for h in hits:
            self.per_sentence[h.sentence].append(h)

    def build(self, w: Window) -> Scene:
        span = range(w.first, w.last + 1)
        first, last = self.sentences[w.first], self.sentences[w.last]
        quote = normalize_ws(first.source[first.start : last.end])
        cast = [self.entries[i] for i in self._characters(w)]
        setting = self._setting(w)
        lighting = self._lighting(w, setting)
        mood = self._mood(span)
        details = self._details(span, setting)
        composition = self._composition(span, cast, setting)
        names = tuple(e.name for e in cast)
        action = self._action(span)
        prompt = [
            composition,
            _join([e.descriptor for e in cast]),
            action,
            _where(setting),
            ", ".join(details),
            lighting,
            f"{mood} mood",
            _STYLE,
        ]
        return Scene(
            quote=quote,
            description=self._description(names, action, setting, lighting, details),
            composition=composition,
            characters=names,
            setting=setting,
            lighting=lighting,
            mood=mood,
            image_prompt="; ".join(p for p in prompt if p),
        )

    @staticmethod
    def _description(
        names: Sequence[str], action: str, setting: str, lighting: str, details: Sequence[str]
    ) -> str:
        who = _join(names)
        parts = [f"{who}: {action}." if who and action else f"{who}." if who else ""]
        parts.append(f"Setting: {setting or 'not stated'}; {lighting}.")
        if details:
            parts.append(f"Visual details: {', '.join(details)}.")
        return " ".join(p for p in parts if p)

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

    def _action(self, span: range) -> str:
        """What a named figure does in the window, in the text's words: "the Caterpillar
        took the hookah out of its mouth"."""
        for i in span:
            s = self.sentences[i]
            for h in self._figures(i):
                k = h.last + 1
                if k >= len(s.tokens) or not self.narrated[i][h.first]:
                    continue
                verb = s.tokens[k].lower
                after = s.tokens[k + 1].lower if k + 1 < len(s.tokens) else ""
                if verb in SPEECH_VERBS or not _is_visible_verb(verb, after):
                    continue
                start = _subject_start(s, h.first)
                end = clause_end(s, k, 10)
                if s.tokens[h.first].text == "I":
                    # The narrator: "I hurried down ..." -> "Nick hurried down ...".
                    rest = s.source[s.tokens[h.first].end : s.tokens[end].end]
                    return normalize_ws(self.entries[h.entry].name + rest)
                return normalize_ws(s.source[s.tokens[start].start : s.tokens[end].end])
        return ""

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
                head = s.tokens[end].lower
                det = s.tokens[start - 1].lower if start > 0 else ""
                article = det if det in ("the", "a", "an") else "the"
                text = (
                    f"{article} {normalize_ws(s.source[s.tokens[start].start : s.tokens[end].end])}"
                )
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
            for t, narrated in zip(self.sentences[i].tokens, self.narrated[i], strict=True)
            if narrated and t.lower in allowed
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
            for p in [
                *visual_noun_phrases(s, self.narrated[i]),
                *concrete_nouns(s, self.narrated[i]),
            ]:
                low = p.lower()
                if low in setting.lower() or any(low in o.lower() for o in out):
                    continue
                out = [o for o in out if o.lower() not in low]
                out.append(p)
        return out[:5]

    def _face_words(self, span: range) -> int:
        return sum(1 for i in span for t in self.sentences[i].tokens if t.lower in FACE)

    def _composition(self, span: range, cast: Sequence[Entry], setting: str) -> str:
        counts = [sum(self.feats[i].counts[c] for i in span) for c in range(_N)]
        scenery = counts[_SETTING] + counts[_WEATHER] + counts[_LIGHT]
        named = [e.name for e in cast]
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


def _subject_start(s: Sentence, first: int) -> int:
    """Where the subject ending at token `first` begins: "the Hatter" -> at "the", and
    "the March Hare and the Hatter" -> at the first "the" (when both are names)."""
    toks = s.tokens
    start = first - 1 if first > 0 and toks[first - 1].lower == "the" else first
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
        out.append((adjectives_before(toks, k), k))
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
        and not s.source[toks[k].end : toks[k + 1].start].strip()
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
