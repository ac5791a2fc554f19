"""Domain errors raised by the service layer.

The UI turns these into ``gr.Error`` and the CLI into a non-zero exit with the message on stderr;
nothing below ``ui``/``cli`` knows about either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ftapp.rules import Rule

R = TypeVar("R")


@dataclass(frozen=True)
class Problem:
    """One broken rule: the catalogue's rule (``ftapp.rules``), the offending field and a sentence a user can act on."""

    rule: Rule | None
    message: str
    field: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rule, str):  # an id typed as text would escape the catalogue check
            raise TypeError(f"Problem takes a rule of ftapp.rules, not the text {self.rule!r}")

    @property
    def rule_id(self) -> str | None:
        return self.rule.id if self.rule else None

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.message}" if self.rule_id else self.message


class FtappError(Exception):
    """Base of every error the service layer raises on purpose."""


class ValidationError(FtappError):
    """A request broke one or more rules; every problem of the request is reported at once."""

    def __init__(self, problems: list[Problem] | Problem):
        if isinstance(problems, Problem):
            problems = [problems]
        if not problems:
            raise ValueError("ValidationError needs at least one problem")
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def rule_ids(self) -> list[str]:
        return [p.rule_id for p in self.problems if p.rule_id]


class NotFoundError(FtappError):
    """An id that names nothing in the registry."""

    def __init__(self, kind: str, ident: str, rule: Rule | None = None):
        self.kind, self.ident, self.rule = kind, ident, rule
        self.rule_id = rule.id if rule else None
        prefix = f"{self.rule_id}: " if rule else ""
        super().__init__(f"{prefix}{kind} '{ident}' not found")


class ConflictError(FtappError):
    """The change would break a uniqueness or reference rule the database enforces."""


class NetworkRequiredError(FtappError):
    """The request needs the Hugging Face Hub and this process is offline."""


def require_found(record: R | None, kind: str, ident: str) -> R:
    """The record, or NotFoundError naming what was looked up."""
    if record is None:
        raise NotFoundError(kind, ident)
    return record
