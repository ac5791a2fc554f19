"""Dataset use cases: import (local file, local HF directory, Hub id), list, preview, remove."""

from __future__ import annotations

import builtins
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ftapp import rules
from ftapp.datasets import files as dataset_files
from ftapp.datasets import hub as hub_datasets
from ftapp.datasets.formats import detect_format
from ftapp.datasets.preference_rows import preference_problems
from ftapp.datasets.stats import ColumnStats, column_stats
from ftapp.demo.path_policy import path_problem
from ftapp.demo.policy import rows_problem, upload_only, visitor_dir
from ftapp.demo.visitor import Visitor, require_own, visible_to
from ftapp.errors import ConflictError, NotFoundError, Problem, ValidationError, require_found
from ftapp.home_paths import require_inside
from ftapp.ids import is_uuid, new_id
from ftapp.number_bounds import ROWS
from ftapp.resource_names import DESCRIPTION_MAX, description_problem, name_problem
from ftapp.secrets import HfToken
from ftapp.settings import Settings
from storage import Database, DatasetRecord, DuplicateError

DATASET_TYPES = dataset_files.DATASET_TYPES
STATS_ROWS = 5000
HUB_STATS_ROWS = 200


@dataclass(frozen=True)
class AddDatasetRequest:
    name: str = ""
    type: str | None = None  # None: from the file extension, or huggingface when only a Hub id is given
    location: str | None = None
    huggingface_name: str | None = None
    hf_config: str | None = None
    hf_split: str | None = None
    description: str = ""
    # Where the file came from, as the user knows it (e.g. "upload: train.json"); the location is
    # then only the temp copy a web upload made, which is not worth remembering.
    origin: str | None = None
    # Sent by an upload form: a missing location is then a missing upload, and the user is asked for a file.
    from_upload: bool = False


@dataclass(frozen=True)
class DatasetPage:
    dataset_id: str
    offset: int
    rows: list[dict]
    total: int | None


def _resolve_type(request: AddDatasetRequest) -> tuple[str | None, list[Problem]]:
    if request.type:
        if request.type not in DATASET_TYPES:
            return None, [Problem(rules.DATASET_TYPE, f"type must be one of {', '.join(DATASET_TYPES)} (got {request.type!r})", "type")]
        return request.type, []
    if request.huggingface_name and not request.location:
        return "huggingface", []
    if request.location:
        path = Path(request.location).expanduser()
        if path.is_dir():
            return "project", []
        try:
            return dataset_files.dataset_type_for(path), []
        except ValidationError as error:
            return None, error.problems
    if request.from_upload:
        return None, [Problem(rules.DATASET_LOCATION, f"no file was uploaded: upload a {dataset_files.accepted_files()} file", "location")]
    return None, [Problem(rules.DATASET_LOCATION, "give a file or directory location, or a Hugging Face dataset id", "location")]


def _default_name(request: AddDatasetRequest) -> str:
    if request.huggingface_name and not request.location:
        parts = [request.huggingface_name or "", request.hf_config or "", request.hf_split or ""]
        return ":".join(p for p in parts if p)
    return Path(request.location or "").stem


