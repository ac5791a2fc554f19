"""Per-format record readers for local dataset files (CSV, JSON, JSONL, Parquet) and directories.

Every reader turns a file into a stream of records ``(row number, first line, row dict)`` and
reports what is wrong with it as ``Problem``s: DS-003 for the location, DS-005 for content that is
not a dataset (DS-006, oversized values, is checked by ``ftapp.datasets.features`` into the same
``Problems``). Structural faults that make the rest of the file
meaningless (bad encoding, malformed JSON, a broken header) stop the pass at once; per-row faults
(a ragged CSV row, a bad JSONL line, a huge value) are collected so the user sees them together.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

from ftapp import rules
from ftapp.errors import Problem, ValidationError
from ftapp.rules import Rule

# Enough to show a pattern without burying the first fault under a thousand identical ones.
MAX_REPORTED_PROBLEMS = 20

_PARQUET_BATCH_ROWS = 1024

# A record as the readers yield it: 1-based row number, line where the row starts (None where
# the source has no lines), and the row itself.
Record = tuple[int, int | None, dict]


# --- problem collection -------------------------------------------------------------------------


class Problems:
    """Problems of one pass, capped at MAX_REPORTED_PROBLEMS with a count of the rest per rule."""

    def __init__(self) -> None:
        self._shown: list[Problem] = []
        self._hidden: Counter[Rule] = Counter()

    def add(self, rule: Rule, message: str, field: str | None = "location") -> None:
        if len(self._shown) < MAX_REPORTED_PROBLEMS:
            self._shown.append(Problem(rule, message, field))
        else:
            self._hidden[rule] += 1

    def fatal(self, rule: Rule, message: str, field: str | None = "location") -> NoReturn:
        """Report a fault after which the rest of the file cannot be read, with what came before."""
        self.add(rule, message, field)
        self.raise_if_any()
        raise AssertionError("unreachable: raise_if_any raises once a problem was added")

    def raise_if_any(self) -> None:
        if not self._shown:
            return
        summary = [
            Problem(rule, f"... and {count} more problem(s) like these not shown", "location") for rule, count in self._hidden.items()
        ]
        raise ValidationError(self._shown + summary)


# --- record streams -----------------------------------------------------------------------------


def read_text(path: Path, problems: Problems) -> str:
    """The file decoded as UTF-8 (a BOM is dropped); any other encoding is a DS-005 fault."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(Problem(rules.DATASET_LOCATION, f"'{path}' cannot be read ({exc.strerror or exc})", "location")) from exc
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        problems.fatal(rules.DATASET_TABLE, "the file is UTF-16/UTF-32 encoded; save it as UTF-8")
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = data.count(b"\n", 0, offset) + 1
        problems.fatal(
            rules.DATASET_TABLE,
            f"byte 0x{data[offset]:02x} at byte offset {offset} (line {line}) is not valid UTF-8; save the file as UTF-8",
        )
    if not text.strip():
        problems.fatal(rules.DATASET_TABLE, "the file is empty")
    return text


def csv_records(text: str, problems: Problems) -> Iterator[Record]:
    _allow_long_csv_fields()
    # strict: a quote in the wrong place is corruption (usually an unescaped quote) that lenient
    # parsing would turn into silently merged or split rows.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def next_row() -> tuple[int, list[str] | None]:
        start = reader.line_num + 1
        try:
            return start, next(reader, None)
        except csv.Error as exc:
            problems.fatal(rules.DATASET_TABLE, f"line {start}: malformed CSV ({exc})")

    header: list[str] | None = []
    while header == []:  # csv yields [] for blank lines
        _, header = next_row()
    if header is None:
        problems.fatal(rules.DATASET_TABLE, "the file is empty")
    _check_column_names(header, problems)
    row_no = 0
    while True:
        line_no, fields = next_row()
        if fields is None:
            break
        if not fields:
            continue
        row_no += 1
        if len(fields) != len(header):
            problems.add(rules.DATASET_TABLE, f"row {row_no} (line {line_no}) has {len(fields)} fields, the header has {len(header)}")
            continue
        yield row_no, line_no, dict(zip(header, fields))
    if row_no == 0:
        problems.fatal(rules.DATASET_TABLE, f"the file has a header ({', '.join(header)}) but no rows")


