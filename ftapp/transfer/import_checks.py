"""What a database import may bring, checked before anything is written (DB-002, DB-003), and runs made history.

An export file is untrusted input. Its ids name folders, its paths are read by every service, and its runs
rows are what the supervisor launches, re-attaches to and signals. So, before the one import transaction:
- every id and reference is a UUID, every owner a plain name (DB-002); JSON held in text columns (a run's
  spec, a config) parses, shallowly nested (DB-001);
- every path (models, datasets and adapters ``location``, runs ``run_dir``/``log_path``, artifacts ``path``,
  and the code file of a custom reward in a run's spec) is absolute and resolves, symlinks followed, inside
  this home, an allowed root, or a root the importer named (``db import --allow-root``); a path another home
  made for a row (``<old home>/datasets|runs|exports/<uuid>/...``) is re-rooted onto this home, and named in
  the report; anything else (``/etc/passwd``, ``/root``) is refused (DB-003). A run's folder is named by its
  id and holds its log;
- runs are history: a queued or running row becomes ``failed`` ("imported while running ..."), and no run
  keeps a pid or process start time, so nothing imported is ever launched, re-attached to or signalled.
Each refusal names the table and row; all of them come together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ftapp import rules
from ftapp.errors import Problem
from ftapp.home_paths import inside
from ftapp.ids import is_uuid
from ftapp.prompts.config_schemas import check_config
from ftapp.prompts.configs import parse_config
from ftapp.prompts.templates import TEMPLATE_FIELDS, placeholders
from ftapp.run_vocabulary import TERMINAL, RunStatus
from storage.snapshot import TABLES, Planned
from storage.types import utc_now
from trainer.protocol import CUSTOM_REWARD

PATH_COLUMNS: dict[str, tuple[str, ...]] = {
    "models": ("location",),
    "datasets": ("location",),
    "adapters": ("location",),
    "runs": ("run_dir", "log_path"),
    "artifacts": ("path",),
}
HOME_FOLDERS = ("datasets", "runs", "exports")  # the folders of a home that hold one <uuid> folder per row
OWNER = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PROBLEMS = 20
# Text columns holding JSON, with the kind of value their readers expect (None: any); axolotl configs are YAML.
# A run's started/done payloads are only displayed and parsed defensively, but an import brings none that is not an object.
JSON_COLUMNS: dict[tuple[str, str], type | None] = {
    ("runs", "spec"): dict,
    ("runs", "started_payload"): dict,
    ("runs", "done_payload"): dict,
    ("datasets", "features"): dict,
    ("configs", "config"): None,
    ("comparison_votes", "settings"): dict,
    ("comparison_votes", "candidates"): list,
    ("evaluation_answers", "scores"): dict,
    ("training_presets", "settings"): dict,
}
YAML_CONFIG_TYPES = ("axolotl",)
MAX_JSON_DEPTH = 64
IMPORTED_CAUSE = "imported"


def _row_name(table: str, index: int, row: dict[str, Any]) -> str:
    label = row.get("name") if isinstance(row.get("name"), str) else None
    ident = row.get("id")
    return f"{table} row {index}" + (f" ({label!r})" if label else f" (id {str(ident)[:60]!r})" if ident is not None else "")


def id_problems(tables: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """Every row's ids and references, duplicates included (their ids are still looked up and mapped)."""
    problems = []
    for spec in TABLES:
        columns = (("id",) if spec.exported_id else ()) + tuple(spec.references)
        for index, row in enumerate(tables[spec.name]):
            bad = [c for c in columns if row.get(c) is not None and not is_uuid(row[c])]
            if bad:
                shown = ", ".join(f"{c} {str(row[c])[:60]!r}" for c in bad)
                problems.append(Problem(rules.DB_IMPORT_IDS, f"{_row_name(spec.name, index, row)}: {shown} is not a UUID", "id"))
            owner = row.get("owner")
            if owner is not None and not OWNER.fullmatch(owner):
                problems.append(
                    Problem(rules.DB_IMPORT_IDS, f"{_row_name(spec.name, index, row)}: owner {owner[:60]!r} is not a plain name", "owner")
                )
    return problems


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (counted without recursion, stopping past the limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def json_problems(tables: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """Text columns that hold JSON (a run's spec, a config...) parse, as the kind of value their readers expect,
    nested at most MAX_JSON_DEPTH deep: every later read (the Runs tab, an export) would otherwise fail (DB-001)."""
    problems = []
    for (table, column), kind in JSON_COLUMNS.items():
        for index, row in enumerate(tables[table]):
            text = row.get(column)
            if text is None or (table == "configs" and row.get("type") in YAML_CONFIG_TYPES):
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                problems.append(Problem(rules.DB_IMPORT_FILE, f"{_row_name(table, index, row)}: {column} is not JSON", column))
                continue
            if kind is not None and not isinstance(value, kind):
                problems.append(
                    Problem(
                        rules.DB_IMPORT_FILE,
                        f"{_row_name(table, index, row)}: {column} must be a JSON {'object' if kind is dict else 'list'}",
                        column,
                    )
                )
            elif _depth(value) > MAX_JSON_DEPTH:
                problems.append(
                    Problem(
                        rules.DB_IMPORT_FILE, f"{_row_name(table, index, row)}: {column} nests deeper than {MAX_JSON_DEPTH} levels", column
                    )
                )
    return problems


def _custom_code_paths(spec_text: Any) -> list[str]:
    """The code files a run's spec names (custom_python rewards): paths that would be run, not only read."""
    try:
        spec = json.loads(spec_text) if isinstance(spec_text, str) else None
    except (ValueError, RecursionError):
        return []
    rewards = spec.get("rewards") if isinstance(spec, dict) else None
    return (
        [str(r.get("code_path")) for r in rewards or () if isinstance(r, dict) and r.get("kind") == CUSTOM_REWARD]
        if isinstance(rewards, list)
        else []
    )


def reroot(value: str, home: Path) -> Path | None:
    """A path another home made for a row (``<that home>/<datasets|runs|exports>/<uuid>/...``), moved onto this
    home; None for any other path."""
    parts = Path(value).parts
    if ".." in parts:
        return None
    for at in range(len(parts) - 2, 0, -1):
        if parts[at] in HOME_FOLDERS and is_uuid(parts[at + 1]):
            return home.joinpath(*parts[at:])
    return None


def check_paths(planned: Planned, roots: Iterable[Path], home: Path | None) -> tuple[list[Problem], list[str]]:
    """DB-003 problems of the rows an import will write (a duplicate writes nothing), and the paths re-rooted onto
    ``home`` (changed in the rows, in place), each named."""
    roots = tuple(roots)
    where = " or ".join(str(r) for r in roots) or "(no folder: this import may bring no paths)"
    problems: list[Problem] = []
    moved: list[str] = []

    def check(table: str, index: int, row: dict[str, Any], column: str, within: Path | None = None) -> Path | None:
        value = row.get(column)
        if value is None:
            return None
        absolute = Path(value).is_absolute()
        resolved = inside(value, (within,) if within else roots) if absolute else None
        if resolved is None and absolute and home is not None and (target := reroot(value, home)) is not None:
            resolved = inside(target, (within,) if within else (home,))
            if resolved is not None:
                row[column] = str(target)
                moved.append(f"{_row_name(table, index, row)}: {column} {value} -> {target}")
        if resolved is None:
            allowed = f"inside its run folder {within}" if within else f"inside {where}"
            problems.append(
                Problem(
                    rules.DB_IMPORT_PATHS,
                    f"{_row_name(table, index, row)}: {column} {str(value)[:300]!r} does not resolve "
                    f"{allowed}; imports bring no paths outside this home (db import --allow-root "
                    "FOLDER trusts another)",
                    column,
                )
            )
        return resolved

    for table, columns in PATH_COLUMNS.items():
        for index, row in planned[table]:
            if table != "runs":
                for column in columns:
                    check(table, index, row, column)
                continue
            folder = check(table, index, row, "run_dir")
            if folder is not None and folder.name != row.get("id"):
                problems.append(
                    Problem(
                        rules.DB_IMPORT_PATHS,
                        f"{_row_name(table, index, row)}: run_dir {row['run_dir'][:300]!r} is not a folder named by the run's id",
                        "run_dir",
                    )
                )
            elif row.get("log_path") is not None and row.get("run_dir") is None:
                problems.append(Problem(rules.DB_IMPORT_PATHS, f"{_row_name(table, index, row)}: a log_path without a run_dir", "log_path"))
            elif folder is not None:
                check(table, index, row, "log_path", within=folder)
            for code in _custom_code_paths(row.get("spec")):
                if inside(code, roots) is None or not Path(code).is_absolute():
                    problems.append(
                        Problem(
                            rules.DB_IMPORT_PATHS,
                            f"{_row_name(table, index, row)}: its spec's custom reward code_path {code[:300]!r} is not inside {where}",
                            "spec",
                        )
                    )
    return problems, moved


def content_problems(tables: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """The rules a config or prompt meets when typed in (CF-005: no secrets, bounded numbers; PR-007: plain
    ``{column}`` fields) hold for one that arrives in an import too, named by its row."""
    problems: list[Problem] = []
    for index, row in enumerate(tables.get("configs", [])):
        values, parse = parse_config(str(row.get("type")), row.get("config") or "")
        for problem in parse or check_config(str(row.get("type")), values):
            problems.append(Problem(problem.rule, f"{_row_name('configs', index, row)}: {problem.message}", problem.field))
    for index, row in enumerate(tables.get("prompts", [])):
        for field in TEMPLATE_FIELDS:
            for problem in placeholders(str(row.get(field) or ""), field)[1]:
                problems.append(Problem(problem.rule, f"{_row_name('prompts', index, row)}: {problem.message}", field))
    return problems


def limited(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    rest = problems[MAX_PROBLEMS:]
    return problems[:MAX_PROBLEMS] + [Problem(rest[0].rule, f"... and {len(rest)} more rows like these", rest[0].field)]


def as_history(runs: list[tuple[int, dict[str, Any]]]) -> int:
    """Make the runs an import writes history, in place: a live one failed, none with a process. Returns how many were live."""
    now = utc_now()
    live = 0
    for _index, row in runs:
        status = row.get("status") or RunStatus.QUEUED  # the column's default
        if status not in TERMINAL:
            live += 1
            row.update(
                status=RunStatus.FAILED,
                error_cause=IMPORTED_CAUSE,
                finished_at=row.get("finished_at") or now,
                error_text=f"imported while {status}; imported runs are history (never launched, re-attached or signalled)",
                cancel_requested_at=None,
            )
        row.update(pid=None, process_start_time=None, kill_after=None)
    return live
