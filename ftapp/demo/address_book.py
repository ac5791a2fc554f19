"""Which visitors of the public demo were seen at which network address: the caps per address (DM-009)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class AddressBook:
    """Which visitors were seen at which network address (memory only, about the most recent ``keep`` visitors).

    The caps per address count the live runs of every visitor that shares an address with the one
    asking: three cookies from one client are one client. A visitor seen at several addresses counts
    at each of them (a laptop that moves keeps its runs counted where it was). Visitors with live
    runs (``busy``) are never forgotten, so a flood of fresh cookies cannot push them out of the book.
    """

    def __init__(self, keep: int = 50_000, addresses_per_visitor: int = 8, busy: Callable[[], set[str]] = set):
        self.keep, self.addresses_per_visitor, self.busy = keep, addresses_per_visitor, busy
        self._addresses: OrderedDict[str, list[str]] = OrderedDict()  # owner -> addresses, newest last
        self._owners: dict[str, set[str]] = {}  # address -> owners
        self._lock = threading.Lock()

    def note(self, owner: str, address: str) -> None:
        with self._lock:
            seen = self._addresses.pop(owner, [])
            if address in seen:
                seen.remove(address)
            seen.append(address)
            self._owners.setdefault(address, set()).add(owner)
            while len(seen) > self.addresses_per_visitor:
                self._forget(owner, seen.pop(0))
            self._addresses[owner] = seen
            if len(self._addresses) > self.keep:
                self._shrink()

    def _shrink(self) -> None:
        """Forget the least recently seen visitors down to 90 % of ``keep``, except the busy ones."""
        busy, target = self.busy(), self.keep * 9 // 10
        for owner in list(self._addresses):  # least recently seen first
            if len(self._addresses) <= target:
                break
            if owner not in busy:
                for address in self._addresses.pop(owner):
                    self._forget(owner, address)

    def _forget(self, owner: str, address: str) -> None:
        owners = self._owners.get(address, set())
        owners.discard(owner)
        if not owners:
            self._owners.pop(address, None)

    def neighbours(self, owner: str) -> set[str]:
        """``owner`` and every visitor seen at one of its addresses."""
        with self._lock:
            return {owner}.union(*(self._owners.get(a, set()) for a in self._addresses.get(owner, [])))
