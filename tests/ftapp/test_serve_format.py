"""Serving matches training: an adapter trained on a raw-text prompt is called the way training prompted it, and the
endpoint then answers exactly what ftapp's evaluation answered for the same rows."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.shipping.serve_request import ServeRequest

ROWS = 6
NEW_TOKENS = 8


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_a_prompt_template_adapter_is_shown_the_completions_call_and_a_chat_model_the_chat_call(services, registered, random_adapter):
    raw = services.adapters.add(
        AddAdapterRequest(name="raw", model_id=registered.model_id, location=str(random_adapter(31)), prompt_id=registered.prompt_id)
    )
    run = services.serving.submit(ServeRequest(registered.model_id, raw.id, gpus="cpu", engine="transformers"))
    endpoint = services.serving.endpoint(run.id)
    row = services.datasets.preview(registered.dataset_id, 0, 1).rows[0]
    assert endpoint.route == "/v1/completions" and endpoint.input_template == registered.prompt.input_template
    assert endpoint.example_prompt == endpoint.prompt_for(row) == registered.prompt.input_template.format(**row).rstrip(" ")
    assert "/v1/completions" in endpoint.format_note and "never saw" in endpoint.format_note
    body = endpoint.body(endpoint.example_prompt)
    assert body["prompt"] == endpoint.example_prompt and "messages" not in body and body["temperature"] == 0
    services.serving.stop(run.id)

    alone = services.serving.submit(ServeRequest(registered.model_id, gpus="cpu", engine="transformers"))
    endpoint = services.serving.endpoint(alone.id)
    assert endpoint.route == "/v1/chat/completions" and "messages" in endpoint.body("Hi")  # the demo model has a chat template
    services.serving.stop(alone.id)


@pytest.mark.slow
def test_served_answers_equal_evaluated_answers(services, registered, random_adapter):
    adapter = services.adapters.add(
        AddAdapterRequest(name="raw", model_id=registered.model_id, location=str(random_adapter(32, 0.3)), prompt_id=registered.prompt_id)
    )
    evaluation = services.evaluations.submit(
        EvaluationRequest(
            dataset_id=registered.dataset_id,
            prompt_id=registered.prompt_id,
            combinations=(Combination(registered.model_id, adapter.id),),
            gpus="cpu",
            max_rows=ROWS,
            generation={"max_new_tokens": NEW_TOKENS, "do_sample": False},
        )
    )
    final = services.runs.wait(evaluation.id, timeout_s=600)
    assert final.status == "succeeded", final.error_text
    evaluated = services.evaluations.results(evaluation.id).rows
    assert len(evaluated) == ROWS

    run = services.serving.submit(ServeRequest(registered.model_id, adapter.id, gpus="cpu", engine="transformers"))
    try:
        endpoint = services.serving.wait_ready(run.id, timeout_s=600)
        assert endpoint.state == "serving", services.runs.get(run.id).error_text
        assert endpoint.curl.startswith(f"curl {endpoint.url}/v1/completions")
        served, chat = [], []
        for row in evaluated:
            prompt = endpoint.prompt_for(services.datasets.preview(registered.dataset_id, row.row_index, 1).rows[0])
            assert prompt == row.input  # the prompt the evaluation generated from
            answer = post(f"{endpoint.url}{endpoint.route}", endpoint.body(prompt, max_tokens=NEW_TOKENS))
            served.append(answer["choices"][0]["text"].strip())
            wrapped = post(
                f"{endpoint.url}/v1/chat/completions",
                {
                    "model": endpoint.served_model,
                    "max_tokens": NEW_TOKENS,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": prompt}],
                },
            )
            chat.append(wrapped["choices"][0]["message"]["content"].strip())
    finally:
        services.serving.stop(run.id)
        services.runs.wait(run.id, timeout_s=60)
    expected = [row.outputs[1] for row in evaluated]
    assert served == expected
    print(
        f"\nserved = evaluated on {sum(a == b for a, b in zip(served, expected))}/{ROWS} rows through /v1/completions; "
        f"the chat endpoint on {sum(a == b for a, b in zip(chat, expected))}/{ROWS}"
    )
