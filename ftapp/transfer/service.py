"""Database export to a JSON file and import from one, with secrets scrubbed on the way out.

An import file is untrusted: it is read with a size cap, parsed without a traceback whatever it holds
(DB-001), its ids and paths are checked and its runs made history (``ftapp.transfer.import_checks``: DB-002, DB-003),
and only then written, in one transaction.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftapp import rules
from ftapp.demo.policy import host_only
from ftapp.demo.visitor import Visitor
from ftapp.errors import Problem, ValidationError
from ftapp.home_paths import home_roots
from ftapp.secrets import redact_mapping
from ftapp.settings import Settings
from ftapp.transfer import import_checks
from storage import Database, SnapshotError
from storage.snapshot import Planned, check_snapshot, export_snapshot, import_snapshot

# Text columns holding JSON that could carry a secret: scrubbed on the way out (a run's payloads are what its trainer said).
JSON_TEXT_COLUMNS = (("configs", "config"), ("runs", "spec"), ("runs", "started_payload"), ("runs", "done_payload"))
MAX_IMPORT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ImportReport:
    imported: dict[str, int]
    duplicates: dict[str, int]
    duplicate_keys: dict[str, list[str]]
    live_runs_made_history: int = 0  # queued/running rows imported as failed
    rerooted: list[str] = field(default_factory=list)  # paths of another home's rows moved onto this home, one line each

    @property
    def total_imported(self) -> int:
        return sum(self.imported.values())

    @property
    def total_duplicates(self) -> int:
        return sum(self.duplicates.values())


def _scrub(snapshot: dict[str, Any]) -> dict[str, Any]:
    for table, column in JSON_TEXT_COLUMNS:
        for row in snapshot["tables"].get(table, []):
            try:
                parsed = json.loads(row[column])
            except (TypeError, ValueError):
                continue  # YAML axolotl configs; validated free of secrets on the way in
            scrubbed = redact_mapping(parsed)
            if scrubbed != parsed:
                row[column] = json.dumps(scrubbed, sort_keys=True, separators=(",", ":"))
    return snapshot


def dump_snapshot(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class DatabaseTransfer:
    def __init__(self, db: Database, settings: Settings | None = None, visitor: Visitor | None = None):
        """``settings``: whose home (and allowed roots) imported paths must lie in; without it, an import brings no paths.
        ``visitor``: a demo visitor, to whom the database (every visitor's rows) is the host's."""
        self.db, self.settings, self.visitor = db, settings, visitor

    def export_json(self) -> str:
        if self.visitor:
            raise ValidationError(host_only("exporting the database"))
        with self.db.transaction() as tx:
            return dump_snapshot(_scrub(export_snapshot(tx)))

    def export_to(self, path: Path) -> Path:
        text = self.export_json()
        path = Path(path)
        temp = path.with_name(f".{path.name}.partial")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
        return path

    def import_from(self, path: Path, trusted_roots: Iterable[str | Path] = ()) -> ImportReport:
        """Import an export file. ``trusted_roots``: folders besides the home (and allowed roots) that the
        importer vouches for, which paths in the file may point into (e.g. the home it was exported from)."""
        if self.visitor:
            raise ValidationError(host_only("importing a database"))
        data = _load(Path(path))
        try:
            tables = check_snapshot(data)
            problems = import_checks.json_problems(tables) + import_checks.id_problems(tables)
            problems = problems or import_checks.content_problems(tables)
        except SnapshotError as error:
            raise ValidationError(Problem(rules.DB_IMPORT_FILE, str(error), "file")) from error
        if problems:
            raise ValidationError(import_checks.limited(problems))
        roots = (*(home_roots(self.settings) if self.settings else ()), *(Path(r).expanduser() for r in trusted_roots))
        outcome: dict[str, Any] = {}

        def vet(planned: Planned) -> None:
            """Paths and runs of the rows that will be written: refused (DB-003), re-rooted, made history."""
            path_problems, outcome["rerooted"] = import_checks.check_paths(planned, roots, self.settings.home if self.settings else None)
            if path_problems:
                raise ValidationError(import_checks.limited(path_problems))
            outcome["live"] = import_checks.as_history(planned["runs"])

        try:
            with self.db.transaction() as tx:
                report = import_snapshot(tx, data, vet)
        except SnapshotError as error:
            raise ValidationError(Problem(rules.DB_IMPORT_FILE, str(error), "file")) from error
        return ImportReport(
            {name: t.imported for name, t in report.items()},
            {name: t.duplicates for name, t in report.items()},
            {name: t.duplicate_keys for name, t in report.items() if t.duplicate_keys},
            outcome["live"],
            outcome["rerooted"],
        )


def _load(path: Path) -> Any:
    """The parsed file, or DB-001: absent, not a regular file, larger than the cap, not UTF-8 JSON, nested too deeply."""
    try:
        # O_NONBLOCK: a FIFO named as the file must not hang the import before it is seen not to be a file.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise ValidationError(Problem(rules.DB_IMPORT_FILE, f"{path} is not a regular file", "file"))
            with open(descriptor, "rb", closefd=False) as handle:
                raw = handle.read(MAX_IMPORT_BYTES + 1)
        finally:
            os.close(descriptor)
    except FileNotFoundError as error:
        raise ValidationError(Problem(rules.DB_IMPORT_FILE, f"{path} does not exist", "file")) from error
    except OSError as error:
        raise ValidationError(Problem(rules.DB_IMPORT_FILE, f"{path} cannot be read: {error.strerror or error}", "file")) from error
    if len(raw) > MAX_IMPORT_BYTES:
        raise ValidationError(
            Problem(rules.DB_IMPORT_FILE, f"{path} is larger than {MAX_IMPORT_BYTES // 2**20} MiB, the most an import reads", "file")
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValidationError(Problem(rules.DB_IMPORT_FILE, f"{path} is not JSON: {error}", "file")) from error
    except RecursionError as error:
        raise ValidationError(Problem(rules.DB_IMPORT_FILE, f"{path} is nested too deeply to be a database export", "file")) from error
