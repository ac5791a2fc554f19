"""The request guard in front of the model server, in process: a real tokenizer with a chat template, a stand-in
server (a Starlette app that records what reaches it) and real HTTP through httpx's ASGI transport.

The guard against the real ``transformers serve`` on the demo model is tests/ftapp/test_serve.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from trainer.inference import serve, serve_relay
from trainer.inference.serve_guard import Guard
from trainer.inference.serve_requests import Limits, PromptCounter
from trainer.protocol import ModelSource, ServeSpec

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} {{ eos_token }} "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = ["hello", "where", "is", "my", "order", "x", "SLOW", "WAIT"]


@pytest.fixture(scope="module")
def counter() -> PromptCounter:
    """A word-level tokenizer: one token per word, so every count below is exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    vocab = {token: index for index, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", chat_template=CHAT_TEMPLATE
    )
    fast.add_special_tokens({"additional_special_tokens": specials[3:]})
    return PromptCounter(fast)


class Upstream:
    """The stand-in model server: records each body it gets; 'SLOW' sleeps, 'WAIT' waits for ``release``."""

    def __init__(self, sleep_s: float = 0.0):
        self.bodies: list[dict[str, Any]] = []
        self.sleep_s = sleep_s
        self.release: anyio.Event | None = None

    async def chat(self, request: Request):
        body = await request.json()
        self.bodies.append(body)
        text = json.dumps(body.get("messages", body.get("prompt")))
        if "WAIT" in text:
            assert self.release is not None
            await self.release.wait()
        if "SLOW" in text:
            await anyio.sleep(self.sleep_s)
        if body.get("stream"):

            async def events():
                for word in ("Hello", " there"):
                    yield f'data: {{"object":"chat.completion.chunk","choices":[{{"delta":{{"content":"{word}"}},"index":0}}]}}\n\n'
                yield 'data: {"object":"chat.completion.chunk","choices":[{"delta":{},"index":0,"finish_reason":"stop"}]}\n\n'

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(
            {
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
            }
        )

    async def refuse(self, request: Request):
        return JSONResponse({"detail": "Unexpected fields in the request: {'bogus'}"}, 422)

    def app(self) -> Starlette:
        async def health(request: Request):
            return JSONResponse({"status": "ok"})

        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.chat, methods=["POST"]),
                Route("/v1/refuse", self.refuse, methods=["POST"]),
                Route("/health", health),
                Route("/load_model", self.chat, methods=["POST"]),
            ]
        )


