"""The relay behind the request guard: a checked request passed on to the model server and its answer brought
back, bounded in time, with the server's own refusals in the OpenAI error format.

transformers serve stops at ``max_time`` (the guard hands it over in its ``generation_config``) and the answer
then says ``finish_reason: "length"``; ``GRACE_S`` later the relay gives up with 504 (vLLM, which has no
``max_time``: at once), closing the connection, on which both servers abort the generation. Streaming answers
(SSE) are relayed as they come.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse

from trainer.inference.serve_requests import ApiError, error_response

GRACE_S = 15.0  # transformers serve stops at max_time by itself; this is for a server that does not


class Relay:
    """The guard's client of the model server; the guard owns the httpx client and closes it."""

    def __init__(self, client: httpx.AsyncClient, request_timeout_s: float, max_time: bool):
        """``max_time``: the server honours ``generation_config.max_time`` (transformers serve; vLLM does not)."""
        self.client, self.request_timeout_s, self.max_time = client, request_timeout_s, max_time

    @property
    def backstop_s(self) -> float:
        return self.request_timeout_s + (GRACE_S if self.max_time else 0.0)

    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.backstop_s, connect=5.0)

    def _timed_out(self, started: float) -> bool:
        return self.max_time and time.monotonic() - started >= self.request_timeout_s

    async def answer(self, path: str, content: bytes, headers: dict[str, str]) -> Response:
        started = time.monotonic()
        try:
            with anyio.fail_after(self.backstop_s):  # cancelling closes the connection: the server aborts the generation
                upstream = await self.client.post(path, content=content, headers=headers, timeout=self._timeout())
        except (TimeoutError, httpx.TimeoutException):
            raise ApiError(504, f"the generation did not finish within {self.backstop_s:g} s", "timeout") from None
        except httpx.TransportError as error:
            raise ApiError(502, f"the model server is not answering: {error!r}"[:300], "upstream_unavailable") from None
        if upstream.status_code >= 400:
            return upstream_error(upstream.status_code, upstream.content)
        answer = upstream.content
        if self._timed_out(started):
            answer = _length_finish(answer)
        return Response(answer, upstream.status_code, _passed_headers(upstream), media_type="application/json")

    async def stream(self, path: str, content: bytes, headers: dict[str, str], release: Callable[[], None]) -> Response:
        """The answer as a ``RelayedStream``, which calls ``release`` once its stream ends; a refusal as it is."""
        client = self.client
        started = time.monotonic()
        outbound = client.build_request("POST", path, content=content, headers=headers, timeout=self._timeout())
        try:
            with anyio.fail_after(self.backstop_s):
                upstream = await client.send(outbound, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            raise ApiError(504, f"the generation did not start within {self.backstop_s:g} s", "timeout") from None
        except httpx.TransportError as error:
            raise ApiError(502, f"the model server is not answering: {error!r}"[:300], "upstream_unavailable") from None
        if upstream.status_code >= 400:
            raw = await upstream.aread()
            await upstream.aclose()
            return upstream_error(upstream.status_code, raw)
        deadline = started + self.backstop_s

        async def events() -> AsyncIterator[bytes]:
            pending = b""
            try:
                async for chunk in upstream.aiter_raw():
                    pending += chunk
                    *complete, pending = pending.split(b"\n\n")
                    for event in complete:
                        yield (_length_finish_event(event) if self._timed_out(started) else event) + b"\n\n"
                    if time.monotonic() > deadline:
                        yield _error_event(f"the generation did not finish within {self.backstop_s:g} s", "timeout")
                        return
                if pending:
                    yield pending
            except httpx.TimeoutException:
                yield _error_event(f"the model server sent nothing for {self.backstop_s:g} s", "timeout")
            except httpx.TransportError:
                yield _error_event("the model server closed the stream", "upstream_unavailable")

        async def close() -> None:
            await upstream.aclose()  # closing the connection makes the server abort the generation
            release()

        return RelayedStream(events(), close, _passed_headers(upstream))

    async def get(self, path: str, timeout_s: float) -> Response:
        try:
            upstream = await self.client.get(path, timeout=timeout_s)
        except httpx.HTTPError as error:
            return error_response(503, f"the model server is not answering: {type(error).__name__}", "upstream_unavailable")
        return Response(upstream.content, upstream.status_code, _passed_headers(upstream), media_type=upstream.headers.get("content-type"))


class RelayedStream(StreamingResponse):
    """An SSE relay that closes the server's stream and frees its slot however the client's stream ends."""

    def __init__(self, content: AsyncIterator[bytes], close: Callable[[], Any], headers: dict[str, str]):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._close = close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._close()


def _passed_headers(upstream: httpx.Response) -> dict[str, str]:
    return {name: upstream.headers[name] for name in ("x-request-id",) if name in upstream.headers}


def upstream_error(status: int, raw: bytes) -> JSONResponse:
    """The server's own refusal in the OpenAI error format (FastAPI says ``{"detail": ...}``); 422 becomes 400."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return JSONResponse(body, status)
    detail = body.get("detail") if isinstance(body, dict) else raw.decode("utf-8", "replace")
    message = detail if isinstance(detail, str) else json.dumps(detail)
    return error_response(400 if status == 422 else status, message[:1000] or f"the model server answered {status}", "upstream_error")


def _length_finish(answer: bytes) -> bytes:
    """A non-streamed answer cut by ``max_time`` says so: finish_reason ``length`` instead of ``stop``."""
    try:
        body = json.loads(answer)
        for choice in body.get("choices", []):
            if choice.get("finish_reason") == "stop":
                choice["finish_reason"] = "length"
        return json.dumps(body).encode()
    except (ValueError, AttributeError):
        return answer


def _length_finish_event(event: bytes) -> bytes:
    return event.replace(b'"finish_reason":"stop"', b'"finish_reason":"length"')


def _error_event(message: str, code: str) -> bytes:
    return b"data: " + json.dumps({"error": {"message": message, "type": "server_error", "param": None, "code": code}}).encode() + b"\n\n"
