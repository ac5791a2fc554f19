"""Serving use cases: start an OpenAI-compatible endpoint as a supervised run, show how to call it, stop it.

The endpoint is ``python -m trainer serve``, which runs an existing server (``transformers serve``,
or ``vllm serve`` when vLLM is installed) on 127.0.0.1 behind its request guard (size, prompt-token,
time and concurrency limits: ``ServeRequest``'s, checked by EX-011). A vLLM endpoint requires a bearer token that
is generated here and kept in a 0600 file in the run directory: never in the spec, the database, a
command line or a log; the copy-paste curl reads it from that file. ``transformers serve`` has no
authentication at all, which ``Endpoint.auth_note`` says instead of pretending otherwise.

Clients are shown the call that prompts the model the way it was trained (``ftapp.shipping.prompt_format``):
``/v1/completions`` with the input template filled in for an adapter trained on a prompt's templates (the chat
endpoint would wrap that text in a chat template it never saw), ``/v1/chat/completions`` for chat adapters.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ftapp.demo.visitor import Visitor, require_own, visible_to
from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError, require_found
from ftapp.ids import new_id
from ftapp.run_vocabulary import LIVE, TERMINAL, RunKind, RunStatus
from ftapp.runs.enqueue import enqueue
from ftapp.runs.machine import Machine, detect_machine
from ftapp.runs.outcome import started_payload
from ftapp.runs.specs import run_spec
from ftapp.runs.supervisor import Supervisor
from ftapp.settings import Settings
from ftapp.shipping.prompt_format import TEXT, example_prompt, prompt_for, training_format
from ftapp.shipping.serve_request import ServeRequest, chosen_engine, validate_serve, vllm_installed
from storage import Database, RunRecord
from trainer.protocol import ModelSource, ServeSpec

API_KEY_FILE = "api_key"
# What ``Endpoint.limits_note`` reads of the limits the serve run reported.
LIMIT_KEYS = {"max_request_bytes", "context_tokens", "max_tokens", "request_timeout_s", "max_concurrent", "max_queue"}


class EndpointState(StrEnum):
    """Where a serve run's endpoint is, defined once: its run's statuses before it listens or when it never did,
    then starting (the process runs, the model loads), serving (the server said it listens) and stopped."""

    QUEUED = RunStatus.QUEUED.value
    STARTING = "starting"
    SERVING = "serving"
    STOPPED = "stopped"
    FAILED = RunStatus.FAILED.value
    CANCELLED = RunStatus.CANCELLED.value


@dataclass(frozen=True)
class Endpoint:
    run: RunRecord
    state: EndpointState
    served_model: str
    engine: str
    url: str | None = None
    api_key_file: str | None = None  # set when the server requires a bearer token
    merged_adapter: bool = False
    limits: dict | None = None  # the request guard's, as the serve run reported them
    prompt_format: str = "chat"  # chat | text: how the model was trained to be prompted
    input_template: str | None = None  # text: what a prompt is rendered from
    example_prompt: str | None = None  # text: a training row as the prompt to send

    @property
    def route(self) -> str:
        """The OpenAI route that reproduces training."""
        return "/v1/completions" if self.prompt_format == TEXT else "/v1/chat/completions"

    def body(self, prompt: str, max_tokens: int = 64) -> dict:
        """A request of the training format: ``prompt`` filled into the input template's place, or one user turn.
        Greedy (temperature 0), as ftapp's evaluation answers."""
        if self.prompt_format == TEXT:
            return {"model": self.served_model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        return {"model": self.served_model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}

    def prompt_for(self, row: dict) -> str:
        """A dataset row as the prompt training saw (text adapters with an input template)."""
        if not self.input_template:
            raise ValueError("this endpoint has no input template: send the prompt (or the chat turns) as it is")
        return prompt_for(self.input_template, row)

    @property
    def format_note(self) -> str:
        if self.prompt_format != TEXT:
            return "Trained on chat turns: call /v1/chat/completions; the server applies the model's chat template."
        if self.input_template:
            return (
                f"Trained on raw-text prompts, so call /v1/completions with the input template filled in and its trailing "
                f"spaces cut: {self.input_template!r}. /v1/chat/completions would wrap it in a chat template the model "
                "never saw in training."
            )
        return "Trained on raw text: call /v1/completions with the text to continue, not the chat endpoint."

    @property
    def limits_note(self) -> str | None:
        if not self.limits:
            return None
        limits = self.limits
        return (
            f"Limits per request: a body of at most {limits['max_request_bytes']:,} bytes (else 413); prompt + max_tokens "
            f"within the model's {limits['context_tokens']:,}-token context (else 400); at most {limits['max_tokens']:,} "
            f"completion tokens (a larger max_tokens is capped) and {limits['request_timeout_s']:g} s of generation "
            f'(cut with finish_reason "length"). {limits["max_concurrent"]} generating at a time and {limits["max_queue"]} '
            "waiting; more are answered 429."
        )

    @property
    def base_url(self) -> str | None:
        return f"{self.url}/v1" if self.url else None

    @property
    def curl(self) -> str | None:
        if not self.url:
            return None
        prompt = self.example_prompt or ("Hello! Who are you?" if self.prompt_format != TEXT else "Once upon a time")
        body = json.dumps(self.body(prompt))
        lines = [f"curl {self.url}{self.route}", '-H "Content-Type: application/json"']
        if self.api_key_file:
            lines.append(f'-H "Authorization: Bearer $(cat {shlex.quote(self.api_key_file)})"')
        lines.append(f"-d {shlex.quote(body)}")
        return " \\\n  ".join(lines)

    @property
    def auth_note(self) -> str:
        if self.api_key_file:
            return (
                f"{self.engine} requires a bearer token, generated for this endpoint and stored (0600) in "
                f"{self.api_key_file}; it is never shown or logged, and the curl below reads it from that file."
            )
        return (
            f"No token: {self.engine} serve has no authentication option. The endpoint listens on 127.0.0.1 only, "
            "so only programs on this machine can reach it, but any of them can while it runs."
        )

    @property
    def merge_note(self) -> str | None:
        if not self.merged_adapter:
            return None
        return (
            "transformers serve cannot load a PEFT adapter, so the adapter was merged into a copy of its base "
            "model for serving (the run's merged/ folder, removed when the server stops)."
        )


class ServeService:
    def __init__(self, settings: Settings, db: Database, supervisor: Supervisor, visitor: Visitor | None = None):
        self.settings, self.db, self.supervisor, self.visitor = settings, visible_to(db, visitor), supervisor, visitor

    def check(self, request: ServeRequest, machine: Machine | None = None) -> list[Problem]:
        caps = self.visitor.caps if self.visitor else None
        with self.db.transaction() as tx:
            return validate_serve(tx, request, machine or detect_machine(), vllm_installed(), caps)

    def submit(self, request: ServeRequest, machine: Machine | None = None) -> RunRecord:
        problems = self.check(request, machine)
        if problems:
            raise ValidationError(problems)
        engine = chosen_engine(request.engine, vllm_installed())
        with self.db.transaction() as tx:
            model = tx.models.get(request.model_id)
            adapter = tx.adapters.get(request.adapter_id) if request.adapter_id else None
            assert model is not None, "validated above"
            found = training_format(tx, model, adapter)
            example = example_prompt(self.settings, tx, found)
        run_id = new_id()
        run_dir = self.settings.runs_dir / run_id
        name = served_name(adapter.name if adapter else model.name)
        spec = ServeSpec(
            run_id=run_id,
            run_dir=str(run_dir),
            model=ModelSource(model.source, model.architecture),
            served_name=name,
            adapter_path=adapter.location if adapter else None,
            engine=engine,
            api_key_file=str(run_dir / API_KEY_FILE) if engine == "vllm" else None,
            max_tokens=request.max_tokens,
            request_timeout_s=float(request.request_timeout_s),
            max_queue=request.max_queue,
            prompt_format=found.prompt_format,
            input_template=found.input_template,
            example_prompt=example,
        )
        return enqueue(
            self.db,
            self.supervisor,
            spec,
            kind=RunKind.SERVE,
            name=f"serve {name}",
            prepare=_new_api_key if engine == "vllm" else None,
            base_model_id=model.id,
            adapter_id=adapter.id if adapter else None,
            devices_requested=request.gpus,
        )

    def list(self) -> list[RunRecord]:
        """Serve runs, newest first."""
        with self.db.transaction() as tx:
            return list(reversed(tx.runs.find(kind=RunKind.SERVE)))

    def endpoint(self, run_id: str) -> Endpoint:
        run = self._serve_run(run_id)
        spec = run_spec(run, ServeSpec)
        started = started_payload(run)  # None until the server said it listens; untrusted, so every field is optional
        details = started or {}
        if run.status in LIVE:
            running = EndpointState.STARTING if run.status == RunStatus.RUNNING else EndpointState.QUEUED
            state = EndpointState.SERVING if started is not None else running
        elif run.status == RunStatus.FAILED or (started is None and run.status == RunStatus.CANCELLED):
            state = EndpointState(run.status)
        else:
            state = EndpointState.STOPPED  # it served, or ended without a failure
        return Endpoint(
            run=run,
            state=state,
            served_model=spec.served_name,
            engine=spec.engine,
            url=str(details["url"]) if details.get("url") and state == EndpointState.SERVING else None,
            api_key_file=spec.api_key_file,
            merged_adapter=bool(details.get("merged_adapter")),
            limits=_limits(details.get("limits")),
            prompt_format=spec.prompt_format,
            input_template=spec.input_template,
            example_prompt=spec.example_prompt,
        )

    def wait_ready(self, run_id: str, timeout_s: float = 900, on_tick=None) -> Endpoint:
        """Supervise until the endpoint answers (or its run ended); the CLI's and the tests' wait."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.supervisor.tick()
            endpoint = self.endpoint(run_id)
            if on_tick:
                on_tick(endpoint)
            if endpoint.state == EndpointState.SERVING or endpoint.run.status in TERMINAL:
                return endpoint
            if time.monotonic() > deadline:
                raise NotFoundError("serving endpoint", run_id)
            time.sleep(self.supervisor.poll_interval_s)

    def stop(self, run_id: str) -> RunRecord:
        """Stop the server: SIGTERM to its process group (the server exits and frees its GPU), SIGKILL after the grace."""
        run = self._serve_run(run_id)
        require_own(self.visitor, run.owner, "run", run.name or run.id)  # the supervisor sees every run
        return self.supervisor.cancel(run_id)

    def _serve_run(self, run_id: str) -> RunRecord:
        with self.db.transaction() as tx:
            run = require_found(tx.runs.get(run_id), "run", run_id)
        if run.kind != RunKind.SERVE:
            raise ConflictError(f"run {run_id} is a {run.kind} run, not a serving endpoint")
        return run


def served_name(text: str) -> str:
    """The model name clients send: the adapter's or model's name, cut to a safe file name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:63]
    return name or "model"


def _limits(value: object) -> dict | None:
    """The reported limits when ``limits_note`` can show them: every one a number."""
    if not isinstance(value, dict) or not all(
        isinstance(value.get(key), (int, float)) and not isinstance(value.get(key), bool) for key in LIMIT_KEYS
    ):
        return None
    return value


def _new_api_key(run_dir: Path) -> None:
    path = run_dir / API_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(32))