def _allow_long_csv_fields() -> None:
    # The csv module refuses fields over 131072 characters with an error that names neither row
    # nor column. Lifting the limit lets the DS-006 check report the cell; the whole file is in
    # memory already, so no field can cost more than the file. The limit is process-wide and only
    # ever raised here, so concurrent readers elsewhere are never restricted by it.
    ceiling = min(sys.maxsize, 2**31 - 1)  # the C long behind it is 32-bit on Windows
    if csv.field_size_limit() < ceiling:
        csv.field_size_limit(ceiling)


def _check_column_names(names: list[str], problems: Problems) -> None:
    """Empty or repeated column names make rows ambiguous, so they stop the pass."""
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, 1):
        if not name.strip():
            problems.add(rules.DATASET_TABLE, f"column {number} of the header has an empty name")
        else:
            positions.setdefault(name, []).append(number)
    for name, numbers in positions.items():
        if len(numbers) > 1:
            listed = ", ".join(map(str, numbers))
            problems.add(rules.DATASET_TABLE, f"column name '{name}' is used more than once (columns {listed})")
    problems.raise_if_any()


def json_records(text: str, problems: Problems) -> Iterator[Record]:
    duplicates = _DuplicateKeys()
    try:
        data = json.loads(text, object_pairs_hook=duplicates)
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            hint = "; this looks like JSON Lines (one object per line): give the file a .jsonl extension"
        problems.fatal(rules.DATASET_TABLE, f"line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}){hint}")
    except RecursionError:
        problems.fatal(rules.DATASET_TABLE, "the JSON is nested too deeply to read")
    if not isinstance(data, list):
        problems.fatal(rules.DATASET_TABLE, _not_an_array(data))
    if not data:
        problems.fatal(rules.DATASET_TABLE, "the JSON array is empty: the dataset has no rows")
    for row_no, item in enumerate(data, 1):
        if not isinstance(item, dict):
            problems.add(rules.DATASET_TABLE, f"element {row_no} of the array is {_json_kind(item)}, not an object")
            continue
        for key in duplicates.repeated_in(item):
            problems.add(rules.DATASET_TABLE, f"row {row_no}: key '{key}' appears more than once")
        yield row_no, None, item


def _not_an_array(data: object) -> str:
    message = f"the file holds {_json_kind(data)}, but a dataset must be a JSON array of objects ([{{...}}, {{...}}])"
    if isinstance(data, dict):
        nested = [key for key, value in data.items() if isinstance(value, list) and value and isinstance(value[0], dict)]
        if nested:
            message += f"; its key '{nested[0]}' holds a list of objects: save that list on its own"
    return message


def jsonl_records(text: str, problems: Problems) -> Iterator[Record]:
    duplicates = _DuplicateKeys()
    row_no = 0
    seen_content = False
    # Split on "\n" only: str.splitlines() also breaks on U+2028 and friends, which JSON allows
    # unescaped inside strings, and would shift every later line number.
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if not seen_content and line.lstrip().startswith("["):
            problems.fatal(
                rules.DATASET_TABLE, f"line {line_no}: this looks like a JSON array, not JSON Lines; give the file a .json extension"
            )
        seen_content = True
        try:
            value = json.loads(line, object_pairs_hook=duplicates)
        except json.JSONDecodeError as exc:
            problems.add(rules.DATASET_TABLE, f"line {line_no}: invalid JSON ({exc.msg}, column {exc.colno})")
            continue
        except RecursionError:
            problems.add(rules.DATASET_TABLE, f"line {line_no}: the JSON is nested too deeply to read")
            continue
        if not isinstance(value, dict):
            problems.add(rules.DATASET_TABLE, f"line {line_no} is {_json_kind(value)}, not a JSON object")
            continue
        row_no += 1
        for key in duplicates.repeated_in(value):
            problems.add(rules.DATASET_TABLE, f"line {line_no}: key '{key}' appears more than once")
        yield row_no, line_no, value


