"""Uploads are files this client uploaded, never paths it names (the public demo and a shared app).

gradio hands an event a file as a FileData object, ``{"path": ..., "meta": {"_type": "gradio.FileData"}}``,
whose ``path`` the client writes. gradio 6 checks only that the path lies in its upload folder
(``processing_utils._check_allowed`` with ``check_in_upload_folder``): a host file such as /etc/passwd
is refused with a message the client never sees, and any file already in that folder passes: another
visitor's upload, or a file gradio cached for someone else's download. The folder is shared by every
client, and so is the one record gradio keeps of uploads (``Blocks.upload_file_set``, for clean-up).

``UploadGuard`` keeps the record per client. It watches gradio's upload route
(``/gradio_api/upload``), notes the paths it answers with under the client's signed visitor key
(``ui.visitors.VisitorCookie`` runs before it), and refuses, before gradio sees it, any request
whose JSON body holds a FileData whose path this client was not handed: answered 422 in the shape
of gradio's own input validation, so gradio_client raises it and the browser shows it, with the
rule ID (DM-006 in the demo, DS-003 in a shared app). Nothing of such a request reaches a handler.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ftapp.demo import IdentitySigner, not_uploaded_here
from ui.visitors import visitor_key

UPLOAD_ROUTE = "/gradio_api/upload"
MAX_JSON_BODY = 32 * 1024 * 1024  # an event's inputs; files travel through the upload route
FILE_DATA = "gradio.FileData"


class UploadLedger:
    """Which client uploaded which files: the newest ``per_client`` paths of the newest ``clients`` clients,
    each kept ``keep_s`` seconds (memory only: after a restart a visitor uploads again)."""

    def __init__(
        self, per_client: int = 256, clients: int = 20_000, keep_s: float = 24 * 3600, clock: Callable[[], float] = time.monotonic
    ):
        self.per_client, self.clients, self.keep_s, self.clock = per_client, clients, keep_s, clock
        self._paths: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, client: str, paths: list[str]) -> None:
        with self._lock:
            mine = self._paths.pop(client, None) or OrderedDict()
            for path in paths:
                mine.pop(path, None)
                mine[path] = self.clock()
            while len(mine) > self.per_client:
                mine.popitem(last=False)
            self._paths[client] = mine
            while len(self._paths) > self.clients:
                self._paths.popitem(last=False)

    def uploaded(self, client: str | None, path: str) -> bool:
        """True when ``client`` was handed exactly this path by the upload route, recently."""
        with self._lock:
            when = self._paths.get(client or "", {}).get(path)
        return when is not None and self.clock() - when <= self.keep_s


def _header(scope: dict[str, Any], name: bytes) -> str:
    return b"; ".join(value for key, value in scope.get("headers", []) if key.lower() == name).decode("latin-1")


def _file_paths(value: Any) -> list[str]:
    """The ``path`` of every FileData in a JSON value, as gradio finds them (``client_utils.is_file_obj_with_meta``)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            if "path" in item and isinstance(meta, dict) and meta.get("_type") == FILE_DATA:
                found.append(item["path"] if isinstance(item["path"], str) else repr(item["path"]))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _validation_error(data: Any, position: int, message: str) -> bytes:
    """gradio's answer to an input that failed validation: one entry per input, the bad one with its message."""
    count = len(data) if isinstance(data, list) else 1
    detail = [
        {"__type__": "validate", "is_valid": i != position, "message": message if i == position else "", "parameter_name": f"parameter_{i}"}
        for i in range(max(count, position + 1))
    ]
    return json.dumps({"detail": detail}).encode()


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class UploadGuard:
    """ASGI middleware: records each client's uploads; refuses requests naming files it did not upload."""

    def __init__(self, app: Any, signer: IdentitySigner, demo: bool, ledger: UploadLedger | None = None):
        self.app, self.signer, self.demo = app, signer, demo
        self.ledger = ledger or UploadLedger()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        client = visitor_key(_header(scope, b"cookie"), self.signer)
        if scope.get("path", "").rstrip("/").endswith(UPLOAD_ROUTE):
            await self.app(scope, receive, self._recording(client, send))
            return
        body, complete = b"", False
        while not complete:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            body += message.get("body", b"")
            complete = not message.get("more_body", False)
            if len(body) > MAX_JSON_BODY:
                await _respond(send, 413, json.dumps({"detail": "request body too large"}).encode())
                return
        refusal = self._refusal(client, body)
        if refusal is not None:
            await _respond(send, 422, refusal)
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _refusal(self, client: str | None, body: bytes) -> bytes | None:
        try:
            payload = json.loads(body) if body else None
        except RecursionError:
            return _validation_error([None], 0, "the request is nested too deeply to be read")
        except (ValueError, UnicodeDecodeError):
            return None  # not JSON (a form, say): gradio reads no FileData from it
        data = payload.get("data") if isinstance(payload, dict) else None
        inputs = data if isinstance(data, list) else [payload]
        for position, value in enumerate(inputs):
            for path in _file_paths(value):
                if not self.ledger.uploaded(client, path):
                    return _validation_error(inputs, position, str(not_uploaded_here(path, self.demo)))
        return None

    def _recording(self, client: str | None, send: Any) -> Any:
        """``send`` that notes the paths a successful upload answers with before the client gets them."""
        status, chunks = 0, []

        async def send_recorded(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200 and client:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    try:
                        paths = json.loads(b"".join(chunks))
                    except ValueError:
                        paths = []
                    if isinstance(paths, list):
                        self.ledger.add(client, [p for p in paths if isinstance(p, str)])
            await send(message)

        return send_recorded
