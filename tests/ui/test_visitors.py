"""Who is asking in the public demo: the visitor cookie (an ASGI middleware) and the request gradio keeps."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from ui.visitors import NOBODY, VISITOR_COOKIE, VisitorCookie, current_visitor_key


def call(headers: list[tuple[bytes, bytes]]) -> tuple[dict, list[tuple[bytes, bytes]]]:
    """One request through the middleware: the scope the app saw, and the response headers sent."""
    seen: dict = {}
    sent: list[dict] = []

    async def app(scope, receive, send):
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "scheme": "http", "headers": headers}
    asyncio.run(VisitorCookie(app)(scope, None, send))
    return seen, sent[0]["headers"]


def test_a_new_browser_gets_a_key_that_its_first_request_already_carries():
    seen, response = call([(b"cookie", b"theme=dark")])
    set_cookie = dict(response)[b"set-cookie"].decode()
    key = set_cookie.split(";")[0].split("=", 1)[1]
    assert set_cookie.startswith(f"{VISITOR_COOKIE}=") and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert len(key) >= 32 and dict(seen["headers"])[b"cookie"].decode() == f"theme=dark; {VISITOR_COOKIE}={key}"
    assert call([])[1] != response  # another browser, another key


def test_a_known_browser_keeps_its_key_and_behind_https_the_cookie_survives_an_iframe():
    _, response = call([(b"cookie", f"{VISITOR_COOKIE}=abc123".encode())])
    assert b"set-cookie" not in dict(response)
    _, proxied = call([(b"x-forwarded-proto", b"https")])
    assert "SameSite=None; Secure; Partitioned" in dict(proxied)[b"set-cookie"].decode()


def test_the_visitor_of_an_event_comes_from_gradios_request():
    from gradio.context import LocalContext

    def key_for(request) -> str:
        token = LocalContext.request.set(request)
        try:
            return current_visitor_key()
        finally:
            LocalContext.request.reset(token)

    assert key_for(None) == NOBODY  # building the page: nobody is asking
    assert key_for(SimpleNamespace(headers={"cookie": f"{VISITOR_COOKIE}=k1"}, session_hash="s")) == "k1"
    assert key_for(SimpleNamespace(headers={}, session_hash="s9")) == "session:s9"  # a client without cookies
