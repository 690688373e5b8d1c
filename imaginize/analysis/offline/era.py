"""When a book is set, from the dates it writes, for image prompts ("1920s period setting").

Computed once per book and conservatively: only years written as dates ("in 1922", "July 5th,
1922", "the summer of 1919") and letter dates with the year left out ("Dec. 11th, 17—") count;
a lone date, or dates scattered over more than a lifetime, say nothing. No date, no era: an
illustrator is better served by silence than by a guess.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# A four-digit year (1000-2099), or a century with its years dashed out ("17—", "18--").
# The pattern starts with a digit and has no look-behind, so a whole book is scanned in a
# few milliseconds; the digits, commas and dots around a match are checked after (`_alone`).
_YEAR_RE = re.compile(r"[12]\d(?:\d\d|\u2014|--|__)")
# The word before a year, with an optional comma: "July 5th, " -> "5th".
_BEFORE_RE = re.compile(r"(\w+)[,.]?\s+$")
_MONTHS = (
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)
# Words a date follows: "in 1922", "summer of 1919", "July 1922", "Christmas 1914".
_DATE_LEADS = frozenset(
    (
        _MONTHS + " in of since until till by year during summer spring autumn fall winter "
        "christmas easter about around circa c ad early late mid"
    ).split()
)
_DAY_RE = re.compile(r"\d{1,2}(?:st|nd|rd|th)?$")
_MIN_DATES = 2
_SPAN = 30  # years before the latest date in which most dates must fall


def book_era(texts: Iterable[str]) -> str:
    """The period a book is set in, as an image prompt would say it ("1920s period
    setting", "18th-century period setting"), or "" when its dates do not say."""
    years: list[int] = []
    centuries: Counter[int] = Counter()
    for text in texts:
        for m in _YEAR_RE.finditer(text):
            found = m.group()
            if not _alone(text, m) or (found.startswith("2") and not found.startswith("20")):
                continue
            if not found.isdigit():
                if found[0] == "1":
                    centuries[int(found[:2])] += 1
                continue
            before = _BEFORE_RE.search(text, max(0, m.start() - 24), m.start())
            if before and _is_date(before.group(1)):
                years.append(int(found))
    if len(years) >= _MIN_DATES:
        latest = max(years)
        near = sum(1 for y in years if latest - y <= _SPAN)
        if near * 2 > len(years):
            return f"{latest // 10 * 10}s period setting"
        return ""
    if centuries:
        hundreds, count = centuries.most_common(1)[0]
        if count >= _MIN_DATES and count * 2 > sum(centuries.values()):
            return f"{_ordinal(hundreds + 1)}-century period setting"
    return ""


def _alone(text: str, m: re.Match[str]) -> bool:
    """Whether a match stands on its own: not part of a longer number ("21922", "1,500",
    "3.1415")."""
    before = text[m.start() - 1] if m.start() else " "
    if before.isdigit() or before in ",.":
        return False
    if not m.group().isdigit():
        return True
    after = text[m.end() : m.end() + 2]
    return not (
        after[:1].isdigit() or after[:1] == "," or (after[:1] == "." and after[1:].isdigit())
    )


def _is_date(before: str) -> bool:
    """Whether the word before a four-digit number makes it a year."""
    return before.lower() in _DATE_LEADS or bool(_DAY_RE.match(before))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
