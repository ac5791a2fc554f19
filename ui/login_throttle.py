"""Slows password guessing at gradio's login (``launch.py --auth``).

gradio answers ``POST /login`` (a form: username, password) with 200 and a session cookie, or 400
"Incorrect credentials", as fast as it is asked; its ``auth=`` callable sees no address. So the
throttle is an ASGI middleware in front of that route. Every attempt counts as a failure from the
moment it starts (fifty parallel guesses cannot all slip in before the first is counted); a right
password clears the counts, a wrong one keeps its count. After ``free`` failures per network
address or per user name, the next attempt waits ``base_s * 2**(failures - free)`` seconds after
the last failure (at most ``max_wait_s``); until then the answer is 429 with Retry-After, and the
password is not even checked. Counting per user name stops a guesser that spreads over many
addresses; its cost is that such a guesser also delays the real user (by at most ``max_wait_s``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from ftapp.demo import client_address

MAX_LOGIN_BODY = 64 * 1024


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        free: int = 5,
        base_s: float = 1.0,
        max_wait_s: float = 900.0,
        forget_s: float = 3600.0,
        keep: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.base_s, self.max_wait_s, self.forget_s, self.keep = free, base_s, max_wait_s, forget_s, keep
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def _wait(self, key: str, now: float) -> float:
        entry = self._failures.get(key)
        if entry is None or entry.count < self.free:
            return 0.0
        if now - entry.last > self.forget_s:
            del self._failures[key]
            return 0.0
        delay = min(self.max_wait_s, self.base_s * 2 ** (entry.count - self.free))
        return max(0.0, entry.last + delay - now)

    def attempt(self, keys: list[str]) -> float:
        """0 and the attempt counted as a failure until it succeeds; or the seconds to wait, nothing counted."""
        with self._lock:
            now = self.clock()
            wait = max(self._wait(key, now) for key in keys)
            if wait > 0:
                return wait
            for key in keys:
                entry = self._failures.pop(key, None) or _Failures()
                entry.count, entry.last = entry.count + 1, now
                self._failures[key] = entry
            while len(self._failures) > self.keep:
                self._failures.popitem(last=False)
            return 0.0

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def void(self, keys: list[str]) -> None:
        """An attempt that checked no password (a malformed form): it does not count."""
        with self._lock:
            for key in keys:
                entry = self._failures.get(key)
                if entry is not None:
                    entry.count = max(0, entry.count - 1)


def _header(scope: dict[str, Any], name: bytes) -> str:
    return b", ".join(value for key, value in scope.get("headers", []) if key.lower() == name).decode("latin-1")


def _username(content_type: str, body: bytes) -> str:
    """The form's user name: urlencoded from gradio_client, multipart from gradio's login page."""
    value: Any = ""
    if content_type.lower().startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        for part in message.iter_parts() if message.is_multipart() else ():
            if part.get_param("name", header="content-disposition") == "username":
                value = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
                break
    else:
        value = (parse_qs(body.decode("utf-8", "replace")).get("username") or [""])[0]
    return value.strip()[:256]


class LoginThrottleMiddleware:
    """ASGI middleware: ``LoginThrottle`` in front of gradio's ``POST /login``."""

    def __init__(self, app: Any, throttle: LoginThrottle | None = None, hops: int = 0):
        self.app, self.throttle, self.hops = app, throttle or LoginThrottle(), hops

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_LOGIN_BODY:
                await _answer(send, 413, "the login form is too large", {})
                return
        client = scope.get("client")
        address = client_address(client[0] if client else None, _header(scope, b"x-forwarded-for"), self.hops)
        keys = [f"address:{address}", f"user:{_username(_header(scope, b'content-type'), body)}"]
        wait = self.throttle.attempt(keys)
        if wait > 0:
            seconds = math.ceil(wait)
            await _answer(
                send,
                429,
                f"Too many failed logins from this address or for this user name; try again in {seconds} s.",
                {b"retry-after": str(seconds).encode()},
            )
            return
        status = 0
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status < 300:
                    self.throttle.succeeded(keys)
                elif status != 400:  # 400 is gradio's "Incorrect credentials": that failure stays counted
                    self.throttle.void(keys)
            await send(message)

        await self.app(scope, replay, watch)


async def _answer(send: Any, status: int, detail: str, headers: dict[bytes, bytes]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})
