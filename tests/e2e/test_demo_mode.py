"""The public demo (FTAPP_DEMO=1, as on Hugging Face Spaces): launch.py on a temp home, two visitors.

Two browser contexts are two visitors (each keeps its own cookie): what one uploads the other never
sees, and a reload keeps it. The caps show in the Train tab (DM-002 steps, DM-003 one job at a
time) and on upload (DM-001 rows). Server paths, Hub ids and the host's token are refused through
the app's HTTP API (gradio_client, as any script could call it), and custom reward code through the
visitor's services on the same home (the Train tab offers no custom code at all).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ftapp.demo.policy import DemoCaps
from ftapp.demo_kit import DEMO_DATASET, DEMO_MODEL, DEMO_PROMPT
from ftapp.errors import ValidationError
from ftapp.runs.fine_tune_request import FineTuneRequest
from ftapp.services import open_services
from ftapp.settings import Settings
from ftapp.visitors import demo_services, services_for_key
from tests.e2e.browser import UI_LIMIT_MS, expect

pytestmark = pytest.mark.browser

CAPS = DemoCaps()


def shows(target) -> None:
    expect(target).to_be_visible(timeout=UI_LIMIT_MS)


def counts(target, count: int) -> None:
    expect(target).to_have_count(count, timeout=UI_LIMIT_MS)


class Visitor:
    """One browser context: its own cookie jar, so its own visitor."""

    def __init__(self, browser, url: str, shots: Path, name: str):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(UI_LIMIT_MS)
        self.url, self.shots, self.name = url, shots, name
        self.page.goto(url)

    def tab(self, name: str) -> None:
        tab = self.page.get_by_role("tab", name=name, exact=True)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")

    def visible(self, locator):
        return locator.filter(visible=True).first

    def row(self, text: str):
        cell = self.page.get_by_role("gridcell", name=text, exact=True)
        return self.page.get_by_role("row").filter(has=cell).filter(visible=True)

    def upload(self, path: Path) -> None:
        self.tab("Datasets")
        self.page.locator('input[type="file"][accept*=".jsonl"]').set_input_files(str(path))
        shows(self.visible(self.page.get_by_role("cell", name=path.name, exact=True)))  # listed: the upload is done
        self.visible(self.page.get_by_role("button", name="Import the upload", exact=True)).click()

    def error(self, rule: str):
        """gradio's error toast naming ``rule``."""
        return self.visible(self.page.get_by_text(re.compile(re.escape(rule) + ":")))

    def choose(self, elem_id: str, option: str | re.Pattern) -> None:
        field = self.page.locator(f"#{elem_id} input")
        field.click()
        self.visible(self.page.get_by_role("option", name=option, exact=isinstance(option, str) or None)).click()

    def train_form(self, adapter: str, max_steps: int) -> None:
        self.tab("Train")
        self.choose("train-model", DEMO_MODEL)
        self.choose("train-dataset", re.compile("^" + re.escape(f"{DEMO_DATASET} (")))
        self.choose("train-prompt", DEMO_PROMPT)
        self.page.locator("#train-adapter-name").locator("textarea, input").first.fill(adapter)
        steps = self.page.locator("#train-max-steps input")
        steps.fill(str(max_steps))
        steps.press("Tab")

    def shot(self, name: str, of=None) -> None:
        """The whole page, or only ``of`` (an error toast floats over the page and leaves page shots fast)."""
        path = str(self.shots / f"demo-{self.name}-{name}.png")
        (of or self.page).screenshot(path=path, **({} if of else {"full_page": True}))

    def close(self) -> None:
        self.context.close()


def jsonl(folder: Path, name: str, rows: int) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps({"instruction": f"question {i}", "output": f"answer {i}"}) + "\n" for i in range(rows)))
    return path


