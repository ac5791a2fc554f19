"""The Export and Serve tabs: handlers on real services, views as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import gradio as gr
import pytest

from ftapp.models.adapters import AddAdapterRequest
from ftapp.shipping.export_results import ExportResult
from ftapp.shipping.serving import Endpoint
from ui import export, serve

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def run_record(**changes):
    from storage import RunRecord

    return RunRecord(
        **{f: None for f in RunRecord.__dataclass_fields__}
        | {
            "id": "r1",
            "kind": "export",
            "name": "merge <b>x</b>",
            "status": "succeeded",
            "spec": "{}",
            "gpus": "cpu",
            "created_at": NOW,
            "events_offset": 0,
            "malformed_events": 0,
            "devices_requested": "cpu",
        }
        | changes
    )


@pytest.fixture
def adapter(services, registered, random_adapter):
    return services.adapters.add(AddAdapterRequest(name="rand", model_id=registered.model_id, location=str(random_adapter(31))))


def test_export_form_reports_rule_ids_and_the_archive_downloads_only_when_sound(services, registered, adapter):
    with pytest.raises(gr.Error, match="EX-003"):
        export.start_export(services, export.export_request(adapter.id, registered.model_id, "merge", "bad name!", "", True, "cpu"))
    with pytest.raises(gr.Error, match="EX-008: the Hub cannot be reached"):  # the UI tests run offline
        export.start_export(services, export.export_request(adapter.id, registered.model_id, "push", "", "me/rand", True, "cpu"))
    assert export.follow_adapter(services, adapter.id, None) == registered.model_id

    message, pick = export.start_export(services, export.export_request(adapter.id, registered.model_id, "archive", "", "", True, "cpu"))
    run = services.exports.list()[0]
    assert run.id[:8] in message and pick.value == run.id and run.name == "archive rand"
    queued, _, button, _ = export.show_export(services, run.id)
    assert "queued" in queued and button.visible is False
    assert services.runs.wait(run.id, timeout_s=120).status == "succeeded"
    status, checks, button, shown = export.show_export(services, run.id)
    assert "use the download button" in status and button.visible is True and button.value["orig_name"] == "rand.tar.gz"
    assert export.poll_export(services, run.id, shown) == (gr.skip(),) * 5  # a finished export on screen costs nothing
    services.exports.archive_file(run.id).unlink()
    assert export.show_export(services, run.id).download.visible is False  # the file is gone: no button, no broken link


def test_export_result_view_shows_the_verdict_and_escapes_names():
    checks = [{"prompt": "Hi", "tokens_match": False, "reference": "a", "exported": "b", "max_logit_diff": 0.5, "diagnosis": "parted"}]
    result = ExportResult(
        run_record(),
        "merge",
        "x",
        "/src",
        verified=False,
        max_logit_diff=0.5,
        prompts_matched=3,
        prompts=4,
        checks=checks,
        dtype="bfloat16",
        qlora=True,
        merged_dir="/runs/r1/merged",
    )
    text = export.result_markdown(result)
    assert "Not verified" in text and "3/4" in text and "de-quantised" in text and "&lt;b&gt;" in text
    assert export.checks_rows(result) == [["Hi", "❌", "a", "b", "0.5", "parted"]]


def test_serve_form_starts_an_endpoint_and_stop_cancels_it(services, registered, adapter):
    with pytest.raises(gr.Error, match="EX-010"):
        serve.start_endpoint(services, serve.serve_request(registered.model_id, adapter.id, "cpu", "vllm"))
    model, adapters, _ = serve.refresh_form(services, registered.model_id, None, None)
    assert model.value == registered.model_id and adapter.id in [value for _, value in adapters.choices]
    message, pick = serve.start_endpoint(services, serve.serve_request(registered.model_id, adapter.id, "cpu", "transformers"))
    run = services.serving.list()[0]
    assert pick.value == run.id and run.name == "serve rand"
    status, curl, stop, _ = serve.show_endpoint(services, run.id)
    assert "Queued" in status and "no authentication" in status and curl.visible is False and stop.interactive is True
    status, _, stop, _ = serve.stop_endpoint(services, run.id)  # queued: cancelled before any process started
    assert "Cancelled before it served" in status and stop.interactive is False


def test_a_serving_endpoint_shows_its_url_and_curl():
    endpoint = Endpoint(
        run=run_record(kind="serve", status="running", name="serve rand"),
        state="serving",
        served_model="rand",
        engine="vllm",
        url="http://127.0.0.1:8123",
        api_key_file="/home/u/.ftapp/runs/r1/api_key",
    )
    text = serve.endpoint_markdown(endpoint)
    assert "`http://127.0.0.1:8123/v1`" in text and "`rand`" in text and "bearer token" in text
    assert "Authorization: Bearer $(cat /home/u/.ftapp/runs/r1/api_key)" in endpoint.curl
    assert endpoint.curl.startswith("curl http://127.0.0.1:8123/v1/chat/completions")
