"""Who is asking, in the public demo: a browser key kept in a cookie, and the services that visitor sees.

gradio's session hash changes with every page load, so it cannot tell a visitor who reloads from a
new one. A key in an HttpOnly cookie can: ``VisitorCookie`` gives each browser one on its first
request, and every event handler then finds it on the request gradio puts in its context. The key
is issued and signed by the server (``ftapp.demo.client_identity``): a cookie the server did not sign
(made up, or another visitor's id with a guessed signature) is replaced by a new identity, so a
client can neither mint visitors nor step into someone else's. The tabs are built with the demo's
page services (nobody's view, ``ftapp.visitors.demo_services``); ``services_for`` then builds, for
every event, the services of the visitor who sent it, and notes the client's network address for
the caps per address (DM-009). ``ui.wiring.bind`` calls it for every handler.
"""

from __future__ import annotations

import functools
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from ftapp.demo import IdentitySigner, client_address, proxy_hops
from ftapp.services import Services
from ftapp.visitors import NOBODY, services_for_key

VISITOR_COOKIE = "ftapp_visitor"
COOKIE_MAX_AGE_S = 30 * 24 * 3600


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


def _without_cookie(header: str, name: str) -> str:
    """A Cookie header less every ``name=...`` pair (a forged visitor cookie must not reach the app)."""
    return "; ".join(p.strip() for p in header.split(";") if p.strip() and p.split("=", 1)[0].strip() != name)


class VisitorCookie:
    """ASGI middleware: a browser without a valid visitor cookie gets one, on the response to its request.

    The request that lacks it is given the new key as well (its Cookie header rewritten, any forged
    visitor cookie dropped), so that even a first API call has a visitor, and everything behind this
    middleware sees only keys the server signed. Behind Spaces' HTTPS proxy (an iframe on
    huggingface.co) the cookie must be ``SameSite=None; Secure; Partitioned`` to be stored at all; on
    plain local HTTP it is ``SameSite=Lax``.
    """

    def __init__(self, app: Any, signer: IdentitySigner):
        self.app, self.signer = app, signer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        header = _header(scope, b"cookie") if scope["type"] == "http" else ""
        if scope["type"] != "http" or self.signer.verify(_cookie(header, VISITOR_COOKIE)):
            await self.app(scope, receive, send)
            return
        key = self.signer.mint()
        https = scope.get("scheme") == "https" or _header(scope, b"x-forwarded-proto").split(",")[0].strip() == "https"
        attributes = "SameSite=None; Secure; Partitioned" if https else "SameSite=Lax"
        set_cookie = f"{VISITOR_COOKIE}={key}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; {attributes}".encode()
        cookies = "; ".join(c for c in (_without_cookie(header, VISITOR_COOKIE), f"{VISITOR_COOKIE}={key}") if c)
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"cookie"]
        scope = {**scope, "headers": [*headers, (b"cookie", cookies.encode("latin-1"))]}

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", set_cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def visitor_key(cookie_header: str, signer: IdentitySigner) -> str | None:
    """The signed visitor key in a Cookie header, or None when there is none the server issued."""
    key = _cookie(cookie_header, VISITOR_COOKIE)
    return key if signer.verify(key) else None


def current_visitor(signer: IdentitySigner, hops: int = 0) -> tuple[str, str | None]:
    """The key and network address of the browser whose event is being handled (gradio keeps its
    request in a context variable); outside any event, ``NOBODY`` from nowhere."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    if request is None:
        return NOBODY, None
    headers = getattr(request, "headers", None) or {}
    client = getattr(request, "client", None)
    # Every X-Forwarded-For line, in order: a proxy appends to the last, a client may send several.
    forwarded = ", ".join(headers.getlist("x-forwarded-for")) if hasattr(headers, "getlist") else headers.get("x-forwarded-for")
    address = client_address(getattr(client, "host", None), forwarded, hops)
    key = visitor_key(str(headers.get("cookie", "")), signer)
    if key:
        return key, address
    # A client that keeps no cookies (or sends one the server did not sign) is a new visitor on
    # every page load: isolated, but forgetful.
    session = getattr(request, "session_hash", None)
    return (f"session:{session}", address) if session else (NOBODY, address)


@functools.cache
def _signer(secrets_dir: Path) -> IdentitySigner:
    return IdentitySigner.in_home(secrets_dir)  # the key the VisitorCookie middleware signs with


def services_for(services: Services) -> Services:
    """The services of whoever sent the event being handled: ``services`` themselves in the local app; in the
    public demo (``services`` are then the page's), the services of the visitor whose cookie came with it."""
    if services.visitor is None:
        return services
    return services_for_key(services, *current_visitor(_signer(services.settings.secrets_dir), proxy_hops()))
