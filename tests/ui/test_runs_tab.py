"""The Runs tab's handlers on real services, including one real CPU run started from the Train tab."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from ftapp.runs.log_text import failure_text
from ftapp.services import Services
from ftapp.shipping import ServeRequest
from storage.types import utc_now
from ui import adapters, home, runs, train
from ui.run_compare import spec_differences

SKIP = gr.skip()


@pytest.fixture(autouse=True)
def no_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # Autouse, so it is set before the services fixture reads the environment. MLflow logging
    # triples the CPU run here (~12 s of 20 s on two cores) and tests/ftapp/test_runs.py covers it.
    monkeypatch.setenv("FTAPP_MLFLOW", "0")


def split(ticked: tuple) -> tuple[runs.RunView, runs.Listing]:
    """A timer tick's outputs: the run view, then the listing."""
    size = len(runs.RunView._fields)
    assert len(ticked) == size + len(runs.Listing._fields)
    return runs.RunView._make(ticked[:size]), runs.Listing._make(ticked[size:])


def queue(services: Services, train_form, name: str, **changes) -> str:
    train.start_training(services, train_form(adapter_name=name, **changes))
    return runs.list_runs(services).pick.value  # the picker chooses the newest run


def test_the_table_lists_newest_first_and_filters_by_status(services: Services, train_form) -> None:
    first = queue(services, train_form, "first")
    second = queue(services, train_form, "second")
    runs.cancel_run(services, first)

    table, pick, compare = runs.list_runs(services, runs.ALL, None)

    assert list(table["name"]) == ["second", "first"]
    assert list(table["status"]) == ["⏳ queued", "⏹ cancelled"]
    assert pick.value == second and [value for _, value in pick.choices] == [second, first]
    assert [value for _, value in compare.choices] == [second, first]

    table, pick, compare = runs.list_runs(services, "cancelled", second)
    assert list(table["id"]) == [first] and pick.value == first  # the chosen run is filtered out: newest listed
    assert len(compare.choices) == 2  # any run can still be compared
    table, pick, _ = runs.list_runs(services, "running", None)
    assert table.empty and pick.value is None and list(table.columns) == runs.LIST_COLUMNS


def test_opening_the_tab_jumps_to_a_run_started_since_the_last_look(services: Services, train_form) -> None:
    first = queue(services, train_form, "first")
    second = queue(services, train_form, "second")

    _, pick, _, newest = runs.show_runs(services, runs.ALL, None, None)
    assert pick.value == second == newest
    _, pick, _, newest = runs.show_runs(services, runs.ALL, first, newest)  # the user chose an older run
    assert pick.value == first and newest == second

    third = queue(services, train_form, "third")  # e.g. from the Train tab, then back to Runs
    _, pick, _, newest = runs.show_runs(services, runs.ALL, first, newest)
    assert pick.value == third == newest


def test_a_queued_run_shows_its_status_and_cancels_at_once(services: Services, train_form) -> None:
    run_id = queue(services, train_form, "waiting")

    shown = runs.show_run(services, run_id)
    assert "⏳ queued" in shown.status and "waiting for its devices" in shown.status
    assert shown.cancel_button.interactive is True and shown.resume_button.interactive is False
    assert shown.spec["adapter_name"] == "waiting" and shown.spec["training"]["max_steps"] == 4

    assert runs.cancel_run(services, run_id).startswith("Cancelled the queued run")
    shown = runs.show_run(services, run_id)
    assert "⏹ cancelled" in shown.status
    assert shown.cancel_button.interactive is False and shown.resume_button.interactive is True
    assert shown.error.visible and "Cancelled" in shown.error.value
    with pytest.raises(gr.Error, match="no checkpoint"):  # it never trained, so there is nothing to resume
        runs.resume_run(services, run_id)
    with pytest.raises(gr.Error, match="already cancelled"):
        runs.cancel_run(services, run_id)


def test_method_charts_show_for_dpo_and_grpo_runs_only(services: Services, train_form) -> None:
    sft = runs.show_run(services, queue(services, train_form, "plain-sft"))
    grpo_id = queue(services, train_form, "rewarded", method="grpo", rewards=[[True, "exact_match", 1.0, "", ""]])
    with services.db.transaction() as tx:
        tx.metric_points.add_many(
            [
                {"run_id": grpo_id, "step": 1, "name": name, "value": value, "time": 1.0}
                for name, value in {"reward": 0.5, "reward_std": 0.1, "kl": 0.01}.items()
            ]
        )

    grpo = runs.show_run(services, grpo_id)

    assert sft.method_chart.visible is False and sft.method_detail_chart.visible is False
    assert grpo.method_chart.visible is True and grpo.method_detail_chart.visible is True
    assert grpo.method_chart.value is not None and grpo.method_detail_chart.value is not None


