"""Evaluations of DPO adapters: held-out preference pairs scored by likelihood in a real ``python -m trainer evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA
from tests.trainer.test_evaluate_process import run
from trainer.protocol import REJECTED_DIVIDER, DataSource, EvalCombination, EvaluationSpec, ModelSource, read_events

PAIRS = 16


@pytest.fixture(scope="module")
def preference_file(tmp_path_factory) -> Path:
    """The shortest pairs of the real sharegpt-layout DPO sample (conversations + chosen/rejected turns), in file order.

    Its longest pairs run to 4,000 tokens of the demo tokenizer: seconds each on one CPU thread."""
    rows = json.loads((TEST_DATA / "dpo_en_demo.json").read_text(encoding="utf-8"))
    shortest = sorted(sorted(range(len(rows)), key=lambda i: len(json.dumps(rows[i])))[:PAIRS])
    path = tmp_path_factory.mktemp("preference") / "dpo.json"
    path.write_text(json.dumps([rows[i] for i in shortest]), encoding="utf-8")
    return path


def preference_spec(run_dir: Path, demo_kit, data: Path, adapter: Path, beta: float | None) -> EvaluationSpec:
    run_dir.mkdir(parents=True, exist_ok=True)
    model = ModelSource(str(demo_kit.model_dir))
    return EvaluationSpec(
        run_id=run_dir.name,
        run_dir=str(run_dir),
        combinations=(EvalCombination(1, "base", model), EvalCombination(2, "dpo", model, str(adapter), dpo_beta=beta)),
        data=DataSource(kind="project_json", path=str(data), format="preference"),
        row_indices=tuple(range(PAIRS)),
        rows_from="first pairs",
        generation={"max_new_tokens": 8},
        batch_size=6,
        cpu_threads=1,
    )


def log_likelihoods(model, tokenizer, row: dict) -> tuple[float, float]:
    """log p(chosen), log p(rejected) of one sharegpt pair, computed here one sequence at a time without padding."""
    import torch

    roles = {"human": "user", "gpt": "assistant"}
    prompt = [{"role": roles[t["from"]], "content": t["value"]} for t in row["conversations"]]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    sums = []
    for answer in (row["chosen"]["value"], row["rejected"]["value"]):
        full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=True, return_dict=True)[
            "input_ids"
        ]
        assert full[: len(prompt_ids)] == prompt_ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([full])).logits[0].float()
        picked = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(full[1:]).unsqueeze(-1)).squeeze(-1)
        sums.append(float(picked[len(prompt_ids) - 1 :].sum()))
    return sums[0], sums[1]


@pytest.mark.slow
def test_pairs_are_scored_by_likelihood_with_rewards_against_the_base_model(tmp_path, demo_kit, random_adapter, preference_file):
    adapter = random_adapter(11, scale=0.2)
    spec = preference_spec(tmp_path / "run", demo_kit, preference_file, adapter, beta=0.5)
    done = run(spec)
    assert done.returncode == 0, done.stderr[-3000:]

    events = read_events(spec.events_path).events
    assert [e.type for e in events][-2:] == ["artifact", "done"] and events[0].data["total_steps"] == 2 * PAIRS
    answers = {(a["position"], a["row_index"]): a for e in events if e.type == "sample" for a in e.data["rows"]}
    assert sorted(answers) == [(p, r) for p in (1, 2) for r in range(PAIRS)]
    reports = {e.data["position"]: e.data for e in events if e.type == "eval"}

    # The aggregates are the means of the pairs' own numbers.
    for position in (1, 2):
        rows = [answers[position, r] for r in range(PAIRS)]
        margins = [a["log_likelihood"] - a["logp_rejected"] for a in rows]
        assert reports[position]["preference_accuracy"] == pytest.approx(sum(m > 0 for m in margins) / PAIRS)
        assert reports[position]["mean_margin"] == pytest.approx(sum(margins) / PAIRS)
    rewards = [
        0.5
        * (
            (answers[2, r]["log_likelihood"] - answers[2, r]["logp_rejected"])
            - (answers[1, r]["log_likelihood"] - answers[1, r]["logp_rejected"])
        )
        for r in range(PAIRS)
    ]
    assert reports[2]["reward_margin"] == pytest.approx(sum(rewards) / PAIRS)
    assert reports[2]["reward_accuracy"] == pytest.approx(sum(r > 0 for r in rewards) / PAIRS)
    assert reports[2]["reward_beta"] == 0.5 and "reward_accuracy" not in reports[1]
    assert reports[2]["delta_preference_accuracy"] == pytest.approx(reports[2]["preference_accuracy"] - reports[1]["preference_accuracy"])
    assert 0 < reports[2]["reward_accuracy"] < 1, "a random adapter should neither win nor lose every pair"

    # One pair recomputed in this process, with its own tokenization and no padding or mixed batches.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    row = json.loads(preference_file.read_text())[3]
    tokenizer = AutoTokenizer.from_pretrained(demo_kit.model_dir)
    base = AutoModelForCausalLM.from_pretrained(demo_kit.model_dir).eval()
    base_c, base_r = log_likelihoods(base, tokenizer, row)
    tuned_c, tuned_r = log_likelihoods(PeftModel.from_pretrained(base, adapter).eval(), tokenizer, row)
    assert answers[1, 3]["log_likelihood"] == pytest.approx(base_c, rel=1e-4)
    assert answers[1, 3]["logp_rejected"] == pytest.approx(base_r, rel=1e-4)
    assert answers[2, 3]["log_likelihood"] == pytest.approx(tuned_c, rel=1e-4)
    assert answers[2, 3]["scores"]["reward_margin"] == pytest.approx(0.5 * ((tuned_c - tuned_r) - (base_c - base_r)), rel=1e-3, abs=1e-3)

    # What the side-by-side view shows: the pair, and per combination its verdict.
    assert answers[1, 3]["reference"] == row["chosen"]["value"] + REJECTED_DIVIDER + row["rejected"]["value"]
    assert answers[1, 3]["input"] == row["conversations"][-1]["value"]
    assert answers[2, 3]["output"].startswith("prefers ") and "reward margin vs #1" in answers[2, 3]["output"]


def test_without_a_known_beta_the_implicit_reward_uses_one():
    from trainer.evaluation.preference import PairScore, pair_scores

    tuned, reference = PairScore(-10.0, -14.0, 5), PairScore(-11.0, -12.0, 5)
    assert pair_scores(tuned, reference, None) == {
        "preference_accuracy": 1.0,
        "mean_margin": 4.0,
        "mean_logp_chosen": -10.0,
        "mean_logp_rejected": -14.0,
        "reward_accuracy": 1.0,
        "reward_margin": 3.0,
        "reward_beta": 1.0,
    }
    assert pair_scores(tuned, reference, 0.1)["reward_margin"] == pytest.approx(0.3)
    assert "reward_margin" not in pair_scores(reference, None, 0.1), "no reference policy, no implicit reward"