def run(guard: Guard, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = guard.app()
        async with (
            guard.lifespan(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://guard", timeout=60) as client,
        ):
            return await scenario(client)

    return asyncio.run(main())


def make_guard(counter: PromptCounter, upstream: Upstream, **limits: Any) -> Guard:
    values: dict[str, Any] = {"context_tokens": 64, "max_tokens": 16, "max_request_bytes": 4096, **limits}
    max_time, api_key = values.pop("max_time", True), values.pop("api_key", None)
    return Guard(
        "http://upstream", Limits(**values), counter, max_time=max_time, api_key=api_key, transport=httpx.ASGITransport(upstream.app())
    )


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], **fields}


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_refused_requests_never_reach_the_server(counter):
    upstream = Upstream()
    guard = make_guard(counter, upstream)

    async def scenario(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        post = client.post
        return {
            "huge": await post("/v1/chat/completions", content=b"{" + b" " * 10_000 + b"}"),
            "huge-chunked": await post("/v1/chat/completions", content=_chunks(b" " * 10_000)),
            "not-json": await post("/v1/chat/completions", content=b'{"messages": ['),
            "nan": await post("/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}'),
            "array": await post("/v1/chat/completions", json=[1, 2]),
            "shape": await post("/v1/chat/completions", json={"model": "tiny", "messages": "hello"}),
            "no-messages": await post("/v1/chat/completions", json={"model": "tiny", "messages": []}),
            "temperature": await post("/v1/chat/completions", json=chat("hello", temperature=9)),
            "generation-config": await post("/v1/chat/completions", json=chat("hello", generation_config='{"max_new_tokens": 99999}')),
            "image": await post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/"}}]}]},
            ),
            "template-kwargs": await post("/v1/chat/completions", json=chat("hello", chat_template_kwargs={"tokenize": False})),
            "long-at-a-glance": await post("/v1/chat/completions", json=chat("x" * 3000)),
            "long-counted": await post("/v1/chat/completions", json=chat("x " * 50, max_tokens=16)),
            "long-prompt": await post("/v1/completions", json={"prompt": "hello " * 70}),
            "load-model": await post("/load_model", json={"model": "some/other-model"}),
            "reset": await post("/reset"),
            "get-chat": await client.get("/v1/chat/completions"),
        }

    answers = run(guard, scenario)
    assert upstream.bodies == []
    expected = {
        "huge": (413, "request_too_large"),
        "huge-chunked": (413, "request_too_large"),
        "not-json": (400, "invalid_json"),
        "nan": (400, "invalid_json"),
        "array": (400, "invalid_json"),
        "shape": (400, "invalid_request"),
        "no-messages": (400, "invalid_request"),
        "temperature": (400, "invalid_request"),
        "generation-config": (400, "unsupported_parameter"),
        "image": (400, "unsupported_content"),
        "template-kwargs": (400, "invalid_request"),
        "long-at-a-glance": (400, "context_length_exceeded"),
        "long-counted": (400, "context_length_exceeded"),
        "long-prompt": (400, "context_length_exceeded"),
        "load-model": (404, "not_found"),
        "reset": (404, "not_found"),
        "get-chat": (405, "method_not_allowed"),
    }
    assert {name: (r.status_code, error_of(r)["code"]) for name, r in answers.items()} == expected
    assert error_of(answers["shape"])["param"] == "messages"
    # The OpenAI wording, with the exact count: 50 words + <s> <|user|> </s> <|assistant|>, and 16 to generate.
    assert error_of(answers["long-counted"])["message"].startswith(
        "This model's maximum context length is 64 tokens. However, you requested 70 tokens (54 in the messages, 16 in the completion)"
    )
    assert "at least" in error_of(answers["long-at-a-glance"])["message"]
    assert guard.pending == 0


def _chunks(data: bytes):
    async def body():
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    return body()


def test_max_tokens_is_capped_to_the_limit_and_the_context(counter):
    upstream = Upstream()
    guard = make_guard(counter, upstream)

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        statuses = []
        for body in (
            chat("hello"),
            chat("hello", max_tokens=5000),
            chat("hello", max_completion_tokens=3),
            chat("x " * 50),
            chat("x " * 44, max_tokens=16),
        ):
            statuses.append((await client.post("/v1/chat/completions", json=body)).status_code)
        statuses.append((await client.post("/v1/completions", json={"prompt": "hello where", "max_tokens": 9})).status_code)
        return statuses

    assert run(guard, scenario) == [200, 200, 200, 200, 200, 200]
    sent = [(body.get("max_tokens"), body.get("max_completion_tokens"), json.loads(body["generation_config"])) for body in upstream.bodies]
    assert sent == [
        (16, None, {"max_new_tokens": 16, "max_time": 120.0}),  # none asked: the cap
        (16, None, {"max_new_tokens": 16, "max_time": 120.0}),  # 5000 asked: the cap
        (3, 3, {"max_new_tokens": 3, "max_time": 120.0}),
        (10, None, {"max_new_tokens": 10, "max_time": 120.0}),  # none asked, 54 prompt tokens: what is left of 64
        (16, None, {"max_new_tokens": 16, "max_time": 120.0}),  # 48 + 16 = 64 fits exactly
        (9, None, {"max_new_tokens": 9, "max_time": 120.0}),
    ]


def test_a_full_queue_is_answered_429_at_once_and_every_place_is_given_back(counter):
    upstream = Upstream()
    guard = make_guard(counter, upstream, max_concurrent=1, max_queue=3)

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], float, int]:
        upstream.release = anyio.Event()
        started = time.monotonic()
        held = [asyncio.ensure_future(client.post("/v1/chat/completions", json=chat("WAIT"))) for _ in range(4)]
        while guard.pending < 4:
            await anyio.sleep(0.01)
        refused = [await client.post("/v1/chat/completions", json=chat("hello")) for _ in range(3)]
        refused_after = time.monotonic() - started
        upstream.release.set()
        answered = await asyncio.gather(*held)
        after = await client.post("/v1/chat/completions", json=chat("hello"))
        return [r.status_code for r in refused + answered + [after]], refused_after, guard.pending

    statuses, refused_after, pending = run(guard, scenario)
    assert statuses == [429, 429, 429, 200, 200, 200, 200, 200]
    assert refused_after < 5 and pending == 0


