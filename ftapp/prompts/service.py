"""Prompt-template use cases: create with placeholder checks, generate from columns, preview."""

from __future__ import annotations

from dataclasses import dataclass

from ftapp import rules
from ftapp.datasets.service import DatasetService
from ftapp.demo.visitor import Visitor, require_own, visible_to
from ftapp.errors import NotFoundError, Problem, ValidationError, require_found
from ftapp.ids import new_id
from ftapp.prompts.templates import GeneratedTemplates, check_templates, generate_templates, placeholders, render
from ftapp.resource_names import description_problem, name_problem
from storage import Database, DuplicateError, PromptRecord


@dataclass(frozen=True)
class AddPromptRequest:
    name: str = ""
    dataset_id: str = ""
    prompt_template: str = ""
    input_template: str | None = None
    completion_template: str | None = None
    description: str = ""


@dataclass(frozen=True)
class RenderedRow:
    row: dict
    prompt: str
    input: str
    completion: str


class PromptService:
    def __init__(self, db: Database, datasets: DatasetService, visitor: Visitor | None = None):
        self.db, self.datasets, self.visitor = visible_to(db, visitor), datasets, visitor

    def validate(self, request: AddPromptRequest) -> list[Problem]:
        problems: list[Problem] = []
        name = request.name.strip()
        columns: list[str] | None = None
        with self.db.transaction() as tx:
            if invalid := name_problem(rules.PROMPT_NAME, name):
                problems.append(invalid)
            elif tx.prompts.find_one(name=name):
                problems.append(Problem(rules.PROMPT_NAME, f"a prompt named '{name}' already exists", "name"))
            if not request.dataset_id:
                problems.append(
                    Problem(rules.PROMPT_DATASET, "dataset_id is required: placeholders are checked against its columns", "dataset_id")
                )
            else:
                dataset = tx.datasets.get(request.dataset_id)
                if dataset is None:
                    problems.append(Problem(rules.PROMPT_DATASET, f"dataset '{request.dataset_id}' not found", "dataset_id"))
                else:
                    columns = dataset.columns
        if too_long := description_problem(rules.DESCRIPTION, request.description):
            problems.append(too_long)
        if not request.prompt_template.strip():
            problems.append(Problem(rules.PROMPT_TEMPLATE, "prompt_template is required and may not be blank", "prompt_template"))
        if request.input_template is None:
            problems.append(
                Problem(
                    rules.INPUT_TEMPLATE, "input_template is required (the part the model sees before the completion)", "input_template"
                )
            )
        if request.completion_template is None:
            problems.append(
                Problem(rules.COMPLETION_TEMPLATE, "completion_template is required (the part the loss is taken on)", "completion_template")
            )
        templates = {
            "prompt_template": request.prompt_template,
            "input_template": request.input_template or "",
            "completion_template": request.completion_template or "",
        }
        if columns is not None:
            problems.extend(check_templates(templates, columns))
        else:  # no dataset to check the columns against: the syntax still is (PR-007)
            problems.extend(p for field, template in templates.items() for p in placeholders(template, field)[1])
        return problems

    def add(self, request: AddPromptRequest) -> PromptRecord:
        problems = self.validate(request)
        if problems:
            raise ValidationError(problems)
        try:
            with self.db.transaction() as tx:
                return tx.prompts.add(
                    id=new_id(),
                    name=request.name.strip(),
                    type="in_place",
                    dataset_id=request.dataset_id,
                    prompt_template=request.prompt_template,
                    input_template=request.input_template,
                    completion_template=request.completion_template,
                    description=request.description,
                )
        except DuplicateError as error:
            raise ValidationError(Problem(rules.PROMPT_NAME, f"a prompt named '{request.name}' already exists", "name")) from error

    def generate(self, dataset_id: str) -> GeneratedTemplates:
        return generate_templates(self.datasets.get(dataset_id).columns)

    def render_preview(
        self, dataset_id: str, prompt_template: str, input_template: str, completion_template: str, limit: int = 3
    ) -> list[RenderedRow]:
        """Render templates on the dataset's first rows; raises PR-006/PR-007 problems first."""
        dataset = self.datasets.get(dataset_id)
        templates = {"prompt_template": prompt_template, "input_template": input_template, "completion_template": completion_template}
        problems = check_templates(templates, dataset.columns)
        if problems:
            raise ValidationError(problems)
        rows = self.datasets.read_rows(dataset, 0, limit)
        return [
            RenderedRow(row, render(prompt_template, row), render(input_template, row), render(completion_template, row)) for row in rows
        ]

    def list(self, dataset_id: str | None = None) -> list[PromptRecord]:
        with self.db.transaction() as tx:
            return tx.prompts.find(dataset_id=dataset_id) if dataset_id else tx.prompts.list()

    def get(self, prompt_id: str) -> PromptRecord:
        with self.db.transaction() as tx:
            return require_found(tx.prompts.get(prompt_id), "prompt", prompt_id)

    def remove(self, prompt_id: str) -> None:
        with self.db.transaction() as tx:
            record = tx.prompts.get(prompt_id)
            if record is None:
                raise NotFoundError("prompt", prompt_id)
            require_own(self.visitor, record.owner, "prompt", record.name)
            tx.prompts.remove(prompt_id)
