"""The upload guard as ASGI middleware, in process (the real app: tests/e2e/test_untrusted_clients.py)."""

from __future__ import annotations

import asyncio
import json

from ftapp.demo.client_identity import IdentitySigner
from ui.uploads import UploadGuard, UploadLedger
from ui.visitors import VISITOR_COOKIE

SIGNER = IdentitySigner(b"u" * 32)
FILE = {"_type": "gradio.FileData"}


def request(guard: UploadGuard, path: str, body: bytes, key: str | None) -> tuple[int, bytes, bytes | None]:
    """One POST through ``guard``: the status and body sent, and the body the app behind it read (None: not reached)."""
    reached: list[bytes] = []
    sent: list[dict] = []

    async def app(scope, receive, send):
        message = await receive()
        reached.append(message.get("body", b""))
        answer = json.dumps([f"/tmp/gradio/abc/{name}" for name in ("a.csv",)]).encode() if path.endswith("/upload") else b"{}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [(b"cookie", f"{VISITOR_COOKIE}={key}".encode())] if key else []
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    guard.app = app
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], sent[1]["body"], (reached[0] if reached else None)


def event(*inputs) -> bytes:
    return json.dumps({"data": list(inputs), "fn_index": 3, "session_hash": "s"}).encode()


def test_a_client_may_name_only_what_it_uploaded():
    guard = UploadGuard(None, SIGNER, demo=True)
    alice, bob = SIGNER.mint(), SIGNER.mint()
    status, _, _ = request(guard, "/gradio_api/upload", b"--multipart--", alice)
    assert status == 200 and guard.ledger.uploaded(alice, "/tmp/gradio/abc/a.csv")

    mine = event({"path": "/tmp/gradio/abc/a.csv", "meta": FILE}, "name", "")
    assert request(guard, "/gradio_api/queue/join", mine, alice)[2] == mine  # passed on unchanged
    for who, body in ((bob, mine), (None, mine), (alice, event("x", {"nested": [{"path": "/etc/passwd", "meta": FILE}]}))):
        status, answer, reached = request(guard, "/gradio_api/queue/join", body, who)
        detail = json.loads(answer)["detail"]
        assert (status, reached) == (422, None)
        assert [d["is_valid"] for d in detail] == ([False, True, True] if body == mine else [True, False])
        assert next(d["message"] for d in detail if not d["is_valid"]).startswith("DM-006: ")
    # Not a file object (no gradio meta), or not JSON at all: gradio reads no file from it, so it passes.
    for body in (event({"path": "/etc/passwd"}), b"username=a&password=b"):
        assert request(guard, "/gradio_api/run/predict", body, bob)[2] == body


def test_a_shared_app_says_ds003_and_a_nested_bomb_is_refused():
    guard = UploadGuard(None, SIGNER, demo=False)
    status, answer, _ = request(guard, "/gradio_api/call/import_upload", event({"path": "/root/x", "meta": FILE}), SIGNER.mint())
    assert status == 422 and json.loads(answer)["detail"][0]["message"].startswith("DS-003: ")
    status, answer, reached = request(guard, "/gradio_api/queue/join", b"[" * 100_000 + b"]" * 100_000, SIGNER.mint())
    assert (status, reached) == (422, None)


def test_the_ledger_forgets_old_uploads_and_old_clients():
    now = [0.0]
    ledger = UploadLedger(per_client=2, clients=2, keep_s=10, clock=lambda: now[0])
    ledger.add("a", ["/1", "/2", "/3"])
    assert not ledger.uploaded("a", "/1") and ledger.uploaded("a", "/3")
    now[0] = 11
    assert not ledger.uploaded("a", "/3")
    ledger.add("b", ["/b"])
    ledger.add("c", ["/c"])
    ledger.add("d", ["/d"])
    assert not ledger.uploaded("b", "/b") and ledger.uploaded("d", "/d")