def test_two_visitors_see_only_their_own_uploads_and_meet_the_caps(demo_studio, browser, shots: Path, tmp_path: Path):
    alice, bob = Visitor(browser, demo_studio.url, shots, "alice"), Visitor(browser, demo_studio.url, shots, "bob")
    try:
        expect(alice.page.locator("#demo-notice")).to_contain_text("Public demo", timeout=UI_LIMIT_MS)
        alice.upload(jsonl(tmp_path, "alice-intents.jsonl", 5))
        shows(alice.visible(alice.page.get_by_text("Imported alice-intents")))
        counts(alice.row("alice-intents"), 1)
        alice.shot("uploaded")

        bob.tab("Datasets")
        counts(bob.row(DEMO_DATASET), 1)  # the shared demo dataset
        counts(bob.row("alice-intents"), 0)
        counts(bob.page.get_by_role("tab", name="Local path"), 0)  # uploads only
        bob.shot("datasets")
        bob.upload(jsonl(tmp_path, "too-many.jsonl", CAPS.max_dataset_rows + 1))
        shows(bob.error("DM-001"))
        bob.shot("row-cap", of=bob.error("DM-001"))

        alice.page.reload()
        alice.tab("Datasets")
        counts(alice.row("alice-intents"), 1)  # the cookie outlives the page

        alice.train_form("alice-too-long", CAPS.max_train_steps * 10)
        alice.page.locator("#train-preflight").click()
        expect(alice.page.locator("#train-preflight-result")).to_contain_text("DM-002", timeout=UI_LIMIT_MS)
        alice.shot("step-cap")
        alice.train_form("alice-short", 3)
        alice.page.locator("#train-start").click()
        expect(alice.page.locator("#train-start-result")).to_contain_text("Queued run", timeout=UI_LIMIT_MS)
        alice.train_form("alice-second", 3)
        alice.page.locator("#train-start").click()
        shows(alice.error("DM-003"))  # one job at a time: the first has not finished
        alice.shot("one-job-at-a-time", of=alice.error("DM-003"))
    except BaseException:
        alice.shot("failed")
        bob.shot("failed")
        raise
    finally:
        alice.close()
        bob.close()


def test_server_paths_the_hub_the_token_and_custom_code_are_refused(demo_studio, tmp_path: Path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    carol = Client(demo_studio.url, headers={"Cookie": "ftapp_visitor=carol-key"}, verbose=False)
    refused = {
        "DS-003": lambda: carol.predict(str(demo_studio.home / "ftapp.db"), "db", "", api_name="/import_path"),
        "DM-006": lambda: carol.predict("tatsu-lab/alpaca", "", "train", "alpaca", "", api_name="/import_hub"),
        "DM-007": lambda: carol.predict("hf_" + "x" * 34, api_name="/save_token"),
    }
    for rule, call in refused.items():
        with pytest.raises(AppError, match=rule):
            call()

    # Custom reward code: the Train tab offers none, so the request goes to the visitor's own services
    # on the running app's home, the path every Train handler takes.
    settings = Settings(home=demo_studio.home, demo=True, allowed_roots=(tmp_path,), mlflow_enabled=False)
    services = open_services(settings)
    try:
        visitor = services_for_key(demo_services(services), "carol-key")
        shared = {d.name: d for d in visitor.datasets.list()}[DEMO_DATASET]
        reward = tmp_path / "reward.py"
        reward.write_text("def reward(completions, **kwargs):\n    return [0.0 for _ in completions]\n")
        request = FineTuneRequest(
            base_model_id=visitor.models.list()[0].id,
            dataset_id=shared.id,
            prompt_id=visitor.prompts.list(shared.id)[0].id,
            adapter_name="carol-grpo",
            method="grpo",
            gpus="cpu",
            rewards=({"kind": "custom_python", "code_path": str(reward)},),
        )
        with pytest.raises(ValidationError) as caught:
            visitor.runs.submit(request)
        assert "FT-018" in caught.value.rule_ids
        assert not [r for r in visitor.runs.list() if r.name == "carol-grpo"]
    finally:
        services.close()
