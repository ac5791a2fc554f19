"""The guard in front of the model server: the request limits that ``transformers serve`` lacks.

``python -m trainer serve`` starts the model server on an internal loopback port and this guard, in a
thread of its own process (``trainer.inference.guard_server``), on the port clients are given; what passes
goes on to the server through ``trainer.inference.serve_relay``.
Each request passes these checks in order; a refusal is an OpenAI-style error body
``{"error": {"message", "type", "param", "code"}}`` and costs the model nothing:

1. the route: the OpenAI routes ftapp offers (``POST /v1/chat/completions``, ``POST /v1/completions``,
   ``GET /v1/models``, ``GET /health``); the server's others (``/load_model`` downloads any Hub model,
   ``/reset`` unloads this one) are 404;
2. the bearer token when the server has one (vLLM): 401;
3. the body: at most ``max_request_bytes`` (413, by its Content-Length or as it arrives), read within
   ``BODY_TIMEOUT_S`` (408), JSON without NaN (400), the request's schema (400); ``generation_config``
   is refused, since it would lift every bound below;
4. admission: at most ``max_concurrent + max_queue`` requests past this point, 429 with Retry-After beyond;
5. the prompt: counted with the model's tokenizer and chat template (a huge prompt is refused from its
   length alone, before any tokenizing), ``prompt + max_tokens <= context`` or 400
   ``context_length_exceeded``; ``max_tokens`` is capped at the limit (absent: as many as fit);
6. a generation slot (``max_concurrent``: 1 for transformers serve, which generates one request at a
   time anyway) within ``request_timeout_s``, or 503;
7. the generation, bounded in time: transformers serve stops at ``max_time`` (handed over in its
   ``generation_config``) and the answer says ``finish_reason: "length"``; ``serve_relay.GRACE_S`` later the relay
   gives up with 504 (vLLM: at once), closing the connection, on which both servers abort the generation.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from trainer.inference.serve_relay import Relay, RelayedStream
from trainer.inference.serve_requests import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    Limits,
    PromptCounter,
    chat_messages,
    error_response,
    parse_json,
    validated,
)

BODY_TIMEOUT_S = 30.0
DRAIN_MAX_BYTES = 64 << 20  # an oversized body up to this size is read and dropped, so that the client sees the 413
DRAIN_TIMEOUT_S = 5.0
TOKENIZER_THREADS = 2


# ---- the guard ----


@dataclass(frozen=True)
class _Prompt:
    requested: int | None  # the completion tokens asked for (max_completion_tokens, else max_tokens)
    param: str  # messages | prompt
    count: Callable[[], int]  # its exact token count, by the model's tokenizer (slow for a long prompt)


class _Ticket:
    """A request's place: counted while it waits or generates, released exactly once."""

    def __init__(self, guard: Guard):
        self.guard, self.slot, self.done = guard, False, False
        guard.pending += 1

    def release(self) -> None:
        if self.done:
            return
        self.done = True
        self.guard.pending -= 1
        if self.slot:
            self.guard.slots.release()


@dataclass
class _Runtime:
    slots: anyio.Semaphore
    tokenizer_threads: anyio.CapacityLimiter
    relay: Relay


