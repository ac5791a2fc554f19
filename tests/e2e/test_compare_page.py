"""The Compare page in a real browser: two adapters stream side by side, then a blind A/B vote is stored.

launch.py runs on a fresh home (conftest.py); the demo kit and two LoRA adapters with random
weights (they ramble for hundreds of tokens, so the stream lasts long enough to watch) are
registered into that home by this test process, as the CLI would. Generation runs in the app's
real inference worker on the CPU. Screenshots go to $FTAPP_E2E_SHOTS, else a pytest temporary folder.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftapp.datasets.service import AddDatasetRequest
from ftapp.models.adapters import AddAdapterRequest
from ftapp.models.service import AddModelRequest
from ftapp.prompts.service import AddPromptRequest
from ftapp.services import open_services
from ftapp.settings import Settings
from tests.e2e.browser import UI_LIMIT_MS, expect

pytestmark = pytest.mark.browser

MODEL, DATASET, PROMPT = "e2e-tiny", "e2e-intents", "e2e-intent-prompt"
ADAPTERS = ("e2e-random-a", "e2e-random-b")
MAX_NEW_TOKENS = 300
ANSWER_LIMIT_MS = 180_000  # the first Generate starts the worker: python, torch, the model (~15-30 s on 2 cores)
# Runs in the page every 20 ms: each output's text length and whether the status says done yet.
WATCH_OUTPUTS = """
() => {
  window.__e2eSamples = [];
  window.__e2eTimer = setInterval(() => {
    const length = (i) => (document.querySelector(`#compare-output-${i} textarea`) || {value: ''}).value.length;
    const status = (document.querySelector('#compare-status') || {innerText: ''}).innerText;
    window.__e2eSamples.push({t: Date.now(), a: length(0), b: length(1), done: status.includes('Done')});
  }, 20);
}
"""


@dataclass(frozen=True)
class Stocked:
    model_id: str
    adapter_ids: tuple[str, ...]


@pytest.fixture(scope="module")
def stocked(studio, demo_kit, random_adapter) -> Stocked:
    """The demo kit and two random adapters registered in the running studio's home (another process, one database)."""
    import torch

    services = open_services(Settings.from_env(studio.home))
    try:
        model = services.models.add(AddModelRequest(type="project", name=MODEL, location=str(demo_kit.model_dir)))
        dataset = services.datasets.add(AddDatasetRequest(name=DATASET, location=str(demo_kit.dataset_path)))
        services.prompts.add(
            AddPromptRequest(
                name=PROMPT,
                dataset_id=dataset.id,
                prompt_template=demo_kit.prompt["prompt_template"],
                input_template=demo_kit.prompt["input_template"],
                completion_template=demo_kit.prompt["completion_template"],
            )
        )
        adapters = []
        for seed, name in zip((41, 42), ADAPTERS):
            torch.manual_seed(seed)  # PEFT draws lora_A from the global generator: the same adapters every run
            adapters.append(
                services.adapters.add(AddAdapterRequest(name=name, model_id=model.id, location=str(random_adapter(seed, scale=2.0))))
            )
        return Stocked(model.id, tuple(a.id for a in adapters))
    finally:
        services.close()


def by_id(page, elem_id: str):
    return page.locator(f"#{elem_id}")


def pick(page, elem_id: str, *options: str) -> None:
    """Choose ``options`` in a gradio dropdown; a multiple-choice list stays open until Escape."""
    by_id(page, elem_id).locator("input").first.click()
    for option in options:
        page.get_by_role("option", name=option, exact=True).filter(visible=True).first.click()
    page.keyboard.press("Escape")


def set_number(page, elem_id: str, value: int) -> None:
    field = by_id(page, elem_id).locator("input").first
    field.fill(str(value))
    field.press("Tab")


def shot(page, shots: Path, name: str) -> Path:
    path = shots / f"compare-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"[e2e] screenshot {path}")
    return path


