"""The Runs page in a real browser (issue 16, items 4 and 6): a reload lands on the tab and run that were on screen,
a cancel asks first (dismissed: the run goes on; accepted: it stops), and stop buttons with nothing to stop are dead.

Two CPU fine-tunes are submitted into the running studio's home by this test process, as the CLI would: the first
trains, the second waits for the CPU. Screenshots go to $FTAPP_E2E_SHOTS, else a pytest temporary folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.services import open_services
from ftapp.settings import Settings
from tests.e2e.browser import UI_LIMIT_MS, expect

pytestmark = pytest.mark.browser

START_LIMIT_MS = 90_000  # queued → running: the app's supervisor launches the trainer
CANCEL_LIMIT_S = 60
# Long enough to be cancelled mid-run; no checkpoints or evals to slow the shared CPU down.
LONG = {"max_steps": 100_000, "logging_steps": 1, "eval_steps": 100_000, "save_steps": 100_000, "max_length": 64}


@dataclass(frozen=True)
class TwoRuns:
    training: str  # submitted first: it has the CPU
    waiting: str  # queued behind it, the newest run


@pytest.fixture(scope="module")
def two_runs(studio, demo_kit) -> TwoRuns:
    services = open_services(Settings.from_env(studio.home))
    try:
        model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
        dataset = services.datasets.add(AddDatasetRequest(name="intents", location=str(demo_kit.dataset_path)))
        prompt = services.prompts.add(
            AddPromptRequest(
                name="intent-prompt",
                dataset_id=dataset.id,
                prompt_template=demo_kit.prompt["prompt_template"],
                input_template=demo_kit.prompt["input_template"],
                completion_template=demo_kit.prompt["completion_template"],
            )
        )
        ids = [
            services.runs.submit(
                FineTuneRequest(
                    base_model_id=model.id, dataset_id=dataset.id, prompt_id=prompt.id, adapter_name=name, gpus="cpu", overrides=LONG
                )
            )[0].id
            for name in ("first-run", "second-run")
        ]
        return TwoRuns(*ids)
    finally:
        services.close()


def shot(page, shots: Path, name: str) -> None:
    path = shots / f"runs-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"[e2e] screenshot {path}")


def in_address(page, *parts: str) -> None:
    """Wait until the address bar holds every one of ``parts`` (``page.url`` lags behind history.replaceState)."""
    page.wait_for_function(f"() => {list(parts)!r}.every((part) => location.search.includes(part))", timeout=UI_LIMIT_MS)


def cancel_requested(studio, run_id: str) -> bool:
    services = open_services(Settings.from_env(studio.home))
    try:
        return services.runs.get(run_id).cancel_requested_at is not None
    finally:
        services.close()


def test_a_reload_keeps_the_run_and_a_cancel_asks_first(page, studio, two_runs: TwoRuns, shots: Path) -> None:
    page.goto(studio.url)
    page.get_by_role("tab", name="Runs", exact=True).click()
    status = page.locator("#runs-status")
    expect(status).to_contain_text(two_runs.waiting, timeout=UI_LIMIT_MS)  # the newest run is chosen
    page.locator("#runs-pick input").click()
    page.get_by_role("option").filter(has_text=two_runs.training[:8]).first.click()
    expect(status).to_contain_text(two_runs.training, timeout=UI_LIMIT_MS)
    in_address(page, "tab=runs", f"run={two_runs.training}")

    page.reload()
    expect(page.get_by_role("tab", name="Runs", exact=True)).to_have_attribute("aria-selected", "true", timeout=UI_LIMIT_MS)
    expect(status).to_contain_text(two_runs.training, timeout=UI_LIMIT_MS)  # not the newest: the one on screen before
    expect(status).to_contain_text("running", timeout=START_LIMIT_MS)
    shot(page, shots, "after-reload")

    cancel = page.locator("#runs-cancel")
    expect(cancel).to_be_enabled()
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    cancel.click()
    page.wait_for_timeout(2_000)  # whatever a click would do has reached the server by now
    assert asked and asked[0].startswith("Cancel this run?")
    assert not cancel_requested(studio, two_runs.training), "a dismissed confirmation cancelled the run"
    expect(status).to_contain_text("running")
    expect(page.locator(".toast-body")).to_have_count(0)  # no error for a choice the user made

    page.once("dialog", lambda dialog: dialog.accept())
    cancel.click()
    expect(page.locator("#runs-action-result")).to_contain_text("Asked the trainer to stop", timeout=UI_LIMIT_MS)
    expect(cancel).to_be_disabled(timeout=UI_LIMIT_MS)
    assert cancel_requested(studio, two_runs.training)
    deadline = time.monotonic() + CANCEL_LIMIT_S
    while "cancelled" not in status.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    expect(status).to_contain_text("cancelled")
    expect(page.locator("#runs-error")).to_contain_text("Resume continues")
    shot(page, shots, "cancelled")
    cancel_run(studio, two_runs.waiting)  # it has the CPU now; the next test needs none


def cancel_run(studio, run_id: str) -> None:
    services = open_services(Settings.from_env(studio.home))
    try:
        services.runs.cancel(run_id)
    finally:
        services.close()


def test_stop_buttons_are_dead_while_there_is_nothing_to_stop(page, studio, two_runs: TwoRuns, shots: Path) -> None:
    page.goto(studio.url)
    page.get_by_role("tab", name="Compare", exact=True).click()
    expect(page.locator("#compare-worker")).to_contain_text("No inference worker", timeout=UI_LIMIT_MS)
    expect(page.locator("#compare-stop-worker")).to_be_disabled()
    shot(page, shots, "compare-nothing-to-stop")
    page.get_by_role("tab", name="Serve", exact=True).click()
    expect(page.locator("#serve-status")).to_contain_text("No endpoint chosen", timeout=UI_LIMIT_MS)
    expect(page.locator("#serve-stop")).to_be_disabled()
    in_address(page, "tab=serve")
    shot(page, shots, "serve-nothing-to-stop")