def test_the_timer_redraws_only_what_changed(services: Services, train_form) -> None:
    run_id = queue(services, train_form, "waiting")

    view, listing = split(runs.poll_run(services, run_id, None, runs.ALL))  # nothing drawn yet: all of it
    assert view.drawn.run_id == run_id and view.drawn.status == "queued" and listing.pick != SKIP
    quiet, listing = split(runs.poll_run(services, run_id, view.drawn, runs.ALL))  # no new events
    assert "⏳ queued" in quiet.status and quiet.log == SKIP and quiet.drawn == SKIP
    assert all(value == SKIP for value in listing)

    runs.cancel_run(services, run_id)
    moved, listing = split(runs.poll_run(services, run_id, view.drawn, runs.ALL))
    assert "⏹ cancelled" in moved.status and listing.pick != SKIP  # a new status: the picker's icon too
    assert all(value == SKIP for value in runs.poll_run(services, run_id, moved.drawn, runs.ALL))  # finished


def test_nothing_chosen_shows_where_runs_come_from(services: Services) -> None:
    shown = runs.show_run(services, None)

    assert "Train" in shown.status and shown.cancel_button.interactive is False and shown.method_chart.visible is False
    assert all(value == SKIP for value in runs.poll_run(services, None, None, runs.ALL))


def test_compare_lists_only_the_settings_that_differ(services: Services, train_form) -> None:
    a = queue(services, train_form, "lr-high", learning_rate=3e-3)
    b = queue(services, train_form, "lr-low", learning_rate=1e-4, lora_r=8)

    figure, differences = runs.compare_runs(services, [a, b])

    assert list(differences["setting"]) == ["adapter_name", "lora.r", "training.learning_rate"]
    assert list(differences.iloc[2, 1:]) == ["0.003", "0.0001"]
    assert len(figure.data) == 0  # queued runs have no loss yet: the chart waits
    assert differences.columns[1].endswith(a[:8]) and differences.columns[2].endswith(b[:8])


def test_compare_refuses_a_run_that_is_not_a_training_run(services: Services, train_form) -> None:
    """The API takes any ids: an evaluation's has no loss curve or training settings to set beside a training run's."""
    a = queue(services, train_form, "trained")
    other = queue(services, train_form, "other")
    with services.db.transaction() as tx:
        tx.runs.update(other, kind="evaluation")

    with pytest.raises(gr.Error, match=f"run {other} is a run of kind evaluation; only training runs are compared"):
        runs.compare_runs(services, [a, other])


def test_spec_differences_count_a_missing_section_as_different() -> None:
    table = spec_differences(
        {
            "lora run": {"run_id": "1", "training_mode": "lora", "lora": {"r": 16}, "training": {"seed": 1}},
            "full run": {"run_id": "2", "training_mode": "full", "lora": {}, "training": {"seed": 1}},
        }
    )

    assert table.set_index("setting").to_dict("index") == {
        "lora": {"lora run": "—", "full run": "{}"},
        "lora.r": {"lora run": "16", "full run": "—"},
        "training_mode": {"lora run": "lora", "full run": "full"},
    }


@pytest.mark.slow
def test_a_cpu_run_started_from_the_train_tab_ends_on_the_runs_tab(services: Services, train_form) -> None:
    run_id = queue(services, train_form, "tiny-intents")
    before = runs.show_run(services, run_id)
    assert before.loss_chart.layout.annotations  # "waiting for the first step"

    # A page polling while the run trains: what each tick would put on screen.
    page = {"drawn": before.drawn, "statuses": []}

    def tick(_run) -> None:
        out, _ = split(runs.poll_run(services, run_id, page["drawn"], runs.ALL))
        if out.drawn != SKIP:
            page["drawn"] = out.drawn
        if out.status != SKIP:
            page["statuses"].append(out.status)

    final = services.runs.wait(run_id, timeout_s=240, on_tick=tick)

    assert final.status == "succeeded", final.error_text
    # Four tiny steps may all land between two ticks; the start (torch's import alone) cannot.
    assert any("▶ running" in status for status in page["statuses"])
    # The timer's next tick notices the change: a new view, and the table with the new status.
    shown, listing = split(runs.poll_run(services, run_id, before.drawn, runs.ALL))
    table = listing.table
    assert "✅ succeeded" in shown.status and "step 4 of 4" in shown.status
    loss = next(trace for trace in shown.loss_chart.data if trace.name == "train loss")
    assert list(loss.x) == [1, 2, 3, 4]
    assert [trace.name for trace in shown.loss_chart.data] == ["train loss", "eval loss"]
    assert len(shown.lr_chart.data[0].x) == 4 and len(shown.speed_chart.data[0].x) == 4
    assert "JOB_DONE" in shown.log
    assert "Produced adapter:** `tiny-intents`" in shown.produced
    assert shown.cancel_button.interactive is False and shown.error.visible is False
    assert list(table["status"]) == ["✅ succeeded"]
    # Once the finished run is on screen, further ticks do nothing.
    assert all(value == SKIP for value in runs.poll_run(services, run_id, shown.drawn, runs.ALL))

    # The adapter's lineage carries the run and its final losses; Home lists it as recent.
    listed = adapters.list_adapters(services)[0].iloc[0]
    assert listed["run"] == f"tiny-intents · {run_id[:8]}" and listed["prompt"] == "intent-prompt"
    assert float(listed["train loss"]) > 0 and float(listed["eval loss"]) > 0
    assert "| tiny-intents | tiny |" in home.activity_summary(services)