class DatasetService:
    def __init__(self, settings: Settings, db: Database, visitor: Visitor | None = None):
        self.settings, self.db, self.visitor = settings, visible_to(db, visitor), visitor
        self.token = HfToken(settings.secrets_dir)
        # Where imported files are copied: a demo visitor has a folder of their own.
        self.files_dir = visitor_dir(settings, visitor.owner) / "datasets" if visitor else settings.datasets_dir

    def add(self, request: AddDatasetRequest) -> DatasetRecord:
        refused = self._visitor_problems(request)
        if refused:
            raise ValidationError(refused)
        dataset_type, problems = _resolve_type(request)
        name = (request.name or _default_name(request)).strip()
        has_source = bool(request.location or request.huggingface_name)
        if not name and has_source:  # without a source the name had nothing to default to: the source's problem says it all
            problems.append(Problem(rules.DATASET_NAME, "name is required", "name"))
        elif name and (invalid := name_problem(rules.DATASET_NAME, name)):  # one printable line: a name is shown in tables and headings
            problems.append(invalid)
        else:
            with self.db.transaction() as tx:
                if tx.datasets.find_one(name=name):
                    problems.append(Problem(rules.DATASET_NAME, f"a dataset named '{name}' already exists", "name"))
        if too_long := description_problem(rules.DESCRIPTION, request.description):
            problems.append(too_long)
        if dataset_type == "huggingface" and not (request.huggingface_name or "").strip():
            problems.append(Problem(rules.DATASET_HUB_NAME, "huggingface_name is required for a Hugging Face dataset", "huggingface_name"))
        if dataset_type and dataset_type != "huggingface":
            problems.extend(self._location_problems(dataset_type, request.location))
        if problems:
            raise ValidationError(problems)
        assert dataset_type is not None
        if dataset_type == "huggingface":
            return self._add_hub(request, name, (request.huggingface_name or "").strip())
        return self._add_local(request, name, dataset_type, request.location or "")

    def _visitor_problems(self, request: AddDatasetRequest) -> list[Problem]:
        """A demo visitor imports uploads only (DM-006, DS-003): checked before anything looks at the path it names."""
        if not self.visitor:
            return []
        if request.type == "huggingface" or (request.huggingface_name and not request.location):
            return [upload_only("a Hugging Face Hub dataset", "huggingface_name")]
        outside = (
            path_problem(self.settings, request.location, rules.DATASET_LOCATION, "location", uploads_only=True)
            if request.location
            else None
        )
        return [outside] if outside else []

    def _location_problems(self, dataset_type: str, location: str | None) -> list[Problem]:
        if not location:
            return [Problem(rules.DATASET_LOCATION, f"location is required for a {dataset_type} dataset", "location")]
        path = Path(location).expanduser()
        outside = path_problem(self.settings, path, rules.DATASET_LOCATION, "location")
        if outside:
            return [outside]
        if not path.exists():
            return [Problem(rules.DATASET_LOCATION, f"{path} does not exist", "location")]
        if dataset_type == "project":
            return (
                []
                if path.is_dir()
                else [
                    Problem(
                        rules.DATASET_LOCATION,
                        f"{path} is not a directory (type project is a local Hugging Face dataset directory)",
                        "location",
                    )
                ]
            )
        if not path.is_file():
            return [Problem(rules.DATASET_LOCATION, f"{path} is not a file", "location")]
        try:
            expected = dataset_files.dataset_type_for(path)
        except ValidationError as error:
            return error.problems
        if expected != dataset_type:
            return [Problem(rules.DATASET_LOCATION, f"{path.name} has the extension of a {expected} file, not {dataset_type}", "location")]
        return []

    def _add_hub(self, request: AddDatasetRequest, name: str, hub_name: str) -> DatasetRecord:
        split = request.hf_split or "train"
        info = hub_datasets.inspect_hub_dataset(hub_name, request.hf_config or None, split, token=self.token.value())
        data_format = detect_format(info.columns, info.sample_rows)
        if data_format == "preference":
            # A Hub dataset is only sampled here; the trainer reads the rest.
            problems = preference_problems(info.sample_rows, sampled=True)
            if problems:
                raise ValidationError(problems)
        return self._insert(
            new_id(),
            name=name,
            type="huggingface",
            huggingface_name=info.name,
            hf_config=info.config,
            hf_split=info.split,
            format=data_format,
            features=json.dumps(info.features),
            num_rows=info.num_rows,
            description=request.description or (info.description or "")[:DESCRIPTION_MAX],
        )

    def _add_local(self, request: AddDatasetRequest, name: str, dataset_type: str, location: str) -> DatasetRecord:
        source = Path(location).expanduser().resolve()
        table = dataset_files.inspect_directory(source) if dataset_type == "project" else dataset_files.inspect_file(source, dataset_type)
        data_format = detect_format(table.columns, table.sample_rows)
        if data_format == "preference":
            # Every row, before anything is copied or registered: one bad pair fails a DPO run hours in.
            problems = preference_problems(dataset_files.iter_rows(source, dataset_type))
            if problems:
                raise ValidationError(problems)
        too_many = rows_problem(self.visitor.caps, table.num_rows, "location", "dataset") if self.visitor else None
        if too_many:  # before the copy: a refused import writes nothing
            raise ValidationError(too_many)
        dataset_id = new_id()
        # Copy into the home so the registry never points at an upload's temp file; a sibling
        # temp dir + rename means a crash mid-copy leaves nothing that looks registered.
        final = self.files_dir / dataset_id
        staging = self.files_dir / f".{dataset_id}.partial"
        try:
            staging.mkdir(parents=True)
            if source.is_dir():
                shutil.copytree(source, staging / source.name)
            else:
                shutil.copy2(source, staging / source.name)
            staging.rename(final)
            return self._insert(
                dataset_id,
                name=name,
                type=dataset_type,
                location=str(final / source.name),
                source=request.origin or str(source),
                format=data_format,
                features=json.dumps(table.features),
                num_rows=table.num_rows,
                description=request.description,
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            raise

    def _insert(self, dataset_id: str, **values) -> DatasetRecord:
        try:
            with self.db.transaction() as tx:
                return tx.datasets.add(id=dataset_id, **values)
        except DuplicateError as error:
            raise ValidationError(Problem(rules.DATASET_NAME, f"a dataset named '{values['name']}' already exists", "name")) from error

    def list(self) -> list[DatasetRecord]:
        with self.db.transaction() as tx:
            return tx.datasets.list()

    def get(self, dataset_id: str) -> DatasetRecord:
        with self.db.transaction() as tx:
            return require_found(tx.datasets.get(dataset_id), "dataset", dataset_id)

    def preview(self, dataset_id: str, offset: int = 0, limit: int = 20) -> DatasetPage:
        if not (ROWS.above(0).allows(offset) and ROWS.allows(limit) and limit <= 1000):
            raise ValidationError(Problem(None, f"offset must be {ROWS.above(0).text} and limit between 1 and 1000"))
        record = self.get(dataset_id)
        rows = self.read_rows(record, offset, limit)
        return DatasetPage(record.id, offset, rows, record.num_rows)

    # builtins.list: below ``def list``, a bare ``list`` in an annotation names the method.
    def read_rows(self, record: DatasetRecord, offset: int = 0, limit: int = 20) -> builtins.list[dict]:
        if record.type == "huggingface":
            if not record.huggingface_name:  # rows may come from an import
                raise ConflictError(f"dataset {record.name!r} is a Hub dataset without a huggingface_name")
            return hub_datasets.read_hub_rows(
                record.huggingface_name,
                record.hf_config,
                record.hf_split or "train",
                offset,
                limit,
                token=self.token.value(),
            )
        # Every local dataset is a copy in the home (``_add_local``): a row pointing elsewhere is refused (DB-003).
        path = require_inside(self.settings, record.location or "", f"dataset {record.name!r}: location", "location")
        if record.type == "project":
            return dataset_files.read_directory_rows(path, offset, limit)
        return dataset_files.read_rows(path, record.type, offset, limit)

    def column_stats(self, dataset_id: str, max_rows: int = STATS_ROWS) -> builtins.list[ColumnStats]:
        """Empties and lengths per column over the first ``max_rows`` rows (all of a small file)."""
        record = self.get(dataset_id)
        if record.type == "huggingface":
            max_rows = min(max_rows, HUB_STATS_ROWS)  # streamed from the Hub: keep the preview quick
        return column_stats(record.columns, self.read_rows(record, 0, max_rows))

    def _owned_folder(self, record: DatasetRecord) -> Path | None:
        """The folder ``_add_local`` copied the dataset into, checked before anything is removed: named by a UUID,
        strictly below this service's dataset folder, symlinks followed (DB-002, DB-003); None when there is none."""
        if not record.location:
            return None
        if not is_uuid(record.id):
            raise ValidationError(
                Problem(
                    rules.DB_IMPORT_IDS, f"dataset {record.id[:60]!r} has an id that is not a UUID; it cannot name a folder to delete", "id"
                )
            )
        folder = self.files_dir / record.id
        if not (folder.exists() or folder.is_symlink()):
            return None
        return require_inside(self.settings, folder, f"dataset {record.name!r}: its folder", "location", within=self.files_dir)

    def remove(self, dataset_id: str, remove_prompts: bool = False) -> builtins.list[str]:
        """Remove a dataset; its prompts go with it only when asked. Returns removed prompt names."""
        with self.db.transaction() as tx:
            record = tx.datasets.get(dataset_id)
            if record is None:
                raise NotFoundError("dataset", dataset_id)
            require_own(self.visitor, record.owner, "dataset", record.name)
            owned = self._owned_folder(record)
            prompts = tx.prompts.find(dataset_id=dataset_id)
            if prompts and not remove_prompts:
                names = ", ".join(p.name for p in prompts)
                raise ConflictError(f"dataset '{record.name}' is used by prompts {names}; remove them too (remove_prompts) or first")
            for prompt in prompts:
                tx.prompts.remove(prompt.id)  # adapters trained with it keep a NULL prompt_id
            tx.datasets.remove(dataset_id)
        if owned is not None and owned.is_dir():
            shutil.rmtree(owned, ignore_errors=True)
        return [p.name for p in prompts]
