"""Who is asking, in the public demo: a browser key kept in a cookie, and the services that visitor sees.

gradio's session hash changes with every page load, so it cannot tell a visitor who reloads from a
new one. A random key in an HttpOnly cookie can: ``VisitorCookie`` gives each browser one on its
first request, and every event handler then finds it on the request gradio puts in its context.
The tabs need no change: they are handed ``VisitorServices``, which looks up the current visitor's
services each time a handler touches one.
"""

from __future__ import annotations

import secrets
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ftapp.services import Services
from ftapp.visitors import Visitors

VISITOR_COOKIE = "ftapp_visitor"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
# Outside any event (while the page is built) nobody is asking: that view sees only shared things.
NOBODY = "nobody"


def _cookie(header: str, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def _header(scope: dict[str, Any], name: bytes) -> str:
    return b"; ".join(value for key, value in scope.get("headers", []) if key.lower() == name).decode("latin-1")


class VisitorCookie:
    """ASGI middleware: a browser without the visitor cookie gets one, on the response to its first request.

    The request that lacks it is given the new key as well, so that even a first API call has a visitor.
    Behind Spaces' HTTPS proxy (an iframe on huggingface.co) the cookie must be ``SameSite=None; Secure;
    Partitioned`` to be stored at all; on plain local HTTP it is ``SameSite=Lax``.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _cookie(_header(scope, b"cookie"), VISITOR_COOKIE):
            await self.app(scope, receive, send)
            return
        key = secrets.token_urlsafe(24)
        https = scope.get("scheme") == "https" or _header(scope, b"x-forwarded-proto").split(",")[0].strip() == "https"
        attributes = "SameSite=None; Secure; Partitioned" if https else "SameSite=Lax"
        set_cookie = f"{VISITOR_COOKIE}={key}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; {attributes}".encode()
        cookies = "; ".join(c for c in (_header(scope, b"cookie"), f"{VISITOR_COOKIE}={key}") if c)
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"cookie"]
        scope = {**scope, "headers": [*headers, (b"cookie", cookies.encode("latin-1"))]}

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", set_cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def current_visitor_key() -> str:
    """The key of the browser whose event is being handled (gradio keeps its request in a context variable)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    if request is None:
        return NOBODY
    headers = getattr(request, "headers", None) or {}
    key = _cookie(str(headers.get("cookie", "")), VISITOR_COOKIE)
    if key:
        return key
    # A client that keeps no cookies is a new visitor on every page load: isolated, but forgetful.
    session = getattr(request, "session_hash", None)
    return f"session:{session}" if session else NOBODY


class VisitorServices:
    """Stands in for ``Services`` in the demo: every attribute is the current visitor's."""

    def __init__(self, services: Services, visitors: Visitors | None = None):
        self.visitors = visitors or Visitors(services)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.visitors.for_key(current_visitor_key()), name)
