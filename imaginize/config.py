"""Settings from TOML files: `imaginize.toml` in the working directory, then the user's
`~/.config/imaginize/config.toml` (or `$XDG_CONFIG_HOME/imaginize/config.toml`).

Precedence, strongest first: command-line flags, environment variables, the project file, the
user file, built-in defaults. Nested tables merge key by key. A key imaginize does not know is
an error naming the key and the file, so a typo never passes silently.

Every setting is declared once in `SETTINGS`: its table and key, the command-line parameter it
feeds, its environment variable if any, and its type.

Trust is not precedence. The project file comes with the working folder (a cloned repository,
an unpacked archive), so anyone may have written it; flags, the environment and the user file
are the user's own. Each value keeps its `Origin` so that `providers.resolve_provider` can
refuse to send a key to a server named by a less trusted source than the key's.
"""

from __future__ import annotations

import os
import shlex
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from imaginize.coordination.atomic import write_atomic
from imaginize.errors import ConfigError
from imaginize.safetext import without_password
from imaginize.settings import (
    DEFAULT_CHAPTER_TIMEOUT,
    DEFAULT_HEARTBEAT,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_LEASE,
    DEFAULT_LOCK_LIFETIME,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CHUNK_TOKENS,
    DEFAULT_MAX_WAIT,
    DEFAULT_MAX_WORKERS,
    DEFAULT_OPENAI_MODEL,
    DEFAULT_PAGES_PER_IMAGE,
    HOSTED_TIMEOUT,
)

PROJECT_FILE = "imaginize.toml"


@dataclass(frozen=True)
class Setting:
    key: str  # "table.name"
    param: str  # the `imaginize run` parameter it sets
    kind: type
    env: str | None = None
    secret: bool = False
    help: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("provider.kind", "provider", str, help="auto, openai or offline"),
    Setting("provider.model", "model", str, "OPENAI_MODEL"),
    Setting("provider.base_url", "base_url", str, "OPENAI_BASE_URL"),
    Setting("provider.api_key", "api_key", str, "OPENAI_API_KEY", secret=True),
    Setting("provider.timeout", "timeout", float, help="seconds to wait for one reply"),
    Setting("provider.max_output_tokens", "max_output_tokens", int),
    Setting("provider.context_size", "context_size", int, help="tokens the server holds"),
    Setting("run.pages_per_image", "pages_per_image", float),
    Setting("run.max_chunk_tokens", "max_chunk_tokens", int),
    Setting("run.max_attempts", "max_attempts", int),
    Setting("run.chapter_timeout", "chapter_timeout", float),
    Setting("run.concurrent", "concurrent", str, help='a number or "auto"'),
    Setting("run.max_workers", "max_workers", int),
    Setting("rate.tier", "tier", str, "IMAGINIZE_TIER", help="free or paid"),
    Setting("rate.batch_size", "batch_size", int),
    Setting("rate.batch_delay", "batch_delay", float),
    Setting("rate.rpm", "rpm", float),
    Setting("rate.tpm", "tpm", float, help="tokens per minute"),
    Setting("rate.max_wait", "max_wait", float, help="longest server pause waited out"),
    Setting("pace.redis_url", "redis_url", str, "IMAGINIZE_REDIS_URL", help="shared pace"),
    Setting("coordination.lease", "lease", float),
    Setting("coordination.heartbeat", "heartbeat", float),
    Setting("coordination.lock_lifetime", "lock_lifetime", float),
    Setting("images.model", "image_model", str),
    Setting("images.size", "image_size", str),
    Setting("images.quality", "image_quality", str),
)
BY_KEY = {s.key: s for s in SETTINGS}
# A file that may hold a key is written for its owner's eyes only.
PRIVATE_MODE = 0o600


class Trust(IntEnum):
    """How far a source is trusted to choose where an API key goes."""

    PROJECT_FILE = 0  # imaginize.toml in the working folder: whoever made the folder
    USER = 1  # command-line flags, the environment, the user file: the user


@dataclass(frozen=True)
class Origin:
    """Where a value came from: its trust and a name for messages ("env OPENAI_API_KEY",
    "--base-url", a file's path)."""

    trust: Trust
    name: str


BUILT_IN = Origin(Trust.USER, "built-in default")


def user_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "imaginize" / "config.toml"


