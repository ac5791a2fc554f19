"""The Evaluate tab in a real browser: start an evaluation of base + adapter, watch rows arrive live."""

from __future__ import annotations

import time

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.services import open_services
from ftapp.settings import Settings

pytestmark = pytest.mark.browser

# 160 one-row batches: answers arrive over 10 s or more, one batch at a time, even on an idle fast
# machine (48 rows in batches of 2 could finish between two 1 s polls of the page).
ROWS, BATCH = 160, 1
LIVE_LIMIT_S = 150
ROW_COUNT = "() => document.querySelectorAll('#eval-rows-table tr.eval-row').length"


@pytest.fixture(scope="module")
def registered_home(studio, demo_kit, random_adapter):
    """The demo model, dataset and prompt plus one adapter, registered in the running studio's home."""
    services = open_services(Settings.from_env(studio.home))
    try:
        model = services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
        dataset = services.datasets.add(AddDatasetRequest(name="intents", location=str(demo_kit.dataset_path)))
        services.prompts.add(
            AddPromptRequest(
                name="intent-prompt",
                dataset_id=dataset.id,
                prompt_template=demo_kit.prompt["prompt_template"],
                input_template=demo_kit.prompt["input_template"],
                completion_template=demo_kit.prompt["completion_template"],
            )
        )
        services.adapters.add(AddAdapterRequest(name="random-lora", model_id=model.id, location=str(random_adapter(7))))
    finally:
        services.close()
    return studio


def fill_numbers(page, values: dict[str, int], attempts: int = 3) -> None:
    """Type each number field's value and check they all hold it before going on. A field typed into while the
    accordion that holds it is still being drawn can be set back to its default (seen: max rows back at 0, so the
    evaluation ran every row of the dataset); what is typed then is typed again."""
    for _ in range(attempts):
        for elem_id, value in values.items():
            field = page.locator(f"#{elem_id} input")
            if field.input_value() != str(value):
                field.fill(str(value))
                field.press("Tab")
        page.wait_for_timeout(300)
        if all(page.locator(f"#{elem_id} input").input_value() == str(value) for elem_id, value in values.items()):
            return
    raise AssertionError({elem_id: page.locator(f"#{elem_id} input").input_value() for elem_id in values})


def test_rows_appear_while_the_evaluation_runs(page, registered_home, shots):
    page.goto(registered_home.url)
    page.get_by_role("tab", name="Evaluate").click()
    # The tab fills its choices when shown; choosing before that lands would be overwritten.
    page.wait_for_function("() => document.querySelector('#eval-prompt input')?.value === 'intent-prompt'")
    page.locator("#eval-adapters input").click()
    page.get_by_role("option", name="random-lora").click()
    page.locator("#eval-status").click()  # close the dropdown
    page.get_by_text("Rows and generation").click()
    fill_numbers(page, {"eval-max-rows": ROWS, "eval-batch-size": BATCH, "eval-max-new-tokens": 8})
    page.locator("#eval-start").click()
    page.get_by_text("Queued evaluation").wait_for()

    seen_while_running: list[int] = []
    deadline = time.monotonic() + LIVE_LIMIT_S
    while time.monotonic() < deadline:
        status = page.locator("#eval-status").inner_text()
        count = page.evaluate(ROW_COUNT)
        if "running" in status and count and count not in seen_while_running:
            seen_while_running.append(count)
            if len(seen_while_running) == 2:
                page.screenshot(path=str(shots / "evaluate-live.png"), full_page=True)
        if "succeeded" in status or "failed" in status:
            break
        time.sleep(0.3)
    print(f"\n[e2e] answered rows seen while the evaluation ran: {seen_while_running}")
    assert "succeeded" in page.locator("#eval-status").inner_text(), page.locator("#eval-status").inner_text()
    assert len(seen_while_running) >= 2 and seen_while_running == sorted(seen_while_running), seen_while_running
    assert 0 < seen_while_running[0] < ROWS, "rows should show before the last batch is answered"
    page.wait_for_function(f"() => ({ROW_COUNT})() === {ROWS}")
    assert page.locator("#eval-aggregate-table").inner_text().count("random-lora") == 1
    assert "accuracy" in page.locator("#eval-aggregate-table").inner_text()
    headers = page.locator("#eval-rows-table tr").first.inner_text()
    assert "#1 tiny" in headers and "#2 random-lora" in headers
    page.screenshot(path=str(shots / "evaluate-done.png"), full_page=True)
