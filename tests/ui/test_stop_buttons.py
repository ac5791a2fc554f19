"""The Serve and Compare tabs' stop buttons are live (and red) only while there is something to stop (issue 16, item 4)."""

from __future__ import annotations

from ftapp.compare import CompareRequest
from ftapp.services import Services
from ftapp.shipping import ServeRequest
from storage.types import utc_now
from ui import compare, serve


def test_stop_worker_is_live_only_while_the_model_has_a_worker(services: Services, registered) -> None:
    _, idle = compare.worker_panel(services, registered.model_id)
    assert (idle.interactive, idle.variant) == (False, "secondary")  # grey: no worker yet, the first Generate starts one

    services.comparisons.start(CompareRequest(model_id=registered.model_id, prompt="hello"))
    text, live = compare.worker_panel(services, registered.model_id)
    assert "queued for a device" in text and (live.interactive, live.variant) == (True, "stop")

    services.comparisons.stop_worker(registered.model_id)
    _, stopped = compare.worker_panel(services, registered.model_id)
    assert stopped.interactive is False
    assert compare.worker_panel(services, None)[1].interactive is False  # no model chosen


def test_stop_endpoint_is_live_until_the_endpoint_is_asked_to_stop(services: Services, registered) -> None:
    run = services.serving.submit(ServeRequest(registered.model_id, "", gpus="cpu", engine="transformers"))
    with services.db.transaction() as tx:
        tx.runs.update(run.id, status="running", started_at=utc_now(), gpus="cpu")
    assert serve.show_endpoint(services, run.id).stop.interactive is True

    with services.db.transaction() as tx:
        tx.runs.update(run.id, cancel_requested_at=utc_now())  # stopping: the server is shutting down
    stopping = serve.show_endpoint(services, run.id).stop
    assert (stopping.interactive, stopping.variant) == (False, "secondary")
    assert serve.show_endpoint(services, None).stop.interactive is False