def config_files(
    cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> list[tuple[Path, Trust]]:
    """Existing config files and how far each is trusted, weakest precedence first."""
    candidates = [
        (user_file(env), Trust.USER),
        ((cwd or Path.cwd()) / PROJECT_FILE, Trust.PROJECT_FILE),
    ]
    return [(p, trust) for p, trust in candidates if p.is_file()]


def read_file(path: Path) -> dict[str, Any]:
    """The settings in one file as {"table.key": value}, checked against SETTINGS."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    flat: dict[str, Any] = {}
    _flatten(data, "", flat, path)
    for key, value in flat.items():
        setting = BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"{path}: unknown setting '{key}'")
        flat[key] = _typed(setting, value, path)
    return flat


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any], path: Path) -> None:
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            _flatten(value, key + ".", out, path)
        else:
            out[key] = value


def _typed(setting: Setting, value: Any, path: Path) -> Any:
    if setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if setting.key == "run.concurrent" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, setting.kind) or isinstance(value, bool):
        wanted = {str: "a string", int: "an integer", float: "a number"}[setting.kind]
        raise ConfigError(f"{path}: '{setting.key}' must be {wanted}, not {value!r}")
    return value


@dataclass(frozen=True)
class Layered:
    """Each setting's value and where it came from."""

    values: dict[str, Any]
    origins: dict[str, Origin]
    # One line each, for the CLI to print (e.g. a key in a file others can read).
    warnings: tuple[str, ...] = field(default=())

    @property
    def sources(self) -> dict[str, str]:
        return {key: origin.name for key, origin in self.origins.items()}

    def default_map(self) -> dict[str, Any]:
        """Values for click's default_map, keyed by `imaginize run` parameter. Environment
        values are left to click, which reads them itself (and ranks them above these)."""
        return {
            BY_KEY[key].param: value
            for key, value in self.values.items()
            if not self.origins[key].name.startswith("env ")
        }


def load(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Layered:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    warnings = []
    for path, trust in config_files(cwd, env):
        settings = read_file(path)
        if any(BY_KEY[key].secret for key in settings) and _readable_by_others(path):
            warnings.append(
                f"{path}: holds an API key and others can read it; "
                f"run chmod 600 {shlex.quote(str(path))}"
            )
        for key, value in settings.items():
            values[key] = value
            origins[key] = Origin(trust, str(path))
    for setting in SETTINGS:
        if setting.env and env.get(setting.env):
            values[setting.key] = env[setting.env]
            origins[setting.key] = Origin(Trust.USER, f"env {setting.env}")
    return Layered(values, origins, tuple(warnings))


def _readable_by_others(path: Path) -> bool:
    if os.name != "posix":
        return False  # Windows has ACLs, not mode bits
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def write_example(path: Path) -> None:
    """The commented example, readable by its owner only: it is where an api_key line goes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, EXAMPLE, mode=PRIVATE_MODE)


def mask(value: str) -> str:
    return value[:3] + "…" + value[-4:] if len(value) > 10 else "****"


def render_show(layered: Layered, defaults: Mapping[str, Any]) -> str:
    """`imaginize config show`: every setting, its effective value and its source."""
    rows = []
    for setting in SETTINGS:
        if setting.key in layered.values:
            value, source = layered.values[setting.key], layered.sources[setting.key]
        else:
            value, source = defaults.get(setting.param), "default"
        shown = "" if value is None else without_password(str(value))
        if setting.secret and shown:
            shown = mask(shown)
        rows.append((setting.key, shown, source))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{k.ljust(width[0])}  {v.ljust(width[1])}  ({s})" for k, v, s in rows)


# The example shows the defaults of `settings.py` (this one's line would be too long).
_MAX_WAIT = f"max_wait = {DEFAULT_MAX_WAIT:g}"
EXAMPLE = f"""\
# imaginize settings. Precedence: command-line flags > environment > this file
# (imaginize.toml in the working directory) > ~/.config/imaginize/config.toml > defaults.
# Every key is optional; remove the leading '#' to set one.

[provider]
# kind = "auto"            # auto: openai when a key or base URL is set, else offline
# model = "{DEFAULT_OPENAI_MODEL}"    # env OPENAI_MODEL
# base_url = "http://127.0.0.1:8080/v1"   # env OPENAI_BASE_URL (llama.cpp, vLLM, Ollama...)
# api_key = "..."          # env OPENAI_API_KEY; better kept in the environment than here
# timeout = {HOSTED_TIMEOUT:g}            # seconds to wait for one reply
# max_output_tokens = 4096
# context_size = 8192       # tokens a local server holds (llama-server -c, Ollama num_ctx)

[run]
# pages_per_image = {DEFAULT_PAGES_PER_IMAGE:g}    # one scene per this many pages of 300 words
# max_chunk_tokens = {DEFAULT_MAX_CHUNK_TOKENS} # longer chapters are split
# max_attempts = {DEFAULT_MAX_ATTEMPTS}         # tries per chapter, across all processes
# chapter_timeout = {DEFAULT_CHAPTER_TIMEOUT:g}    # seconds before a chapter is given up
# concurrent = 1           # worker processes, or "auto"
# max_workers = {DEFAULT_MAX_WORKERS}          # upper bound for concurrent = "auto"

[rate]
# tier = "paid"            # free: batches of 3, 60 s apart; paid: batches of 5, 2 s apart
# batch_size = 5
# batch_delay = 2.0
# rpm = 60                 # requests per minute for the whole book
# {_MAX_WAIT:<25}# a server's pause (429 Retry-After) longer than this stops the run
# tpm = 200000             # tokens per minute: prompt + output cap reserved, unused given back

[pace]
# redis_url = "redis://host:6379/0"  # env IMAGINIZE_REDIS_URL; one pace for every machine

[coordination]
# lease = {DEFAULT_LEASE:g}              # seconds without a heartbeat before a claim is taken over
# heartbeat = {DEFAULT_HEARTBEAT:g}
# lock_lifetime = {DEFAULT_LOCK_LIFETIME:g}      # age after which a lock file is broken

[images]
# model = "{DEFAULT_IMAGE_MODEL}"    # or "dall-e-3"
# size = "1024x1024"
# quality = "auto"
"""
