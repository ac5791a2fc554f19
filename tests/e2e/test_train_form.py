"""The Train form's papercuts in a real browser (issue 16): a cleared dataset stays cleared and Start names it, an
empty adapter name asks for one, a negative learning rate is ftapp's FT-009 (not gradio's bare range message), the
``ftapp train`` command follows the form, and a saved preset loads back into it.

The app is ``ui.build_app`` over real services on a fresh home with the demo kit registered, served from this
process. Screenshots go to $FTAPP_E2E_SHOTS, else a pytest temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ftapp.datasets import AddDatasetRequest
from ftapp.models import AddModelRequest
from ftapp.prompts import AddPromptRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from tests.e2e.browser import UI_LIMIT_MS, expect, served

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, demo_kit) -> Iterator[tuple[str, Services]]:
    services = open_services(Settings.from_env(tmp_path_factory.mktemp("train-form") / "home"))
    services.models.add(AddModelRequest(type="project", name="tiny", location=str(demo_kit.model_dir)))
    dataset = services.datasets.add(AddDatasetRequest(name="intents", location=str(demo_kit.dataset_path)))
    templates = {k: demo_kit.prompt[k] for k in ("prompt_template", "input_template", "completion_template")}
    services.prompts.add(AddPromptRequest(name="intent-prompt", dataset_id=dataset.id, **templates))
    with served(services) as url:
        yield url, services


@pytest.fixture(scope="module")
def train_page(browser, app_url) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=False)
    page = context.new_page()
    page.set_default_timeout(UI_LIMIT_MS)
    page.goto(app_url[0])
    page.get_by_role("tab", name="Train", exact=True).click()
    expect(page.locator("#train-dataset input")).to_have_value("intents (plain, 320 rows)")
    try:
        yield page
    finally:
        context.close()


def close_toasts(page) -> None:
    for close in page.locator(".toast-close").all():
        close.click()


def toast(page, rule: str):
    return page.locator(".toast-body").filter(has_text=rule)


def test_a_cleared_dataset_and_an_empty_name_are_named_by_start(train_page, app_url, shots: Path) -> None:
    page, services = train_page, app_url[1]
    expect(page.locator("#train-adapter-name")).to_contain_text("letters, digits and -")  # help that stays
    field = page.locator("#train-dataset input")
    field.click()
    field.press("Control+a")
    field.press("Delete")
    page.locator("#train-adapter-name textarea, #train-adapter-name input").first.click()  # leave the dropdown
    expect(field).to_have_value("")  # not the dataset it held before

    page.locator("#train-start").click()

    expect(toast(page, "FT-014")).to_contain_text("FT-014: choose a dataset to train on")
    expect(toast(page, "FT-014")).to_contain_text("FT-002: name the adapter: letters, digits and -")
    expect(toast(page, "FT-014")).not_to_contain_text("must match")
    page.screenshot(path=str(shots / "train-cleared-dataset-refused.png"), full_page=True)
    assert services.runs.list() == []
    close_toasts(page)


def test_a_negative_learning_rate_is_ftapps_to_refuse(train_page, shots: Path) -> None:
    page = train_page
    page.locator("#train-dataset input").click()
    page.get_by_role("option", name="intents (plain, 320 rows)", exact=True).filter(visible=True).first.click()
    rate = page.locator("#train-learning-rate input")
    rate.fill("-1")
    rate.press("Tab")

    page.locator("#train-preflight").click()

    expect(toast(page, "FT-009")).to_contain_text("FT-009: learning_rate must be a number > 0 and <= 1 (got -1")
    expect(page.locator(".toast-body").filter(has_text="minimum value")).to_have_count(0)
    toast(page, "FT-009").screenshot(path=str(shots / "train-negative-learning-rate.png"))
    close_toasts(page)
    rate.fill("0.003")
    rate.press("Tab")


def pick(page, elem_id: str, option: str) -> None:
    field = page.locator(f"#{elem_id} input").first
    field.click()
    page.get_by_role("option", name=option, exact=True).filter(visible=True).first.click()
    expect(field).to_have_value(option)


def test_the_command_follows_the_form_and_a_saved_preset_loads_back(train_page, app_url, shots: Path) -> None:
    page, services = train_page, app_url[1]
    steps, batch = page.locator("#train-max-steps input"), page.locator("#train-batch-size input")
    pick(page, "train-preset", "seed 001 defaults")  # the user's choice fills the fields from the configs
    expect(batch).to_have_value("1")
    page.locator("#train-adapter-name textarea, #train-adapter-name input").first.fill("e2e-adapter")
    steps.fill("12")
    steps.press("Tab")
    command = page.locator("#train-command")
    for option in ("--name e2e-adapter", "--set max_steps=12", "--lr 0.0002", "--preset 'seed 001 defaults'"):
        expect(command).to_contain_text(option)
    command.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "train-command.png"), full_page=True)

    page.locator("#train-preset-name textarea, #train-preset-name input").first.fill("e2e-recipe")
    page.locator("#train-save-preset").click()
    expect(page.locator("#train-preset-status")).to_contain_text("Saved the form as the preset e2e-recipe")
    pick(page, "train-preset", "modern default")
    expect(batch).to_have_value("8")
    expect(steps).to_have_value("-1")

    page.locator("#train-load-preset").click()

    # Loading sets the Preset picker too; its fields must not be filled from the configs over the preset's.
    expect(page.locator("#train-preset-status")).to_contain_text("Loaded e2e-recipe")
    expect(page.locator("#train-preset input")).to_have_value("seed 001 defaults")
    expect(steps).to_have_value("12")
    expect(batch).to_have_value("1")
    expect(command).to_contain_text("--set max_steps=12")
    page.screenshot(path=str(shots / "train-preset-loaded.png"), full_page=True)
    assert [p.name for p in services.training_presets.list()] == ["e2e-recipe"]
