"""The Hugging Face token: read from the environment or a 0600 file in the home, never the database.

Nothing here logs or returns the token except ``HfToken.value()``, which the run launcher puts
into a child's environment. ``redact`` scrubs it (and token-looking keys) from text we show or store.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftapp.errors import FtappError

ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_ACCESS_TOKEN")
# "hub_token" and "api_key" are secrets; "max_new_tokens" is not.
SECRET_KEY = re.compile(r"((^|[_-])token$)|password|passwd|secret|api[_-]?key", re.IGNORECASE)
_HF_TOKEN_TEXT = re.compile(r"hf_[A-Za-z0-9]{20,}")
REDACTED = "***"


@dataclass(frozen=True)
class TokenStatus:
    source: str  # "environment", "file" or "none"
    env_name: str | None = None


class HfToken:
    def __init__(self, secrets_dir: Path):
        self.path = secrets_dir / "hf_token"

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
        self.path.unlink(missing_ok=True)


def redact(text: str, secrets: list[str | None] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _HF_TOKEN_TEXT.sub(REDACTED, text)


def redact_mapping(value: Any) -> Any:
    """Replace the values of secret-looking keys anywhere in a JSON-like structure."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else redact_mapping(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_mapping(v) for v in value]
    return value
