"""Preference data (DPO) at import: the layouts it comes in are recognised and every row is checked (DS-007)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftapp.datasets.preference_rows import answer_text, row_fault
from ftapp.datasets.service import AddDatasetRequest
from ftapp.errors import ValidationError
from tests.conftest import TEST_DATA

DPO_DEMO = TEST_DATA / "dpo_en_demo.json"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def good_rows(count: int) -> list[dict]:
    return [{"prompt": f"Question {i}?", "chosen": f"A helpful answer {i}.", "rejected": f"No idea {i}."} for i in range(count)]


def nothing_stored(services) -> bool:
    return services.datasets.list() == [] and list(services.settings.datasets_dir.iterdir()) == []


def test_the_sharegpt_preference_demo_is_recognised_and_counted(services) -> None:
    rows = json.loads(DPO_DEMO.read_text(encoding="utf-8"))

    dataset = services.datasets.add(AddDatasetRequest(name="dpo-demo", location=str(DPO_DEMO)))

    assert dataset.format == "preference" and dataset.num_rows == len(rows)
    assert set(dataset.columns) == {"conversations", "chosen", "rejected"}
    # The layout the trainer maps: a conversations prompt and one {from, value} turn per answer.
    assert answer_text(rows[0]["chosen"]) == rows[0]["chosen"]["value"]


def test_bad_pairs_anywhere_in_the_file_are_refused_with_their_row_numbers(services, tmp_path: Path) -> None:
    rows = good_rows(40)
    rows[2]["rejected"] = "   "  # row 3: empty after stripping
    rows[6]["rejected"] = rows[6]["chosen"]  # row 7: identical
    del rows[11]["chosen"]  # row 12: missing
    rows[24] = {
        "conversations": [{"from": "human", "value": "Hi"}],  # row 25: identical sharegpt turns, past the sample
        "chosen": {"from": "gpt", "value": "Hello"},
        "rejected": {"from": "gpt", "value": "Hello "},
    }
    rows[29]["chosen"] = 42  # row 30: not text
    rows[37]["rejected"] = [{"role": "assistant", "content": ""}]  # row 38: an empty turn
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)

    with pytest.raises(ValidationError) as caught:
        services.datasets.add(AddDatasetRequest(name="pairs", location=path))

    [problem] = caught.value.problems
    message = str(problem)
    assert message.startswith("DS-007: 6 of 40 rows are not usable preference pairs")
    for expected in (
        "row 3: rejected is empty",
        "row 7: chosen and rejected are identical",
        "row 12: chosen is missing",
        "row 25: chosen and rejected are identical",
        "row 30: chosen is neither text nor a list of turns (got int)",
    ):
        assert expected in message
    assert message.endswith("; and 1 more")  # the first five are named, row 38 is counted
    assert nothing_stored(services)


@pytest.mark.parametrize(
    "layout, row",
    [
        ("plain strings", {"prompt": "2+2?", "chosen": "4", "rejected": "5"}),
        (
            "messages",
            {
                "prompt": [{"role": "user", "content": "2+2?"}],
                "chosen": [{"role": "assistant", "content": "4"}],
                "rejected": [{"role": "assistant", "content": "5"}],
            },
        ),
        (
            "implicit prompt",
            {
                "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
            },
        ),
        (
            "sharegpt",
            {
                "conversations": [{"from": "human", "value": "2+2?"}],
                "chosen": {"from": "gpt", "value": "4"},
                "rejected": {"from": "gpt", "value": "5"},
            },
        ),
    ],
)
def test_each_preference_layout_imports(services, tmp_path: Path, layout: str, row: dict) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [row] * 3)

    dataset = services.datasets.add(AddDatasetRequest(name="pairs", location=path))

    assert (dataset.format, dataset.num_rows) == ("preference", 3)
    assert row_fault(row) is None


def test_an_implicit_prompt_counts_only_the_answers_so_a_shared_prompt_is_not_a_difference() -> None:
    same_answer = {
        "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    }
    empty_answer = {
        "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}],
        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    }

    assert row_fault(same_answer) == "chosen and rejected are identical"
    assert row_fault(empty_answer) == "chosen is empty"


def test_a_csv_of_pairs_is_checked_too(services, tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected\nHi,Hello!,Go away.\nBye,,See you.\n", encoding="utf-8")

    with pytest.raises(ValidationError, match=r"DS-007: 1 of 2 rows .*row 2: chosen is empty"):
        services.datasets.add(AddDatasetRequest(name="pairs", location=str(path)))
    assert nothing_stored(services)