class Guard:
    def __init__(
        self,
        upstream_url: str,
        limits: Limits,
        counter: PromptCounter,
        *,
        max_time: bool = True,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        """``max_time``: the server honours ``generation_config.max_time`` (transformers serve; vLLM does not)."""
        self.upstream_url, self.limits, self.counter = upstream_url, limits, counter
        self.max_time, self.api_key, self.transport = max_time, api_key, transport
        self.pending = 0
        self._runtime: _Runtime | None = None

    @property
    def slots(self) -> anyio.Semaphore:
        assert self._runtime is not None
        return self._runtime.slots

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        connections = self.limits.max_concurrent + 16
        client = httpx.AsyncClient(
            base_url=self.upstream_url,
            transport=self.transport,
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        relay = Relay(client, self.limits.request_timeout_s, self.max_time)
        self._runtime = _Runtime(anyio.Semaphore(self.limits.max_concurrent), anyio.CapacityLimiter(TOKENIZER_THREADS), relay)
        try:
            yield
        finally:
            await client.aclose()

    def app(self) -> Starlette:
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completion, methods=["POST"]),
        ]
        app = Starlette(routes=routes, lifespan=self.lifespan)
        app.add_exception_handler(404, _not_found)
        app.add_exception_handler(405, _not_allowed)
        return app

    # ---- routes ----

    async def health(self, request: Request) -> Response:
        return await self._relay().get("/health", timeout_s=5.0)

    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except ApiError as error:
            return error.response()
        return await self._relay().get("/v1/models", timeout_s=10.0)

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, ChatRequest)

    async def completion(self, request: Request) -> Response:
        return await self._generate(request, CompletionRequest)

    # ---- the checks ----

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
            raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <key>)", "invalid_api_key")

    async def _read_body(self, request: Request) -> bytes:
        """The body, at most ``max_request_bytes``; an oversized one is read and dropped first, so that the client,
        still sending, gets to read the 413 (up to ``DRAIN_MAX_BYTES``; beyond that the connection is closed)."""
        limit = self.limits.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise ApiError(400, "invalid Content-Length", "invalid_request")
        too_large = ApiError(
            413,
            f"the request body is larger than this endpoint's limit of {limit:,} bytes",
            "request_too_large",
            headers={"Connection": "close"},
        )
        over = declared is not None and int(declared) > limit
        waits_for_go_ahead = request.headers.get("expect", "").lower() == "100-continue"  # curl, for large bodies
        if over and (waits_for_go_ahead or int(declared or 0) > DRAIN_MAX_BYTES):
            raise too_large  # refused before the client sends the body
        chunks, size = [], 0
        with anyio.move_on_after(DRAIN_TIMEOUT_S if over else BODY_TIMEOUT_S) as waited:
            async for chunk in request.stream():
                size += len(chunk)
                if size <= limit:
                    chunks.append(chunk)
                elif size > DRAIN_MAX_BYTES:
                    break
        if over or size > limit:
            raise too_large
        if waited.cancelled_caught:
            raise ApiError(
                408, f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s", "request_timeout", headers={"Connection": "close"}
            )
        return b"".join(chunks)

    async def _generate(self, request: Request, schema: type[ChatRequest] | type[CompletionRequest]) -> Response:
        ticket: _Ticket | None = None
        response: Response | None = None
        try:
            self._authorize(request)
            body = parse_json(await self._read_body(request))
            parsed = validated(schema, body)
            prompt = self._prompt(parsed)
            if self.pending >= self.limits.max_concurrent + self.limits.max_queue:
                raise ApiError(
                    429,
                    f"the endpoint is busy ({self.pending} requests generating or waiting); retry shortly",
                    "server_busy",
                    headers={"Retry-After": "2"},
                )
            ticket = _Ticket(self)
            forwarded = self._forwarded(body, await self._budget(prompt))
            await self._take_slot(ticket)
            if await request.is_disconnected():
                return Response(status_code=499)
            headers = {"Content-Type": "application/json"}
            if "authorization" in request.headers:
                headers["Authorization"] = request.headers["authorization"]
            if "x-request-id" in request.headers:
                headers["X-Request-ID"] = request.headers["x-request-id"][:128]
            if parsed.stream:
                response = await self._relay().stream(request.url.path, forwarded, headers, ticket.release)
            else:
                response = await self._relay().answer(request.url.path, forwarded, headers)
            return response
        except ApiError as error:
            return error.response()
        except ClientDisconnect:
            return Response(status_code=499)
        finally:
            if ticket is not None and not isinstance(response, RelayedStream):  # a relay gives its ticket back when its stream ends
                ticket.release()

    def _prompt(self, parsed: ChatRequest | CompletionRequest) -> _Prompt:
        """The prompt to count, refused at once (no tokenizing) when its length alone shows it cannot fit."""
        if isinstance(parsed, ChatRequest):
            messages, tools, template_kwargs = chat_messages(parsed), parsed.tools, parsed.chat_template_kwargs or {}
            prompt = _Prompt(parsed.requested_tokens, "messages", lambda: self.counter.chat(messages, tools, template_kwargs))
            characters = sum(len(m["content"]) for m in messages)
        else:
            text = parsed.prompt
            prompt = _Prompt(parsed.requested_tokens, "prompt", lambda: self.counter.text(text))
            characters = len(text)
        at_least, least_completion = self.counter.at_least(characters), self._completion(prompt.requested)
        if at_least + least_completion > self.limits.context_tokens:
            raise self._too_long(at_least, least_completion, prompt.param, exact=False)
        return prompt

    def _completion(self, requested: int | None) -> int:
        """The completion tokens a request must fit: the capped request, or at least one when it asks for none."""
        return min(requested, self.limits.max_tokens) if requested else 1

    async def _budget(self, prompt: _Prompt) -> int:
        """The completion tokens this request gets (capped at max_tokens), or 400 when its prompt leaves too few."""
        assert self._runtime is not None
        tokens = await anyio.to_thread.run_sync(prompt.count, limiter=self._runtime.tokenizer_threads)
        needed = self._completion(prompt.requested)
        if tokens + needed > self.limits.context_tokens:
            raise self._too_long(tokens, needed, prompt.param, exact=True)
        return min(prompt.requested or self.limits.max_tokens, self.limits.max_tokens, self.limits.context_tokens - tokens)

    def _too_long(self, prompt: int, completion: int, param: str, exact: bool) -> ApiError:
        where = "messages" if param == "messages" else "prompt"
        amount = f"{prompt + completion}" if exact else f"at least {prompt + completion}"
        return ApiError(
            400,
            f"This model's maximum context length is {self.limits.context_tokens} tokens. However, you "
            f"requested {amount} tokens ({'' if exact else 'at least '}{prompt} in the {where}, {completion} "
            f"in the completion). Please reduce the length of the {where} or completion.",
            "context_length_exceeded",
            param,
        )

    def _forwarded(self, body: dict[str, Any], completion: int) -> bytes:
        forwarded = dict(body, max_tokens=completion)
        if "max_completion_tokens" in forwarded:
            forwarded["max_completion_tokens"] = completion
        if self.max_time:  # transformers serve: its generation stops by itself at max_time
            forwarded["generation_config"] = json.dumps({"max_new_tokens": completion, "max_time": self.limits.request_timeout_s})
        return json.dumps(forwarded).encode()

    async def _take_slot(self, ticket: _Ticket) -> None:
        with anyio.move_on_after(self.limits.request_timeout_s):
            await self.slots.acquire()
            ticket.slot = True
        if not ticket.slot:
            raise ApiError(
                503,
                f"no generation slot became free within {self.limits.request_timeout_s:.0f} s; retry later",
                "server_busy",
                headers={"Retry-After": "5"},
            )

    def _relay(self) -> Relay:
        assert self._runtime is not None, "the guard's lifespan has not started"
        return self._runtime.relay


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(
        404,
        f"{request.url.path} is not offered by this endpoint (it serves /v1/chat/completions, /v1/completions and /v1/models)",
        "not_found",
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed")
