"""What a request to the guarded endpoint is, checked before it reaches the model: its limits, its schema
(OpenAI chat and completions), its JSON, and its prompt counted in tokens with the model's tokenizer
and chat template. ``trainer.inference.serve_guard`` applies them in front of the server."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

TEXT_PARTS = ("text", "input_text", "output_text")


@dataclass(frozen=True)
class Limits:
    context_tokens: int  # prompt + completion, the model's max_position_embeddings
    max_tokens: int = 1024  # the most completion tokens one request gets
    max_request_bytes: int = 1 << 20
    request_timeout_s: float = 120.0  # generation time, and the longest wait for a generation slot
    max_concurrent: int = 1  # requests generating at once
    max_queue: int = 32  # requests waiting for a slot; more are refused with 429

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.code, self.param, self.headers)


def error_response(
    status: int, message: str, code: str | None, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status, headers)


# ---- the request schema (OpenAI's, with the bounds this endpoint needs; unknown fields pass through) ----

Stop = Annotated[str, Field(max_length=256)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    type: str
    text: str | None = None


class FunctionCall(_Open):
    name: str
    arguments: str | dict[str, Any]


class ToolCall(_Open):
    function: FunctionCall


class Message(_Open):
    role: str = Field(min_length=1, max_length=32)
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class _Sampling(_Open):
    model: str | None = Field(None, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: Stop | Annotated[list[Stop], Field(max_length=4)] | None = None
    logit_bias: dict[Annotated[str, Field(pattern=r"^\d{1,9}$")], Annotated[float, Field(ge=-100, le=100)]] | None = Field(
        None, max_length=300
    )


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    chat_template_kwargs: dict[str, str | int | float | bool | None] | None = None

    @property
    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens  # the server reads max_completion_tokens first


class CompletionRequest(_Sampling):
    prompt: str
    suffix: str | None = None

    @property
    def requested_tokens(self) -> int | None:
        return self.max_tokens


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, f"the request body is not valid JSON: {str(error)[:200]}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_json")
    return body


def validated(schema: type[ChatRequest] | type[CompletionRequest], body: dict[str, Any]) -> ChatRequest | CompletionRequest:
    if "generation_config" in body:
        raise ApiError(
            400,
            "generation_config is not accepted here: use max_tokens, temperature, top_p, stop and seed",
            "unsupported_parameter",
            "generation_config",
        )
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        where = [".".join(str(part) for part in problem["loc"]) for problem in problems]
        message = "; ".join(f"{loc}: {problem['msg']}" for loc, problem in zip(where, problems[:5], strict=False))
        raise ApiError(400, f"invalid request: {message}", "invalid_request", where[0] if where else None) from None


# ---- counting prompt tokens ----


class PromptCounter:
    """Prompt tokens as the server will count them: the chat template for chat requests, plain text otherwise."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        # No token spells more characters than the longest vocabulary entry: a text of N characters has at
        # least N / longest tokens, which refuses a huge prompt without tokenizing it.
        self.longest_token = max((len(token) for token in tokenizer.get_vocab()), default=1) or 1
        self.reserved = set(inspect.signature(tokenizer.apply_chat_template).parameters) - {"kwargs"}

    def at_least(self, characters: int) -> int:
        return math.ceil(characters / self.longest_token)

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, template_kwargs: dict[str, Any]) -> int:
        clash = sorted(set(template_kwargs) & self.reserved)
        if clash:
            raise ApiError(400, f"chat_template_kwargs may not set {', '.join(clash)}", "invalid_request", "chat_template_kwargs")
        try:
            encoded = self.tokenizer.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True, **template_kwargs
            )
        except (TemplateError, ValueError, TypeError, KeyError, IndexError) as error:
            raise ApiError(
                400, f"the model's chat template refused these messages: {str(error)[:300]}", "invalid_messages", "messages"
            ) from None
        return len(encoded["input_ids"])

    def text(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])


def chat_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The messages as the server hands them to the chat template (a text model: content parts joined by spaces)."""
    messages = []
    for index, message in enumerate(request.messages):
        parsed: dict[str, Any] = {"role": message.role, "content": ""}
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                dumped = call.model_dump()
                arguments = dumped["function"]["arguments"]
                if isinstance(arguments, str):
                    try:
                        dumped["function"]["arguments"] = json.loads(arguments)
                    except ValueError:
                        raise ApiError(400, f"messages.{index}: tool call arguments are not JSON", "invalid_messages", "messages") from None
                calls.append(dumped)
            parsed["tool_calls"] = calls
        elif isinstance(message.content, str):
            parsed["content"] = message.content
        elif message.content:
            kinds = sorted({part.type for part in message.content if part.type not in TEXT_PARTS})
            if kinds:
                raise ApiError(
                    400,
                    f"messages.{index}: this endpoint serves a text model; content of type {', '.join(kinds)} is not supported",
                    "unsupported_content",
                    "messages",
                )
            parsed["content"] = " ".join(part.text or "" for part in message.content)
        if message.tool_call_id is not None:
            parsed["tool_call_id"] = message.tool_call_id
        messages.append(parsed)
    return messages


def context_tokens(model_dir: str) -> int:
    """The model's context: its config's position limit, else its tokenizer's; 2,048 when neither says."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir).get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    length = getattr(AutoTokenizer.from_pretrained(model_dir), "model_max_length", 0)
    return int(length) if 0 < length < 10**7 else 2048


def load_counter(tokenizer_dir: str) -> PromptCounter:
    from transformers import AutoTokenizer

    return PromptCounter(AutoTokenizer.from_pretrained(tokenizer_dir))
