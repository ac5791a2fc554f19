"""The studio end to end in a real browser: demo → dataset upload → prompt → train → runs → adapters → cancel.

One flow, in the order a first fine-tune needs it, against launch.py on a fresh home (see
conftest.py), training on the CPU. Each step saves a full-page screenshot (into
$FTAPP_E2E_SHOTS, else a pytest temporary directory) and prints its timing, so a slow or broken
step is visible in the CI log. Selectors: visible text and ARIA roles for the older tabs (they
have no elem_ids), the agreed elem_ids (#train-*, #runs-*) for Train and Runs.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import pytest

from ftapp.demo_kit import DEMO_DATASET, DEMO_MODEL, DEMO_PROMPT
from tests.conftest import TEST_DATA
from tests.e2e.browser import UI_LIMIT_MS, expect

pytestmark = pytest.mark.browser

ALPACA = TEST_DATA / "alpaca_en_demo.json"
ALPACA_NAME, ALPACA_ROWS = "alpaca_en_demo", 299
PROMPT_NAME = "alpaca-e2e-prompt"
ADAPTER_NAME, LONG_ADAPTER_NAME = "e2e-support-lora", "e2e-long-lora"
# 60 steps: 10-40 s of CPU training on 2 cores (0.15-0.65 s a step, depending on load); long
# enough to see the chart grow and to reload mid-run even when the machine is idle.
MAX_STEPS, LONG_MAX_STEPS = 120, 100_000  # 60 steps once ended before the page saw them live on an idle CI machine

DEMO_BUILD_LIMIT_MS = 180_000  # ~20-40 s on a 2-core machine; generous for a loaded CI runner
RUN_START_LIMIT_MS = 90_000  # queued → running → first step: trainer start-up, model and data loading
RUN_LIMIT_MS = 240_000  # the whole short CPU run
CANCEL_LIMIT_MS = 15_000
LIVE_POINTS = 3  # distinct, growing point counts seen while the status says running
STATUS_WORD = re.compile(r"\b(queued|running|succeeded|failed|cancelled)\b")
RUN_ID = re.compile(r"Queued run\s+`?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")

CHART_STEPS = """
() => {
  const plot = document.querySelector('#runs-loss-chart .js-plotly-plot');
  const trace = plot && plot.data ? plot.data.find(t => t.name === 'train loss') : null;
  return trace ? Array.from(trace.x || [], Number) : [];
}
"""
# Runs in the page: for every step the loss chart draws after this is installed, the time (ms since
# the epoch, the same clock as the trainer's event times) it first appeared. Steps already drawn
# at install are marked null: they say nothing about latency. The chart element is looked up on
# every tick, since gradio may replace it on an update.
WATCH_CHART = """
() => {
  const steps = CHART_STEPS;
  const seen = {};
  for (const step of steps()) seen[step] = null;
  window.__e2eChart = seen;
  window.__e2eChartTimer = window.__e2eChartTimer || setInterval(() => {
    const now = Date.now();
    for (const step of steps()) if (!(step in window.__e2eChart)) window.__e2eChart[step] = now;
  }, 25);
}
""".replace("CHART_STEPS", CHART_STEPS.strip())


def _contains(fragment: str) -> re.Pattern:
    return re.compile(re.escape(fragment))


def _starts(text: str) -> re.Pattern:
    return re.compile("^" + re.escape(text))


class Steps:
    """The page, where screenshots go, the timings to report, and the chart arrival times."""

    def __init__(self, page, shots: Path):
        self.page, self.shots = page, shots
        self.timings: dict[str, float] = {}
        self.chart_seen: dict[int, float] = {}  # step → epoch seconds the chart first drew it
        self._count = 0

    def shot(self, name: str) -> Path:
        self._count += 1
        path = self.shots / f"{self._count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def timed(self, name: str, started: float) -> float:
        self.timings[name] = round(time.monotonic() - started, 2)
        print(f"[e2e] {name}: {self.timings[name]:.2f} s")
        return self.timings[name]

    # -- widgets ------------------------------------------------------------------------------
    def open_tab(self, name: str) -> None:
        tab = self.page.get_by_role("tab", name=name, exact=True)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")

    def visible(self, locator):
        """The first visible match: hidden tabs keep their widgets in the page."""
        return locator.filter(visible=True).first

    def button(self, name: str):
        return self.visible(self.page.get_by_role("button", name=name, exact=True))

    def textbox(self, label: str):
        return self.visible(self.page.get_by_label(label, exact=True))

    def by_id(self, elem_id: str):
        return self.page.locator(f"#{elem_id}")

    def row(self, text: str):
        """The visible registry-table row with a cell that reads ``text`` (not the upload widget's file row)."""
        cell = self.page.get_by_role("gridcell", name=text, exact=True)
        return self.visible(self.page.get_by_role("row").filter(has=cell))

    def choose(self, field, option: str | re.Pattern) -> None:
        """Pick ``option`` (exact text, or a pattern) in a gradio dropdown: a combobox over a listbox."""
        field.click()
        exact = True if isinstance(option, str) else None
        self.visible(self.page.get_by_role("option", name=option, exact=exact)).click()
        expect(field).to_have_value(option)

    # -- the loss chart -----------------------------------------------------------------------
    def chart_steps(self) -> list[int]:
        return [int(step) for step in self.page.evaluate(CHART_STEPS)]

    def watch_chart(self) -> None:
        self.page.evaluate(WATCH_CHART)

    def collect_chart_times(self) -> None:
        """Keep what the in-page watcher saw (a reload wipes it)."""
        for step, ms in (self.page.evaluate("() => window.__e2eChart || {}") or {}).items():
            if ms is not None:
                self.chart_seen.setdefault(int(step), ms / 1000)


@pytest.fixture(scope="module")
def steps(page, studio, shots) -> Steps:
    page.goto(studio.url)
    print(f"[e2e] screenshots in {shots}")
    return Steps(page, shots)


# -- 1-3: demo, dataset, prompt --------------------------------------------------------------------
def build_the_demo(steps: Steps) -> None:
    """1. A fresh home: the Home tab's button builds the offline demo and registers model, dataset, prompt."""
    page = steps.page
    steps.open_tab("Home")
    expect(page.get_by_text("The registry is empty")).to_be_visible(timeout=UI_LIMIT_MS)
    steps.shot("home-empty")
    started = time.monotonic()
    steps.button("Build the offline demo").click()
    result = page.get_by_text("Built the demo model and registered").locator("..")
    expect(result).to_be_visible(timeout=DEMO_BUILD_LIMIT_MS)
    steps.timed("demo build (click → registered)", started)
    for name in (DEMO_MODEL, DEMO_DATASET, DEMO_PROMPT):
        expect(result).to_contain_text(name)
    # The registry summary refreshes after the build: one model, one dataset, one prompt.
    registry = page.locator("table").filter(has_text="Resource")
    for resource in ("Models", "Datasets", "Prompts"):
        expect(registry.locator("tr").filter(has_text=resource).locator("td").nth(1)).to_have_text("1")
    expect(page.get_by_text("The registry is empty")).to_have_count(0)
    steps.shot("home-demo-built")
    steps.open_tab("Models")
    expect(steps.row(DEMO_MODEL)).to_contain_text("LlamaForCausalLM", timeout=UI_LIMIT_MS)


def import_alpaca(steps: Steps) -> None:
    """2. The Datasets tab imports the alpaca sample through the upload widget: listed with 299 rows."""
    page = steps.page
    assert ALPACA.is_file(), f"the sample data {ALPACA} is missing"
    steps.open_tab("Datasets")
    expect(steps.row(DEMO_DATASET)).to_be_visible(timeout=UI_LIMIT_MS)
    started = time.monotonic()
    upload = page.locator('input[type="file"][accept*=".jsonl"]')  # the dataset upload (the Configs tab has a CSV one)
    expect(upload).to_have_count(1)
    upload.set_input_files(str(ALPACA))
    # The upload is done when the widget lists the file: a cell named after it (its text is split into stem and
    # extension; the file name as one text shows only while it uploads, which a busy machine can poll past).
    expect(steps.visible(page.get_by_role("cell", name=ALPACA.name, exact=True))).to_be_visible(timeout=UI_LIMIT_MS)
    steps.button("Import the upload").click()
    expect(steps.visible(page.get_by_text(f"Imported {ALPACA_NAME}"))).to_be_visible(timeout=UI_LIMIT_MS)
    row = steps.row(ALPACA_NAME)
    expect(row.get_by_role("gridcell", name=str(ALPACA_ROWS), exact=True)).to_be_visible(timeout=UI_LIMIT_MS)
    expect(row.get_by_role("gridcell", name="alpaca", exact=True)).to_be_visible()  # the detected format
    expect(row).to_contain_text(f"upload: {ALPACA.name}")
    steps.timed("dataset upload + import", started)
    steps.shot("datasets-alpaca-imported")


def write_a_prompt(steps: Steps) -> None:
    """3. The Prompts tab generates templates from alpaca's columns, previews real rows, saves and lists the prompt."""
    page = steps.page
    steps.open_tab("Prompts")
    expect(steps.row(DEMO_PROMPT)).to_be_visible(timeout=UI_LIMIT_MS)
    steps.choose(steps.textbox("Dataset"), ALPACA_NAME)
    steps.button("Generate from columns").click()
    expect(steps.visible(page.get_by_text("Generated from the columns"))).to_contain_text("output")
    expect(steps.textbox("Prompt template")).to_have_value(_contains("{instruction}"))
    expect(steps.textbox("Completion template")).to_have_value(_contains("{output}"))
    # The preview renders the first rows of the real data, completion highlighted.
    expect(steps.visible(page.get_by_text("Row 3", exact=True))).to_be_visible()
    expect(steps.visible(page.locator("pre mark"))).to_contain_text("crepes")  # alpaca row 1's output
    steps.shot("prompts-generated-preview")
    steps.textbox("Prompt name").fill(PROMPT_NAME)
    steps.button("Save prompt").click()
    expect(steps.visible(page.get_by_text(f"Saved prompt {PROMPT_NAME}"))).to_be_visible()
    expect(steps.row(PROMPT_NAME)).to_contain_text(ALPACA_NAME)
    steps.shot("prompts-saved")


# -- 4: train, follow, adapter, cancel --------------------------------------------------------------
def start_a_run(steps: Steps, adapter_name: str, max_steps: int) -> str:
    """The Train tab: demo model, dataset and prompt, LoRA on the CPU; preflight, start; returns the run id."""
    steps.open_tab("Train")
    steps.choose(steps.by_id("train-model").locator("input"), DEMO_MODEL)
    steps.choose(steps.by_id("train-dataset").locator("input"), _starts(f"{DEMO_DATASET} ("))
    steps.choose(steps.by_id("train-prompt").locator("input"), DEMO_PROMPT)  # filled from the chosen dataset
    steps.by_id("train-adapter-name").locator("textarea, input").first.fill(adapter_name)
    steps.by_id("train-mode").get_by_label("LoRA", exact=True).check()
    steps.choose(steps.by_id("train-devices").locator("input"), _starts("CPU ("))
    max_steps_field = steps.by_id("train-max-steps").locator("input")
    max_steps_field.fill(str(max_steps))
    max_steps_field.press("Tab")
    steps.by_id("train-preflight").click()
    preflight = steps.by_id("train-preflight-result")
    expect(preflight).to_contain_text("fits on cpu", timeout=UI_LIMIT_MS)
    steps.by_id("train-start").click()
    started = steps.by_id("train-start-result")
    expect(started).to_contain_text("Queued run", timeout=UI_LIMIT_MS)
    expect(started).to_contain_text(adapter_name)
    match = RUN_ID.search(started.inner_text())
    assert match, f"no run id in the start result: {started.inner_text()!r}"
    steps.shot(f"train-started-{adapter_name}")
    return match.group(1)


def run_events(home: Path, run_id: str) -> list[dict]:
    path = home / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def follow_the_run(steps: Steps, run_id: str) -> None:
    """4a. The Runs tab follows the run live: the loss chart grows while it runs, survives a reload, ends succeeded."""
    page = steps.page
    steps.open_tab("Runs")
    status = steps.by_id("runs-status")
    expect(status).to_contain_text(run_id, timeout=UI_LIMIT_MS)  # the newest run is picked
    steps.watch_chart()
    started = time.monotonic()
    expect(status).to_contain_text("running", timeout=RUN_START_LIMIT_MS)
    counts: list[int] = []
    deadline = time.monotonic() + RUN_START_LIMIT_MS / 1000
    while time.monotonic() < deadline and "running" in status.inner_text():
        count = len(steps.chart_steps())
        if count and (not counts or count != counts[-1]):
            counts.append(count)
        if len(counts) >= LIVE_POINTS:
            break
        time.sleep(0.1)
    steps.timed("run 1: Runs tab → chart seen growing", started)
    assert len(counts) >= LIVE_POINTS and counts == sorted(counts), f"the chart did not grow live: {counts}"
    # A reload mid-run, at once (a full-page screenshot takes seconds while the trainer holds both
    # cores): the page rebuilds itself from the database, the curve included.
    steps.collect_chart_times()
    before = len(steps.chart_steps())
    assert "running" in status.inner_text(), f"the run ended before it was seen live; raise MAX_STEPS ({MAX_STEPS})"
    page.reload()
    steps.open_tab("Runs")
    expect(status).to_contain_text(run_id, timeout=UI_LIMIT_MS)
    page.wait_for_function(f"() => ({CHART_STEPS.strip()})().length >= {before}", timeout=UI_LIMIT_MS)
    after = len(steps.chart_steps())
    steps.watch_chart()
    word = STATUS_WORD.search(status.inner_text())
    print(f"[e2e] reload mid-run: {before} points before, {after} after; status after: {word and word.group(1)}")
    assert after >= before
    steps.shot("runs-live-after-reload")

    expect(status).to_contain_text("succeeded", timeout=RUN_LIMIT_MS)
    steps.timed("run 1: Runs tab → succeeded", started)
    expect(steps.by_id("runs-output")).to_contain_text(ADAPTER_NAME)
    page.wait_for_function(f"() => ({CHART_STEPS.strip()})().length >= {MAX_STEPS}", timeout=UI_LIMIT_MS)
    assert steps.chart_steps()[-1] == MAX_STEPS
    steps.collect_chart_times()
    expect(steps.by_id("runs-cancel")).to_be_disabled()
    steps.shot("runs-succeeded")


def chart_latency(steps: Steps, studio, run_id: str) -> dict[str, float]:
    """Seconds from a step's progress event (trainer clock) to the chart first drawing it (browser clock)."""
    events = run_events(studio.home, run_id)
    written = {}
    for event in events:
        if event["type"] == "progress" and isinstance(event.get("step"), int):
            written.setdefault(event["step"], float(event["time"]))
    lags = sorted(steps.chart_seen[s] - written[s] for s in written if s in steps.chart_seen)
    assert len(lags) >= MAX_STEPS // 2, f"too few steps were seen arriving: {len(lags)}"
    times = {e["type"]: float(e["time"]) for e in events if e["type"] in ("started", "done")}
    numbers = {
        "steps measured": len(lags),
        "min s": round(lags[0], 2),
        "median s": round(statistics.median(lags), 2),
        "p90 s": round(lags[int(0.9 * (len(lags) - 1))], 2),
        "max s": round(lags[-1], 2),
        "trainer started → done s": round(times["done"] - times["started"], 1),
    }
    print(f"[e2e] step → chart latency: {numbers}")
    assert lags[0] > -0.5, "the chart drew a step before the trainer wrote it: clocks disagree"
    return numbers


def check_the_adapter(steps: Steps, run_id: str) -> None:
    """4b. The Adapters tab lists the trained adapter with its lineage: base model, prompt and run."""
    steps.open_tab("Adapters")
    row = steps.row(ADAPTER_NAME)
    expect(row).to_be_visible(timeout=UI_LIMIT_MS)
    expect(row.get_by_role("gridcell", name=DEMO_MODEL, exact=True)).to_be_visible()
    expect(row.get_by_role("gridcell", name=DEMO_PROMPT, exact=True)).to_be_visible()
    expect(row).to_contain_text(run_id[:8])
    expect(row).to_contain_text(f"runs/{run_id}/output")
    steps.shot("adapters-lineage")


def cancel_a_run(steps: Steps) -> None:
    """4c. A long run is cancelled from the Runs tab while training: its status reads cancelled within ~15 s."""
    run_id = start_a_run(steps, LONG_ADAPTER_NAME, LONG_MAX_STEPS)
    steps.open_tab("Runs")
    # The picker keeps the run chosen before; the new one is picked by its short id.
    steps.choose(steps.by_id("runs-pick").locator("input"), _contains(run_id[:8]))
    status = steps.by_id("runs-status")
    expect(status).to_contain_text(run_id, timeout=UI_LIMIT_MS)
    # Cancelled while training, not while loading: the trainer's SIGTERM path is what runs.
    expect(status).to_contain_text("running", timeout=RUN_START_LIMIT_MS)
    expect(status).to_contain_text("step ", timeout=RUN_START_LIMIT_MS)
    steps.shot("runs-long-running")
    cancel = steps.by_id("runs-cancel")
    expect(cancel).to_be_enabled()
    started = time.monotonic()
    steps.page.once("dialog", lambda dialog: dialog.accept())  # "Cancel this run?" (tests/e2e/test_runs_page.py)
    cancel.click()
    expect(status).to_contain_text("cancelled", timeout=CANCEL_LIMIT_MS)
    steps.timed("run 2: Cancel click → status cancelled", started)
    expect(steps.by_id("runs-error")).to_contain_text("Cancelled")
    expect(cancel).to_be_disabled()
    expect(steps.by_id("runs-resume")).to_be_enabled()
    steps.shot("runs-cancelled")


def test_a_first_fine_tune_in_the_browser(steps: Steps, studio) -> None:
    started = time.monotonic()
    build_the_demo(steps)
    import_alpaca(steps)
    write_a_prompt(steps)
    run_started = time.monotonic()
    run_id = start_a_run(steps, ADAPTER_NAME, MAX_STEPS)
    follow_the_run(steps, run_id)
    steps.timed("run 1: Start click → succeeded (incl. Train tab)", run_started)
    latency = chart_latency(steps, studio, run_id)
    check_the_adapter(steps, run_id)
    cancel_a_run(steps)
    steps.timed("whole flow", started)
    print(f"[e2e] timings: {steps.timings}")
    print(f"[e2e] step → chart latency: {latency}")
