"""The Hugging Face token: read from the environment or a 0600 file in the home, never the database.

Nothing here logs or returns the token except ``HfToken.value()``, which the run launcher puts
into a child's environment. ``redact`` scrubs it (and token-looking keys) from text we show or store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftapp import rules
from ftapp.demo.policy import host_only
from ftapp.errors import FtappError, NotFoundError, Problem, ValidationError

if TYPE_CHECKING:
    from ftapp.demo.visitor import Visitor

ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN")
# "hub_token" and "api_key" are secrets; "max_new_tokens" is not.
SECRET_KEY = re.compile(r"((^|[_-])token$)|password|passwd|secret|api[_-]?key", re.IGNORECASE)
_HF_TOKEN_TEXT = re.compile(r"hf_[A-Za-z0-9]{20,}")
# A tokenizer's special tokens are settings, not credentials ("pad_token": "<|pad|>" in an axolotl config).
_SPECIAL_TOKEN_KEY = re.compile(r"(pad|eos|bos|unk|sep|cls|mask|additional_special)_tokens?", re.IGNORECASE)
REDACTED = "***"
TOKEN_ADVICE = "store the Hugging Face token with `ftapp token set` or in the Settings tab"


@dataclass(frozen=True)
class TokenStatus:
    source: str  # "environment", "file" or "none"
    env_name: str | None = None


class HfToken:
    def __init__(self, secrets_dir: Path, visitor: Visitor | None = None):
        """``visitor``: a demo visitor, who may see whether the host has a token but not set or clear it."""
        self.path, self.visitor = secrets_dir / "hf_token", visitor

    def status(self) -> TokenStatus:
        for name in ENV_NAMES:
            if os.environ.get(name):
                return TokenStatus("environment", name)
        return TokenStatus("file") if self.path.is_file() else TokenStatus("none")

    def value(self) -> str | None:
        for name in ENV_NAMES:
            if os.environ.get(name):
                return os.environ[name]
        if self.path.is_file():
            return self.path.read_text(encoding="utf-8").strip() or None
        return None

    def store(self, token: str) -> None:
        if self.visitor:
            raise ValidationError(host_only("setting the Hugging Face token"))
        token = token.strip()
        if not token:
            raise FtappError("the token is empty; paste a Hugging Face access token (hf_...)")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        # Create with 0600 from the start so the token is never readable by others, even briefly.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token)
        os.replace(temp, self.path)

    def clear(self) -> None:
        if self.visitor:
            raise ValidationError(host_only("clearing the Hugging Face token"))
        self.path.unlink(missing_ok=True)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _HF_TOKEN_TEXT.sub(REDACTED, text)


def redact_mapping(value: Any) -> Any:
    """Replace the values of secret-looking keys anywhere in a JSON-like structure."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else redact_mapping(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_mapping(v) for v in value]
    return value


def is_secret_key(key: object) -> bool:
    text = str(key)
    return bool(SECRET_KEY.search(text)) and not _SPECIAL_TOKEN_KEY.fullmatch(text)


def looks_like_token(text: str) -> bool:
    return bool(_HF_TOKEN_TEXT.search(text))


def find_secrets(value: Any) -> list[tuple[str, str]]:
    """Where a JSON-like value holds a secret, as (path, "key" or "value"): a secret-looking key
    with a value (not null or a flag such as ``hf_use_auth_token: true``), or text that looks like a
    Hugging Face token, key or value, at any depth. Walked without recursion: any nesting is safe."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                inner_path = f"{path}.{key}" if path else str(key)
                if is_secret_key(key) and inner is not None and not isinstance(inner, bool):
                    found.append((inner_path, "key"))
                elif looks_like_token(str(key)):
                    found.append((path or "(top level)", "value"))
                else:
                    stack.append((inner_path, inner))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{i}]", inner) for i, inner in enumerate(item))
        elif isinstance(item, str) and looks_like_token(item):
            found.append((path or "(top level)", "value"))
    return sorted(found)


API_KEY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_API_KEY_CHARS = 4096
_PRINTABLE_LINE = re.compile(r"^[\x21-\x7e]+$")  # what an HTTP Authorization header can carry, no spaces


ENV_KEY_SUFFIX = "_API_KEY"  # the environment variables an API key name may read


class ApiKeys:
    """Keys of OpenAI-compatible endpoints (an LLM judge's), by name: the environment variable of that name (names
    ending in ``_API_KEY`` only), else the 0600 file ``<secrets>/api_keys/<name>``. Like the Hugging Face token, a key is never stored in the database
    or a spec: the run launcher puts it into the child's environment. Nothing here returns a key except ``value``,
    which only the launcher and the judge's check call; ``names`` lists names, never values."""

    def __init__(self, secrets_dir: Path, visitor: Visitor | None = None):
        """``visitor``: a demo visitor, who may neither list, store nor delete the host's keys."""
        self.folder, self.visitor = secrets_dir / "api_keys", visitor

    def _path(self, name: str) -> Path:
        if not isinstance(name, str) or not API_KEY_NAME.match(name):
            shown = name[:80] if isinstance(name, str) else name
            raise ValidationError(
                Problem(
                    rules.API_KEY,
                    f"an API key's name is a letter, then letters, digits, '_', '.' or '-', at most 64 (got {shown!r})",
                    "name",
                )
            )
        return self.folder / name

    def _refuse_visitor(self, action: str) -> None:
        if self.visitor:
            raise ValidationError(host_only(action, "name"))

    def value(self, name: str) -> str | None:
        path = self._path(name)
        if self.in_environment(name):
            return os.environ[name]
        return (path.read_text(encoding="utf-8").strip() or None) if path.is_file() else None

    def names(self) -> list[str]:
        """The names of the stored keys (files of a valid name; a half-written temporary file is none)."""
        self._refuse_visitor("listing the API keys")
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_file() and API_KEY_NAME.match(p.name))

    def in_environment(self, name: str) -> bool:
        """Whether an environment variable of this name overrides the stored key (``value`` prefers it).

        Only variables named like an endpoint's key (``OPENAI_API_KEY``...): the judge sends the key to a URL of the
        requester's choosing, and the host's other variables (cloud credentials, HF_TOKEN, a database URL) are not
        theirs to send."""
        return name.endswith(ENV_KEY_SUFFIX) and name not in ENV_NAMES and bool(os.environ.get(name))

    def store(self, name: str, key: str) -> Path:
        self._refuse_visitor("storing an API key")
        path, key = self._path(name), (key or "").strip()
        problem = _key_problem(key)
        if problem:
            raise ValidationError(problem)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A name never starts with '.', so the temporary file can be no other key's.
        temp = self.folder / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, even briefly
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key)
        os.replace(temp, path)
        return path

    def delete(self, name: str) -> None:
        self._refuse_visitor("deleting an API key")
        path = self._path(name)
        if not path.is_file():
            raise NotFoundError("stored API key", name, rules.API_KEY)
        path.unlink()


def _key_problem(key: str) -> Problem | None:
    if not key:
        return Problem(rules.API_KEY, "the API key is empty: paste the key (it is read, never shown)", "key")
    if len(key) > MAX_API_KEY_CHARS:
        return Problem(rules.API_KEY, f"the API key has {len(key):,} characters; at most {MAX_API_KEY_CHARS:,}", "key")
    if not _PRINTABLE_LINE.match(key):
        # The value itself stays out of the message: it is a secret even when malformed.
        return Problem(rules.API_KEY, "the API key must be one line of printable ASCII without spaces", "key")
    return None