class _DuplicateKeys:
    """``object_pairs_hook`` that remembers objects with a repeated key, which ``json`` would
    otherwise resolve silently by keeping the last value."""

    def __init__(self) -> None:
        # Holding the objects keeps them alive, so identity comparison cannot hit a recycled id.
        self._found: list[tuple[dict, list[str]]] = []

    def __call__(self, pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            counts = Counter(key for key, _ in pairs)
            self._found.append((obj, [key for key, count in counts.items() if count > 1]))
        return obj

    def repeated_in(self, obj: dict) -> list[str]:
        return next((keys for found, keys in self._found if found is obj), [])


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def parquet_records(path: Path, problems: Problems, skip: int) -> Iterator[Record]:
    import pyarrow as pa  # deferred: only Parquet needs it and it slows the UI's start-up
    import pyarrow.parquet as pq

    unreadable = (pa.ArrowException, OSError, ValueError)
    if path.stat().st_size == 0:
        problems.fatal(rules.DATASET_TABLE, "the file is empty")
    try:
        parquet = pq.ParquetFile(path)
    except unreadable as exc:
        problems.fatal(rules.DATASET_TABLE, f"not a readable Parquet file ({exc})")
    with parquet:
        _check_column_names(parquet.schema_arrow.names, problems)
        if parquet.metadata.num_rows == 0:
            problems.fatal(rules.DATASET_TABLE, "the Parquet file has columns but no rows")
        row_no = 0
        batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS)
        for batch in _reading(batches, problems, unreadable, "unreadable Parquet data"):
            if skip >= batch.num_rows:  # skipped batches are never converted to Python
                skip -= batch.num_rows
                row_no += batch.num_rows
                continue
            if skip:
                batch, row_no, skip = batch.slice(skip), row_no + skip, 0
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, None, row


def directory_records(path: Path, problems: Problems, skip: int) -> Iterator[Record]:
    dataset = _open_directory_dataset(path, problems)
    dataset = dataset.skip(skip) if skip else dataset
    # datasets raises from many layers (its own errors, pyarrow, pandas, json); whatever it
    # raises while reading the user's directory is a fault of that data, so all of it is DS-005.
    row_no = 0
    for batch in _reading(dataset.iter(batch_size=1000), problems, (Exception,), "datasets could not read it"):
        for values in zip(*batch.values()):
            row_no += 1
            yield skip + row_no, None, dict(zip(batch, values))
    if row_no == 0 and skip == 0:
        problems.fatal(rules.DATASET_TABLE, f"the dataset in '{path}' has no rows")


def _open_directory_dataset(path: Path, problems: Problems):  # -> datasets.Dataset | datasets.IterableDataset
    import datasets  # deferred: heavy, and only directories need it

    saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
    try:
        if saved:
            loaded = datasets.load_from_disk(str(path))
        else:
            # Streaming reads the files in place instead of copying them into the Arrow cache.
            loaded = datasets.load_dataset(str(path), streaming=True)
    except Exception as exc:  # see directory_records: any failure here is the directory's fault
        how = "datasets.load_from_disk" if saved else "datasets.load_dataset"
        problems.fatal(rules.DATASET_TABLE, f"'{path}' cannot be loaded with {how} ({type(exc).__name__}: {exc})")
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if not loaded:
            problems.fatal(rules.DATASET_TABLE, f"'{path}' holds no splits")
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    # A saved dataset remembers its format (say torch); rows here must be plain Python values.
    return loaded.with_format(None)


def _reading(items: Iterable, problems: Problems, errors: tuple[type[BaseException], ...], what: str) -> Iterator:
    """Iterate ``items``, turning ``errors`` raised by the source (not by our caller) into DS-005."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except errors as exc:
            problems.fatal(rules.DATASET_TABLE, f"{what} ({type(exc).__name__}: {exc})")
        yield item