@pytest.mark.slow  # starts real processes
def test_generation_time_is_bounded(counter, monkeypatch):
    monkeypatch.setattr(serve_relay, "GRACE_S", 0.5)
    # transformers serve stops at max_time by itself: an answer that took that long is marked as cut.
    slow = Upstream(sleep_s=1.2)
    stopped = make_guard(counter, slow, request_timeout_s=1.0)

    async def cut(client: httpx.AsyncClient):
        answer = await client.post("/v1/chat/completions", json=chat("SLOW"))
        stream = await client.post("/v1/chat/completions", json=chat("SLOW", stream=True))
        return answer, stream

    answer, stream = run(stopped, cut)
    assert answer.status_code == 200 and answer.json()["choices"][0]["finish_reason"] == "length"
    assert stream.status_code == 200 and '"finish_reason":"length"' in stream.text and "Hello" in stream.text
    # A server that does not stop (vLLM has no max_time): the guard gives up and frees the slot.
    hung = Upstream(sleep_s=30)
    guard = make_guard(counter, hung, request_timeout_s=1.0, max_time=False)

    async def gives_up(client: httpx.AsyncClient):
        started = time.monotonic()
        answer = await client.post("/v1/chat/completions", json=chat("SLOW"))
        return answer, time.monotonic() - started, await client.post("/v1/chat/completions", json=chat("hello"))

    answer, seconds, after = run(guard, gives_up)
    assert answer.status_code == 504 and error_of(answer)["code"] == "timeout" and seconds < 5
    assert after.status_code == 200 and "generation_config" not in hung.bodies[-1] and guard.pending == 0


def test_streams_are_relayed_and_server_refusals_come_back_in_the_openai_format(counter):
    upstream = Upstream()
    guard = make_guard(counter, upstream)

    async def scenario(client: httpx.AsyncClient):
        stream = await client.post("/v1/chat/completions", json=chat("hello", stream=True))
        health = await client.get("/health")
        return stream, health

    stream, health = run(guard, scenario)
    events = [line for line in stream.text.split("\n\n") if line]
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert len(events) == 3 and '"finish_reason":"stop"' in events[-1] and guard.pending == 0
    assert health.status_code == 200
    refused = serve_relay.upstream_error(422, b'{"detail": "Unexpected fields in the request: {\'bogus\'}"}')
    assert refused.status_code == 400 and json.loads(refused.body)["error"]["message"].startswith("Unexpected fields")


def test_a_server_with_a_token_is_guarded_by_the_same_token(counter):
    upstream = Upstream()
    guard = make_guard(counter, upstream, api_key="s3cret", max_time=False)

    async def scenario(client: httpx.AsyncClient):
        missing = await client.post("/v1/chat/completions", json=chat("hello"))
        wrong = await client.post("/v1/chat/completions", json=chat("hello"), headers={"Authorization": "Bearer nope"})
        models = await client.get("/v1/models")
        right = await client.post("/v1/chat/completions", json=chat("hello"), headers={"Authorization": "Bearer s3cret"})
        return missing, wrong, models, right

    missing, wrong, models, right = run(guard, scenario)
    assert [r.status_code for r in (missing, wrong, models, right)] == [401, 401, 401, 200]
    assert len(upstream.bodies) == 1 and "generation_config" not in upstream.bodies[0]


def test_serve_specs_bound_the_guard_limits(tmp_path):
    (tmp_path / "model").mkdir()
    spec = ServeSpec(run_id="s", run_dir=str(tmp_path), model=ModelSource(str(tmp_path / "model")), served_name="tiny")
    serve.check_spec(spec)
    limits = serve.guard_limits(spec, context_tokens=512)
    assert (limits.max_concurrent, limits.max_tokens, limits.max_queue, limits.context_tokens) == (1, 1024, 32, 512)
    for field, value in (("max_tokens", 0), ("max_request_bytes", 1 << 40), ("request_timeout_s", float("inf")), ("max_queue", -1)):
        with pytest.raises(ValueError, match=f"spec.{field} must be a number"):
            serve.check_spec(ServeSpec(**{**spec.to_dict(), "model": spec.model, field: value}))
