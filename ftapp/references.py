"""How people name a record they type on a command line: like docker and git.

A reference is, in this order: a record's full id; its name, when exactly one record has that name;
or the start of its id, at least ``MIN_PREFIX`` characters, when exactly one id starts so (the UI shows
8-character prefixes everywhere). A reference that matches several records is an error listing them
(RF-001). One that matches nothing is returned as it was, so the service that receives it reports the
not-found rule of its own request (RN-001 for a run, FT-019 for a starting adapter, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ftapp import rules
from ftapp.errors import Problem, ValidationError

MIN_PREFIX = 6
_LISTED = 10  # candidates named in the error; a prefix of 6 characters rarely matches more


class Referable(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str | None: ...


def resolve_reference(kind: str, reference: str, records: Iterable[Referable], field: str = "id") -> str:
    """The id of the one record ``reference`` names; ``reference`` itself when it names none."""
    reference = reference.strip()
    candidates = list(records)
    if not reference or any(record.id == reference for record in candidates):
        return reference
    for matches, how in (
        ([r for r in candidates if r.name == reference], "is the name of"),
        ([r for r in candidates if r.id.startswith(reference)] if len(reference) >= MIN_PREFIX else [], "starts the id of"),
    ):
        if len(matches) == 1:
            return matches[0].id
        if matches:
            raise ValidationError(Problem(rules.REFERENCE, _ambiguity(kind, reference, how, matches), field))
    if any(record.id.startswith(reference) for record in candidates):
        raise ValidationError(
            Problem(rules.REFERENCE, f"{kind} id prefix '{reference}' is too short: give at least {MIN_PREFIX} characters of the id", field)
        )
    return reference


def _ambiguity(kind: str, reference: str, how: str, matches: list[Referable]) -> str:
    lines = [f"'{reference}' {how} {len(matches)} {kind}s; give more of the id:"]
    lines += [f"  {record.id}  {record.name or ''}".rstrip() for record in matches[:_LISTED]]
    if len(matches) > _LISTED:
        lines.append(f"  ... and {len(matches) - _LISTED} more")
    return "\n".join(lines)
