"""GGUF export of a real model: SmolLM2-135M-Instruct (``smollm2`` in tests/conftest.py) with an adapter trained a few
steps on a raw-text prompt, converted by llama.cpp's converter to f16 and q8_0, loaded back by transformers and
compared with base + adapter; its Modelfile prompts the way training did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.main import main as cli_main
from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from storage import AdapterRecord, DatasetRecord, PromptRecord
from tests.conftest import TEST_DATA, RealModel
from tests.trainer.modelfile_reader import read_modelfile, render
from trainer.export.gguf_verify import agreement_floor
from trainer.export.verify import PROMPTS

INPUT_TEMPLATE = "Request: {instruction}\nIntent: "
# A few steps: enough to move the weights off the base (the merge has something to merge), seconds on two cores.
TRAINING = {
    "max_steps": 4,
    "per_device_train_batch_size": 4,
    "max_length": 64,
    "logging_steps": 2,
    "eval_steps": 4,
    "save_steps": 1000,
    "warmup_ratio": 0.0,
}


@dataclass(frozen=True)
class Studio:
    services: Services
    tickets: DatasetRecord
    prompt: PromptRecord
    adapter: AdapterRecord


@pytest.fixture(scope="module")
def studio(smollm2: RealModel, tmp_path_factory) -> Iterator[Studio]:
    services = open_services(Settings.from_env(tmp_path_factory.mktemp("gguf-export") / "home"))
    model = services.models.add(AddModelRequest(type="project", name="smollm2", location=str(smollm2.model_dir)))
    tickets = services.datasets.add(AddDatasetRequest(name="tickets", location=str(TEST_DATA / "clean_ticketing.csv")))
    prompt = services.prompts.add(
        AddPromptRequest(
            name="intent",
            dataset_id=tickets.id,
            prompt_template=INPUT_TEMPLATE + "{intent}",
            input_template=INPUT_TEMPLATE,
            completion_template="{intent}",
        )
    )
    run, _ = services.runs.submit(
        FineTuneRequest(
            base_model_id=model.id,
            dataset_id=tickets.id,
            prompt_id=prompt.id,
            adapter_name="tickets-lora",
            gpus="cpu",
            learning_rate=1e-3,
            dataset_fraction=0.05,
            overrides=TRAINING,
        )
    )
    final = services.runs.wait(run.id, timeout_s=900)
    assert final.status == "succeeded", final.error_text
    (adapter,) = services.adapters.list(model_id=model.id)
    yield Studio(services, tickets, prompt, adapter)
    services.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first test of the module pays for the conversion of SmolLM2 and the training too
def test_an_adapter_exports_to_verified_f16_and_q8_0_with_a_modelfile_of_its_training_format(studio: Studio, capsys):
    services = studio.services
    code = cli_main(
        [
            "--home",
            str(services.settings.home),
            "export",
            "gguf",
            "--adapter",
            studio.adapter.id,
            "--type",
            "f16",
            "q8_0",
            "--gpus",
            "cpu",
            "--wait",
            "--json",
        ]
    )
    shown = json.loads(capsys.readouterr().out)  # --json: what `export show` prints
    runs = services.exports.list()
    assert code == 0, runs[0].error_text
    result = services.exports.result(runs[0].id)
    assert shown["action"] == "gguf" and [f["type"] for f in shown["gguf"]] == ["f16", "q8_0"]
    assert result.action == "gguf" and result.verified is True and [f.type for f in result.gguf] == ["f16", "q8_0"]
    f16, q8 = result.gguf
    for file in result.gguf:
        path = Path(file.path)
        assert path.is_file() and path.read_bytes()[:4] == b"GGUF" and path.stat().st_size == file.size_bytes
        assert file.tokens == len(PROMPTS) * 16 and file.prompts == len(PROMPTS)
        assert file.token_agreement >= agreement_floor(file.type) and file.verified
        print(
            f"\n{file.type}: {file.size_bytes / 1e6:.1f} MB, converted in {file.convert_seconds:.1f} s, verified in "
            f"{file.verify_seconds:.1f} s; teacher-forced {file.tokens_agreed}/{file.tokens} tokens agree, "
            f"{file.prompts_matched}/{file.prompts} greedy answers identical, max logit difference {file.max_logit_diff:.3g}"
        )
    # f16 holds the merged bf16 weights exactly: it differs from base + adapter by the merge's rounding alone.
    assert f16.max_logit_diff < q8.max_logit_diff and f16.tokens_agreed >= q8.tokens_agreed
    assert q8.size_bytes < 0.6 * f16.size_bytes
    assert not (Path(result.run.run_dir) / "gguf" / "merged").exists()  # the converter's input is not left behind
    assert services.models.list() == [m for m in services.models.list() if m.name == "smollm2"]  # no model row for a GGUF

    # The Modelfile prompts like training: the input template around the client's text, cut where training cut it.
    read = read_modelfile(Path(q8.modelfile).read_text())
    assert read.source == f"./{Path(q8.path).name}" and read.stops == ["<|im_end|>"] and read.parameters == {"temperature": "0"}
    row = services.datasets.preview(studio.tickets.id, 0, 1).rows[0]
    assert render(read.template, prompt=row["instruction"]) == f"Request: {row['instruction']}\nIntent:"
    assert read.system is None  # no chat template, no default system prompt: the adapter never saw one
    assert q8.ollama_command == f"ollama create tickets-lora:q8_0 -f {q8.modelfile}"
    assert q8.ollama_created is False and "not on PATH" in q8.ollama_note

    # The GGUF metadata carries the tokenizer, its chat template and EOS.
    import gguf

    fields = gguf.GGUFReader(f16.path).fields
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()
    assert fields["tokenizer.ggml.eos_token_id"].contents() == 2 and len(fields["tokenizer.ggml.tokens"].contents()) == 49152


def test_k_quants_without_llama_quantize_and_unknown_types_are_refused_with_rule_ids(services, registered, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)  # no llama-quantize here, whatever the machine has
    home = str(services.settings.home)
    runs_before = len(services.runs.list())
    assert cli_main(["--home", home, "export", "gguf", "--model", registered.model_id, "--type", "q4_k_m", "--gpus", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "EX-013" in error and "llama-quantize" in error and "not on PATH" in error
    assert cli_main(["--home", home, "export", "gguf", "--model", registered.model_id, "--type", "q9", "f16", "f16"]) == 2
    error = capsys.readouterr().err
    assert "EX-012" in error and "'q9'" in error and "each GGUF type once" in error
    assert len(services.runs.list()) == runs_before and not list(services.settings.runs_dir.iterdir())
