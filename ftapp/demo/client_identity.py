"""Who a web client is, in the public demo and a shared app: a signed identity and a network address.

The identity is a random id the server hands out in a cookie, signed with HMAC-SHA256 under a key
kept in the home (``<home>/secrets/visitor-cookie.key``, 0600). A client keeps the id it was given
but cannot mint one or take another visitor's: a cookie whose signature fails is replaced by a new
identity, as if the client had none.

Identities are free (drop the cookie, get a new one), so the demo's caps also count per network
address (DM-009). The address is the TCP peer as uvicorn reports it; uvicorn believes
X-Forwarded-For only from a proxy on this machine (its FORWARDED_ALLOW_IPS, loopback by default).
Behind proxies on other hosts, as on Hugging Face Spaces, ``FTAPP_PROXY_HOPS=N`` (1 by default on
Spaces, else 0) takes the N-th address from the right of X-Forwarded-For: the one the outermost of
our proxies appended. Entries to its left are written by the client and never believed. An IPv6
address counts as its /64, the block one subscriber is given and can rotate through at will.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from ftapp.settings import on_spaces

KEY_FILE = "visitor-cookie.key"
KEY_BYTES = 32
_PURPOSE = b"ftapp-visitor-identity:"


class IdentitySigner:
    """Issues identities (``<id>.<signature>``) and recognises the ones it issued."""

    def __init__(self, key: bytes):
        if len(key) < KEY_BYTES:
            raise ValueError(f"an identity key has at least {KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def in_home(cls, secrets_dir: Path) -> IdentitySigner:
        """The home's signer: its key file, created once (0600) by whichever process comes first."""
        path = secrets_dir / KEY_FILE
        if not path.is_file():
            secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = secrets_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
            try:
                os.link(temp, path)  # fails if another process made it first: theirs is kept
            except FileExistsError:
                pass
            finally:
                temp.unlink()
        return cls(path.read_bytes())

    def _signature(self, ident: str) -> str:
        digest = hmac.new(self._key, _PURPOSE + ident.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode("ascii")

    def mint(self) -> str:
        ident = secrets.token_urlsafe(18)
        return f"{ident}.{self._signature(ident)}"

    def verify(self, token: str | None) -> bool:
        """True for an identity this key issued; anything else (unsigned, altered, foreign) is False."""
        if not token or len(token) > 128 or not token.isascii():
            return False
        ident, dot, signature = token.partition(".")
        return bool(dot and ident) and hmac.compare_digest(signature, self._signature(ident))


def proxy_hops(environ: Mapping[str, str] | None = None) -> int:
    """How many reverse proxies in front of the app append to X-Forwarded-For (FTAPP_PROXY_HOPS)."""
    environ = os.environ if environ is None else environ
    raw = (environ.get("FTAPP_PROXY_HOPS") or "").strip()
    if raw.isdigit():
        return int(raw)
    return 1 if on_spaces(environ) else 0


def _normalised(address: str) -> str | None:
    text = address.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def client_address(peer: str | None, forwarded_for: str | None, hops: int) -> str:
    """The address a client's caps count against (see the module's docstring for whom it believes)."""
    chosen = peer
    if hops > 0 and forwarded_for:
        chain = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
        if len(chain) >= hops:
            chosen = chain[-hops]
    if not chosen:
        return "unknown"
    return _normalised(chosen) or f"unparsed:{chosen[:64]}"
