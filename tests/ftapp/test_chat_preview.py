"""Conversations rendered through a model's chat template, split into trained and masked parts."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import FtappError
from ftapp.models.service import AddModelRequest
from ftapp.prompts import chat_preview as chat_preview_module
from ftapp.prompts.chat_preview import (
    Segment,
    chat_preview,
    chat_preview_by_id,
    load_chat_template,
    load_special_tokens,
    render_conversation,
    sharegpt_turns,
)
from ftapp.services import Services

CONVERSATIONS = [
    [
        {"role": "system", "content": "You answer support requests."},
        {"role": "user", "content": "My card was charged twice."},
        {"role": "assistant", "content": "I will refund the duplicate charge."},
        {"role": "user", "content": "Thanks, how long will it take?"},
        {"role": "assistant", "content": "Three to five business days."},
    ],
    [{"role": "user", "content": "Cancel my order please."}, {"role": "assistant", "content": "Your order is cancelled."}],
]
QWEN_LIKE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _text(segments: list[Segment], trained: bool) -> str:
    return "".join(s.text for s in segments if s.trained == trained)


def _full(messages: list[dict], bos: str, eos: str) -> str:
    # The demo template, written out by hand: what apply_chat_template renders for it.
    return bos + "".join(f"<|{m['role']}|>\n{m['content']}{eos}\n" for m in messages)


def test_the_demo_model_directory_yields_its_template_and_special_tokens(demo_kit) -> None:
    template = load_chat_template(demo_kit.model_dir)

    assert template and "messages" in template
    assert load_special_tokens(demo_kit.model_dir) == ("<s>", "</s>")


def test_assistant_turns_are_trained_and_the_rest_masked(demo_kit) -> None:
    template = load_chat_template(demo_kit.model_dir)
    messages = CONVERSATIONS[0]

    segments = render_conversation(template, messages, "<s>", "</s>")

    assert "".join(s.text for s in segments) == _full(messages, "<s>", "</s>")
    trained, masked = _text(segments, True), _text(segments, False)
    for message in messages:
        assert message["content"] in (trained if message["role"] == "assistant" else masked)
        assert message["content"] not in (masked if message["role"] == "assistant" else trained)
    assert masked.startswith("<s><|system|>")
    assert "<|assistant|>" not in trained  # the header the model is prompted with is masked
    assert trained == "I will refund the duplicate charge.</s>\nThree to five business days.</s>\n"
    assert [s.trained for s in segments] == [False, True, False, True]


def test_other_templates_split_the_same_way() -> None:
    segments = render_conversation(QWEN_LIKE, CONVERSATIONS[1])

    assert segments == [
        Segment("<|im_start|>user\nCancel my order please.<|im_end|>\n<|im_start|>assistant\n", False),
        Segment("Your order is cancelled.<|im_end|>\n", True),
    ]


def test_a_template_that_refuses_the_conversation_is_an_ftapp_error() -> None:
    template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}x"

    with pytest.raises(FtappError, match="must start with user"):
        render_conversation(template, [{"role": "assistant", "content": "hi"}])


@pytest.mark.parametrize(
    ("template", "says"),
    [
        # What a crafted GGUF's or Hub repo's template could do to the process that previews it:
        ("{{ 'a' * 10**10 }}", "too large"),  # ten GB in one allocation
        ("{{ 7 ** 1000000000 }}", "too large"),  # an integer of a billion digits
        ("{% set n = namespace(s='ab') %}{% for i in range(64) %}{% set n.s = n.s + n.s %}{% endfor %}{{ n.s }}", "too large"),
        ("{% set n = namespace(s='ab') %}{% for i in range(64) %}{% set n.s = n.s ~ n.s %}{% endfor %}{{ n.s }}", "more than 1 GiB"),
        ("{{ '%09999999999d' % 1 }}", "more than 1 GiB"),  # a ten GB wide number
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x", "did not finish within 3 s"),  # hours
        ("{{ messages[0]['content'] - 1 }}", "the chat template failed: TypeError"),  # an error jinja does not wrap
    ],
)
def test_a_template_that_would_take_the_apps_memory_or_a_thread_is_stopped_in_its_own_process(template, says, monkeypatch) -> None:
    monkeypatch.setattr(chat_preview_module, "RENDER_TIMEOUT_S", 3.0)
    started = time.monotonic()
    with pytest.raises(FtappError, match=says):
        render_conversation(template, CONVERSATIONS[1])
    assert time.monotonic() - started < 20
    assert render_conversation(QWEN_LIKE, CONVERSATIONS[1])[1].trained  # and the next preview renders as before


def test_sharegpt_turns_become_messages() -> None:
    row = {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "tool", "value": "{}"},
        ],
    }

    assert sharegpt_turns(row) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "tool", "content": "{}"},
    ]


def test_a_template_in_tokenizer_config_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "chat_template": QWEN_LIKE,
                "bos_token": {"content": "<bos>", "lstrip": False},
                "eos_token": "<|im_end|>",
            }
        ),
        encoding="utf-8",
    )

    assert load_chat_template(tmp_path) == QWEN_LIKE
    assert load_special_tokens(tmp_path) == ("<bos>", "<|im_end|>")
    assert load_chat_template(tmp_path / "missing") is None


def test_chat_preview_reads_the_first_rows_of_messages_and_sharegpt_data(services: Services, demo_kit, tmp_path: Path) -> None:
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    messages = services.datasets.add(
        AddDatasetRequest(
            name="chats",
            location=str(_write_jsonl(tmp_path / "chats.jsonl", [{"messages": c} for c in CONVERSATIONS])),
        )
    )
    sharegpt = services.datasets.add(
        AddDatasetRequest(
            name="sharegpt",
            location=str(
                _write_jsonl(
                    tmp_path / "sharegpt.jsonl",
                    [{"conversations": [{"from": "human", "value": "Where is my parcel?"}, {"from": "gpt", "value": "On its way."}]}],
                )
            ),
        )
    )
    assert (messages.format, sharegpt.format) == ("messages", "sharegpt")

    rows = chat_preview(services.datasets, model, messages, limit=1)

    assert len(rows) == 1
    assert "".join(s.text for s in rows[0]) == _full(CONVERSATIONS[0], "<s>", "</s>")
    assert chat_preview_by_id(services, model.id, messages.id) == [
        render_conversation(load_chat_template(demo_kit.model_dir), c, "<s>", "</s>") for c in CONVERSATIONS
    ]
    [shared] = chat_preview(services.datasets, model, sharegpt)
    assert _text(shared, True) == "On its way.</s>\n"
    assert "<|user|>\nWhere is my parcel?" in _text(shared, False)


def test_chat_preview_refuses_what_it_cannot_render(services: Services, demo_kit, tmp_path: Path) -> None:
    model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    plain = services.datasets.add(AddDatasetRequest(name="intents", location=str(demo_kit.dataset_path)))
    chats = services.datasets.add(
        AddDatasetRequest(
            name="chats",
            location=str(_write_jsonl(tmp_path / "chats.jsonl", [{"messages": CONVERSATIONS[1]}])),
        )
    )
    bare_dir = tmp_path / "no-template"
    bare_dir.mkdir()
    shutil.copy(demo_kit.model_dir / "config.json", bare_dir / "config.json")
    bare = services.models.add(AddModelRequest(type="project", name="bare", location=str(bare_dir)))

    with pytest.raises(FtappError, match="only messages or sharegpt"):
        chat_preview(services.datasets, model, plain)
    with pytest.raises(FtappError, match="no chat template"):
        chat_preview(services.datasets, bare, chats)
    hub_model = replace(model, type="huggingface", location=None, huggingface_name="org/model")  # offline: no Hub look-up
    with pytest.raises(FtappError, match="no local directory"):
        chat_preview(services.datasets, hub_model, chats)
