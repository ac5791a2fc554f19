"""Papercuts of the Compare, Datasets, Evaluate, Export and Serve tabs, in a real browser at 1440x900.

The app is ``ui.build_app`` over real services on a fresh home, served from this process so that the finished
export, evaluation and endpoint whose wide views are checked can be given to the page without running a merge, an
evaluation and a server first: those three look-ups return results made here (with long paths, many metrics, a
long request body, CJK and emoji), everything else is the real thing. Screenshots go to $FTAPP_E2E_SHOTS, else a
pytest temporary folder; the wide views', the glyphs' and the datasets' are worth a look.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ftapp.datasets import AddDatasetRequest
from ftapp.evaluation.results import AnswerRow, CombinationResult, EvaluationResults
from ftapp.prompts.service import AddPromptRequest
from ftapp.services import Services, open_services
from ftapp.settings import Settings
from ftapp.shipping.export_results import ExportResult, GgufFile
from ftapp.shipping.serving import Endpoint
from tests.conftest import TEST_DATA
from tests.e2e.browser import UI_LIMIT_MS, expect, served
from tests.e2e.conftest import missing_glyph_fonts

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1440, 900
CJK_EMOJI = "我想取消订单 😀 ✅ 予約をキャンセル"
NOW = datetime(2026, 11, 22, tzinfo=UTC)
RUN_HOME = "/home/someone/.ftapp/runs/11111111-1111-4111-8111-111111111111"
# Every element of a view that reaches past the view's right edge, or holds content wider than itself.
OVERFLOWS = """
(selector) => {
  const view = document.querySelector(selector);
  const edge = view.getBoundingClientRect().right + 1;
  const out = [];
  for (const element of [view, ...view.querySelectorAll('*')]) {
    const box = element.getBoundingClientRect();
    if (!box.width || !box.height || !element.checkVisibility({visibilityProperty: true})) continue;  // e.g. a table's sizing row
    if (box.right > edge || element.scrollWidth > element.clientWidth + 1 && getComputedStyle(element).overflowX !== 'visible')
      out.push(`${element.tagName}.${element.className} right ${Math.round(box.right)} > ${Math.round(edge)}, ` +
               `content ${element.scrollWidth} in ${element.clientWidth}`);
  }
  return out;
}
"""
# A glyph drawn on a canvas with the page's fonts: its pixels, and whether any of them has colour.
GLYPH = """
(text) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const context = canvas.getContext('2d');
  context.fillStyle = '#000';
  context.font = '48px sans-serif';
  context.textBaseline = 'top';
  context.fillText(text, 4, 4);
  const pixels = context.getImageData(0, 0, 64, 64).data;
  let coloured = false;
  for (let i = 0; i < pixels.length; i += 4)
    if (pixels[i + 3] > 0 && (Math.abs(pixels[i] - pixels[i + 1]) > 40 || Math.abs(pixels[i + 1] - pixels[i + 2]) > 40)) coloured = true;
  return {pixels: Array.from(pixels).join(','), coloured};
}
"""


@dataclass(frozen=True)
class Stocked:
    url: str
    services: Services
    datasets: dict[str, str]  # name -> id
    prompts: dict[str, str]  # dataset id -> its prompt's id


def run_record(kind: str, run_id: str, status: str = "succeeded"):
    from storage import RunRecord

    fields = {f: None for f in RunRecord.__dataclass_fields__}
    return RunRecord(
        **fields
        | {
            "id": run_id,
            "kind": kind,
            "name": f"{kind} {CJK_EMOJI}",
            "status": status,
            "spec": "{}",
            "gpus": "cpu",
            "created_at": NOW,
            "events_offset": 0,
            "malformed_events": 0,
            "devices_requested": "cpu",
        }
    )


def give_finished_results(services: Services) -> None:
    """A GGUF export, an evaluation and a live endpoint as wide as real ones get, for their views."""
    export = run_record("export", "11111111-1111-4111-8111-111111111111")
    evaluation = run_record("evaluation", "22222222-2222-4222-8222-222222222222")
    endpoint_run = run_record("serve", "33333333-3333-4333-8333-333333333333", status="running")
    files = [
        GgufFile(
            kind,
            f"{RUN_HOME}/gguf/{kind}/tiny-intents-merged-{kind}.gguf",
            144_810_848,
            7.9,
            82.5,
            True,
            0.97,
            62,
            64,
            0.9,
            3,
            4,
            1.17,
            f"{RUN_HOME}/gguf/{kind}/Modelfile",
            f"ollama create tiny-intents:{kind} -f {RUN_HOME}/gguf/{kind}/Modelfile",
            False,
            "ollama is not on PATH here: run the command where it is",
        )
        for kind in ("f16", "q8_0", "q4_k_m")
    ]
    checks = [
        {
            "prompt": f"Classify the intent of: {CJK_EMOJI} I want to cancel my order, it arrived broken and late",
            "tokens_match": i != 1,
            "reference": "cancel_order",
            "exported": "cancel_order" if i != 1 else "track_order",
            "max_logit_diff": 0.0123,
            "diagnosis": "" if i != 1 else "a near-tie at the first token",
        }
        for i in range(3)
    ]
    exported = ExportResult(export, "gguf", "tiny-intents", "/src", verified=True, checks=checks, dtype="bfloat16", gguf=files)
    metrics = {
        name: 0.123456
        for name in (
            "win_rate tie_rate loss_rate accuracy macro_f1 exact_match token_f1 rougeL rouge1 rouge2 bleu perplexity "
            "mean_log_likelihood mean_new_tokens batch_latency_s batch_tokens_per_s latency_s tokens_per_s bench/mmlu/acc"
        ).split()
    }
    combos = [
        CombinationResult(1, "demo-tiny-llama", "m", None, metrics, {}, True),
        *(
            CombinationResult(
                i, f"tiny-intents-lora-number-{i}-with-a-long-name", "m", f"a{i}", metrics, dict.fromkeys(metrics, 0.01), True
            )
            for i in range(2, 6)
        ),
    ]
    answer = f"cancel_order {CJK_EMOJI} https://example.com/a/very/long/unbroken/path/{'x' * 80}"
    rows = [AnswerRow(i, f"Classify: {CJK_EMOJI} " * 4, "cancel_order", dict.fromkeys(range(1, 6), answer), {}) for i in range(3)]
    results = EvaluationResults(evaluation, "held-out split", combos, rows, answers=15, expected=15)
    endpoint = Endpoint(
        endpoint_run,
        "serving",
        "tiny-intents",
        "transformers",
        url="http://127.0.0.1:40123",
        api_key_file=f"{RUN_HOME}/api_key",
        prompt_format="text",
        input_template="### Request:\n{text}\n### Intent:\n",
        example_prompt=f"### Request:\n{CJK_EMOJI} I would like to cancel the order I placed yesterday, it is late\n### Intent:",
    )
    runs = {run.id: run for run in (export, evaluation, endpoint_run)}
    services.exports.list = lambda: [export]  # type: ignore[method-assign]
    services.exports.result = lambda run_id: exported  # type: ignore[method-assign]
    services.evaluations.list = lambda: [evaluation]  # type: ignore[method-assign]
    services.evaluations.results = lambda run_id: results  # type: ignore[method-assign]
    services.serving.list = lambda: [endpoint_run]  # type: ignore[method-assign]
    services.serving.endpoint = lambda run_id: endpoint  # type: ignore[method-assign]
    services.runs.get = lambda run_id: runs[run_id]  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stocked]:
    home = tmp_path_factory.mktemp("papercuts") / "home"
    services = open_services(Settings.from_env(home))
    texts = home.parent / "texts.jsonl"
    texts.write_text(
        "".join(json.dumps({"text": f"{CJK_EMOJI} #{i}", "label": "取消"}, ensure_ascii=False) + "\n" for i in range(3)), encoding="utf-8"
    )
    datasets, prompts = {}, {}
    for name, path, template in (
        ("tickets", TEST_DATA / "clean_ticketing.csv", "{instruction}"),
        ("answers", TEST_DATA / "test_dataset_csv_healthy.csv", "Q: {input}"),
        ("texts", texts, "{text}"),
    ):
        record = services.datasets.add(AddDatasetRequest(name=name, location=str(path)))
        datasets[name] = record.id
        prompts[record.id] = services.prompts.add(
            AddPromptRequest(
                name=f"{name}-prompt",
                dataset_id=record.id,
                prompt_template=f"{template} => ",
                input_template=f"{template} => ",
                completion_template="",
            )
        ).id
    give_finished_results(services)
    with served(services) as url:
        yield Stocked(url, services, datasets, prompts)


@pytest.fixture(scope="module")
def wide_page(browser, stocked: Stocked) -> Iterator[object]:
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, accept_downloads=False)
    opened = context.new_page()
    opened.set_default_timeout(UI_LIMIT_MS)
    opened.goto(stocked.url)
    try:
        yield opened
    finally:
        context.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def pick(page, elem_id: str, option: str) -> None:
    field = page.locator(f"#{elem_id} input").first
    field.click()
    page.get_by_role("option", name=option, exact=True).filter(visible=True).first.click()
    expect(field).to_have_value(option)


def test_switching_the_compare_dataset_never_sends_a_prompt_of_another_dataset(wide_page, stocked: Stocked, shots: Path) -> None:
    page, sent = wide_page, []
    page.on("request", lambda r: sent.append(json.loads(r.post_data)) if "/queue/join" in r.url and r.method == "POST" else None)
    open_tab(page, "Compare")
    page.get_by_text("Take the prompt from a dataset row").click()
    expect(page.locator("#compare-template input")).to_have_value("tickets-prompt")
    for name in ("answers", "texts", "tickets", "texts"):
        pick(page, "compare-dataset", name)
        expect(page.locator("#compare-template input")).to_have_value(f"{name}-prompt")
    page.locator("#compare-sample").click()
    expect(page.locator("#compare-prompt textarea")).to_have_value(f"{CJK_EMOJI} #0 =>")
    page.screenshot(path=str(shots / "compare-dataset-switched.png"))

    owner = {prompt: dataset for dataset, prompt in stocked.prompts.items()}
    sent_ids = [[v for v in body["data"] if isinstance(v, str)] for body in sent]
    assert sum(stocked.datasets["texts"] in ids for ids in sent_ids) >= 2, "the dataset switches were not seen"
    mixed = [ids for ids in sent_ids if any(owner[v] not in ids for v in ids if v in owner)]
    assert mixed == [], "a request paired a dataset with another dataset's prompt"
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()


def test_the_datasets_tab_names_types_in_words_and_asks_for_an_upload(wide_page, stocked: Stocked, shots: Path, tmp_path: Path) -> None:
    page = wide_page
    open_tab(page, "Datasets")
    table = page.locator("#datasets-table")
    expect(table).to_contain_text("JSON lines")
    expect(table).to_contain_text("CSV")
    expect(table).not_to_contain_text("project_")

    notes = tmp_path / "notes.txt"
    notes.write_text("not a table", encoding="utf-8")
    page.locator("#dataset-upload-file input[type=file]").set_input_files(str(notes))  # the picker refuses a .txt
    page.locator("#dataset-upload-import").click()
    toast = page.locator(".toast-body").filter(has_text="DS-003")
    expect(toast).to_contain_text("no file was uploaded: upload a CSV, JSON, JSON lines or Parquet")
    expect(toast).not_to_contain_text("Hugging Face dataset id")
    expect(toast).not_to_contain_text("DS-004")
    for close in page.locator(".toast-close").all():  # the toasts would cover the next screenshots
        close.click()
    page.get_by_role("gridcell", name="texts", exact=True).first.click()
    expect(page.get_by_text(f"{CJK_EMOJI} #2").first).to_be_visible()
    page.screenshot(path=str(shots / "datasets-types-and-cjk-rows.png"), full_page=True)
    assert [d.name for d in stocked.services.datasets.list()] == ["tickets", "answers", "texts"]


def test_evaluates_row_limit_shows_what_its_label_explains(wide_page) -> None:
    page = wide_page
    open_tab(page, "Evaluate")
    page.get_by_text("Rows and generation").click()
    expect(page.locator("#eval-max-rows input")).to_have_value("0")
    expect(page.locator("#eval-max-rows")).to_contain_text("(0: all)")


@pytest.mark.parametrize(
    ("tab", "view", "ready"),
    [
        ("Export", "#export-status", "succeeded"),
        ("Export", "#export-checks", "near-tie"),
        ("Evaluate", "#eval-aggregate", "bench/mmlu/acc"),
        ("Evaluate", "#eval-rows", "Showing 3 of 3"),
        ("Serve", "#serve-curl", "Authorization"),
    ],
)
def test_wide_views_stay_inside_the_page_at_1440(wide_page, shots: Path, tab: str, view: str, ready: str) -> None:
    page = wide_page
    open_tab(page, tab)
    expect(page.locator(view)).to_contain_text(ready)
    page.locator(view).scroll_into_view_if_needed()
    page.screenshot(path=str(shots / f"wide-{tab.lower()}-{view.strip('#')}.png"))
    assert page.evaluate(OVERFLOWS, view) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= WIDTH


def test_emoji_cjk_and_status_icons_have_glyphs(wide_page, shots: Path) -> None:
    """Without a font for them, Chromium draws each as the same empty box (.notdef): the screenshots lie."""
    assert not missing_glyph_fonts(), f"install the fonts for screenshots: {missing_glyph_fonts()} (see .ci/run)"
    page = wide_page
    tofu = page.evaluate(GLYPH, "\u0378")  # unassigned: no font draws it, so this is the empty box itself
    drawn = {text: page.evaluate(GLYPH, text)["pixels"] for text in ("中", "文", "予", "✅", "▶", "⏹")}
    assert [text for text, pixels in drawn.items() if pixels == tofu["pixels"]] == [], "drawn as empty boxes"
    assert drawn["中"] != drawn["文"]
    assert page.evaluate(GLYPH, "😀")["coloured"], "the emoji is not drawn in colour"
    open_tab(page, "Evaluate")
    expect(page.locator("#eval-rows")).to_contain_text("Showing 3 of 3")
    page.locator("#eval-rows").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "glyphs-evaluate-rows.png"))