def test_a_failed_run_says_why_above_the_log_instead_of_repeating_it() -> None:
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    run = SimpleNamespace(
        id="946fd1cc-9d58-47cb-8f64-71e9cfa46933",
        name="oom-demo",
        kind="finetune",
        status="failed",
        step=14,
        total_steps=40,
        eta_s=None,
        gpus="0",
        devices_requested="auto",
        created_at=started,
        started_at=started,
        finished_at=started + timedelta(seconds=75),
        parent_run_id=None,
        mlflow_run_id=None,
        error_cause="out of GPU memory",
        error_text=failure_text("CUDA out of memory.", "halve per_device_train_batch_size", "FINETUNE_PROGRESS {}"),
    )

    error = runs.error_markdown(run)
    status = runs.status_markdown(run)

    assert error.visible and "Why it failed: out of GPU memory" in error.value
    assert "Suggestion: halve" in error.value and "FINETUNE_PROGRESS" not in error.value
    assert "❌ failed" in status and "step 14 of 40" in status and "ran 1 min 15 s" in status
    assert "ETA" not in status and "devices **0**" in status


def test_compare_offers_only_runs_with_loss_curves(services: Services, train_form, registered) -> None:
    tuned = queue(services, train_form, "tuned")
    served = services.serving.submit(ServeRequest(registered.model_id, "", gpus="cpu", engine="transformers"))

    listing = runs.list_runs(services, runs.ALL, None)

    assert {value for _, value in listing.pick.choices} == {tuned, served.id}  # every run can be followed
    assert [value for _, value in listing.compare.choices] == [tuned]


def test_a_stopped_server_reads_stopped_and_offers_neither_cancel_nor_resume(services: Services, registered) -> None:
    served = services.serving.submit(ServeRequest(registered.model_id, "", gpus="cpu", engine="transformers"))
    with services.db.transaction() as tx:
        tx.runs.update(served.id, status="running", cancel_requested_at=utc_now())  # asked to stop, still shutting down

    stopping = runs.show_run(services, served.id)
    assert stopping.cancel_button.interactive is False  # nothing left to cancel

    with services.db.transaction() as tx:
        tx.runs.update(served.id, status="cancelled", finished_at=utc_now())
    stopped = runs.show_run(services, served.id)
    assert "⏹ cancelled" in stopped.status and stopped.error.visible and "Stopped on request" in stopped.error.value
    assert "Resume" not in stopped.error.value and stopped.resume_button.interactive is False


def test_the_log_shows_progress_as_readable_lines(services: Services, train_form) -> None:
    run_id = queue(services, train_form, "logged")
    run = services.runs.get(run_id)
    log = Path(run.run_dir) / "trainer.log"
    log.write_text(
        "setup: imports took 6.8s\n"
        'FINETUNE_PROGRESS {"step": 20, "total_steps": 100, "loss": 1.2341, "lr": 0.0002, "tokens_per_s": 3100.4, "eta_s": 12}\n'
        "FINETUNE_PROGRESS {not json\n",
        encoding="utf-8",
    )
    with services.db.transaction() as tx:
        tx.runs.update(run_id, log_path=str(log))

    shown = runs.show_run(services, run_id).log

    assert shown.splitlines() == [
        "setup: imports took 6.8s",
        "step 20/100 · loss 1.234 · lr 0.0002 · 3,100 tokens/s · ETA 12 s",
        "FINETUNE_PROGRESS {not json",  # a line that does not parse is shown as written
    ]
