"""The Export tab's GGUF action: types offered as this machine can write them, refusals with rule ids, results per type."""

from __future__ import annotations

from datetime import UTC, datetime

import gradio as gr
import pytest

from ftapp.models.adapters import AddAdapterRequest
from ftapp.shipping.export_results import ExportResult, GgufFile
from storage import RunRecord
from ui import export


def test_k_quants_are_offered_only_with_llama_quantize_and_refused_with_ex_013(services, registered, random_adapter, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    labels = dict((value, label) for label, value in export.gguf_type_choices())
    assert labels["q8_0"] == "q8_0" and "llama-quantize" in labels["q4_k_m"]
    adapter = services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(41))))
    request = export.export_request(adapter.id, registered.model_id, "gguf", "", "", True, "cpu", ["q4_k_m"])
    assert request.gguf_types == ("q4_k_m",)
    with pytest.raises(gr.Error, match="EX-013: q4_k_m is a k-quant"):
        export.start_export(services, request)
    with pytest.raises(gr.Error, match="EX-012: choose at least one GGUF type"):
        export.start_export(services, export.export_request(adapter.id, registered.model_id, "gguf", "", "", True, "cpu", []))
    assert services.exports.list() == []


def test_a_gguf_result_shows_each_type_with_its_numbers_and_ollama_command():
    run = RunRecord(
        **{f: None for f in RunRecord.__dataclass_fields__}
        | {
            "id": "r1",
            "kind": "export",
            "name": "gguf rand",
            "status": "succeeded",
            "spec": "{}",
            "created_at": datetime.now(UTC),
            "events_offset": 0,
            "malformed_events": 0,
            "devices_requested": "cpu",
        }
    )
    q8 = GgufFile(
        type="q8_0",
        path="/h/runs/r1/gguf/q8_0/rand-q8_0.gguf",
        size_bytes=144_810_848,
        convert_seconds=7.9,
        verify_seconds=82.5,
        verified=True,
        token_agreement=62 / 64,
        tokens_agreed=62,
        tokens=64,
        agreement_floor=0.9,
        prompts_matched=3,
        prompts=4,
        max_logit_diff=1.17,
        modelfile="/h/runs/r1/gguf/q8_0/Modelfile",
        ollama_command="ollama create rand:q8_0 -f /h/runs/r1/gguf/q8_0/Modelfile",
        ollama_created=False,
        ollama_note="ollama is not on PATH here: run the command where it is",
    )
    shown = export.result_markdown(
        ExportResult(run=run, action="gguf", name="rand", source="/a", verified=True, gguf=[q8], dtype="float32")
    )
    assert "| q8_0 | ✅ | 145 MB | 62/64 | 3/4 | 1.17 |" in shown and "ollama create rand:q8_0" in shown
