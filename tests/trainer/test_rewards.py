"""The verifiable rewards, scored by hand: each kind as REWARD_KINDS describes it, and their weighted sum."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from trainer.protocol import RewardSpec, reward_names
from trainer.recipes.rewards import RewardFunction, last_number, reward_functions, score_completions


def test_exact_match_compares_stripped_case_folded_text() -> None:
    scores = score_completions([RewardSpec("exact_match")], [" Seven\n", "seven.", "7", "anything"], ["seven", "seven", "7 ", None])
    assert scores == {"exact_match": [1.0, 0.0, 1.0, 0.0], "reward": [1.0, 0.0, 1.0, 0.0]}


def test_numeric_match_compares_the_last_numbers_within_tolerance() -> None:
    completions = ["3 + 4 = 7", "It is 1,234.5 in total", "about 0.1", "no number", "-2", "7 or 8"]
    references = ["#### 7", "1234.5", "0.1000001", "3", "-2.0", "7"]
    scores = score_completions([RewardSpec("numeric_match", tolerance=1e-3)], completions, references)
    assert scores["numeric_match"] == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    strict = score_completions([RewardSpec("numeric_match", tolerance=0.0)], ["about 0.1"], ["0.1000001"])
    assert strict["numeric_match"] == [0.0]
    assert (last_number("a 1,000 b 2.5"), last_number(".5"), last_number("none")) == (2.5, 0.5, None)


def test_regex_match_searches_anywhere_in_the_completion() -> None:
    reward = RewardSpec("regex_match", pattern=r"<answer>\d+</answer>")
    scores = score_completions([reward], ["so <answer>12</answer> done", "<answer>x</answer>", ""], [None] * 3)
    assert scores["regex_match"] == [1.0, 0.0, 0.0]


def test_a_catastrophically_backtracking_pattern_scores_zero_in_bounded_time() -> None:
    # An attacker's GRPO or evaluation reward: with re, this search takes days and holds the run's slot for good.
    reward = RewardSpec("regex_match", pattern=r"(a|aa)+$")
    started = time.monotonic()
    scores = score_completions([reward], ["a" * 60 + "b", "aaaa"], [None, None])
    assert scores["regex_match"] == [0.0, 1.0] and time.monotonic() - started < 5


def test_valid_json_accepts_any_json_value() -> None:
    scores = score_completions([RewardSpec("valid_json")], ['{"a": 1}', " [1, 2] ", "42", "{'a': 1}", '{"a":'], [None] * 5)
    assert scores["valid_json"] == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_length_penalty_is_the_share_over_the_target() -> None:
    scores = score_completions(
        [RewardSpec("length_penalty", target_length=10)], ["x" * 5, "x" * 10, "x" * 15, "x" * 20, "x" * 30], [None] * 5
    )
    assert scores["length_penalty"] == [0.0, 0.0, -0.5, -1.0, -2.0]


def test_the_total_is_the_weighted_sum_and_same_kinds_get_numbered_names() -> None:
    rewards = [
        RewardSpec("regex_match", weight=2.0, pattern="^A"),
        RewardSpec("regex_match", weight=0.5, pattern="B$"),
        RewardSpec("length_penalty", weight=1.0, target_length=2),
    ]
    assert reward_names(rewards) == ["regex_match", "regex_match_2", "length_penalty"]
    scores = score_completions(rewards, ["AB", "A--B", "xx"], [None] * 3)
    assert scores["regex_match"] == [1.0, 1.0, 0.0] and scores["regex_match_2"] == [1.0, 1.0, 0.0]
    assert scores["length_penalty"] == [0.0, -1.0, 0.0]
    assert scores["reward"] == [2.5, 1.5, 0.0]


def test_custom_python_rewards_load_a_reward_function_from_a_file(tmp_path: Path) -> None:
    code = tmp_path / "my_reward.py"
    code.write_text("def reward(completion, reference, row):\n    return len(completion) + len(row.get('tag', ''))\n")
    scores = score_completions(
        [RewardSpec("custom_python", weight=0.5, code_path=str(code))], ["ab", "abc"], [None, "x"], rows=[{"tag": "t"}, {}]
    )
    assert scores == {"custom_python": [3.0, 3.0], "reward": [1.5, 1.5]}
    assert not any(name.startswith("ftapp_custom_reward") for name in sys.modules)  # loaded, not imported globally


def test_custom_python_rewards_must_return_finite_numbers(tmp_path: Path) -> None:
    code = tmp_path / "bad.py"
    code.write_text("def reward(completion, reference, row):\n    return 'high'\n")
    with pytest.raises(ValueError, match="must return a finite number"):
        score_completions([RewardSpec("custom_python", code_path=str(code))], ["a"], [None])
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="must define a function reward"):
        score_completions([RewardSpec("custom_python", code_path=str(tmp_path / "none.py"))], ["a"], [None])
    with pytest.raises(FileNotFoundError):
        score_completions([RewardSpec("custom_python", code_path=str(tmp_path / "missing.py"))], ["a"], [None])


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        (RewardSpec("regex_match"), "needs a pattern"),
        (RewardSpec("regex_match", pattern="("), "not a valid Python regex"),
        (RewardSpec("length_penalty"), "target_length"),
        (RewardSpec("bleu"), "unknown reward kind 'bleu'"),
    ],
)
def test_bad_settings_are_refused_before_scoring(reward: RewardSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_completions([reward], [], [])


def test_trl_reward_functions_are_named_and_read_the_dataset_columns() -> None:
    functions = reward_functions([RewardSpec("exact_match"), RewardSpec("exact_match", weight=3.0)])
    assert [f.__name__ for f in functions] == ["exact_match", "exact_match_2"]
    assert all(isinstance(f, RewardFunction) for f in functions)
    # As GRPOTrainer calls them: text or conversational completions, and the dataset's columns as lists.
    assert functions[0](prompts=["q1", "q2"], completions=[" 7", "8"], reference=["7", "7"], row=['{"a": 1}', "{}"]) == [1.0, 0.0]
    chat = [[{"role": "assistant", "content": "Paris"}], [{"role": "assistant", "content": "Rome"}]]
    assert functions[1](prompts=[[], []], completions=chat, reference=["paris", "paris"], trainer_state=None) == [1.0, 0.0]


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="as many references"):
        score_completions([RewardSpec("valid_json")], ["{}"], [])
