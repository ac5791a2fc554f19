"""Format detection on hand-made rows and on the real sample files."""

from __future__ import annotations

import pytest

from ftapp.datasets.files import dataset_type_for, inspect_file
from ftapp.datasets.formats import FORMATS, detect_format
from tests.conftest import TEST_DATA

TURNS = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
SHAREGPT_TURNS = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]


def detect(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return detect_format(columns, rows)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"instruction": "add", "input": "1 2", "output": "3"}], "alpaca"),
        ([{"instruction": "add", "output": "3"}], "alpaca"),
        ([{"instruction": "i", "output": "o", "system": "s", "history": [["q", "a"]]}], "alpaca"),
        ([{"instruction": "i", "intent": "cancel_ticket"}], "plain"),
        ([{"input": "q", "output": "a", "score": "1.0"}], "plain"),
        ([{"messages": TURNS}], "messages"),
        ([{"messages": TURNS, "label": True}, {"messages": TURNS, "label": False}], "messages"),
        ([{"conversations": SHAREGPT_TURNS, "tools": "[]"}], "sharegpt"),
        ([{"conversations": SHAREGPT_TURNS, "system": "be brief"}], "sharegpt"),
        ([{"prompt": "p", "chosen": "good", "rejected": "bad"}], "preference"),
        ([{"chosen": TURNS, "rejected": TURNS}], "preference"),
        (
            [{"conversations": SHAREGPT_TURNS[:1], "chosen": SHAREGPT_TURNS[1], "rejected": SHAREGPT_TURNS[1]}],
            "preference",
        ),
        ([{"messages": TURNS[:1], "chosen": TURNS[1:], "rejected": TURNS[1:]}], "preference"),
        ([{"instruction": "i", "input": "", "chosen": "c", "rejected": "r"}], "preference"),
    ],
)
def test_detect_format(rows, expected):
    assert detect(rows) == expected


@pytest.mark.parametrize(
    "rows",
    [
        [{"messages": '[{"role": "user", "content": "hi"}]'}],  # JSON text in a CSV cell, not turns
        [{"messages": [{"from": "human", "value": "hi"}]}],  # sharegpt keys under the messages name
        [{"conversations": TURNS}],  # OpenAI keys under the conversations name
        [{"messages": []}],  # no turn to judge by
        [{"messages": TURNS}, {"messages": "oops"}],  # every sampled row must hold turns
        [{"messages": None}],
    ],
)
def test_turn_columns_need_turns_of_the_right_shape(rows):
    assert detect(rows) == "plain"


def test_null_cells_do_not_hide_the_layout():
    assert detect([{"messages": None}, {"messages": TURNS}]) == "messages"


def test_detection_uses_the_columns_even_without_sample_rows():
    assert detect_format(["instruction", "input", "output"], []) == "alpaca"
    assert detect_format(["prompt", "chosen", "rejected"], []) == "preference"
    assert detect_format(["messages"], []) == "plain"


def test_formats_are_the_known_ones():
    assert FORMATS == ("plain", "alpaca", "messages", "sharegpt", "preference")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alpaca_en_demo.json", "alpaca"),
        ("identity.json", "alpaca"),
        ("dpo_en_demo.json", "preference"),
        ("kto_en_demo.json", "messages"),
        ("glaive_toolcall_en_demo.json", "sharegpt"),
        ("clean_ticketing.csv", "plain"),
        ("test_dataset_csv_healthy.csv", "plain"),
    ],
)
def test_real_sample_formats(name, expected):
    path = TEST_DATA / name
    table = inspect_file(path, dataset_type_for(path))
    assert detect_format(table.columns, table.sample_rows) == expected
