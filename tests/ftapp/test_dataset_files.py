"""Validation of local dataset files against DS-001/003/005/006, on real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ftapp.datasets.files import (
    FILE_TYPES,
    MAX_FIELD_CHARS,
    MAX_REPORTED_PROBLEMS,
    dataset_type_for,
    inspect_file,
    read_rows,
)
from ftapp.errors import ValidationError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def rejected(path: Path, dataset_type: str) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        inspect_file(path, dataset_type)
    return caught.value


def messages(error: ValidationError) -> list[str]:
    return [str(problem) for problem in error.problems]


# --- types and locations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", "project_csv"), ("a.JSON", "project_json"), ("a.jsonl", "project_jsonl"), ("a.parquet", "project_parquet")],
)
def test_dataset_type_follows_the_extension(tmp_path, name, expected):
    assert dataset_type_for(tmp_path / name) == expected


def test_dataset_type_of_a_directory_is_project(tmp_path):
    assert dataset_type_for(tmp_path) == "project"


def test_unknown_extension_is_ds003(tmp_path):
    with pytest.raises(ValidationError) as caught:
        dataset_type_for(tmp_path / "notes.txt")
    assert caught.value.rule_ids == ["DS-003"]
    assert "'.txt'" in str(caught.value) and ".jsonl" in str(caught.value)


def test_unknown_dataset_type_is_ds001(tmp_path):
    path = write(tmp_path, "a.csv", "a\n1\n")
    error = rejected(path, "project_xml")
    assert error.rule_ids == ["DS-001"]
    assert error.problems[0].field == "type"
    assert "project_parquet" in str(error)


def test_hub_type_is_not_read_as_a_file(tmp_path):
    with pytest.raises(ValueError, match="datasets.hub"):
        inspect_file(tmp_path / "a.csv", "huggingface")


def test_missing_location_is_ds003(tmp_path):
    error = rejected(tmp_path / "nope.csv", "project_csv")
    assert error.rule_ids == ["DS-003"]
    assert "does not exist" in str(error)


def test_directory_given_as_a_file_type_is_ds003(tmp_path):
    error = rejected(tmp_path, "project_json")
    assert error.rule_ids == ["DS-003"]
    assert "is a directory" in str(error) and "'project'" in str(error)


def test_file_given_as_project_is_ds003(tmp_path):
    path = write(tmp_path, "a.csv", "a\n1\n")
    error = rejected(path, "project")
    assert error.rule_ids == ["DS-003"]
    assert "needs a directory" in str(error)


def test_extension_must_match_the_type(tmp_path):
    path = write(tmp_path, "data.json", "a,b\n1,2\n")
    error = rejected(path, "project_csv")
    assert error.rule_ids == ["DS-003"]
    assert "'.json'" in str(error) and "'.csv'" in str(error)


def test_file_types_cover_every_file_dataset_type():
    assert sorted(FILE_TYPES.values()) == ["project_csv", "project_json", "project_jsonl", "project_parquet"]


# --- content that is not a dataset (DS-005) -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dataset_type"),
    [("a.csv", "project_csv"), ("a.json", "project_json"), ("a.jsonl", "project_jsonl"), ("a.parquet", "project_parquet")],
)
def test_empty_file_is_ds005(tmp_path, name, dataset_type):
    error = rejected(write(tmp_path, name, b""), dataset_type)
    assert messages(error) == ["DS-005: the file is empty"]


def test_whitespace_only_file_is_empty(tmp_path):
    error = rejected(write(tmp_path, "a.jsonl", "\n  \n\t\n"), "project_jsonl")
    assert messages(error) == ["DS-005: the file is empty"]


def test_csv_header_without_rows_is_ds005(tmp_path):
    error = rejected(write(tmp_path, "a.csv", "instruction,output\n"), "project_csv")
    assert messages(error) == ["DS-005: the file has a header (instruction, output) but no rows"]


def test_malformed_json_reports_line_and_column(tmp_path):
    text = '[\n  {"a": 1},\n  {"a": 2 "b": 3}\n]\n'
    error = rejected(write(tmp_path, "a.json", text), "project_json")
    assert messages(error) == ["DS-005: line 3: invalid JSON (Expecting ',' delimiter, column 11)"]


def test_json_lines_saved_as_json_get_a_hint(tmp_path):
    error = rejected(write(tmp_path, "a.json", '{"a": 1}\n{"a": 2}\n'), "project_json")
    assert "line 2: invalid JSON (Extra data" in str(error)
    assert ".jsonl extension" in str(error)


def test_json_object_at_top_level_is_ds005(tmp_path):
    error = rejected(write(tmp_path, "a.json", '{"rows": [{"a": 1}]}'), "project_json")
    assert error.rule_ids == ["DS-005"]
    assert "holds a JSON object" in str(error)
    assert "key 'rows' holds a list of objects" in str(error)


def test_json_scalar_at_top_level_is_ds005(tmp_path):
    error = rejected(write(tmp_path, "a.json", "42"), "project_json")
    assert "holds a number" in str(error)


def test_empty_json_array_has_no_rows(tmp_path):
    error = rejected(write(tmp_path, "a.json", "[]"), "project_json")
    assert messages(error) == ["DS-005: the JSON array is empty: the dataset has no rows"]


def test_json_elements_that_are_not_objects_are_all_reported(tmp_path):
    error = rejected(write(tmp_path, "a.json", '[{"a": 1}, "x", {"a": 2}, [1]]'), "project_json")
    assert messages(error) == [
        "DS-005: element 2 of the array is a string, not an object",
        "DS-005: element 4 of the array is an array, not an object",
    ]


def test_json_duplicate_key_in_a_record_is_ds005(tmp_path):
    error = rejected(write(tmp_path, "a.json", '[{"a": 1}, {"a": 1, "b": {"c": 1}, "a": 2}]'), "project_json")
    assert messages(error) == ["DS-005: row 2: key 'a' appears more than once"]


def test_jsonl_reports_every_bad_line(tmp_path):
    lines = ['{"a": 1}', '{"a": 2,}', "[1, 2]", '{"a": 4}', "{'a': 5}", ""]
    error = rejected(write(tmp_path, "a.jsonl", "\n".join(lines)), "project_jsonl")
    found = messages(error)
    assert len(found) == 3
    # The json module's wording of a parse error varies between Python versions; its place does not.
    assert found[0].startswith("DS-005: line 2: invalid JSON (") and found[0].endswith(", column 9)")
    assert found[1] == "DS-005: line 3 is an array, not a JSON object"
    assert found[2].startswith("DS-005: line 5: invalid JSON (") and found[2].endswith(", column 2)")


def test_jsonl_line_numbers_count_blank_lines_and_ignore_unicode_separators(tmp_path):
    # U+2028 is legal unescaped inside a JSON string; it must not count as a line break.
    text = '{"a": "x\u2028y"}\n\n{"a": 2\n'
    error = rejected(write(tmp_path, "a.jsonl", text), "project_jsonl")
    assert messages(error) == ["DS-005: line 3: invalid JSON (Expecting ',' delimiter, column 8)"]


def test_jsonl_holding_a_json_array_gets_a_hint(tmp_path):
    error = rejected(write(tmp_path, "a.jsonl", '[\n {"a": 1}\n]\n'), "project_jsonl")
    assert error.rule_ids == ["DS-005"]
    assert "line 1: this looks like a JSON array" in str(error) and ".json extension" in str(error)


def test_many_bad_lines_are_capped_with_a_count(tmp_path):
    bad = MAX_REPORTED_PROBLEMS + 5
    text = "\n".join(['{"a": 1}'] + ["not json"] * bad)
    error = rejected(write(tmp_path, "a.jsonl", text), "project_jsonl")
    assert len(error.problems) == MAX_REPORTED_PROBLEMS + 1
    assert str(error.problems[0]).startswith("DS-005: line 2: invalid JSON")
    assert str(error.problems[MAX_REPORTED_PROBLEMS - 1]).startswith(f"DS-005: line {MAX_REPORTED_PROBLEMS + 1}:")
    assert str(error.problems[-1]) == "DS-005: ... and 5 more problem(s) like these not shown"


def test_ragged_csv_rows_are_all_reported(tmp_path):
    text = 'a,b\n1,2\n1,2,3\n"multi\nline",2\n4\n'
    error = rejected(write(tmp_path, "a.csv", text), "project_csv")
    assert messages(error) == [
        "DS-005: row 2 (line 3) has 3 fields, the header has 2",
        "DS-005: row 4 (line 6) has 1 fields, the header has 2",
    ]


def test_csv_empty_and_duplicate_column_names_are_ds005(tmp_path):
    error = rejected(write(tmp_path, "a.csv", "a,,b,a, \n1,2,3,4,5\n"), "project_csv")
    assert messages(error) == [
        "DS-005: column 2 of the header has an empty name",
        "DS-005: column 5 of the header has an empty name",
        "DS-005: column name 'a' is used more than once (columns 1, 4)",
    ]


def test_csv_stray_quote_is_malformed(tmp_path):
    error = rejected(write(tmp_path, "a.csv", 'a,b\n1,2\n"x"y,3\n'), "project_csv")
    assert error.rule_ids == ["DS-005"]
    assert str(error).startswith("DS-005: line 3: malformed CSV")


def test_non_utf8_bytes_report_offset_and_line(tmp_path):
    error = rejected(write(tmp_path, "a.csv", b"a,b\n1,caf\xe9\n"), "project_csv")
    assert messages(error) == ["DS-005: byte 0xe9 at byte offset 9 (line 2) is not valid UTF-8; save the file as UTF-8"]


def test_utf16_file_is_named_as_such(tmp_path):
    error = rejected(write(tmp_path, "a.csv", "a,b\n1,2\n".encode("utf-16")), "project_csv")
    assert "UTF-16" in str(error)


def test_utf8_bom_is_accepted(tmp_path):
    table = inspect_file(write(tmp_path, "a.csv", b"\xef\xbb\xbfa,b\n1,caf\xc3\xa9\n"), "project_csv")
    assert table.columns == ["a", "b"]
    assert table.sample_rows == [{"a": "1", "b": "café"}]


def test_unreadable_parquet_is_ds005(tmp_path):
    error = rejected(write(tmp_path, "a.parquet", b"PAR1 this is not parquet"), "project_parquet")
    assert error.rule_ids == ["DS-005"]
    assert "not a readable Parquet file" in str(error)


def test_parquet_with_no_rows_is_ds005(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.string())}), path)
    error = rejected(path, "project_parquet")
    assert messages(error) == ["DS-005: the Parquet file has columns but no rows"]


# --- oversized values (DS-006) ------------------------------------------------------------------


def test_csv_field_above_the_csv_module_default_limit_is_fine(tmp_path):
    long_text = "x" * 200_000  # the csv module's own default limit is 131072
    table = inspect_file(write(tmp_path, "a.csv", f"a,b\n1,{long_text}\n"), "project_csv")
    assert table.sample_rows[0]["b"] == long_text


def test_huge_csv_field_is_ds006_with_row_and_column(tmp_path):
    huge = "y" * (MAX_FIELD_CHARS + 1)
    error = rejected(write(tmp_path, "a.csv", f'a,b\n1,2\n3,"{huge}"\n'), "project_csv")
    assert messages(error) == ["DS-006: row 2 (line 3), column 'b': the value has 1,000,001 characters; the limit is 1,000,000"]


def test_huge_nested_json_value_is_ds006(tmp_path):
    turns = [{"role": "user", "content": "z" * (MAX_FIELD_CHARS // 2 + 1)}] * 2
    text = json.dumps([{"messages": []}, {"messages": turns}])
    error = rejected(write(tmp_path, "a.json", text), "project_json")
    assert messages(error) == ["DS-006: row 2, column 'messages': the value has 1,000,010 characters; the limit is 1,000,000"]


def test_value_of_exactly_the_limit_is_allowed(tmp_path):
    table = inspect_file(write(tmp_path, "a.jsonl", json.dumps({"a": "q" * MAX_FIELD_CHARS})), "project_jsonl")
    assert table.num_rows == 1


# --- tables ---------------------------------------------------------------------------------------


def test_json_features_and_column_order(tmp_path):
    rows = [
        {"i": 1, "f": 1.5, "s": "a", "n": None, "m": 1},
        {"i": 2, "f": 2, "s": None, "n": None, "m": "x", "late": [1], "b": True},
        {"i": 3, "f": 3.0, "obj": {"k": 1}, "b": False},
    ]
    table = inspect_file(write(tmp_path, "a.json", json.dumps(rows)), "project_json")
    assert table.columns == ["i", "f", "s", "n", "m", "late", "b", "obj"]
    assert table.features == {
        "i": "int",
        "f": "float",
        "s": "string",
        "n": "null",
        "m": "mixed",
        "late": "list",
        "b": "bool",
        "obj": "object",
    }
    assert table.num_rows == 3
    assert table.sample_rows == rows  # as stored: row 3 has no "s"


def test_csv_values_stay_strings(tmp_path):
    table = inspect_file(write(tmp_path, "a.csv", "id,score,empty\n007,1.5,\n"), "project_csv")
    assert table.features == {"id": "string", "score": "string", "empty": "string"}
    assert table.sample_rows == [{"id": "007", "score": "1.5", "empty": ""}]


def test_sample_is_the_first_twenty_rows(tmp_path):
    text = "\n".join(json.dumps({"n": n}) for n in range(50))
    table = inspect_file(write(tmp_path, "a.jsonl", text), "project_jsonl")
    assert table.num_rows == 50
    assert [row["n"] for row in table.sample_rows] == list(range(20))


def test_parquet_table_and_pages_across_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    count = 3000  # spans several read batches
    pq.write_table(
        pa.table({"n": list(range(count)), "text": [f"t{n}" for n in range(count)], "tags": [[n] for n in range(count)]}),
        path,
        row_group_size=700,
    )
    table = inspect_file(path, "project_parquet")
    assert (table.columns, table.num_rows) == (["n", "text", "tags"], count)
    assert table.features == {"n": "int", "text": "string", "tags": "list"}
    assert read_rows(path, "project_parquet", offset=2047, limit=3) == [{"n": n, "text": f"t{n}", "tags": [n]} for n in (2047, 2048, 2049)]
    assert read_rows(path, "project_parquet", offset=2999, limit=5) == [{"n": 2999, "text": "t2999", "tags": [2999]}]


def test_parquet_duplicate_column_names_are_ds005(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]), path)
    error = rejected(path, "project_parquet")
    assert messages(error) == ["DS-005: column name 'a' is used more than once (columns 1, 2)"]


# --- pages ----------------------------------------------------------------------------------------


def test_csv_page_with_multiline_values(tmp_path):
    rows = [{"q": f"line one {n}\nline two", "a": str(n)} for n in range(30)]
    path = tmp_path / "a.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["q", "a"])
        writer.writeheader()
        writer.writerows(rows)
    assert read_rows(path, "project_csv", offset=10, limit=5) == rows[10:15]
    assert read_rows(path, "project_csv", offset=28, limit=5) == rows[28:]
    assert read_rows(path, "project_csv", offset=40) == []


def test_json_page(tmp_path):
    rows = [{"n": n} for n in range(25)]
    path = write(tmp_path, "a.json", json.dumps(rows))
    assert read_rows(path, "project_json") == rows[:20]
    assert read_rows(path, "project_json", offset=20, limit=20) == rows[20:]


def test_page_still_reports_faults_it_reads_through(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"n": 0}\n{"n": \n{"n": 2}\n')
    with pytest.raises(ValidationError, match="line 2: invalid JSON"):
        read_rows(path, "project_jsonl", offset=1, limit=1)


def test_negative_offset_is_a_caller_error(tmp_path):
    with pytest.raises(ValueError):
        read_rows(write(tmp_path, "a.csv", "a\n1\n"), "project_csv", offset=-1)
