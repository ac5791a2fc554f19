"""A visitor of the public demo, as every service takes it: whose rows, which caps, which address book.

Demo mode is the same services with a ``Visitor`` passed in; None is the local app, unrestricted.
With one, a service reads and writes through the visitor's view of the database (its own rows plus
the shared ones, everything it adds stamped with its owner) and adds the DM- problems of
``ftapp.demo.policy`` to its usual validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ftapp.demo.address_book import AddressBook
from ftapp.demo.policy import DemoCaps, shared_read_only
from ftapp.errors import ValidationError

if TYPE_CHECKING:
    from storage import Database


@dataclass(frozen=True)
class Visitor:
    owner: str  # ``policy.owner_of`` the browser's key: stamped on every row the visitor makes
    caps: DemoCaps
    # Who else was seen at this visitor's addresses (DM-009): one book for the whole app, shared by every visitor.
    book: AddressBook = field(default_factory=AddressBook, compare=False)


def visible_to(db: Database, visitor: Visitor | None) -> Database:
    """``db`` as ``visitor`` sees it; all of it for the local app."""
    return db.for_owner(visitor.owner) if visitor else db


def require_own(visitor: Visitor | None, owner: str | None, kind: str, name: str) -> None:
    """A visitor changes only what it made: the shared rows (no owner) are read-only to it (DM-008)."""
    if visitor and owner is None:
        raise ValidationError(shared_read_only(kind, name))
