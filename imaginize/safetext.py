"""Text from outside imaginize, made safe to show and to keep.

Book and chapter titles, file names from an EPUB or a folder, host names in a manifest or a
lock file, and a server's error text are not ours: they may hold terminal control sequences
(ESC, BEL, CR, the C1 controls) and bidi overrides that repaint or reorder what a user reads,
and a server may echo the API key it was sent. Everything of the kind passes through here
before it is printed (`for_terminal`, `one_line`) or stored (`mask_secrets`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# Bidi embeddings, overrides, isolates and marks: they reorder the text around them.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and bidi controls.
# Newline is handled apart (kept by `for_terminal`, turned into a space by `one_line`).
_UNSAFE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
# Blanks that only split a one-line field: shown as a space rather than escaped.
_BLANKS = re.compile(r"[\t\n\r\v\f]+")

# Shapes of keys and tokens, whoever's: OpenAI and OpenRouter keys (sk-, sk-proj-,
# sk-or-v1-...), bearer tokens, and `api_key=...` / `"api-key": "..."` pairs. A key or token
# is long and holds a digit, so prose ("sk-learn", "the Bearer Messenger") is left alone.
_TOKEN = r"(?=[A-Za-z0-9._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{16,}"
_KEY_SHAPES = (
    re.compile(r"\bsk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{16,}"),
    re.compile(r"(?<=\b[Bb]earer )" + _TOKEN),
    re.compile(r"""(?i)(?<=api[_-]key)(["']?\s*[:=]\s*["']?)[^\s"'&,;]{8,}"""),
)
# Keys shorter than this are not searched for by value: masking every "test" in a message
# would hide more than it protects. Real keys are far longer.
MIN_SECRET = 8
# The environment variables a key is read from (see providers.py).
KEY_VARIABLES = ("OPENAI_API_KEY", "OPENROUTER_API_KEY")
_remembered: set[str] = set()


def remember_secret(secret: str | None) -> None:
    """Mask `secret` (this process's API key, e.g. from --api-key) wherever it turns up."""
    if secret and len(secret) >= MIN_SECRET:
        _remembered.add(secret)


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """The keys this process knows: `extra`, the remembered ones and the environment's;
    longest first, so a key that contains another is masked whole."""
    found = set(_remembered)
    found.update(os.environ.get(name, "") for name in KEY_VARIABLES)
    found.update(s for s in extra if s)
    return sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)


def mask(secret: str) -> str:
    """What is shown instead of a key: its last four characters, when it is long enough
    that they say nothing useful about the rest."""
    return "***" + secret[-4:] if len(secret) >= 20 else "***"


def mask_secrets(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with every known key (see `known_secrets`) and anything shaped like a key
    masked."""
    for secret in known_secrets(extra):
        text = text.replace(secret, mask(secret))
    for shape in _KEY_SHAPES:
        text = shape.sub(_mask_match, text)
    return text


def _mask_match(found: re.Match[str]) -> str:
    prefix = found.group(1) if found.re.groups else ""
    return prefix + mask(found.group(0)[len(prefix) :])


def without_password(url: str) -> str:
    """`url` with the password of its user part, if any, shown as ***."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:  # not a URL after all
        return url
    if not password or "@" not in parts.netloc:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))


def escape_controls(text: str) -> str:
    """Every control character (but newline) and bidi control as a visible escape, `\\x1b`
    or `\\u202e`, so it shows for what it is and does nothing to the terminal."""
    return _UNSAFE.sub(_escape, text)


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """Whole lines about to be printed: keys masked, controls escaped, newlines kept."""
    return escape_controls(mask_secrets(text))


def one_line(text: str) -> str:
    """One untrusted field inside a line or a table cell: as `for_terminal`, with line
    breaks and tabs shown as a space, so the field cannot start a line of its own."""
    return escape_controls(_BLANKS.sub(" ", mask_secrets(text)))
