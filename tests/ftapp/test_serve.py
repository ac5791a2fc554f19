"""Serving through the real CLI, services, supervisor and `transformers serve` on CPU, answering real HTTP."""

from __future__ import annotations

import json
import os
import socket
import stat
import urllib.request
from pathlib import Path

import pytest

from ftapp.adapters import AddAdapterRequest
from ftapp.cli import main as cli_main
from ftapp.errors import ValidationError
from ftapp.serve_request import ServeRequest
from trainer.protocol import ServeSpec, read_run_spec


def test_serve_answers_a_chat_completion_and_stops_cleanly(services, registered, random_adapter, capsys):
    adapter = services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(21))))
    home = str(services.settings.home)
    code = cli_main(["--home", home, "serve", "--model", registered.model_id, "--adapter", adapter.id, "--gpus", "cpu",
                     "--engine", "transformers", "--timeout", "300", "--json"])
    shown = json.loads(capsys.readouterr().out)
    run_id = shown["run_id"]
    try:
        assert code == 0 and shown["state"] == "serving", services.runs.get(run_id).error_text
        assert shown["url"].startswith("http://127.0.0.1:") and shown["model"] == "rand"
        assert "no authentication" in shown["auth"] and "merged" in shown["merge"]
        assert shown["curl"].startswith(f"curl {shown['url']}/v1/chat/completions") and "Authorization" not in shown["curl"]

        body = json.dumps({"model": shown["model"], "messages": [{"role": "user", "content": "Where is my order?"}],
                           "max_tokens": 8, "temperature": 0}).encode()
        request = urllib.request.Request(f"{shown['base_url']}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert response.status == 200 and answer["object"] == "chat.completion"
        assert isinstance(answer["choices"][0]["message"]["content"], str) and answer["usage"]["completion_tokens"] >= 1
    finally:
        services.serving.stop(run_id)
        final = services.runs.wait(run_id, timeout_s=60)
    assert final.status == "succeeded", final.error_text
    assert services.serving.endpoint(run_id).state == "stopped"
    started = next(json.loads(line) for line in Path(final.run_dir, "events.jsonl").read_text().splitlines() if '"started"' in line)
    with pytest.raises(ProcessLookupError):
        os.kill(started["server_pid"], 0)  # the server process is gone (its GPU, when it had one, is free)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", started["port"]), timeout=2):
        pass


def test_vllm_endpoints_get_a_generated_token_kept_out_of_spec_and_curl(services, registered, random_adapter, monkeypatch):
    adapter = services.adapters.add(AddAdapterRequest(name="rand-v", model_id=registered.model_id, location=str(random_adapter(22))))
    with pytest.raises(ValidationError, match="EX-010: engine vllm is not installed"):
        services.serving.submit(ServeRequest(registered.model_id, adapter.id, gpus="cpu", engine="vllm"))
    monkeypatch.setattr("ftapp.serving.vllm_installed", lambda: True)  # detection only; nothing is started here
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
