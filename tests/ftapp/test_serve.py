"""Serving through the real CLI, services, supervisor and `transformers serve` on CPU, answering real HTTP."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cli.main import main as cli_main
from ftapp.errors import ValidationError
from ftapp.models.adapters import AddAdapterRequest
from ftapp.shipping.serve_request import ServeRequest
from trainer.protocol import ServeSpec, read_run_spec


@pytest.mark.slow
def test_serve_answers_a_chat_completion_and_stops_cleanly(services, registered, random_adapter, capsys):
    adapter = services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(21))))
    home = str(services.settings.home)
    code = cli_main(
        [
            "--home",
            home,
            "serve",
            "--model",
            registered.model_id,
            "--adapter",
            adapter.id,
            "--gpus",
            "cpu",
            "--engine",
            "transformers",
            "--timeout",
            "300",
            "--json",
        ]
    )
    shown = json.loads(capsys.readouterr().out)
    run_id = shown["run_id"]
    try:
        assert code == 0 and shown["state"] == "serving", services.runs.get(run_id).error_text
        assert shown["url"].startswith("http://127.0.0.1:") and shown["model"] == "rand"
        assert "no authentication" in shown["auth"] and "merged" in shown["merge"]
        assert shown["curl"].startswith(f"curl {shown['url']}/v1/chat/completions") and "Authorization" not in shown["curl"]
        assert shown["limits"]["context_tokens"] == 512 and "429" in shown["limits_note"]  # the demo model's context

        body = json.dumps(
            {"model": shown["model"], "messages": [{"role": "user", "content": "Where is my order?"}], "max_tokens": 8, "temperature": 0}
        ).encode()
        request = urllib.request.Request(f"{shown['base_url']}/chat/completions", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert response.status == 200 and answer["object"] == "chat.completion"
        assert isinstance(answer["choices"][0]["message"]["content"], str) and answer["usage"]["completion_tokens"] >= 1
    finally:
        services.serving.stop(run_id)
        final = services.runs.wait(run_id, timeout_s=60)
    assert final.status == "cancelled", final.error_text  # stopped by the user, though it shut down cleanly
    started = json.loads(final.started_payload)  # as the supervisor ingested it
    Path(final.run_dir, "events.jsonl").unlink()  # the row alone tells how the endpoint ran
    stopped = services.serving.endpoint(run_id)
    assert stopped.state == "stopped" and stopped.url is None and stopped.merged_adapter and stopped.limits["context_tokens"] == 512
    with pytest.raises(ProcessLookupError):
        os.kill(started["server_pid"], 0)  # the server process is gone (its GPU, when it had one, is free)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", started["port"]), timeout=2):
        pass


def test_vllm_endpoints_get_a_generated_token_kept_out_of_spec_and_curl(services, registered, random_adapter, monkeypatch):
    adapter = services.adapters.add(AddAdapterRequest(name="rand-v", model_id=registered.model_id, location=str(random_adapter(22))))
    with pytest.raises(ValidationError, match="EX-010: engine vllm is not installed"):
        services.serving.submit(ServeRequest(registered.model_id, adapter.id, gpus="cpu", engine="vllm"))
    monkeypatch.setattr("ftapp.shipping.serving.vllm_installed", lambda: True)  # detection only; nothing is started here
    run = services.serving.submit(ServeRequest(registered.model_id, adapter.id, gpus="cpu", engine="auto"))
    spec = read_run_spec(Path(run.run_dir) / "spec.json")
    assert isinstance(spec, ServeSpec) and spec.engine == "vllm" and spec.served_name == "rand-v"
    key_file = Path(spec.api_key_file)
    token = key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(token) >= 32
    assert token not in run.spec and token not in (Path(run.run_dir) / "spec.json").read_text()
    endpoint = services.serving.endpoint(run.id)
    assert endpoint.state == "queued" and endpoint.curl is None and "bearer token" in endpoint.auth_note
    assert token not in endpoint.auth_note


def test_serving_refuses_a_missing_model_or_device(services, registered):
    runs_before = len(services.runs.list())
    with pytest.raises(ValidationError) as caught:
        services.serving.submit(ServeRequest("no-such-model", "no-such-adapter", gpus="7", engine="tgi"))
    assert {"EX-001", "EX-002", "EX-009", "EX-010"} <= set(caught.value.rule_ids)
    assert len(services.runs.list()) == runs_before


def _post(url: str, body: bytes, timeout_s: float = 60) -> tuple[int, dict, float]:
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode()}, time.monotonic() - started


@pytest.mark.slow
def test_the_endpoint_refuses_huge_and_malformed_requests_fast_and_keeps_answering_a_burst(services, registered):
    """The attacks of issue 14, item 8, against the real transformers serve behind the guard, over real HTTP."""
    run = services.serving.submit(ServeRequest(registered.model_id, gpus="cpu", engine="transformers", max_tokens=16, max_queue=16))
    try:
        endpoint = services.serving.wait_ready(run.id, timeout_s=300)
        assert endpoint.state == "serving", services.runs.get(run.id).error_text
        assert endpoint.limits == {
            "context_tokens": 512,
            "max_tokens": 16,
            "max_request_bytes": 1 << 20,
            "request_timeout_s": 120.0,
            "max_concurrent": 1,
            "max_queue": 16,
        }
        chat = f"{endpoint.base_url}/chat/completions"

        def body(content: str, **fields) -> bytes:
            return json.dumps({"model": endpoint.served_model, "messages": [{"role": "user", "content": content}], **fields}).encode()

        status, answer, seconds = _post(chat, body("x" * 200_000))  # took the bare server 3+ minutes
        assert (status, answer["error"]["code"]) == (400, "context_length_exceeded") and seconds < 1.5, (answer, seconds)
        status, answer, seconds = _post(chat, body("word " * 600, max_tokens=8))  # under 1 MiB and passes at a glance: counted
        assert (
            (status, answer["error"]["code"]) == (400, "context_length_exceeded")
            and "maximum context length is 512" in answer["error"]["message"]
            and seconds < 1.5
        )
        status, answer, _ = _post(chat, b'{"messages": [' + b'"a",' * 5_000_000 + b'"a"]}')  # 20 MB
        assert (status, answer["error"]["code"]) == (413, "request_too_large")
        status, answer, _ = _post(chat, b'{"model": "rand", "messages": [')
        assert (status, answer["error"]["code"]) == (400, "invalid_json")
        status, answer, _ = _post(f"{endpoint.url}/load_model", json.dumps({"model": "gpt2"}).encode())
        assert status == 404  # the server's model loader (any Hub model) is not reachable through the guard
        status, answer, seconds = _post(chat, body("Where is my order?", max_tokens=5000, temperature=0))
        assert status == 200 and answer["usage"]["completion_tokens"] <= 16 and seconds < 5, (answer, seconds)

        request = urllib.request.Request(chat, data=body("Where is my order?", stream=True), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            events = [line for line in response.read().decode().split("\n\n") if line.startswith("data: ")]
        assert response.headers["content-type"].startswith("text/event-stream") and len(events) >= 2
        assert json.loads(events[-1][6:])["choices"][0]["finish_reason"] in ("stop", "length")

        # 60 at once, every third malformed in turn: not JSON, the wrong shape, a 200,000-character prompt.
        malformed = [b'{"messages": [', json.dumps({"messages": "hello"}).encode(), body("x" * 200_000)]
        burst = [(False, malformed[(i // 3) % 3]) if i % 3 == 2 else (True, body(f"Where is my order number {i}?")) for i in range(60)]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=60) as pool:
            results = list(pool.map(lambda item: (item[0], *_post(chat, item[1], timeout_s=90)), burst))
        wall = time.monotonic() - started
        assert {status for valid, status, _, _ in results if not valid} == {400}
        assert {status for valid, status, _, _ in results if valid} <= {200, 429}
        answered = sorted(seconds for valid, status, _, seconds in results if valid and status == 200)
        assert len(answered) >= 17 and wall < 60, (len(answered), wall)  # 1 generating + 16 waiting, at least
        status, answer, seconds = _post(chat, body("Hello!", max_tokens=8))
        assert status == 200 and seconds < 5
        print(
            f"burst of 60: {len(answered)} answered, p50 {answered[len(answered) // 2]:.2f} s, max {answered[-1]:.2f} s, wall {wall:.2f} s"
        )
    finally:
        services.serving.stop(run.id)
        final = services.runs.wait(run.id, timeout_s=60)
    assert final.status == "cancelled", final.error_text  # stopped by the user: a clean shutdown still reads as stopped
