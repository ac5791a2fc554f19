"""Who is asking in the public demo: the signed visitor cookie (an ASGI middleware) and the request gradio keeps."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from ftapp.demo.client_identity import KEY_FILE, IdentitySigner, client_address, proxy_hops
from ui.visitors import NOBODY, VISITOR_COOKIE, VisitorCookie, current_visitor

SIGNER = IdentitySigner(b"k" * 32)


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
    asyncio.run(VisitorCookie(app, SIGNER)(scope, None, send))
    return seen, sent[0]["headers"]


def issued(response: list[tuple[bytes, bytes]]) -> str:
    return dict(response)[b"set-cookie"].decode().split(";")[0].split("=", 1)[1]


def test_a_new_browser_gets_a_signed_key_that_its_first_request_already_carries():
    seen, response = call([(b"cookie", b"theme=dark")])
    set_cookie = dict(response)[b"set-cookie"].decode()
    key = issued(response)
    assert set_cookie.startswith(f"{VISITOR_COOKIE}=") and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert SIGNER.verify(key) and len(key) >= 48
    assert dict(seen["headers"])[b"cookie"].decode() == f"theme=dark; {VISITOR_COOKIE}={key}"
    assert issued(call([])[1]) != key  # another browser, another key


def test_a_known_browser_keeps_its_key_and_behind_https_the_cookie_survives_an_iframe():
    key = SIGNER.mint()
    seen, response = call([(b"cookie", f"{VISITOR_COOKIE}={key}".encode())])
    assert b"set-cookie" not in dict(response) and dict(seen["headers"])[b"cookie"].decode() == f"{VISITOR_COOKIE}={key}"
    _, proxied = call([(b"x-forwarded-proto", b"https")])
    assert "SameSite=None; Secure; Partitioned" in dict(proxied)[b"set-cookie"].decode()


@pytest.mark.parametrize("forged", ["carol-key", "abc.def", "{ident}.{wrong}", "{ident}.{other_key}"])
def test_a_cookie_the_server_did_not_sign_is_replaced_and_never_reaches_the_app(forged: str):
    victim = SIGNER.mint()
    ident = victim.split(".")[0]
    forged = forged.format(ident=ident, wrong="A" * 32, other_key=IdentitySigner(b"x" * 32).mint().split(".")[1])
    seen, response = call([(b"cookie", f"theme=dark; {VISITOR_COOKIE}={forged}".encode())])
    fresh = issued(response)
    assert SIGNER.verify(fresh) and fresh != forged and fresh.split(".")[0] != ident
    assert not SIGNER.verify(forged)
    assert dict(seen["headers"])[b"cookie"].decode() == f"theme=dark; {VISITOR_COOKIE}={fresh}"


def test_the_key_lives_in_the_home_once_and_only_its_owner_reads_it(tmp_path: Path):
    first, again = IdentitySigner.in_home(tmp_path / "secrets"), IdentitySigner.in_home(tmp_path / "secrets")
    token = first.mint()
    assert again.verify(token)  # a restart (or the CLI) keeps every visitor
    assert os.stat(tmp_path / "secrets" / KEY_FILE).st_mode & 0o077 == 0
    assert not IdentitySigner.in_home(tmp_path / "other-home").verify(token)


def test_the_visitor_of_an_event_comes_from_gradios_request():
    from gradio.context import LocalContext

    def visitor_for(request, hops: int = 0) -> tuple[str, str | None]:
        token = LocalContext.request.set(request)
        try:
            return current_visitor(SIGNER, hops)
        finally:
            LocalContext.request.reset(token)

    key = SIGNER.mint()
    peer = SimpleNamespace(host="198.51.100.4")
    assert visitor_for(None) == (NOBODY, None)  # building the page: nobody is asking
    assert visitor_for(SimpleNamespace(headers={"cookie": f"{VISITOR_COOKIE}={key}"}, client=peer, session_hash="s")) == (
        key,
        "198.51.100.4",
    )
    # A client without cookies, or with one the server did not sign: a new visitor on every page load.
    assert visitor_for(SimpleNamespace(headers={}, client=peer, session_hash="s9"))[0] == "session:s9"
    assert visitor_for(SimpleNamespace(headers={"cookie": f"{VISITOR_COOKIE}=k1"}, client=peer, session_hash="s9"))[0] == "session:s9"
    # Behind one proxy (Spaces), the address the proxy appended; what the client wrote before it is ignored.
    behind = SimpleNamespace(
        headers={"cookie": f"{VISITOR_COOKIE}={key}", "x-forwarded-for": "6.6.6.6, 203.0.113.9"},
        client=SimpleNamespace(host="10.16.3.80"),
        session_hash="s",
    )
    assert visitor_for(behind, hops=1) == (key, "203.0.113.9")
    assert visitor_for(behind, hops=0) == (key, "10.16.3.80")


def test_addresses_are_counted_per_client_and_not_by_what_the_client_writes(monkeypatch: pytest.MonkeyPatch):
    assert client_address("10.0.0.2", "1.2.3.4", 0) == "10.0.0.2"  # no proxy trusted: the header is the client's
    assert client_address("10.0.0.2", "1.2.3.4, 203.0.113.9", 1) == "203.0.113.9"
    assert client_address("10.0.0.2", "203.0.113.9", 2) == "10.0.0.2"  # fewer entries than proxies: the peer
    # One subscriber's IPv6 block is one address, however many addresses of it the client rotates through.
    assert client_address("2001:db8:1:2::1", None, 0) == client_address("2001:db8:1:2:ffff::9", None, 0) == "2001:db8:1:2::/64"
    assert client_address("::ffff:203.0.113.9", None, 0) == "203.0.113.9"
    assert client_address(None, None, 0) == "unknown"
    assert proxy_hops({}) == 0 and proxy_hops({"SPACE_ID": "me/demo"}) == 1 and proxy_hops({"FTAPP_PROXY_HOPS": "2"}) == 2


def test_every_event_gets_the_services_of_the_visitor_who_sent_it(services):
    """``bind`` looks the services up per event (``services_for``): the local app's own, or the demo visitor's."""
    import inspect

    from gradio.context import LocalContext

    from ftapp.demo.policy import owner_of
    from ftapp.visitors import demo_services
    from ui.visitors import services_for
    from ui.wiring import bind

    def owner_seen(services, suffix: str) -> str:
        return (services.visitor.owner if services.visitor else "host") + suffix

    def owners_streamed(services, count: int):
        yield from [services.visitor.owner] * count

    def sent_by(key: str, address: str):
        return SimpleNamespace(headers={"cookie": f"{VISITOR_COOKIE}={key}"}, client=SimpleNamespace(host=address), session_hash="s")

    assert services_for(services) is services and bind(owner_seen, services)("!") == "host!"  # the local app
    page = demo_services(services)
    handler, stream = bind(owner_seen, page), bind(owners_streamed, page)
    signer = IdentitySigner.in_home(services.settings.secrets_dir)
    alice, bob = signer.mint(), signer.mint()
    for key in (alice, bob):  # two cookies from one address: one client to the caps (DM-009)
        token = LocalContext.request.set(sent_by(key, "203.0.113.5"))
        try:
            assert handler("!") == owner_of(key) + "!"
            assert list(stream(2)) == [owner_of(key)] * 2
        finally:
            LocalContext.request.reset(token)

    assert handler("") == owner_of(NOBODY)  # outside any event: nobody's view
    assert page.visitor.book.neighbours(owner_of(alice)) == {owner_of(alice), owner_of(bob)}
    # gradio sees the handler's own parameters less the services, and streams a generator.
    assert list(inspect.signature(handler).parameters) == ["suffix"] and handler.__name__ == "owner_seen"
    assert inspect.isgeneratorfunction(stream)