def stream_two_adapters(page, shots: Path) -> None:
    """Two adapters, no base: both columns fill while the status still says generating."""
    page.get_by_role("tab", name="Compare", exact=True).click()
    # The only model is chosen already (choosing it again would reset the adapters while we pick them).
    expect(by_id(page, "compare-model").locator("input")).to_have_value(MODEL, timeout=UI_LIMIT_MS)
    expect(by_id(page, "compare-worker")).to_contain_text(f"No inference worker for {MODEL}", timeout=UI_LIMIT_MS)
    pick(page, "compare-adapters", *ADAPTERS)
    for name in ADAPTERS:
        expect(by_id(page, "compare-adapters")).to_contain_text(name)
    by_id(page, "compare-include-base").get_by_role("checkbox").uncheck()
    # The prompt comes from a dataset row, through the prompt's input template.
    page.get_by_text("Take the prompt from a dataset row").click()
    pick(page, "compare-dataset", DATASET)
    expect(by_id(page, "compare-template").locator("input")).to_have_value(PROMPT)
    set_number(page, "compare-row", 2)
    by_id(page, "compare-sample").click()
    prompt = by_id(page, "compare-prompt").locator("textarea")
    expect(prompt).to_have_value(re.compile(r"^### Request:\n.+\n### Intent:\n$"), timeout=UI_LIMIT_MS)
    set_number(page, "compare-max-new-tokens", MAX_NEW_TOKENS)
    shot(page, shots, "ready")

    page.evaluate(WATCH_OUTPUTS)
    started = time.monotonic()
    by_id(page, "compare-generate").click()
    status = by_id(page, "compare-status")
    expect(status).to_contain_text("Done", timeout=ANSWER_LIMIT_MS)
    print(f"[e2e] Generate → done (worker start-up included): {time.monotonic() - started:.1f} s")
    samples = page.evaluate("() => { clearInterval(window.__e2eTimer); return window.__e2eSamples; }")
    streaming = [s for s in samples if not s["done"]]
    for key, name in (("a", ADAPTERS[0]), ("b", ADAPTERS[1])):
        seen = [s[key] for s in streaming if s[key] > 0]
        # Sampled at least twice with text before done; never shrinking (an answer may end early, at EOS).
        assert len(seen) >= 2 and seen == sorted(seen), f"{name}: {seen[:20]}"
    assert any(s["a"] > 0 and s["b"] > 0 for s in streaming), "the two outputs never filled at the same time"
    growing = max(len({s["a"] for s in streaming}), len({s["b"] for s in streaming}))
    assert growing >= 3, "no output was seen growing token by token before done"
    print(
        f"[e2e] {len(samples)} samples; lengths seen growing: {len({s['a'] for s in samples})} / {len({s['b'] for s in samples})} distinct"
    )
    for index, name in enumerate(ADAPTERS):
        expect(by_id(page, f"compare-output-{index}")).to_contain_text(name)  # the column's label
    expect(status).to_contain_text(f"greedy · max {MAX_NEW_TOKENS} new tokens · seed 0")
    expect(by_id(page, "compare-output-2")).to_be_hidden()
    expect(by_id(page, "compare-worker")).to_contain_text("ready", timeout=UI_LIMIT_MS)
    shot(page, shots, "streamed")


def vote_blind(page, shots: Path, studio) -> None:
    """Base + both adapters, blind: labels A/B/C until the vote, which is stored and reveals the names."""
    by_id(page, "compare-include-base").get_by_role("checkbox").check()
    by_id(page, "compare-blind").get_by_role("checkbox").check()
    set_number(page, "compare-max-new-tokens", 40)
    by_id(page, "compare-generate").click()
    # "Done" alone could still be the first comparison's status; a blind one's says so.
    expect(by_id(page, "compare-status")).to_contain_text("blind", timeout=ANSWER_LIMIT_MS)
    expect(by_id(page, "compare-status")).to_contain_text("Done")
    for index, label in enumerate("ABC"):
        column = by_id(page, f"compare-output-{index}")
        expect(column).to_contain_text(label)
        for name in ADAPTERS:
            expect(column).not_to_contain_text(name)
    vote = by_id(page, "compare-vote-1")
    expect(vote).to_be_enabled()
    shot(page, shots, "blind")
    vote.click()
    result = by_id(page, "compare-vote-result")
    expect(result).to_contain_text("Vote stored: B", timeout=UI_LIMIT_MS)
    expect(result).to_contain_text("Revealed")
    expect(by_id(page, "compare-output-1")).to_contain_text("B = ")
    expect(vote).to_be_disabled()
    shot(page, shots, "voted")

    services = open_services(Settings.from_env(studio.home))
    try:
        votes = services.comparisons.votes()
    finally:
        services.close()
    assert [(v.blind, v.winner) for v in votes] == [(True, "B")]
    assert [c["label"] for c in json.loads(votes[0].candidates)] == ["A", "B", "C"]


def stop_the_worker(page) -> None:
    by_id(page, "compare-stop-worker").click()
    expect(by_id(page, "compare-stop-result")).to_contain_text("Stopping the worker", timeout=UI_LIMIT_MS)
    expect(by_id(page, "compare-worker")).to_contain_text("No inference worker", timeout=UI_LIMIT_MS)


def test_the_compare_page_streams_two_outputs_side_by_side(page, studio, stocked, shots) -> None:
    page.goto(studio.url)
    stream_two_adapters(page, shots)
    vote_blind(page, shots, studio)
    stop_the_worker(page)
